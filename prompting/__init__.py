"""Wan 2.2 prompt tools: the official formula (en/zh), vocabulary, negative prompt, extension.

Pure Python: importing this package never imports torch, transformers or gradio (the local-LLM
backend imports them on first use).

    import prompting
    fields = prompting.PromptFields(subject="a red fox", scene="a snowy forest", motion="trots",
                                    aesthetics={"shot_size": "wide_shot"}, style=None)
    prompting.build_prompt(fields, mode="advanced", lang="zh")
    prompting.parse_prompt("Wide shot, night time. A red fox trots.")
    prompting.make_extender("offline").extend("a red fox in the snow", task="t2v-A14B", lang="en")
"""

from __future__ import annotations

from .builder import MODE_GROUPS, MODE_TEXT_FIELDS, MODES, build_prompt, parse_prompt
from .extension import (
    BackendConnectionError,
    BackendHTTPError,
    BackendRefusal,
    BackendTimeout,
    BackendUnavailable,
    ExtensionError,
    ExtensionResult,
    MalformedResponse,
    PromptExtender,
    clean_answer,
    extension_kind,
)
from .factory import EXTENDER_KINDS, ExtenderConfig, ExtenderInfo, available_extenders, make_extender, make_extenders
from .fields import TEXT_FIELDS, Conflict, PromptFields, find_conflicts, resolve_conflicts
from .language import detect_language
from .presets import TASKS, example_prompts, negative_prompt, normalize_task
from .system_prompts import system_prompt
from .vocabulary import (
    CAMERA_GROUPS,
    FIXED_CAMERA,
    GROUPS,
    LANGS,
    STYLE_GROUP,
    Term,
    Vocabulary,
    load_vocabulary,
)

__all__ = [
    "CAMERA_GROUPS",
    "EXTENDER_KINDS",
    "FIXED_CAMERA",
    "GROUPS",
    "LANGS",
    "MODES",
    "MODE_GROUPS",
    "MODE_TEXT_FIELDS",
    "STYLE_GROUP",
    "TASKS",
    "TEXT_FIELDS",
    "BackendConnectionError",
    "BackendHTTPError",
    "BackendRefusal",
    "BackendTimeout",
    "BackendUnavailable",
    "Conflict",
    "ExtenderConfig",
    "ExtenderInfo",
    "ExtensionError",
    "ExtensionResult",
    "MalformedResponse",
    "PromptExtender",
    "PromptFields",
    "Term",
    "Vocabulary",
    "available_extenders",
    "build_prompt",
    "clean_answer",
    "detect_language",
    "example_prompts",
    "extension_kind",
    "find_conflicts",
    "load_vocabulary",
    "make_extender",
    "make_extenders",
    "negative_prompt",
    "normalize_task",
    "parse_prompt",
    "resolve_conflicts",
    "system_prompt",
]
