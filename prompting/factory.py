"""``make_extender``: the one place that maps a backend name to its class."""

from __future__ import annotations

import importlib.util
import inspect
import os
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .extension import PromptExtender

__all__ = ["EXTENDER_KINDS", "ExtenderConfig", "ExtenderInfo", "available_extenders", "make_extender", "make_extenders"]

EXTENDER_KINDS: tuple[str, ...] = ("offline", "openai", "local")
#: What each backend is called in lists (the app translates these by kind).
EXTENDER_LABELS: Mapping[str, str] = {
    "offline": "Offline rules (no model)",
    "openai": "OpenAI-compatible endpoint",
    "local": "Local model",
}


@dataclass(frozen=True)
class ExtenderConfig:
    """Which enhancers a server offers: ``default`` (the one preselected) and the backends' settings.

    ``openai`` holds the options of the OpenAI-compatible backend (``base_url``, ``model``,
    ``api_key``...), ``local`` those of the local model (``model``...). A backend is configured when
    its settings (or the environment: WAN_PROMPT_API_BASE / WAN_PROMPT_API_KEY / OPENAI_API_KEY /
    DASHSCOPE_API_KEY / WAN_PROMPT_MODEL, WAN_PROMPT_LOCAL_MODEL) name what it talks to; the offline
    rules are always there.
    """

    default: str = "offline"
    openai: Mapping[str, Any] = field(default_factory=dict)
    local: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_flags(cls, kind: str = "offline", model: str | None = None, url: str | None = None) -> ExtenderConfig:
        """From the app's ``--extender``, ``--extender-model`` and ``--extender-url``: the URL belongs to
        the OpenAI-compatible backend; the model to the backend ``kind`` names (with ``offline``: to the
        endpoint when a URL is given, else to the local backend)."""
        _check_kind(kind)
        openai: dict[str, Any] = {"base_url": url} if url else {}
        local: dict[str, Any] = {}
        if model:
            if kind == "openai" or (kind == "offline" and url):
                openai["model"] = model
            else:
                local["model"] = model
        return cls(default=kind, openai=openai, local=local)

    def options(self, kind: str) -> dict[str, Any]:
        return dict({"offline": {}, "openai": self.openai, "local": self.local}[_check_kind(kind)])


@dataclass(frozen=True)
class ExtenderInfo:
    """One enhancer in a list: ``ready`` when it is configured and can be built; ``detail`` says what
    it uses (model, endpoint) or, when not ready, what is missing. ``default`` marks the preselected one."""

    kind: str
    label: str
    ready: bool
    detail: str
    default: bool = False


def _check_kind(kind: str) -> str:
    if kind not in EXTENDER_KINDS:
        raise ValueError(f"kind must be one of {', '.join(map(repr, EXTENDER_KINDS))}; got {kind!r}")
    return kind


def _host(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return parts.netloc or url


def available_extenders(config: ExtenderConfig | None = None, *,
                        env: Mapping[str, str] | None = None) -> list[ExtenderInfo]:
    """Every backend with whether it is configured (``ready``), in :data:`EXTENDER_KINDS` order.

    Nothing is loaded or contacted: "openai" is ready when a base URL or an API key is configured
    (options or environment) and a model is known; "local" when a model name or path is configured
    (``--extender-model`` / ``WAN_PROMPT_LOCAL_MODEL``) and transformers is installed; "offline"
    always. The default backend must be ready (``make_extenders`` raises otherwise).
    """
    config = config or ExtenderConfig()
    env = os.environ if env is None else env
    out = [ExtenderInfo("offline", EXTENDER_LABELS["offline"], True,
                        "deterministic rules over the official vocabulary; no model, no network; does not translate",
                        config.default == "offline")]

    opts = config.options("openai")
    keyed = any(env.get(v) for v in ("WAN_PROMPT_API_KEY", "OPENAI_API_KEY", "DASHSCOPE_API_KEY"))
    if not (opts.get("base_url") or env.get("WAN_PROMPT_API_BASE") or opts.get("api_key") or keyed):
        out.append(ExtenderInfo("openai", EXTENDER_LABELS["openai"], False,
                                "not configured: start the app with --extender-url (or set WAN_PROMPT_API_BASE; the "
                                "key in WAN_PROMPT_API_KEY)", config.default == "openai"))
    else:
        try:
            ext = make_extender("openai", env=env, **opts)
        except ValueError as e:
            out.append(ExtenderInfo("openai", EXTENDER_LABELS["openai"], False, f"not usable: {e}",
                                    config.default == "openai"))
        else:
            url = getattr(ext, "url", "")
            out.append(ExtenderInfo("openai", EXTENDER_LABELS["openai"], True,
                                    f"{getattr(ext, 'model', '?')} at {_host(url)}", config.default == "openai"))

    opts = config.options("local")
    model = opts.get("model") or env.get("WAN_PROMPT_LOCAL_MODEL")
    if not model:
        out.append(ExtenderInfo("local", EXTENDER_LABELS["local"], False,
                                "not configured: start the app with --extender local --extender-model NAME_OR_PATH "
                                "(or set WAN_PROMPT_LOCAL_MODEL)", config.default == "local"))
    elif importlib.util.find_spec("transformers") is None:
        out.append(ExtenderInfo("local", EXTENDER_LABELS["local"], False,
                                f"{model}: needs transformers and torch (pip install transformers)",
                                config.default == "local"))
    else:
        from .local_llm import resolve_local_model

        out.append(ExtenderInfo("local", EXTENDER_LABELS["local"], True,
                                f"{resolve_local_model(model)} (loaded on first use)", config.default == "local"))
    return out


def make_extenders(config: ExtenderConfig | None = None, *,
                   env: Mapping[str, str] | None = None) -> dict[str, PromptExtender]:
    """The ready enhancers, built (nothing loaded or contacted), default first.

    Raises ``ValueError`` naming what is missing when the default backend is not configured.
    """
    config = config or ExtenderConfig()
    infos = {i.kind: i for i in available_extenders(config, env=env)}
    default = infos[config.default]
    if not default.ready:
        raise ValueError(f"the {config.default!r} prompt enhancer is {default.detail}")
    out: dict[str, PromptExtender] = {}
    for kind in (config.default, *EXTENDER_KINDS):
        if kind in out or not infos[kind].ready:
            continue
        opts = config.options(kind)
        if kind == "openai":
            opts["env"] = os.environ if env is None else env
        elif kind == "local" and not opts.get("model"):
            opts["model"] = (os.environ if env is None else env).get("WAN_PROMPT_LOCAL_MODEL")
        out[kind] = make_extender(kind, **opts)
    return out


def _backend_class(kind: str) -> type:
    _check_kind(kind)
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
