"""Tools described from Python signatures and docstrings, run safely; agent configuration."""

from __future__ import annotations

import dataclasses
import datetime
import enum
from typing import Annotated, Any, Literal, Optional, TypedDict

import attrs
import jsonschema
import pytest

from gateway import ConfigError, create_app, hookimpl
from gateway.agents import Agent, AgentsPlugin, Tool, ToolContext, tool
from gateway.tools.schema import json_schema, parse_docstring


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Point(TypedDict):
    x: int
    y: int


@attrs.frozen
class Place:
    """A place.

    Args:
        name: What it is called.
    """

    name: str
    population: int | None = None


@dataclasses.dataclass
class Box:
    width: float
    tags: list[str] = dataclasses.field(default_factory=list)


def test_type_hints_become_json_schema():
    assert json_schema(str) == {"type": "string"}
    assert json_schema(bool) == {"type": "boolean"}
    assert json_schema(Optional[int]) == {"type": ["integer", "null"]}  # noqa: UP045
    assert json_schema(float | None) == {"type": ["number", "null"]}
    assert json_schema(int | str) == {"anyOf": [{"type": "integer"}, {"type": "string"}]}
    assert json_schema(Literal["a", "b"]) == {"type": "string", "enum": ["a", "b"]}
    assert json_schema(Literal["a", "b"] | None) == {
        "type": ["string", "null"],
        "enum": ["a", "b", None],
    }
    assert json_schema(Color) == {"type": "string", "enum": ["red", "blue"]}
    assert json_schema(list[int]) == {"type": "array", "items": {"type": "integer"}}
    assert json_schema(set[str]) == {
        "type": "array",
        "items": {"type": "string"},
        "uniqueItems": True,
    }
    assert json_schema(tuple[int, str]) == {
        "type": "array",
        "prefixItems": [{"type": "integer"}, {"type": "string"}],
        "minItems": 2,
        "maxItems": 2,
    }
    assert json_schema(tuple[float, ...]) == {"type": "array", "items": {"type": "number"}}
    assert json_schema(dict[str, float]) == {
        "type": "object",
        "additionalProperties": {"type": "number"},
    }
    assert json_schema(dict) == {"type": "object"}
    assert json_schema(Any) == {}
    assert json_schema(datetime.date) == {"type": "string", "format": "date"}
    assert json_schema(Annotated[int, "how many"]) == {"type": "integer", "description": "how many"}
    assert json_schema(Point) == {
        "type": "object",
        "properties": {"x": {"type": "integer"}, "y": {"type": "integer"}},
        "required": ["x", "y"],
    }
    assert json_schema(Place) == {
        "type": "object",
        "properties": {
            "name": {"type": "string", "description": "What it is called."},
            "population": {"type": ["integer", "null"]},
        },
        "required": ["name"],
    }
    assert json_schema(Box)["required"] == ["width"]
    with pytest.raises(TypeError, match="cannot describe"):
        json_schema(complex)


def test_docstring_styles():
    google = parse_docstring(
        """Find flights.

        Searches every airline.

        Args:
            origin (str): Where from,
                as an IATA code.
            when: The day.

        Returns:
            Flights.
        """
    )
    assert google == (
        "Find flights.\n\nSearches every airline.",
        {"origin": "Where from, as an IATA code.", "when": "The day."},
    )
    rest = parse_docstring(
        "Find flights.\n\n:param origin: Where from.\n:param str when: The day.\n"
    )
    assert rest == ("Find flights.", {"origin": "Where from.", "when": "The day."})
    numpy = parse_docstring(
        "Find flights.\n\nParameters\n----------\norigin : str\n    Where from.\n"
        "when : date\n    The day.\n\nReturns\n-------\nlist\n"
    )
    assert numpy == ("Find flights.", {"origin": "Where from.", "when": "The day."})
    assert parse_docstring(None) == ("", {})


async def test_a_tool_from_a_function():
    @tool
    async def book(
        city: str,
        nights: int = 1,
        color: Color = Color.RED,
        when: datetime.date | None = None,
        place: Place | None = None,
        ctx: ToolContext = None,  # type: ignore[assignment]
    ) -> dict[str, Any]:
        """Book a room.

        Args:
            city: Where.
            nights: How long.
        """
        return {
            "city": city,
            "nights": nights,
            "color": color,
            "when": when,
            "place": place,
            "agent": ctx.agent,
        }

    assert isinstance(book, Tool) and book.name == "book" and book.description == "Book a room."
    schema = book.parameters
    assert schema["required"] == ["city"] and schema["additionalProperties"] is False
    assert schema["properties"]["nights"] == {
        "type": "integer",
        "description": "How long.",
        "default": 1,
    }
    assert schema["properties"]["color"]["default"] == "red"
    assert "ctx" not in schema["properties"]  # the context is the gateway's, not the model's
    jsonschema.Draft202012Validator.check_schema(schema)
    context = ToolContext("booker")
    out = await book.invoke(
        '{"city": "Rome", "nights": "3", "color": "blue", "when": "2030-01-02", '
        '"place": {"name": "Hotel"}}',
        context,
        5,
    )
    assert not out.is_error
    assert out.content == (
        '{"city":"Rome","nights":3,"color":"blue","when":"2030-01-02",'
        '"place":{"name":"Hotel","population":null},"agent":"booker"}'
    )
    bad = await book.invoke('{"city": "Rome", "color": "green"}', context, 5)
    assert bad.is_error and "color" in bad.content
    assert (await book.invoke("[1]", context, 5)).content.endswith(
        "expected a JSON object of named arguments"
    )
    assert (await book.invoke("{nope", context, 5)).content.startswith(
        "Error: invalid arguments for book: not valid JSON"
    )
    assert await book(city="Oslo", ctx=context) == {  # still callable as itself
        "city": "Oslo",
        "nights": 1,
        "color": Color.RED,
        "when": None,
        "place": None,
        "agent": "booker",
    }


def test_tool_definitions_are_checked():
    with pytest.raises(TypeError, match="ordinary named parameter"):
        tool(name="varargs")(lambda *args: None)
    with pytest.raises(ValueError, match="tool name"):
        tool(name="has space")(lambda: None)

    def untyped(x: complex) -> None:
        """X."""

    with pytest.raises(TypeError, match="parameter 'x'"):
        tool(untyped)
    named = tool(name="renamed", description="Custom.", timeout=2)(lambda: "ok")
    assert (named.name, named.description, named.timeout) == ("renamed", "Custom.", 2)


def _errors(config, plugins=()):
    with pytest.raises(ConfigError) as info:
        create_app(config, plugins=plugins, env={})
    return info.value.errors


def test_agent_configuration_errors_name_their_toml_path():
    tools = [
        "fakes.tools:get_weather",
        "no_such_module_xyz:tool",
        "fakes.tools:missing",
        "unregistered",
        "fakes.tools:get_weather",
    ]
    models = {
        "backends": {"e": {"kind": "echo"}},
        "models": {"echo": {"backend": "e"}, "other": {"backend": "e"}},
    }
    errors = _errors({"agents": {"bad": {"model": "echo", "max_steps": 0}}, **models})
    assert errors == ["agents.bad.max_steps: expected a whole number of at least 1"]
    agents = {
        "bad": {"model": "nothing-here", "tools": tools},
        "loop": {"model": "bad"},
        "echo": {"model": "other"},
    }
    assert _errors({"agents": agents, **models}) == [
        "agents.bad.tools[1]: cannot import module 'no_such_module_xyz' "
        "(No module named 'no_such_module_xyz')",
        "agents.bad.tools[2]: module 'fakes.tools' has no attribute 'missing'",
        "agents.bad.tools[3]: no registered tool named 'unregistered' (registered: none)",
        "agents.bad.tools[4]: a second tool named 'get_weather'",
        "agents.bad.model: no model named 'nothing-here' is configured",
        "agents.loop.model: 'bad' is an agent; an agent thinks with a model",
        "agents.echo: 'echo' is already a [models] name",
    ]


def test_registered_tools_and_agents_clash_by_name():
    def ping() -> str:
        """Ping."""
        return "pong"

    class One:
        @hookimpl
        def gateway_register_tools(self, register):
            register("ping", ping)

    errors = _errors({}, plugins=[("one", One()), AgentsPlugin(tools=[ping])])
    assert "tool 'ping' is registered by both plugin" in errors[0]

    class Two:
        @hookimpl
        def gateway_register_agents(self, register):
            register("a", Agent("a", model="echo"))

    errors = _errors({"agents": {"a": {"model": "echo"}}}, plugins=[("two", Two())])
    assert errors == ["agent 'a' (plugin 'two'): [agents.a] declares the same name"]
    assert _errors({}, plugins=[AgentsPlugin(tools=[lambda *a: 1])])[0].startswith(
        "plugins: plugin 'agents-app' registered a tool that is not one"
    )
