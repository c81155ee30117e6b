"""Data in ``presets/``: the default negative prompt and the example prompts per task."""

from __future__ import annotations

import copy
import functools
import json
from pathlib import Path
from typing import Any

from wan.configs import OFFICIAL_NEGATIVE_PROMPT, TASKS, normalize_task  # torch-free: the one source of task facts

from .vocabulary import PRESETS_DIR, check_lang

__all__ = ["TASKS", "example_prompts", "negative_prompt", "negative_prompt_items", "normalize_task"]


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
    chosen = [it[lang] for it in negative_prompt_items() if not (stylized and it["kind"] == "artwork")]
    return ("，" if lang == "zh" else ", ").join(chosen)


def negative_prompt_items() -> list[dict[str, str]]:
    """The official negative prompt item by item: ``{"zh", "en", "kind"}``.

    The Chinese items are the official text (``wan.configs.OFFICIAL_NEGATIVE_PROMPT`` split at its
    commas); ``presets/negative_prompts.json`` holds only our English gloss and a kind per item, in order.
    """
    glosses = _read_json(PRESETS_DIR / "negative_prompts.json")["items"]
    official = OFFICIAL_NEGATIVE_PROMPT.split("，")
    if len(glosses) != len(official):
        raise ValueError(
            f"presets/negative_prompts.json has {len(glosses)} items; the official negative prompt has {len(official)}"
        )
    return [{"zh": zh, "en": g["en"], "kind": g["kind"]} for zh, g in zip(official, glosses, strict=True)]


def example_prompts(task: str) -> list[dict[str, Any]]:
    """Example prompts for a task, newest copy each call.

    Each dict has "title", "prompt", "lang" ("en"/"zh"), "mode" (the assistant formula that built
    it), "image" (True when the example expects an input image) and "fields"
    (``PromptFields.to_dict()`` form, to refill the assistant).
    """
    task = normalize_task(task)
    data = _read_json(PRESETS_DIR / "examples.json")
    return copy.deepcopy(data["tasks"][task])
