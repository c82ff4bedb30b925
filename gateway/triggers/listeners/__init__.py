"""Listeners: the base class and manager (:mod:`.base`) and the built-in kinds
(``redis-pubsub``, ``redis-stream``, ``sse``, ``nats``)."""
