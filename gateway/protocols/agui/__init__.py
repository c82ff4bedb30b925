"""The AG-UI protocol: agent runs streamed to browsers over SSE and WebSocket (:mod:`.adapter`),
with its events (:mod:`.events`) and compact form (:mod:`.compact`)."""
