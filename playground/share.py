"""Share links.

* Permalink of a result: ``<app url>/?gen=<id>`` reopens the result's tab with its settings and video.
  It works across restarts because results live on disk (see ``history``).
* Pre-fill link: ``<app url>/?task=t2v&prompt=...&seed=42&steps=30&size=832*480`` fills a tab's form.

Parsing never raises on bad input: values that cannot be used are dropped and described in
``ShareQuery.problems`` so the UI can say what was ignored and why.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

from wan.request import FIELD_HELP, URL_ALIASES, RequestPolicy, check_fields, flat_values, parse_values

from .history import is_valid_id
from .request import InputError

__all__ = [
    "PARAMS",
    "ShareQuery",
    "parse_query",
    "permalink",
    "prefill_link",
    "resolve_task",
]

# The link parameters: every request setting by its own name (wan.request.FIELD_HELP, so a new setting is
# a link parameter without touching this file), the short names (steps, frames, neg, guidance,
# guidance_high, guidance_low, solver) and the flat per-expert guidance of the form.
# Files (the last frame of a first-last run) are not link parameters: a link never names a server file; nor
# is a continuation (its parent clip, overlap and colour match need the parent's video, which a link cannot carry).
PARAMS: frozenset[str] = frozenset({*FIELD_HELP, "guide_scale_high", "guide_scale_low", *URL_ALIASES}
                                   - {"last_image", "parent", "overlap", "color_match"})


@dataclass
class ShareQuery:
    gen_id: str | None = None
    task: str | None = None
    prefill: dict[str, Any] = field(default_factory=dict)   # form field -> value
    problems: list[str] = field(default_factory=list)        # what was ignored, and why (plain text)

    @property
    def empty(self) -> bool:
        return self.gen_id is None and self.task is None and not self.prefill and not self.problems


def resolve_task(text: str, tasks: Sequence[str]) -> str:
    """``"t2v"``/``"T2V-A14B"``/``"5b"``... -> the canonical task name, or ``InputError``."""
    from wan.configs import normalize_task  # torch-free

    try:
        task: str | None = normalize_task(str(text))
    except ValueError:
        task = None
    if task is None or task not in tasks:
        allowed = ", ".join(list(tasks) + ["t2v", "i2v", "ti2v"])
        raise InputError("task", f"{str(text)[:40]!r} is not a task; use one of {allowed}")
    return task


def parse_query(params: Mapping[str, str], tasks: Sequence[str], policy: RequestPolicy | None = None) -> ShareQuery:
    """Read ``?gen=`` or the pre-fill parameters from a page's query string.

    Pre-fill values go through the request contract's parser and per-field checks: every rejected
    parameter is named in ``problems`` (with what is allowed), the others fill the form.
    """
    q = ShareQuery()
    if "gen" in params:
        raw = params["gen"]
        if is_valid_id(raw):
            q.gen_id = raw
        else:
            q.problems.append(
                f"gen: {str(raw)[:60]!r} is not a valid result id (ids look like 20260101-120000-a1b2c3)"
            )
    if "task" in params:
        try:
            q.task = resolve_task(params["task"], tasks)
        except InputError as e:
            q.problems.append(f"task: {e.message}")
    given = {k: v for k, v in params.items() if k in PARAMS}
    if given and q.gen_id is None:
        task = q.task or tasks[0]
        kwargs, errors = parse_values(task, given)
        good, bad = check_fields(task, kwargs, policy)
        names = {URL_ALIASES.get(k, k): k for k in given}  # request field -> the parameter the link used
        for e in errors + bad:
            q.problems.append(f"{names.get(e.field, e.field)}: {e.message}; ignored")
        q.prefill = flat_values(task, good)
        if "seed" in q.prefill and q.prefill["seed"] == -1:
            del q.prefill["seed"]
        q.task = task
    return q


def _base(app_url: str) -> str:
    parts = urlsplit(app_url)
    path = parts.path if parts.path.endswith("/") else parts.path + "/"
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))


def permalink(app_url: str, gen_id: str) -> str:
    """``http://host:7860/`` + id -> ``http://host:7860/?gen=<id>`` (query and fragment of app_url dropped)."""
    if not is_valid_id(gen_id):
        raise ValueError(f"{gen_id!r} is not a valid result id")
    return _base(app_url) + "?" + urlencode({"gen": gen_id})


def prefill_link(app_url: str, task: str, **params: Any) -> str:
    """A pre-fill link; ``params`` use the short URL names (prompt, seed, steps, size, ...)."""
    unknown = sorted(set(params) - PARAMS)
    if unknown:
        raise ValueError(f"unknown share-link parameters: {', '.join(unknown)}")
    query = {"task": task, **{k: v for k, v in params.items() if v is not None}}
    return _base(app_url) + "?" + urlencode(query)
