"""Rate limits per API key: requests and tokens per minute, in memory or shared through Redis."""
