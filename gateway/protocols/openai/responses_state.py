"""The stateful side of the Responses API: stored responses, ``previous_response_id``, item
references, and background responses that any instance can read and cancel.

:class:`ResponsesState` sits between the adapter and the store (:mod:`responses_store`). Before
a request is decoded, :meth:`ResponsesState.resolve` turns it into the self-contained request
the decoder reads: the stored conversation of ``previous_response_id`` first, then the input
with each ``item_reference`` replaced by the item it names (ids given to items that had none,
so ``input_items`` can list them). After the answer, :meth:`save` keeps the response when the
request's ``store`` (true unless it says false, as OpenAI's default) asks for it.

Background responses are kept ``queued`` at once, then ``in_progress``, and the final response
replaces them; a task of this instance runs them. ``cancel`` marks the stored response
``cancelled`` and stops the run when it is here; a run on another instance sees the mark within
``[responses] cancel_poll`` seconds and stops, and never overwrites it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

import attrs

from gateway import BadRequest, GatewayError, NotFound, new_id
from gateway.protocols.openai.responses_store import (
    MemoryResponseStore,
    RedisResponseStore,
    ResponseRecord,
    ResponsesConfig,
    ResponseStore,
)

if TYPE_CHECKING:
    from gateway import Gateway

log = logging.getLogger(__name__)

#: A background response's statuses before it ends, waiting and running.
_QUEUED, _RUNNING = ("queued",), ("in_progress",)
_UNFINISHED = _QUEUED + _RUNNING

#: Id prefixes of the items the gateway names, by type.
_PREFIXES = {
    "message": "msg_",
    "function_call": "fc_",
    "function_call_output": "fco_",
    "custom_tool_call": "ctc_",
    "custom_tool_call_output": "ctco_",
    "reasoning": "rs_",
}


@attrs.define(slots=True)
class Resolved:
    """A request made self-contained: the body the decoder reads, and what a stored response
    of it keeps (its input items with their ids, the conversation before them)."""

    body: dict[str, Any]
    input: list[dict[str, Any]]
    context: list[dict[str, Any]]
    previous: str | None
    store: bool
    background: bool


class ResponsesState:
    """Stored responses of one application (``None`` store: ``[responses] store = "off"``)."""

    def __init__(self, gateway: Gateway) -> None:
        cfg: ResponsesConfig = gateway.config.section("responses")
        self.config = cfg
        self.store: ResponseStore | None = None
        state = gateway.state
        if cfg.store == "auto" and not state.redis_configured and state.workers > 1:
            log.warning(
                "stored responses are off: %d workers need [redis] url to share them",
                state.workers,
            )
        elif cfg.store != "off":
            kind = state.choose("responses.store", cfg.store)
            if kind == "redis":
                self.store = RedisResponseStore(state.redis("responses.store"), cfg.ttl)
            else:
                self.store = MemoryResponseStore(cfg.ttl, cfg.max_kept)
        #: Background runs of this instance, by (owner, response id).
        self.runs: dict[tuple[str, str], asyncio.Task[None]] = {}
        #: Whether the gateway is stopping (its runs end failed, not cancelled).
        self.closing = False

    def _store(self, what: str) -> ResponseStore:
        if self.store is None:
            raise NotFound(f'{what}: this gateway keeps no responses ([responses] store = "off").')
        return self.store

    # --- requests --------------------------------------------------------------------------------

    async def resolve(self, body: Any, owner: str) -> Resolved:
        """The request with its stored context and referenced items filled in."""
        if not isinstance(body, dict):
            raise BadRequest("The request body must be a JSON object.")
        store_flag = _flag(body, "store", True)
        background = _flag(body, "background", False)
        previous = body.get("previous_response_id")
        raw = body.get("input")
        has_refs = isinstance(raw, list) and any(
            isinstance(i, dict) and i.get("type") == "item_reference" for i in raw
        )
        if self.store is None:
            if background:
                raise BadRequest(
                    "'background' needs stored responses, and this gateway keeps none "
                    '([responses] store = "off").',
                    param="background",
                )
            return Resolved(body, [], [], None, False, False)  # the decoder refuses the rest
        if background:
            if not store_flag:
                raise BadRequest(
                    "Background responses must be stored: 'background' needs 'store' true.",
                    param="store",
                )
            if body.get("stream") is True:
                raise BadRequest(
                    "'background' with 'stream' is not supported: create the response in the "
                    "background and poll GET /v1/responses/{id}, or stream it in the foreground.",
                    param="stream",
                )
        context: list[dict[str, Any]] = []
        if previous is not None:
            if not isinstance(previous, str) or not previous:
                raise BadRequest(
                    "'previous_response_id' must be a string.", param="previous_response_id"
                )
            record = await self.store.get(owner, previous)
            if record is None:
                raise BadRequest(
                    f"Previous response with id '{previous}' not found.",
                    param="previous_response_id",
                    code="previous_response_not_found",
                )
            context = record.conversation()
        items = _items(raw)
        fetched: list[dict[str, Any]] = []
        if has_refs:
            items, fetched = await self._dereference(items, owner)
        if previous is None and not has_refs:
            decoded = body  # nothing to fill in: the client's body as it came
        else:
            decoded = {k: v for k, v in body.items() if k != "previous_response_id"}
            # items the gateway kept go back to the model only if it can read them
            kept = {id(i) for i in fetched}
            decoded["input"] = [
                *(i for i in context if _replayable(i)),
                *(i for i in items if id(i) not in kept or _replayable(i)),
            ]
        # the stored input names its items once (the client's body stays as it was sent)
        return Resolved(decoded, _with_ids(items), context, previous, store_flag, background)

    async def _dereference(
        self, items: list[dict[str, Any]], owner: str
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """``items`` with each reference replaced by the item it names, and those items."""
        assert self.store is not None
        refs = [
            (i, item.get("id"))
            for i, item in enumerate(items)
            if item.get("type") == "item_reference"
        ]
        for i, ref in refs:
            if not isinstance(ref, str) or not ref:
                raise BadRequest(f"'input[{i}].id' must be a string.", param=f"input[{i}].id")
        found = await self.store.items(owner, [str(ref) for _, ref in refs])
        out = list(items)
        for (i, ref), item in zip(refs, found, strict=True):
            if item is None:
                raise BadRequest(
                    f"Item with id '{ref}' not found.", param=f"input[{i}]", code="item_not_found"
                )
            out[i] = item
        return out, [item for item in found if item is not None]

    async def save(self, owner: str, resolved: Resolved, response: dict[str, Any]) -> None:
        """Keep ``response`` when its request asked to store it."""
        if self.store is not None and resolved.store:
            await self.store.put(owner, ResponseRecord(response, resolved.input, resolved.context))

    # --- reads ---------------------------------------------------------------------------------

    async def get(self, owner: str, response_id: str) -> ResponseRecord:
        record = await self._store("GET /v1/responses/{id}").get(owner, response_id)
        if record is None:
            raise NotFound(f"Response with id '{response_id}' not found.", param="response_id")
        return record

    async def delete(self, owner: str, response_id: str) -> None:
        store = self._store("DELETE /v1/responses/{id}")
        run = self.runs.get((owner, response_id))
        if run is not None:
            run.cancel()
        if not await store.delete(owner, response_id):
            raise NotFound(f"Response with id '{response_id}' not found.", param="response_id")

    # --- background ----------------------------------------------------------------------------

    async def start(
        self,
        owner: str,
        resolved: Resolved,
        queued: dict[str, Any],
        run: Callable[[], Awaitable[dict[str, Any]]],
        failed: Callable[[GatewayError | None, str], dict[str, Any]],
    ) -> None:
        """Keep ``queued`` and start running it here: ``run()`` makes the final response;
        ``failed(error, status)`` the response of a run that failed or was cancelled."""
        await self.save(owner, resolved, queued)
        key = (owner, str(queued["id"]))
        task = asyncio.create_task(self._background(owner, resolved, queued, run, failed))
        self.runs[key] = task
        task.add_done_callback(lambda _: self.runs.pop(key, None))

    async def _background(
        self,
        owner: str,
        resolved: Resolved,
        queued: dict[str, Any],
        run: Callable[[], Awaitable[dict[str, Any]]],
        failed: Callable[[GatewayError | None, str], dict[str, Any]],
    ) -> None:
        # Each step is written only over the one before it: a response cancelled or deleted
        # meanwhile, by any instance, stays so.
        response_id = str(queued["id"])
        try:
            if not await self._replace(
                owner, resolved, {**queued, "status": "in_progress"}, _QUEUED
            ):
                return
            work = asyncio.ensure_future(run())
            # another instance may cancel it: only a shared store can say so
            watch = asyncio.ensure_future(
                self._watch(owner, response_id)
                if isinstance(self.store, RedisResponseStore)
                else asyncio.Event().wait()
            )
            try:
                await asyncio.wait({work, watch}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                stopped = not work.done()
                for task in (watch, work):
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await task
            if stopped:
                log.info(
                    "background response %s was cancelled elsewhere; its run stopped", response_id
                )
                return  # the stored response says so already
            error = work.exception()
            if error is None:
                final = work.result()
            elif isinstance(error, GatewayError):
                final = failed(error, "failed")
            else:
                log.exception("a background response failed", exc_info=error)
                final = failed(GatewayError("The response failed in the gateway."), "failed")
            await self._replace(owner, resolved, final, _RUNNING)
        except asyncio.CancelledError:
            # Cancelled here (cancel, DELETE, or the gateway stopping): say so unless cancel()
            # said so already or it was deleted.
            if self.closing:
                final = failed(
                    GatewayError("The gateway stopped before the response finished."), "failed"
                )
            else:
                final = failed(None, "cancelled")
            with contextlib.suppress(Exception):
                await self._replace(owner, resolved, final, _UNFINISHED)
            raise
        except GatewayError as err:  # the store failed: nothing more can be kept
            log.warning("background response %s: %s", response_id, err.message)

    async def _replace(
        self, owner: str, resolved: Resolved, response: dict[str, Any], statuses: tuple[str, ...]
    ) -> bool:
        """Keep ``response`` over a stored one whose status is one of ``statuses``; whether it
        was kept."""
        assert self.store is not None
        record = ResponseRecord(response, resolved.input, resolved.context)
        return await self.store.replace(owner, record, statuses)

    async def _cancelled(self, owner: str, response_id: str) -> bool:
        assert self.store is not None
        record = await self.store.get(owner, response_id)
        return record is None or record.status == "cancelled"

    async def _watch(self, owner: str, response_id: str) -> None:
        """Return when another instance cancelled (or deleted) the response."""
        while True:
            await asyncio.sleep(float(self.config.cancel_poll))
            with contextlib.suppress(GatewayError):
                if await self._cancelled(owner, response_id):
                    return

    async def cancel(
        self, owner: str, response_id: str, cancelled: Callable[[dict[str, Any]], dict[str, Any]]
    ) -> dict[str, Any]:
        """Cancel a background response; the response as it then is. ``cancelled(response)``
        makes the stored response's cancelled form."""
        store = self._store("POST /v1/responses/{id}/cancel")
        record = await self.get(owner, response_id)
        if not record.response.get("background"):
            raise BadRequest("Only background responses can be cancelled.", param="response_id")
        if record.status in _UNFINISHED:
            changed = ResponseRecord(cancelled(record.response), record.input, record.context)
            if not await store.replace(owner, changed, _UNFINISHED):
                # It ended (or was cancelled or deleted) since it was read: as it is now.
                return (await self.get(owner, response_id)).response
            record = changed
            run = self.runs.get((owner, response_id))
            if run is not None:
                run.cancel()
        return record.response

    async def close(self) -> None:
        """Stop this instance's background runs (the gateway is stopping): they end failed."""
        self.closing = True
        runs = list(self.runs.values())
        for task in runs:
            task.cancel()
        if runs:
            await asyncio.gather(*runs, return_exceptions=True)


def _replayable(item: dict[str, Any]) -> bool:
    """Whether a stored item can go back to a model: a reasoning item carries its reasoning only
    in ``encrypted_content`` (a model that keeps none cannot read one without it)."""
    return item.get("type") != "reasoning" or bool(item.get("encrypted_content"))


def _flag(body: Mapping[str, Any], key: str, default: bool) -> bool:
    value = body.get(key)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise BadRequest(f"'{key}' must be a boolean.", param=key)
    return value


def _items(raw: Any) -> list[dict[str, Any]]:
    """The request's input as a list of items (a string is one user message); the decoder
    checks their shape."""
    if isinstance(raw, str):
        return [
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": raw}]}
        ]
    return [i for i in raw if isinstance(i, dict)] if isinstance(raw, list) else []


def _with_ids(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Input items as ``input_items`` lists them: each with an id and a type, a message's text
    content as parts."""
    out = []
    for item in items:
        kind = item.get("type", "message")
        kept = {**item, "type": kind}
        if "id" not in kept:
            kept["id"] = new_id(_PREFIXES.get(kind, "item_"))
        if kind == "message" and isinstance(kept.get("content"), str):
            role = kept.get("role")
            part = "output_text" if role == "assistant" else "input_text"
            text = {"type": part, "text": kept["content"]}
            if role == "assistant":
                text["annotations"] = []
                kept.setdefault("status", "completed")
            kept["content"] = [text]
        out.append(kept)
    return out
