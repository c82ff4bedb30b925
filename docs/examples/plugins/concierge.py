"""A tool and an agent that uses it, declared in Python.

The tool's name, description and JSON schema come from the function: its signature, type hints
and docstring. The agent becomes the model name ``concierge`` in every protocol (and an AG-UI
agent); it thinks with ``gpt-4o-mini``, which ``[models]`` must route::

    [models.gpt-4o-mini]
    backend = "openai"
"""

from __future__ import annotations

from typing import Literal

from gateway import RegisterAgent, RegisterTool, ToolContext, hookimpl
from gateway.agents import Agent, tool

RATES = {"standard": 4.0, "express": 9.5}


@tool(timeout=5)
async def shipping_quote(
    weight_kg: float, context: ToolContext, speed: Literal["standard", "express"] = "standard"
) -> dict[str, object]:
    """The price of shipping a parcel.

    Args:
        weight_kg: The parcel's weight in kilograms.
        speed: How fast it must arrive.
    """
    # A ToolContext parameter is left out of the schema: it says who is asking, and through
    # which agent and protocol.
    price = round(RATES[speed] + 1.2 * weight_kg, 2)
    return {"price_eur": price, "speed": speed, "quoted_for": context.principal.name}


@hookimpl
def gateway_register_tools(register: RegisterTool) -> None:
    register("shipping_quote", shipping_quote)  # any agent may now name it in `tools`


@hookimpl
def gateway_register_agents(register: RegisterAgent) -> None:
    register(
        "concierge",
        Agent(
            "concierge",
            model="gpt-4o-mini",
            system="You answer questions about orders. Quote shipping with shipping_quote.",
            tools=["shipping_quote"],
            description="Answers questions about orders and shipping.",
            max_steps=4,
        ),
    )
