"""The OpenAI endpoints hookgate relays without modelling them, played by a fake upstream:
audio (a transcription of the uploaded file, speech as streamed bytes), images, moderations,
rerank, files and batches. Each answer says what the upstream received (model, sizes), so a
test sees that the client's request arrived whole and unchanged.

``FIRST_BYTES`` (an :class:`asyncio.Event` in the app) is set once the first bytes of an
upload's file part arrived, while the rest may still be on its way: a test that holds the
rest of its upload back until then proves the gateway streams bodies rather than buffer them.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

FIRST_BYTES: web.AppKey[asyncio.Event] = web.AppKey("first_bytes", asyncio.Event)
SEEN: web.AppKey[list[dict[str, Any]]] = web.AppKey("seen", list)
SPEECH = b"RIFF" + bytes(range(256)) * 64


async def _form(request: web.Request) -> dict[str, Any]:
    """A multipart form read part by part: fields as text, files as their size."""
    out: dict[str, Any] = {}
    reader = await request.multipart()
    async for part in reader:
        if part.filename:
            size = 0
            while chunk := await part.read_chunk(4096):
                size += len(chunk)
                request.app[FIRST_BYTES].set()
            out[part.name or "file"] = {"filename": part.filename, "size": size}
        else:
            out[part.name or ""] = await part.text()
    return out


async def transcription(request: web.Request) -> web.Response:
    form = await _form(request)
    request.app[SEEN].append(
        {"path": request.path, "form": form, "auth": request.headers.get("authorization")}
    )
    return web.json_response({"text": f"heard {form['file']['size']} bytes with {form['model']}"})


async def speech(request: web.Request) -> web.StreamResponse:
    body = await request.json()
    request.app[SEEN].append({"path": request.path, "json": body})
    resp = web.StreamResponse(headers={"content-type": "audio/wav"})
    await resp.prepare(request)
    for i in range(0, len(SPEECH), 4096):
        await resp.write(SPEECH[i : i + 4096])
    await resp.write_eof()
    return resp


async def json_endpoint(request: web.Request) -> web.Response:
    body = await request.json()
    request.app[SEEN].append({"path": request.path, "json": body})
    if request.path.endswith("/images/generations"):
        return web.json_response({"created": 1700000001, "data": [{"b64_json": "AAAA"}]})
    if request.path.endswith("/moderations"):
        result = {"flagged": False, "categories": {}, "category_scores": {}}
        return web.json_response({"id": "modr-1", "model": body["model"], "results": [result]})
    documents = body.get("documents", [])
    results = [{"index": i, "relevance_score": 1.0 / (i + 1)} for i in range(len(documents))]
    return web.json_response({"id": "rerank-1", "model": body["model"], "results": results})


FILE = {
    "id": "file-1",
    "object": "file",
    "bytes": 0,
    "created_at": 1700000001,
    "filename": "batch.jsonl",
    "purpose": "batch",
    "status": "processed",
}


async def upload(request: web.Request) -> web.Response:
    form = await _form(request)
    request.app[SEEN].append({"path": request.path, "form": form})
    return web.json_response({**FILE, "bytes": form["file"]["size"], "purpose": form["purpose"]})


async def files(request: web.Request) -> web.Response:
    request.app[SEEN].append({"path": request.path_qs, "method": request.method})
    if request.method == "DELETE":
        return web.json_response({"id": "file-1", "object": "file", "deleted": True})
    if request.path.endswith("/content"):
        return web.Response(body=b'{"custom_id": "1"}\n', content_type="application/octet-stream")
    if request.path.endswith("/files"):
        return web.json_response({"object": "list", "data": [FILE], "has_more": False})
    return web.json_response(FILE)


BATCH = {
    "id": "batch-1",
    "object": "batch",
    "endpoint": "/v1/chat/completions",
    "input_file_id": "file-1",
    "completion_window": "24h",
    "status": "validating",
    "created_at": 1700000001,
}


async def batches(request: web.Request) -> web.Response:
    request.app[SEEN].append({"path": request.path, "method": request.method})
    if request.method == "POST" and request.path.endswith("/batches"):
        body = await request.json()
        return web.json_response({**BATCH, "input_file_id": body["input_file_id"]})
    return web.json_response(BATCH)


def add_routes(app: web.Application) -> None:
    """Add the endpoints to ``app`` (an OpenAI fake upstream)."""
    app[FIRST_BYTES] = asyncio.Event()
    app[SEEN] = []
    app.router.add_post("/v1/audio/transcriptions", transcription)
    app.router.add_post("/v1/audio/speech", speech)
    for path in ("/v1/images/generations", "/v1/moderations", "/v1/rerank"):
        app.router.add_post(path, json_endpoint)
    app.router.add_post("/v1/files", upload)
    app.router.add_get("/v1/files", files)
    app.router.add_get("/v1/files/{id}", files)
    app.router.add_get("/v1/files/{id}/content", files)
    app.router.add_delete("/v1/files/{id}", files)
    app.router.add_post("/v1/batches", batches)
    app.router.add_get("/v1/batches/{id}", batches)
