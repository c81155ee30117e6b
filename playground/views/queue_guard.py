"""A cap on the generation jobs one session may have waiting or running.

Without it one client fills the whole queue (``--queue-size``) with quick submissions and everyone
else gets "Queue is full", even for cheap calls. The check runs when a job asks to join the queue
(before it takes a place), so a refused job never waits: the client gets a validation error that
says how many jobs it already has.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any

import gradio as gr

__all__ = ["SessionJobCap"]

log = logging.getLogger("wan.app")

# Gradio's MCP server sends every MCP client's calls through one gradio_client session, marked
# with this header; that shared session gets a larger cap.
MCP_USER_HEADER = ("x-gradio-user", "mcp")


class SessionJobCap:
    """Refuse a new generation job from a session that already has ``limit`` jobs queued or running.

    ``install(demo)`` wraps the push of the demo's queue (call it after ``demo.queue(...)``, which
    creates the queue). Only the endpoints named in ``api_names`` (and the task tabs' runs of them,
    ``<name>_ui``) count and are capped.
    """

    def __init__(self, api_names: Iterable[str], *, limit: int = 2, shared_limit: int = 8) -> None:
        # each generate endpoint and the task tab's own run of it (``<name>_ui``: one or a batch of results)
        self.api_names = frozenset(n for name in api_names for n in (name, f"{name}_ui"))
        self.limit = limit
        self.shared_limit = shared_limit
        self._lock = asyncio.Lock()

    def install(self, demo: gr.Blocks) -> None:
        queue = demo._queue
        push = queue.push

        async def capped_push(body: Any, request: Any, username: str | None) -> Any:
            fn = demo.fns.get(body.fn_index) if body.fn_index is not None else None
            if fn is None or fn.api_name not in self.api_names or not body.session_hash:
                return await push(body, request, username)
            async with self._lock:  # check and join as one step: two quick clicks cannot both pass
                limit = self.shared_limit if _is_shared(request) else self.limit
                pending = self.pending(queue, body.session_hash)
                if pending >= limit:
                    log.info("job cap: session %s… already has %d generation jobs", body.session_hash[:6], pending)
                    return False, [self.refusal(pending)], "validator_error"
                return await push(body, request, username)

        queue.push = capped_push  # type: ignore[method-assign]

    def pending(self, queue: Any, session: str) -> int:
        """Generation jobs of ``session`` waiting in the queue or running."""
        waiting = [e for q in queue.event_queue_per_concurrency_id.values() for e in q.queue]
        running = [e for job in queue.active_jobs if job for e in job]
        return sum(1 for e in waiting + running if e.session_hash == session and e.fn.api_name in self.api_names)

    @staticmethod
    def refusal(pending: int) -> dict[str, Any]:
        message = (
            f"You already have {pending} generation jobs queued or running; wait for one to finish "
            "(or cancel it) before starting another."
        )
        return {"__type__": "validate", "is_valid": False, "message": message, "parameter_name": "prompt"}


def _is_shared(request: Any) -> bool:
    headers = getattr(request, "headers", None) or {}
    name, value = MCP_USER_HEADER
    return str(headers.get(name, "")).lower() == value
