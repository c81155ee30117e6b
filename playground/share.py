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

from .history import is_valid_id
from .request import MAX_PROMPT_CHARS, SOLVERS, InputError, format_size, parse_size

__all__ = [
    "PARAMS",
    "ShareQuery",
    "parse_query",
    "permalink",
    "prefill_link",
    "resolve_task",
]

# URL parameter -> (form field, kind). Long field names are accepted too.
PARAMS: dict[str, tuple[str, str]] = {
    "prompt": ("prompt", "text"),
    "neg": ("negative_prompt", "text"),
    "negative_prompt": ("negative_prompt", "text"),
    "seed": ("seed", "int"),
    "steps": ("sampling_steps", "int"),
    "sampling_steps": ("sampling_steps", "int"),
    "frames": ("frame_num", "int"),
    "frame_num": ("frame_num", "int"),
    "fps": ("fps", "int"),
    "shift": ("shift", "float"),
    "guidance": ("guide_scale", "float"),
    "guide_scale": ("guide_scale", "float"),
    "guidance_high": ("guide_scale_high", "float"),
    "guidance_low": ("guide_scale_low", "float"),
    "size": ("size", "size"),
    "solver": ("sample_solver", "solver"),
}



@dataclass
class ShareQuery:
    gen_id: str | None = None
    task: str | None = None
    prefill: dict[str, Any] = field(default_factory=dict)   # form field -> value
    problems: list[str] = field(default_factory=list)        # what was ignored, and why

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
        raise InputError("task", f"{text!r} is not a task; use one of {allowed}")
    return task


def parse_query(params: Mapping[str, str], tasks: Sequence[str]) -> ShareQuery:
    """Read ``?gen=`` or the pre-fill parameters from a page's query string."""
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
    for key, raw in params.items():
        if key not in PARAMS:
            continue
        name, kind = PARAMS[key]
        try:
            q.prefill[name] = _convert(kind, raw)
        except InputError as e:
            q.problems.append(f"{key}: {e.message}; ignored")
    if q.prefill and q.task is None and q.gen_id is None:
        q.task = tasks[0]
    return q


def _convert(kind: str, raw: str) -> Any:
    if kind == "text":
        text = str(raw)
        if len(text) > MAX_PROMPT_CHARS:
            raise InputError("prompt", f"is longer than {MAX_PROMPT_CHARS} characters")
        return text
    if kind == "size":
        return format_size(*parse_size(raw))
    if kind == "solver":
        if raw not in SOLVERS:
            raise InputError("sample_solver", f"{raw!r} is not one of {', '.join(SOLVERS)}")
        return raw
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise InputError(kind, f"{str(raw)[:40]!r} is not a number") from None
    if kind == "int":
        if value != int(value):
            raise InputError(kind, f"{raw!r} is not a whole number")
        return int(value)
    return value


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
    unknown = sorted(set(params) - set(PARAMS))
    if unknown:
        raise ValueError(f"unknown share-link parameters: {', '.join(unknown)}")
    query = {"task": task, **{k: v for k, v in params.items() if v is not None}}
    return _base(app_url) + "?" + urlencode(query)
