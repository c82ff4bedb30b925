"""The AG-UI protocol: agent runs streamed to browsers over SSE and WebSocket (:mod:`.adapter`),
with its events (:mod:`.events`) and compact form (:mod:`.compact`).

Run inputs and the event translator are public for plugins that start runs themselves.
"""

from __future__ import annotations

from gateway.protocols.agui.events import EventTranslator, RunInput, decode_run_input

__all__ = ["EventTranslator", "RunInput", "decode_run_input"]
