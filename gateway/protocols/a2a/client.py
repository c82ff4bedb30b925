"""Calling remote A2A agents: discover their cards, delegate tasks, follow and cancel them.

:class:`A2AClient` speaks JSON-RPC over one pooled ``aiohttp`` session, 1.0 with agents whose
card offers it and 0.3 with the others (the card says which), using the same wire module as the
gateway's own A2A server. Results are normalised to 1.0 shapes whichever version the agent
speaks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Mapping
from typing import Any

import aiohttp
import attrs
import orjson

from gateway import SSEDecoder, proxy_for, redact_url
from gateway.protocols.a2a.cards import CARD_PATH, CardError, RemoteCard
from gateway.protocols.a2a.jsonrpc import A2AError, raise_for
from gateway.protocols.a2a.task_events import apply, state_of
from gateway.protocols.a2a.wire import (
    COMPLETED,
    INTERRUPTED,
    TERMINAL,
    V1,
    message_to_03,
    result_from_03,
    task_from_03,
    text_of,
)

log = logging.getLogger(__name__)

_CONNECT_TIMEOUT = 10.0
#: How long a best-effort CancelTask for an abandoned task may take.
_CANCEL_TIMEOUT = 5.0


@attrs.frozen
class TaskResult:
    """What a delegated task came to: the task (1.0 JSON), or the message an agent answered
    with instead of a task."""

    task: dict[str, Any]
    message: dict[str, Any] | None = None

    @property
    def id(self) -> str:
        return str(self.task.get("id", ""))

    @property
    def context_id(self) -> str:
        source = self.message if self.message is not None else self.task
        return str(source.get("contextId", ""))

    @property
    def state(self) -> str:
        """``TASK_STATE_COMPLETED``, ``..._FAILED``, ...; a message answer counts as completed."""
        return COMPLETED if self.message is not None else state_of(self.task)

    @property
    def ok(self) -> bool:
        return self.state == COMPLETED

    @property
    def text(self) -> str:
        """The answer: the text of the task's artifacts, else of its last agent message."""
        if self.message is not None:
            return text_of(self.message.get("parts"))
        artifacts = "\n\n".join(
            t for a in self.task.get("artifacts") or () if (t := text_of(a.get("parts")))
        )
        return artifacts or self.status_text

    @property
    def status_text(self) -> str:
        """The text of the task's status message (why it failed, when it did), else of the
        last agent message in its history."""
        status = self.task.get("status") or {}
        if status.get("message"):
            return text_of(status["message"].get("parts"))
        for m in reversed(self.task.get("history") or ()):
            if m.get("role") == "ROLE_AGENT" and text_of(m.get("parts")):
                return text_of(m.get("parts"))
        return ""


class A2AClient:
    """A client of one A2A agent, or of a gateway serving several.

    ``url`` is an agent's base URL (its card is at ``<url>/.well-known/agent-card.json``), a
    card's URL, or a gateway's base URL whose card lists its agents. ``api_key`` goes where the
    card asks for it (``Authorization: Bearer``, or its API-key header); ``headers`` go on every
    call. ``timeout`` bounds one delegated task (its remote task is canceled past it). Pass a
    ``session`` to share an ``aiohttp.ClientSession`` (it is then not closed here).
    """

    def __init__(
        self,
        url: str,
        api_key: str | None = None,
        *,
        headers: Mapping[str, str] | None = None,
        timeout: float = 300.0,
        session: aiohttp.ClientSession | None = None,
        poll_interval: float = 0.5,
    ) -> None:
        self.url = url.rstrip("/")
        self.api_key = api_key
        self.headers = dict(headers or {})
        self.timeout = timeout
        self.poll_interval = poll_interval
        self._session = session
        self._own_session = session is None
        self._cards: dict[str, RemoteCard] = {}
        self._cancels: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> A2AClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=_CONNECT_TIMEOUT)
            )
            self._own_session = True
        return self._session

    async def close(self) -> None:
        """Finish pending cancellations (briefly) and close the session if it is this client's."""
        if self._cancels:
            await asyncio.gather(*self._cancels, return_exceptions=True)
        if self._own_session and self._session is not None:
            await self._session.close()

    # -- cards

    async def card(self, url: str | None = None) -> RemoteCard:
        """The card at ``url`` (a card's URL, or an agent's base URL; default: this client's)."""
        target = _card_url(url or self.url)
        cached = self._cards.get(target)
        if cached is not None:
            return cached
        try:
            async with self.session.get(
                target, headers={"A2A-Version": V1, "Accept": "application/json"}, **_via(target)
            ) as resp:
                if resp.status != 200:
                    raise A2AError(
                        f"no agent card at {redact_url(target)} (HTTP {resp.status})",
                        reason=f"it has no agent card (HTTP {resp.status})",
                    )
                found = RemoteCard.parse(orjson.loads(await resp.read()))
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise A2AError(
                f"cannot reach {redact_url(target)}: {_describe(exc)}",
                reason=f"it cannot be reached ({type(exc).__name__})",
            ) from None
        except (orjson.JSONDecodeError, CardError) as exc:
            raise A2AError(
                f"the card at {redact_url(target)} cannot be used: {exc}",
                reason="its agent card cannot be used",
            ) from None
        self._cards[target] = found
        return found

    async def discover(self) -> list[RemoteCard]:
        """The cards of the agents at this client's URL: each agent a gateway lists, or the one
        agent the URL is."""
        top = await self.card()
        if not top.agents:
            return [top]
        return list(await asyncio.gather(*(self.card(url) for _, url in top.agents)))

    async def agent(self, target: str | RemoteCard) -> RemoteCard:
        """The card of ``target``: a card, a URL, or the name of an agent :meth:`discover` finds."""
        if isinstance(target, RemoteCard):
            return target
        if "://" in target:
            return await self.card(target)
        top = await self.card()
        for name, url in top.agents:
            if name == target:
                return await self.card(url)
        if top.name == target or not top.agents:
            return top
        known = ", ".join(name for name, _ in top.agents)
        raise A2AError(
            f"no agent named {target!r} at {redact_url(self.url)} (agents: {known})",
            reason=f"its gateway has no agent named {target!r}",
        )

    # -- tasks

    async def delegate(
        self,
        target: str | RemoteCard,
        task: str | Mapping[str, Any],
        *,
        context_id: str | None = None,
        stream: bool | None = None,
        within: float | None = None,
    ) -> TaskResult:
        """Send ``task`` (text, or a 1.0 message) to the agent and wait for its result.

        Streams when the agent's card says it can (or as ``stream`` says), else polls the task.
        A failed or canceled task is a result (see :attr:`TaskResult.ok`); an agent that cannot
        be reached or answers with an error raises :class:`A2AError`. Past ``within`` seconds
        (default: the client's ``timeout``), or when the caller is cancelled, the remote task is
        canceled (and :class:`TimeoutError` raised on a timeout).
        """
        card = await self.agent(target)
        message = _message(task, context_id)
        streaming = card.streaming if stream is None else stream
        state: dict[str, Any] = {}
        try:
            async with asyncio.timeout(self.timeout if within is None else within):
                if streaming:
                    async for result in self._stream(card, message):
                        if "message" in result:
                            return TaskResult(state, result["message"])
                        apply(state, result)
                    return TaskResult(state)
                result = await self._send(card, message, wait=False)
                if "message" in result:
                    return TaskResult({}, result["message"])
                apply(state, result)
                interval = self.poll_interval
                while _running(state):
                    await asyncio.sleep(interval)
                    interval = min(interval * 2, 5.0)
                    state = await self.get_task(card, state["id"])
                return TaskResult(state)
        except (asyncio.CancelledError, TimeoutError):
            if state.get("id") and _running(state):
                self._cancel_later(card, str(state["id"]))
            raise

    async def stream(
        self,
        target: str | RemoteCard,
        task: str | Mapping[str, Any],
        *,
        context_id: str | None = None,
    ) -> AsyncIterator[dict[str, Any]]:
        """Send ``task`` and yield the agent's stream results (1.0 shapes: ``{"task": ...}``,
        ``{"statusUpdate": ...}``, ``{"artifactUpdate": ...}`` or ``{"message": ...}``)."""
        card = await self.agent(target)
        async for result in self._stream(card, _message(task, context_id)):
            yield result

    async def get_task(
        self, target: str | RemoteCard, task_id: str, history_length: int | None = None
    ) -> dict[str, Any]:
        card = await self.agent(target)
        params: dict[str, Any] = {"id": task_id}
        if history_length is not None:
            params["historyLength"] = history_length
        result = await self._call(card, "GetTask" if card.protocol == V1 else "tasks/get", params)
        return result if card.protocol == V1 else task_from_03(result)

    async def cancel_task(self, target: str | RemoteCard, task_id: str) -> dict[str, Any]:
        card = await self.agent(target)
        method = "CancelTask" if card.protocol == V1 else "tasks/cancel"
        result = await self._call(card, method, {"id": task_id})
        return result if card.protocol == V1 else task_from_03(result)

    # -- JSON-RPC

    def _headers(self, card: RemoteCard) -> dict[str, str]:
        headers = {"A2A-Version": card.protocol, "Content-Type": "application/json"}
        if self.api_key:
            if card.auth in (None, "bearer"):
                headers["Authorization"] = f"Bearer {self.api_key}"
            else:
                headers[card.auth] = self.api_key
        headers.update(self.headers)
        return headers

    def _request(self, card: RemoteCard, method: str, params: dict[str, Any]) -> bytes:
        return orjson.dumps(
            {"jsonrpc": "2.0", "id": uuid.uuid4().hex, "method": method, "params": params}
        )

    async def _call(self, card: RemoteCard, method: str, params: dict[str, Any]) -> Any:
        body = self._request(card, method, params)
        try:
            async with self.session.post(
                card.url, data=body, headers=self._headers(card), **_via(card.url)
            ) as resp:
                data = await resp.read()
                status = resp.status
        except (aiohttp.ClientError, OSError) as exc:
            raise A2AError(
                f"cannot reach the agent at {redact_url(card.url)}: {_describe(exc)}",
                reason=f"it cannot be reached ({type(exc).__name__})",
            ) from None
        return raise_for(_decode(data, status, card.url))

    async def _send(
        self, card: RemoteCard, message: dict[str, Any], *, wait: bool
    ) -> dict[str, Any]:
        if card.protocol == V1:
            params = {"message": message, "configuration": {"returnImmediately": not wait}}
            result = await self._call(card, "SendMessage", params)
            if not isinstance(result, dict) or not ("task" in result or "message" in result):
                raise A2AError(
                    "the agent answered SendMessage with neither a task nor a message",
                    reason="it answered with neither a task nor a message",
                )
            return result
        params = {"message": message_to_03(message), "configuration": {"blocking": wait}}
        return result_from_03(await self._call(card, "message/send", params))

    async def _stream(
        self, card: RemoteCard, message: dict[str, Any]
    ) -> AsyncIterator[dict[str, Any]]:
        if card.protocol == V1:
            body = self._request(card, "SendStreamingMessage", {"message": message})
        else:
            body = self._request(card, "message/stream", {"message": message_to_03(message)})
        headers = {**self._headers(card), "Accept": "text/event-stream"}
        try:
            async with self.session.post(
                card.url, data=body, headers=headers, **_via(card.url)
            ) as resp:
                if "text/event-stream" not in resp.headers.get("Content-Type", ""):
                    raise_for(_decode(await resp.read(), resp.status, card.url))
                    raise A2AError(
                        "the agent answered a stream request without a stream",
                        reason="it answered a stream request without a stream",
                    )
                decoder = SSEDecoder()
                async for chunk in resp.content.iter_any():
                    for frame in decoder.feed(chunk):
                        if not frame.data:
                            continue
                        result = raise_for(_decode(frame.data.encode(), 200, card.url))
                        result = result if card.protocol == V1 else result_from_03(result)
                        yield result
                        if _ends(result):
                            return
        except (aiohttp.ClientError, OSError) as exc:
            raise A2AError(
                f"the stream from {redact_url(card.url)} failed: {_describe(exc)}",
                reason=f"its stream failed ({type(exc).__name__})",
            ) from None
        raise A2AError(
            f"the stream from {redact_url(card.url)} ended before its task did",
            reason="its stream ended before its task did",
        )

    def _cancel_later(self, card: RemoteCard, task_id: str) -> None:
        """Cancel an abandoned remote task in the background (best effort)."""

        async def cancel() -> None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(_CANCEL_TIMEOUT):
                    await self.cancel_task(card, task_id)
                    log.info("canceled the remote task %s at %s", task_id, redact_url(card.url))

        job = asyncio.get_running_loop().create_task(cancel())
        self._cancels.add(job)
        job.add_done_callback(self._cancels.discard)


def _card_url(url: str) -> str:
    url = url.rstrip("/")
    return url if url.endswith(".json") else url + CARD_PATH


def _message(task: str | Mapping[str, Any], context_id: str | None) -> dict[str, Any]:
    if isinstance(task, str):
        message: dict[str, Any] = {
            "messageId": uuid.uuid4().hex,
            "role": "ROLE_USER",
            "parts": [{"text": task}],
        }
    else:
        message = {"messageId": uuid.uuid4().hex, "role": "ROLE_USER", **task}
    if context_id:
        message["contextId"] = context_id
    return message


def _decode(data: bytes, status: int, url: str) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        raise A2AError(
            f"the agent at {redact_url(url)} answered HTTP {status} without JSON",
            reason=f"it answered HTTP {status} without JSON",
        ) from None


def _running(task: dict[str, Any]) -> bool:
    state = state_of(task)
    return state not in TERMINAL and state not in INTERRUPTED


def _ends(result: dict[str, Any]) -> bool:
    if "message" in result:
        return True
    if "statusUpdate" in result:
        return not _running({"status": result["statusUpdate"].get("status") or {}})
    if "task" in result:
        return not _running(result["task"])
    return False


def _describe(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


def _via(url: str) -> dict[str, Any]:
    """The proxy the environment names for ``url``, as ``session.get``/``post`` take it."""
    proxy = proxy_for(url)
    return {} if proxy is None else {"proxy": proxy}
