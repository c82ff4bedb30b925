"""Tools: Python functions a model may call, described and run by the gateway.

``@tool`` turns a function into a :class:`Tool` whose name, description and JSON schema come
from the function itself (:mod:`.schema`); plugins register tools with
``gateway_register_tools`` and agents name them in their ``tools``.
"""

from __future__ import annotations

from gateway.tools.python import (
    Tool,
    ToolContext,
    ToolError,
    ToolOutcome,
    as_tool,
    import_tool,
    json_arguments,
    tool,
)

__all__ = [
    "Tool",
    "ToolContext",
    "ToolError",
    "ToolOutcome",
    "as_tool",
    "import_tool",
    "json_arguments",
    "tool",
]
