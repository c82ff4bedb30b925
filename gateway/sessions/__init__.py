"""Conversation sessions: the history filter, its stores (memory, redis) and the session API."""
