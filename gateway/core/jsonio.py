"""Small HTTP helpers: reading JSON bodies within the size limit, writing JSON responses."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from aiohttp import web

from gateway.errors import BadRequest, PayloadTooLarge

JSON_CONTENT_TYPE = "application/json"


async def read_json(request: web.Request) -> Any:
    """The request body parsed as JSON; 413 past the app's body limit, 400 when not JSON."""
    limit = request.client_max_size  # the app's limit, from [server] max_body_size
    length = request.content_length
    if length is not None and length > limit:
        raise PayloadTooLarge(f"The request body is {length} bytes; the limit is {limit} bytes.")
    try:
        data = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise PayloadTooLarge(f"The request body exceeds the limit of {limit} bytes.") from None
    if not data:
        raise BadRequest("The request body is empty; expected a JSON object.")
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"The request body is not valid JSON: {exc}.") from None


def json_response(
    obj: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    return web.Response(
        body=orjson.dumps(obj), status=status, content_type=JSON_CONTENT_TYPE, headers=headers
    )
