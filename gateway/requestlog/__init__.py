"""Request logs: one record per chat request (bodies only when opted in, redacted) to a sink: a
file of JSON lines, the database, a Redis stream, or a plugin's."""
