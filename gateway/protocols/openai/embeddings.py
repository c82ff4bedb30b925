"""OpenAI embeddings on the wire: ``POST /v1/embeddings`` requests and ``list`` answers.

``encoding_format`` is honoured whatever the backend returns: ``float`` gives lists of numbers,
``base64`` the little-endian float32 bytes of each vector, base64-encoded (what the openai SDK
asks for by default, and decodes itself).
"""

from __future__ import annotations

import base64
import sys
from array import array
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, TypeGuard

from gateway import (
    JSON,
    BadRequest,
    EmbeddingInput,
    EmbeddingRequest,
    EmbeddingResponse,
    UpstreamError,
    Usage,
)

if TYPE_CHECKING:
    from typing_extensions import TypeIs

PROTOCOL = "openai"
_KNOWN = frozenset({"model", "input", "encoding_format", "dimensions", "user"})
_SWAP = sys.byteorder == "big"  # the wire is little-endian


def decode_request(body: Any) -> EmbeddingRequest:
    """Validate and decode an embeddings request; :class:`BadRequest` names the field."""
    if not isinstance(body, dict):
        raise BadRequest("The request body must be a JSON object.")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise BadRequest("'model' is required and must be a non-empty string.", param="model")
    inputs = body.get("input")
    if not _valid_input(inputs):
        raise BadRequest(
            "'input' must be a non-empty string, an array of strings, an array of token ids "
            "or an array of token id arrays.",
            param="input",
        )
    fmt = body.get("encoding_format", "float")
    if fmt not in ("float", "base64"):
        raise BadRequest("'encoding_format' must be 'float' or 'base64'.", param="encoding_format")
    dims = body.get("dimensions")
    if dims is not None and (not isinstance(dims, int) or isinstance(dims, bool) or dims < 1):
        raise BadRequest("'dimensions' must be a positive integer.", param="dimensions")
    user = body.get("user")
    return EmbeddingRequest(
        model=model,
        input=inputs,
        protocol=PROTOCOL,
        encoding_format=fmt,
        dimensions=dims,
        user=user if isinstance(user, str) else None,
        extra={k: v for k, v in body.items() if k not in _KNOWN} or None,
        wire=body,
    )


def _valid_input(value: Any) -> TypeGuard[EmbeddingInput]:
    if isinstance(value, str):
        return bool(value)
    if not isinstance(value, list) or not value:
        return False
    first = value[0]
    if isinstance(first, str):
        return all(isinstance(v, str) for v in value)
    if isinstance(first, int):
        return all(isinstance(v, int) and not isinstance(v, bool) for v in value)
    return all(isinstance(v, list) and v and all(isinstance(t, int) for t in v) for v in value)


def texts(req: EmbeddingRequest) -> Sequence[str | list[int]]:
    """The inputs one by one (a string, or one token array)."""
    inputs = req.input
    if isinstance(inputs, str) or _token_ids(inputs):
        return [inputs]
    return list(inputs)


def _token_ids(inputs: EmbeddingInput) -> TypeIs[list[int]]:
    """Whether ``inputs`` is one token array (rather than texts or token arrays)."""
    return bool(inputs) and isinstance(inputs[0], int)


def encode_request(req: EmbeddingRequest, model: str) -> dict[str, JSON]:
    """The body for an OpenAI-compatible upstream: the client's own, with the model replaced."""
    if req.wire is not None and req.protocol == PROTOCOL:
        body = dict(req.wire)
        body["model"] = model
        return body
    body = {"model": model, "input": req.input, "encoding_format": req.encoding_format}
    if req.dimensions is not None:
        body["dimensions"] = req.dimensions
    if req.user is not None:
        body["user"] = req.user
    return body


def to_base64(vector: list[float]) -> str:
    packed = array("f", vector)
    if _SWAP:
        packed.byteswap()
    return base64.b64encode(packed.tobytes()).decode()


def from_base64(text: str) -> list[float]:
    packed = array("f")
    packed.frombytes(base64.b64decode(text))
    if _SWAP:
        packed.byteswap()
    return packed.tolist()


def decode_response(obj: Any, data: bytes, req: EmbeddingRequest) -> EmbeddingResponse:
    """An upstream's embeddings answer. When it is already in the form the client asked for,
    its bytes are kept to be sent unchanged."""
    try:
        items = sorted(obj["data"], key=lambda d: d.get("index", 0))
        vectors = [d["embedding"] for d in items]
    except (KeyError, TypeError, AttributeError):
        raise UpstreamError("the upstream's embeddings answer has no data") from None
    u = obj.get("usage") or {}
    usage = Usage(u.get("prompt_tokens") or 0, 0)
    encoded = bool(vectors) and isinstance(vectors[0], str)
    resp = EmbeddingResponse(model=obj.get("model") or "", usage=usage)
    if encoded:
        resp.base64 = vectors
    else:
        resp.vectors = vectors
    if req.protocol == PROTOCOL and encoded == (req.encoding_format == "base64"):
        resp.raw, resp.raw_protocol = data, PROTOCOL
    return resp


def encode_response(resp: EmbeddingResponse, req: EmbeddingRequest) -> dict[str, JSON]:
    """A canonical embeddings answer as OpenAI's ``list`` object, in the asked encoding."""
    if req.encoding_format == "base64":
        items: list[Any] = resp.base64 or [to_base64(v) for v in resp.vectors or ()]
    else:
        items = resp.vectors or [from_base64(v) for v in resp.base64 or ()]
    tokens = resp.usage.input_tokens if resp.usage is not None else 0
    return {
        "object": "list",
        "data": [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(items)],
        "model": req.model,  # the name asked for, not the upstream's (resp.model)
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }
