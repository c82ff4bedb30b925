"""A2A on the wire: messages, parts and tasks of protocol 1.0, and the 0.3 shapes older peers use.

Inside the gateway every A2A object is kept in its 1.0 JSON form (ProtoJSON: camelCase keys,
``TASK_STATE_COMPLETED`` and ``ROLE_USER`` enums, a part is one object holding one of ``text``,
``raw``, ``url`` or ``data``). Peers that speak 0.3 get the same objects converted on the way out
(``kind`` discriminators, ``completed`` and ``user`` enums, ``{"kind": "file", "file": ...}``
parts, ``final`` on status updates) and their objects converted on the way in. The server uses
both directions for its clients, :mod:`gateway.protocols.a2a.client` both directions for remote agents.

Stream results (what ``SendStreamingMessage`` sends, and what a task's event log holds) are 1.0
``StreamResponse`` objects: exactly one of ``task``, ``message``, ``statusUpdate`` or
``artifactUpdate``.
"""

from __future__ import annotations

import base64
import binascii
import time
from typing import Any

import orjson

from gateway import JSON, BadRequest, GatewayError, ImagePart, Message, Part, Role, TextPart

PROTOCOL = "a2a"
V1 = "1.0"
V03 = "0.3"

SUBMITTED = "TASK_STATE_SUBMITTED"
WORKING = "TASK_STATE_WORKING"
COMPLETED = "TASK_STATE_COMPLETED"
FAILED = "TASK_STATE_FAILED"
CANCELED = "TASK_STATE_CANCELED"
INPUT_REQUIRED = "TASK_STATE_INPUT_REQUIRED"
REJECTED = "TASK_STATE_REJECTED"
AUTH_REQUIRED = "TASK_STATE_AUTH_REQUIRED"
#: States after which a task changes no more.
TERMINAL = frozenset({COMPLETED, FAILED, CANCELED, REJECTED})
#: States in which a task waits for its client (streams end there too).
INTERRUPTED = frozenset({INPUT_REQUIRED, AUTH_REQUIRED})

_STATES_03 = {
    SUBMITTED: "submitted",
    WORKING: "working",
    INPUT_REQUIRED: "input-required",
    COMPLETED: "completed",
    CANCELED: "canceled",
    FAILED: "failed",
    REJECTED: "rejected",
    AUTH_REQUIRED: "auth-required",
    "TASK_STATE_UNSPECIFIED": "unknown",
}
_STATES_1 = {v: k for k, v in _STATES_03.items()}
#: The longest message, task or context id accepted (they name keys in the task store).
MAX_ID = 256
_ROLES_03 = {"ROLE_USER": "user", "ROLE_AGENT": "agent"}
_ROLES_1 = {v: k for k, v in _ROLES_03.items()}

#: Media types an agent of this gateway reads, besides images (``image/*``).
TEXT_TYPES = frozenset({"text/plain", "application/json"})
IMAGE_TYPES = ("image/png", "image/jpeg", "image/gif", "image/webp")
INPUT_MODES = ["text/plain", "application/json", *IMAGE_TYPES]
OUTPUT_MODES = ["text/plain"]


class ContentTypeNotSupported(GatewayError):
    """A part in a media type the agent cannot read, or an answer nobody accepts (-32005)."""

    status = 415
    kind = "invalid_request"


def version_of(header: str | None) -> str | None:
    """The protocol family an ``A2A-Version`` header names: ``"1.0"`` for 1.x, ``"0.3"`` for
    0.2 and 0.3, ``None`` for anything else. A missing header means 0.3, as the spec says."""
    value = (header or "").strip().lower().removeprefix("v")
    if not value:
        return V03
    major, _, rest = value.partition(".")
    minor = rest.partition(".")[0] or "0"
    if major == "1":
        return V1
    if major == "0" and minor in ("2", "3"):
        return V03
    return None


def timestamp(at: float | None = None) -> str:
    """An RFC 3339 UTC timestamp with milliseconds, as A2A writes them."""
    at = time.time() if at is None else at
    ms = int(at * 1000) % 1000
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(at)) + f".{ms:03d}Z"


# --- messages from clients ----------------------------------------------------------------------


def decode_message(obj: Any, version: str, where: str = "message") -> dict[str, JSON]:
    """A client's message (1.0 or 0.3 shape) as a checked 1.0 message. Raises
    :class:`BadRequest` naming the field."""
    if not isinstance(obj, dict):
        raise BadRequest(f"'{where}' must be an object.", param=where)
    message_id = obj.get("messageId")
    if not isinstance(message_id, str) or not message_id or len(message_id) > MAX_ID:
        raise BadRequest(
            f"'{where}.messageId' must be a non-empty string of at most {MAX_ID} characters.",
            param=f"{where}.messageId",
        )
    role = obj.get("role")
    role = _ROLES_1.get(role, role) if isinstance(role, str) else None
    if role not in _ROLES_03:
        raise BadRequest(
            f"'{where}.role' must be "
            + ("ROLE_USER or ROLE_AGENT." if version == V1 else "'user' or 'agent'."),
            param=f"{where}.role",
        )
    parts = obj.get("parts")
    if not isinstance(parts, list) or not parts:
        raise BadRequest(f"'{where}.parts' must be a non-empty array.", param=f"{where}.parts")
    out: dict[str, JSON] = {
        "messageId": message_id,
        "role": role,
        "parts": [_part_in(p, version, f"{where}.parts[{i}]") for i, p in enumerate(parts)],
    }
    for key in ("contextId", "taskId"):
        value = obj.get(key)
        if value is not None:
            if not isinstance(value, str) or len(value) > MAX_ID:
                raise BadRequest(
                    f"'{where}.{key}' must be a string of at most {MAX_ID} characters.",
                    param=f"{where}.{key}",
                )
            if value:
                out[key] = value
    for key in ("metadata",):
        if obj.get(key) is not None:
            if not isinstance(obj[key], dict):
                raise BadRequest(f"'{where}.{key}' must be an object.", param=f"{where}.{key}")
            out[key] = obj[key]
    for key in ("extensions", "referenceTaskIds"):
        if obj.get(key):
            out[key] = obj[key]
    return out


def _part_in(p: Any, version: str, where: str) -> dict[str, JSON]:
    if not isinstance(p, dict):
        raise BadRequest(f"'{where}' must be an object.", param=where)
    part: dict[str, JSON] = part_from_03(p, where) if version == V03 or "kind" in p else p
    kinds = [k for k in ("text", "raw", "url", "data") if k in part]
    if len(kinds) != 1:
        raise BadRequest(f"'{where}' must hold exactly one of text, raw, url or data.", param=where)
    kind = kinds[0]
    if kind in ("text", "raw", "url") and not isinstance(part[kind], str):
        raise BadRequest(f"'{where}.{kind}' must be a string.", param=f"{where}.{kind}")
    return part


def part_from_03(p: dict[str, Any], where: str = "part") -> dict[str, JSON]:
    """A 0.3 part (``{"kind": "text" | "file" | "data", ...}``) as a 1.0 part."""
    kind = p.get("kind")
    out: dict[str, JSON] = {}
    metadata = p.get("metadata")
    if kind == "text" or (kind is None and "text" in p):
        out["text"] = p.get("text")
    elif kind == "file":
        file = p.get("file")
        if not isinstance(file, dict):
            raise BadRequest(f"'{where}.file' must be an object.", param=f"{where}.file")
        if "bytes" in file:
            out["raw"] = file["bytes"]
        elif "uri" in file:
            out["url"] = file["uri"]
        else:
            raise BadRequest(f"'{where}.file' needs 'bytes' or 'uri'.", param=f"{where}.file")
        if file.get("mimeType"):
            out["mediaType"] = file["mimeType"]
        if file.get("name"):
            out["filename"] = file["name"]
    elif kind == "data":
        data = p.get("data")
        if isinstance(metadata, dict) and metadata.get("data_part_compat"):
            metadata = {k: v for k, v in metadata.items() if k != "data_part_compat"} or None
            data = data.get("value") if isinstance(data, dict) else data
        out["data"] = data
    else:
        raise BadRequest(f"'{where}.kind' must be text, file or data.", param=f"{where}.kind")
    if metadata:
        out["metadata"] = metadata
    return out


def part_to_03(p: dict[str, Any]) -> dict[str, JSON]:
    """A 1.0 part as a 0.3 part."""
    out: dict[str, JSON]
    metadata = p.get("metadata")
    if "text" in p:
        out = {"kind": "text", "text": p["text"]}
    elif "data" in p:
        data = p["data"]
        if not isinstance(data, dict):
            data = {"value": data}
            metadata = {**(metadata or {}), "data_part_compat": True}
        out = {"kind": "data", "data": data}
    else:
        file: dict[str, JSON] = {"bytes": p["raw"]} if "raw" in p else {"uri": p.get("url", "")}
        if p.get("mediaType"):
            file["mimeType"] = p["mediaType"]
        if p.get("filename"):
            file["name"] = p["filename"]
        out = {"kind": "file", "file": file}
    if metadata:
        out["metadata"] = metadata
    return out


def to_canonical(message: dict[str, Any], where: str = "message") -> Message:
    """A checked 1.0 message as a canonical message. Text and JSON data become text, images
    become image parts; other media types are refused (the agent could not read them)."""
    parts: list[Part] = []
    for i, p in enumerate(message["parts"]):
        if "text" in p:
            parts.append(TextPart(p["text"]))
            continue
        if "data" in p:
            parts.append(TextPart(orjson.dumps(p["data"]).decode()))
            continue
        media = str(p.get("mediaType") or "").lower()
        if "raw" in p:
            if media.startswith("image/"):
                parts.append(ImagePart(data=p["raw"], media_type=media))
            elif media in TEXT_TYPES or media.startswith("text/"):
                parts.append(TextPart(_decoded(p["raw"], f"{where}.parts[{i}].raw")))
            else:
                raise _unsupported(media, f"{where}.parts[{i}]")
        elif media.startswith("image/") or (not media and _looks_like_image(p["url"])):
            parts.append(ImagePart(url=p["url"], media_type=media or None))
        else:
            raise _unsupported(media or "a file", f"{where}.parts[{i}]")
    role: Role = "user" if message["role"] == "ROLE_USER" else "assistant"
    return Message(role, parts)


def _decoded(raw: str, where: str) -> str:
    try:
        return base64.b64decode(raw, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise BadRequest(f"'{where}' must be base64-encoded UTF-8 text.", param=where) from None


def _looks_like_image(url: str) -> bool:
    return url.startswith("data:image/") or url.lower().rsplit("?", 1)[0].endswith(
        (".png", ".jpg", ".jpeg", ".gif", ".webp")
    )


def _unsupported(media: str, where: str) -> ContentTypeNotSupported:
    return ContentTypeNotSupported(
        f"'{where}' is {media}; this agent reads text, JSON data and images "
        f"({', '.join(INPUT_MODES)}).",
        param=where,
        code="content_type_not_supported",
    )


def check_output_modes(accepted: Any) -> None:
    """Refuse a request whose client accepts none of the agent's output modes (text)."""
    if not accepted:
        return
    if not isinstance(accepted, list):
        raise BadRequest(
            "'configuration.acceptedOutputModes' must be an array of media types.",
            param="configuration.acceptedOutputModes",
        )
    if not any(m in ("text/plain", "text/*", "*/*", "text") for m in accepted):
        raise ContentTypeNotSupported(
            "This agent answers in text/plain, which acceptedOutputModes does not include.",
            param="configuration.acceptedOutputModes",
            code="content_type_not_supported",
        )


def text_message(role: str, text: str, message_id: str, **ids: str) -> dict[str, JSON]:
    """A 1.0 message of one text part (``ids``: ``taskId``, ``contextId``)."""
    return {"messageId": message_id, "role": role, "parts": [{"text": text}], **ids}


def text_of(parts: Any) -> str:
    """The text parts of a 1.0 part list, joined."""
    return "".join(p["text"] for p in parts or () if isinstance(p, dict) and "text" in p)


# --- 1.0 -> 0.3 ---------------------------------------------------------------------------------


def message_to_03(m: dict[str, Any]) -> dict[str, JSON]:
    out: dict[str, JSON] = {"kind": "message", **m}
    out["role"] = _ROLES_03.get(m.get("role", ""), "agent")
    out["parts"] = [part_to_03(p) for p in m.get("parts", ())]
    return out


def _status_to_03(status: dict[str, Any]) -> dict[str, JSON]:
    out: dict[str, JSON] = {**status, "state": _STATES_03.get(status.get("state", ""), "unknown")}
    if "message" in status:
        out["message"] = message_to_03(status["message"])
    return out


def _artifact_to_03(a: dict[str, Any]) -> dict[str, JSON]:
    return {**a, "parts": [part_to_03(p) for p in a.get("parts", ())]}


def task_to_03(t: dict[str, Any]) -> dict[str, JSON]:
    out: dict[str, JSON] = {"kind": "task", **t, "status": _status_to_03(t["status"])}
    if "artifacts" in t:
        out["artifacts"] = [_artifact_to_03(a) for a in t["artifacts"]]
    if "history" in t:
        out["history"] = [message_to_03(m) for m in t["history"]]
    return out


def result_to_03(result: dict[str, Any]) -> dict[str, JSON]:
    """A 1.0 stream result (``{"task": ...}``, ``{"statusUpdate": ...}``, ...) as the 0.3 object
    a 0.3 stream or ``message/send`` carries."""
    if "task" in result:
        return task_to_03(result["task"])
    if "statusUpdate" in result:
        ev = result["statusUpdate"]
        state = ev["status"].get("state")
        return {
            "kind": "status-update",
            **ev,
            "status": _status_to_03(ev["status"]),
            "final": state in TERMINAL or state in INTERRUPTED,
        }
    if "artifactUpdate" in result:
        ev = result["artifactUpdate"]
        return {"kind": "artifact-update", **ev, "artifact": _artifact_to_03(ev["artifact"])}
    return message_to_03(result["message"])


# --- 0.3 -> 1.0 (answers of remote 0.3 agents) -------------------------------------------------


def message_from_03(m: dict[str, Any]) -> dict[str, JSON]:
    out: dict[str, JSON] = {k: v for k, v in m.items() if k != "kind"}
    out["role"] = _ROLES_1.get(m.get("role", ""), "ROLE_AGENT")
    out["parts"] = [part_from_03(p) for p in m.get("parts", ())]
    return out


def _status_from_03(status: dict[str, Any]) -> dict[str, JSON]:
    out: dict[str, JSON] = {**status}
    out["state"] = _STATES_1.get(status.get("state", ""), "TASK_STATE_UNSPECIFIED")
    if isinstance(status.get("message"), dict):
        out["message"] = message_from_03(status["message"])
    return out


def _artifact_from_03(a: dict[str, Any]) -> dict[str, JSON]:
    return {**a, "parts": [part_from_03(p) for p in a.get("parts", ())]}


def task_from_03(t: dict[str, Any]) -> dict[str, JSON]:
    out: dict[str, JSON] = {k: v for k, v in t.items() if k != "kind"}
    out["status"] = _status_from_03(t.get("status") or {})
    if t.get("artifacts"):
        out["artifacts"] = [_artifact_from_03(a) for a in t["artifacts"]]
    if t.get("history"):
        out["history"] = [message_from_03(m) for m in t["history"]]
    return out


def result_from_03(obj: dict[str, Any]) -> dict[str, JSON]:
    """A 0.3 result object (told apart by ``kind``, or by its fields when a peer omits it) as a
    1.0 stream result."""
    kind = obj.get("kind")
    if kind is None:
        if "final" in obj and "taskId" in obj:
            kind = "status-update"
        elif "artifact" in obj:
            kind = "artifact-update"
        elif "messageId" in obj:
            kind = "message"
        else:
            kind = "task"
    if kind == "task":
        return {"task": task_from_03(obj)}
    if kind == "message":
        return {"message": message_from_03(obj)}
    if kind == "status-update":
        ev = {k: v for k, v in obj.items() if k not in ("kind", "final")}
        ev["status"] = _status_from_03(obj.get("status") or {})
        return {"statusUpdate": ev}
    ev = {k: v for k, v in obj.items() if k != "kind"}
    ev["artifact"] = _artifact_from_03(obj.get("artifact") or {})
    return {"artifactUpdate": ev}
