"""Telemetry: OpenTelemetry traces of every request, its upstream attempts, agent steps and tool
calls, with the GenAI semantic conventions."""
