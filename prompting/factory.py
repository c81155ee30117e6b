"""``make_extender``: the one place that maps a backend name to its class."""

from __future__ import annotations

import inspect
from typing import Any

from .extension import PromptExtender

__all__ = ["EXTENDER_KINDS", "make_extender"]

EXTENDER_KINDS: tuple[str, ...] = ("offline", "openai", "local")


def _backend_class(kind: str) -> type:
    if kind == "offline":
        from .offline import OfflineExtender

        return OfflineExtender
    if kind == "openai":
        from .openai_compat import OpenAICompatibleExtender

        return OpenAICompatibleExtender
    if kind == "local":
        from .local_llm import LocalLLMExtender

        return LocalLLMExtender
    raise ValueError(f"kind must be one of {', '.join(map(repr, EXTENDER_KINDS))}; got {kind!r}")


def make_extender(kind: str = "offline", **options: Any) -> PromptExtender:
    """A prompt extender: "offline" (deterministic, no model), "openai" (any OpenAI-compatible chat
    endpoint; base URL, key and model from options or WAN_PROMPT_API_BASE / WAN_PROMPT_API_KEY /
    WAN_PROMPT_MODEL, keys also from OPENAI_API_KEY / DASHSCOPE_API_KEY) or "local" (transformers
    chat model, ``model=`` path, hub id or short name; loaded on first use).

    Options are the backend's keyword arguments; an unknown one raises ``ValueError`` listing the
    allowed names. Building never touches the network or loads a model.
    """
    cls = _backend_class(kind)
    allowed = [name for name, p in inspect.signature(cls.__init__).parameters.items()
               if p.kind is inspect.Parameter.KEYWORD_ONLY]
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ValueError(
            f"unknown option(s) for the {kind!r} extender: {', '.join(unknown)}; allowed: {', '.join(allowed)}"
        )
    extender: PromptExtender = cls(**options)
    return extender
