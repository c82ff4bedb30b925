"""Streams: Server-Sent Events read and written (:mod:`.sse`), and canonical events folded back
into one answer (:mod:`.assembler`)."""
