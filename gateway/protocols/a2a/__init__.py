"""Agent2Agent (A2A): the pieces the ``protocols.a2a`` plugin serves agents with, and the client
hookgate's agents delegate to remote agents with.

    from gateway.protocols.a2a import A2AClient

    async with A2AClient("https://partner.example", api_key=key) as client:
        cards = await client.discover()
        result = await client.delegate("research", "Summarise the latest report.")
        print(result.state, result.text)
"""

from __future__ import annotations

from gateway.protocols.a2a.cards import RemoteCard
from gateway.protocols.a2a.client import A2AClient, TaskResult
from gateway.protocols.a2a.jsonrpc import A2AError

__all__ = ["A2AClient", "A2AError", "RemoteCard", "TaskResult"]
