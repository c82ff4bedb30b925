"""``GET /openapi.json``: the OpenAPI 3.1 document of the routes this gateway serves.

It is built from the routes themselves (``gateway.routes``), once, at the first request: every
route any plugin added is in it, with its key requirement. The routes of the built-in
protocols and services carry the request fields the gateway checks and the shapes of their
answers and errors (OpenAI's, Anthropic's, JSON-RPC); other plugins' routes are listed with a
generic answer. Model and agent names are those of the configuration, so a client generator
(or a fuzzer) speaks to what is really there. The document needs no key.
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from gateway import __version__, hookimpl

JSON = dict[str, Any]

_OBJECT: JSON = {"type": "object"}
_STRING: JSON = {"type": "string"}
#: A stream of Server-Sent Events, each event an object with its ``data`` (and ``event``, ``id``).
_SSE: JSON = {
    "text/event-stream": {
        "schema": {"type": "object", "properties": {"data": _STRING, "event": _STRING}}
    }
}

OPENAI_ERROR: JSON = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["message", "type"],
            "properties": {"message": _STRING, "type": _STRING},
        }
    },
}
ANTHROPIC_ERROR: JSON = {
    "type": "object",
    "required": ["type", "error"],
    "properties": {
        "type": {"const": "error"},
        "error": {
            "type": "object",
            "required": ["type", "message"],
            "properties": {"type": _STRING, "message": _STRING},
        },
    },
}
JSON_RPC_REPLY: JSON = {
    "type": "object",
    "required": ["jsonrpc"],
    "properties": {"jsonrpc": {"const": "2.0"}},
}


def _json(schema: JSON) -> JSON:
    return {"application/json": {"schema": schema}}


def _body(schema: JSON) -> JSON:
    return {"required": True, "content": _json(schema)}


def _chat_message(roles: list[str]) -> JSON:
    return {
        "type": "object",
        "required": ["role", "content"],
        "properties": {"role": {"enum": roles}, "content": {"type": "string"}},
    }


def _operations(models: list[str], agents: list[str]) -> dict[tuple[str, str], JSON]:
    """What the gateway's own routes take and answer, by (method, route name)."""
    model: JSON = {"enum": models} if models else {"type": "string", "minLength": 1}
    agent: JSON = {"enum": agents} if agents else _STRING
    run_id: JSON = {"type": "string", "pattern": "^[!-~]{1,256}$"}
    chat = {
        "type": "object",
        "required": ["model", "messages"],
        "properties": {
            "model": model,
            "messages": {
                "type": "array",
                "minItems": 1,
                "items": _chat_message(["system", "developer", "user", "assistant"]),
            },
            "stream": {"type": "boolean"},
            "max_tokens": {"type": "integer", "minimum": 1},
            "temperature": {"type": "number"},
            "n": {"type": "integer", "minimum": 1, "maximum": 128},
        },
    }
    completion = {"type": "object", "required": ["id", "object", "choices"]}
    turns: JSON = {"type": "array", "minItems": 1, "items": _chat_message(["user", "assistant"])}
    messages = {
        "type": "object",
        "required": ["model", "max_tokens", "messages"],
        "properties": {
            "model": model,
            "max_tokens": {"type": "integer", "minimum": 1},
            "messages": turns,
            "stream": {"type": "boolean"},
        },
    }
    count = {
        "type": "object",
        "required": ["model", "messages"],
        "properties": {"model": model, "messages": turns},
    }
    run = {
        "type": "object",
        "required": ["threadId", "runId", "messages"],
        "properties": {
            "threadId": run_id,
            "runId": run_id,
            "messages": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["id", "role", "content"],
                    "properties": {
                        "id": _STRING,
                        "role": {"enum": ["user", "system", "developer"]},
                        "content": _STRING,
                    },
                },
            },
        },
    }
    rpc = {
        "type": "object",
        "required": ["jsonrpc", "id", "method"],
        "properties": {
            "jsonrpc": {"const": "2.0"},
            "id": {"type": ["string", "integer"]},
            "method": {"enum": ["SendMessage", "GetTask", "ListTasks", "CancelTask"]},
            "params": _OBJECT,
        },
    }
    openai = {"errors": OPENAI_ERROR}
    return {
        ("POST", "chat_completions"): {
            "summary": "OpenAI Chat Completions",
            "body": chat,
            "ok": {**_json(completion), **_SSE},
            **openai,
        },
        ("POST", "embeddings"): {
            "summary": "OpenAI Embeddings",
            "body": {
                "type": "object",
                "required": ["model", "input"],
                "properties": {
                    "model": model,
                    "input": {"type": "string", "minLength": 1},
                    "dimensions": {"type": "integer", "minimum": 1, "maximum": 8192},
                    "encoding_format": {"enum": ["float", "base64"]},
                },
            },
            "ok": _json({"type": "object", "required": ["object", "data", "model"]}),
            **openai,
        },
        ("GET", "models"): {
            "summary": "The models a key may use",
            "ok": _json({"type": "object", "required": ["object", "data"]}),
            **openai,
        },
        ("GET", "model"): {
            "summary": "One model",
            "params": {"model": model},
            "ok": _json({"type": "object", "required": ["id", "object"]}),
            **openai,
        },
        ("POST", "responses"): {
            "summary": "OpenAI Responses",
            "body": {
                "type": "object",
                "required": ["model", "input"],
                "properties": {
                    "model": model,
                    "input": {"type": "string"},
                    "stream": {"type": "boolean"},
                },
            },
            "ok": {**_json({"type": "object", "required": ["id", "object", "output"]}), **_SSE},
            **openai,
        },
        ("POST", "messages"): {
            "summary": "Anthropic Messages",
            "body": messages,
            "ok": {**_json({"type": "object", "required": ["id", "type", "content"]}), **_SSE},
            "errors": ANTHROPIC_ERROR,
        },
        ("POST", "count_tokens"): {
            "summary": "Anthropic token counting",
            "body": count,
            "ok": _json({"type": "object", "required": ["input_tokens"]}),
            "errors": ANTHROPIC_ERROR,
        },
        ("GET", "sessions"): {"summary": "The key's sessions", "ok": _json(_OBJECT), **openai},
        ("GET", "session"): {
            "summary": "One session",
            "params": {"session_id": _STRING},
            "ok": _json(_OBJECT),
            **openai,
        },
        ("DELETE", "session_delete"): {
            "summary": "Forget a session",
            "params": {"session_id": _STRING},
            "ok": _json(_OBJECT),
            **openai,
        },
        ("POST", "agui_run"): {
            "summary": "Start an AG-UI run (the agent from the path, or forwardedProps.agent)",
            "params": {"agent": agent},
            "body": run,
            "ok": _SSE,
            **openai,
        },
        ("GET", "agui_attach"): {
            "summary": "Attach to an AG-UI run (SSE, or a WebSocket upgrade)",
            "query": {"run_id": run_id},
            "ok": _SSE,
            **openai,
        },
        ("DELETE", "agui_cancel"): {
            "summary": "Cancel an AG-UI run",
            "params": {"run_id": run_id},
            "ok": _json(_OBJECT),
            **openai,
        },
        ("GET", "a2a_card"): {
            "summary": "An A2A agent card",
            "params": {"agent": agent},
            "ok": _json(_OBJECT),
            "errors": JSON_RPC_REPLY,
        },
        ("POST", "a2a"): {
            "summary": "A2A JSON-RPC (1.0 and 0.3 methods)",
            "params": {"agent": agent},
            "body": rpc,
            "ok": {**_json(JSON_RPC_REPLY), **_SSE},
            "errors": JSON_RPC_REPLY,
        },
        ("GET", "health"): {
            "summary": "Liveness",
            "ok": _json({"type": "object", "required": ["status"]}),
            **openai,
        },
        ("GET", "metrics"): {
            "summary": "Prometheus metrics",
            "ok": {"text/plain": {"schema": _STRING}},
            **openai,
        },
        ("GET", "openapi"): {
            "summary": "This document",
            "ok": _json({"type": "object", "required": ["openapi", "paths"]}),
            **openai,
        },
    }


def _operation(method: str, path: str, name: str, auth: bool, known: JSON | None) -> JSON:
    names = [p.split("}")[0].split(":")[0] for p in path.split("{")[1:]]
    spec = known or {}
    params = spec.get("params", {})
    parameters: list[JSON] = [
        {"name": n, "in": "path", "required": True, "schema": params.get(n, _STRING)} for n in names
    ]
    for q, schema in spec.get("query", {}).items():
        parameters.append({"name": q, "in": "query", "required": True, "schema": schema})
    op: JSON = {"operationId": f"{name}_{method.lower()}_{len(path)}", "tags": [name]}
    if known is None:
        op["summary"] = f"{method} {path} (a plugin's route)"
        op["responses"] = {"default": {"description": "See the plugin's documentation."}}
    else:
        op["summary"] = spec["summary"]
        errors = {
            "description": "An error in the route's protocol",
            "content": _json(spec["errors"]),
        }
        op["responses"] = {
            "200": {"description": "OK", "content": spec["ok"]},
            "4XX": errors,
            "5XX": errors,
        }
        if "body" in spec:
            op["requestBody"] = _body(spec["body"])
    if parameters:
        op["parameters"] = parameters
    op["security"] = [{"bearer": []}, {"apiKey": []}] if auth else []
    return op


def build(gateway: Any) -> JSON:
    """The OpenAPI document of ``gateway``'s routes."""
    models = sorted(m for m in gateway.config.models if not any(c in m for c in "*?["))
    agents = sorted(getattr(gateway, "agents", None) or ())
    known = _operations(models, agents)
    paths: dict[str, JSON] = {}
    for route, info in gateway.routes.items():
        method = route.method.upper()
        if method in ("HEAD", "OPTIONS", "*"):
            continue
        path = route.resource.canonical if route.resource is not None else ""
        if not path:
            continue
        op = _operation(method, path, info.name, info.auth, known.get((method, info.name)))
        paths.setdefault(path, {})[method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "hookgate",
            "version": __version__,
            "description": "The routes this gateway serves (built from its configuration).",
        },
        "paths": dict(sorted(paths.items())),
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "apiKey": {"type": "apiKey", "in": "header", "name": "x-api-key"},
            }
        },
    }


@hookimpl
def gateway_configure_app(app: web.Application, gateway: Any) -> None:
    document: list[bytes] = []

    async def openapi(request: web.Request) -> web.Response:
        if not document:  # built once every plugin has added its routes
            document.append(orjson.dumps(build(gateway)))
        return web.Response(body=document[0], content_type="application/json")

    gateway.add_route("GET", "/openapi.json", openapi, name="openapi", auth=False)
