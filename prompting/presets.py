"""Data in ``presets/``: the default negative prompt and the example prompts per task."""

from __future__ import annotations

import copy
import functools
import json
from pathlib import Path
from typing import Any

from .vocabulary import PRESETS_DIR, check_lang

__all__ = ["TASKS", "example_prompts", "negative_prompt", "normalize_task"]

#: Model tasks, as named by the inference package.
TASKS: tuple[str, ...] = ("t2v-A14B", "i2v-A14B", "ti2v-5B")
_TASK_ALIASES = {"t2v": "t2v-A14B", "i2v": "i2v-A14B", "ti2v": "ti2v-5B"}


def normalize_task(task: str) -> str:
    """A task id from :data:`TASKS`; the short forms "t2v", "i2v" and "ti2v" are accepted too."""
    if task in TASKS:
        return task
    if task in _TASK_ALIASES:
        return _TASK_ALIASES[task]
    raise ValueError(f"task must be one of {', '.join(map(repr, TASKS))} (or t2v / i2v / ti2v); got {task!r}")


@functools.lru_cache(maxsize=8)
def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"preset file not found: {path}") from None


def negative_prompt(lang: str = "zh", *, stylized: bool = False) -> str:
    """The default negative prompt of the official Wan 2.2 configs.

    ``lang="zh"`` is the official text, character for character; ``lang="en"`` is our English
    rendering of the same items. ``stylized=True`` leaves out the items that push towards a
    photographic look (风格, 作品, 画作, 画面: "style", "artwork", "painting", "picture"), which
    fight an illustrated or animated style.
    """
    check_lang(lang)
    items = _read_json(PRESETS_DIR / "negative_prompts.json")["items"]
    chosen = [it[lang] for it in items if not (stylized and it["kind"] == "artwork")]
    return ("，" if lang == "zh" else ", ").join(chosen)


def example_prompts(task: str) -> list[dict[str, Any]]:
    """Example prompts for a task, newest copy each call.

    Each dict has "title", "prompt", "lang" ("en"/"zh"), "mode" (the assistant formula that built
    it), "image" (True when the example expects an input image) and "fields"
    (``PromptFields.to_dict()`` form, to refill the assistant).
    """
    task = normalize_task(task)
    data = _read_json(PRESETS_DIR / "examples.json")
    return copy.deepcopy(data["tasks"][task])
