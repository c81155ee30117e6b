"""Prompt extension: one interface, several backends.

``extend()`` never raises because a backend failed: a timeout, an HTTP error, a malformed or empty
answer, a refusal, an answer in the wrong language or an unloadable model all give
``ExtensionResult(prompt=<the original>, ok=False, warning=<what happened>)``. Only invalid input
(empty prompt, unknown task or language, an over-long prompt) raises ``ValueError``.
"""

from __future__ import annotations

import abc
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from .language import LANGUAGE_NAMES, detect_language
from .presets import normalize_task
from .system_prompts import system_prompt
from .vocabulary import check_lang

__all__ = [
    "DEFAULT_MAX_CHARS",
    "BackendConnectionError",
    "BackendHTTPError",
    "BackendRefusal",
    "BackendTimeout",
    "BackendUnavailable",
    "ExtensionError",
    "ExtensionRequest",
    "ExtensionResult",
    "LLMExtender",
    "MalformedResponse",
    "PromptExtender",
    "clean_answer",
    "extension_kind",
    "prepare_request",
    "truncate_prompt",
]

#: Default cap on an extended prompt, in characters, per (kind, language). Wan's text encoder reads
#: at most 512 tokens; these leave room and stop runaway answers.
DEFAULT_MAX_CHARS: Mapping[tuple[str, str], int] = {
    ("t2v", "en"): 1500,
    ("t2v", "zh"): 600,
    ("i2v", "en"): 800,
    ("i2v", "zh"): 300,
}
#: Answers shorter than this (characters) are treated as failures, per output language.
DEFAULT_MIN_CHARS: Mapping[str, int] = {"en": 20, "zh": 8}
DEFAULT_MAX_INPUT_CHARS = 4000


@dataclass(frozen=True)
class ExtensionResult:
    """What an extender returns. ``ok=False`` means ``prompt`` is the original, unchanged.

    ``warning`` is a human-readable sentence to show (set on every failure, and on success when
    something is worth knowing, e.g. the answer was cut to the length cap); ``reason`` is a short
    machine-readable code ("timeout", "http_error", "connection", "malformed", "empty", "too_short",
    "refusal", "wrong_language", "unavailable", "error", "truncated", "untranslated"). ``raw`` is the
    model's answer before cleanup (LLM backends); ``elapsed_s`` is informational and not compared.
    """

    prompt: str
    ok: bool
    backend: str
    warning: str | None = None
    reason: str | None = None
    raw: str | None = None
    elapsed_s: float = field(default=0.0, compare=False)


@runtime_checkable
class PromptExtender(Protocol):
    """Anything with a ``name`` and this ``extend`` method."""

    name: str

    def extend(self, prompt: str, *, task: str = "t2v", lang: str = "en", has_image: bool = False) -> ExtensionResult:
        ...


class ExtensionError(Exception):
    """A backend failed; ``reason`` is the :attr:`ExtensionResult.reason` code."""

    reason = "error"


class BackendTimeout(ExtensionError):
    reason = "timeout"


class BackendHTTPError(ExtensionError):
    reason = "http_error"


class BackendConnectionError(ExtensionError):
    reason = "connection"


class MalformedResponse(ExtensionError):
    reason = "malformed"


class BackendRefusal(ExtensionError):
    reason = "refusal"


class BackendUnavailable(ExtensionError):
    reason = "unavailable"


def extension_kind(task: str, has_image: bool) -> str:
    """"i2v" for image-to-video (i2v-A14B, or ti2v-5B with an image), else "t2v"."""
    task = normalize_task(task)
    if task == "i2v-A14B" or (task == "ti2v-5B" and has_image):
        return "i2v"
    return "t2v"


@dataclass(frozen=True)
class ExtensionRequest:
    """A validated extension request and the chat messages for it."""

    prompt: str
    task: str
    kind: str
    lang: str
    source_lang: str
    has_image: bool
    max_chars: int
    messages: tuple[Mapping[str, str], ...]

    @property
    def system(self) -> str:
        return self.messages[0]["content"]


def prepare_request(
    prompt: str,
    *,
    task: str,
    lang: str,
    has_image: bool,
    max_chars: int | None = None,
    max_input_chars: int = DEFAULT_MAX_INPUT_CHARS,
) -> ExtensionRequest:
    """Validate the input (``ValueError`` naming the field) and build the chat messages."""
    if not isinstance(prompt, str):
        raise ValueError(f"prompt must be a string; got {type(prompt).__name__}")
    text = prompt.strip()
    if not text:
        raise ValueError("prompt is empty: type a few words to extend")
    if len(text) > max_input_chars:
        raise ValueError(f"prompt is too long to extend: {len(text)} characters, at most {max_input_chars}")
    check_lang(lang)
    task = normalize_task(task)
    kind = extension_kind(task, has_image)
    source = detect_language(text)
    cap = max_chars if max_chars is not None else DEFAULT_MAX_CHARS[(kind, lang)]
    if cap < 1:
        raise ValueError(f"max_chars must be at least 1; got {cap}")
    messages = (
        {"role": "system", "content": system_prompt(kind, lang, source_lang=source)},
        {"role": "user", "content": text},
    )
    return ExtensionRequest(text, task, kind, lang, source, bool(has_image), cap, messages)


# ---------------------------------------------------------------------------------- answer cleanup
_THINK_BLOCK_RE = re.compile(r"<(think|thinking|reasoning)>.*?</\1>", re.I | re.S)
_THINK_OPEN_RE = re.compile(r"<(?:think|thinking|reasoning)>", re.I)
_THINK_CLOSE_RE = re.compile(r"</(?:think|thinking|reasoning)>", re.I)
_FENCE_RE = re.compile(r"^```[\w-]*\s*\n?(.*?)\n?```$", re.S)
_LABEL_RE = re.compile(
    r"""^\s*(?:[#>*_\-]+\s*)*                                   # markdown heading / bullet / bold
    (?:(?:here\s+is|here's)\s+(?:the|your|an?)\s+)?
    (?:(?:final|rewritten|extended|enhanced|improved|expanded|revised|optimi[sz]ed|new|video|english|chinese)\s+)*
    (?:prompt|output|answer|result|description)
    |^\s*(?:[#>*_\-]+\s*)*(?:改写后的?|扩写后的?|优化后的?|最终的?|新的?)?(?:视频)?(?:提示词|prompt|描述|结果|输出)
    """,
    re.I | re.X,
)
_LABEL_TAIL_RE = re.compile(r"\s*(?:\*\*|__)?\s*[:：]\s*(?:\*\*|__)?\s*")
_QUOTES = {'"': '"', "'": "'", "“": "”", "‘": "’", "「": "」", "『": "』", "«": "»", "`": "`", "《": "》"}
_CJK = "\u3000-\u303f\u3400-\u4dbf\u4e00-\u9fff\uff00-\uffef"
_CJK_GAP_RE = re.compile(rf"(?<=[{_CJK}])\s+(?=[{_CJK}])")
_SENTENCE_END_RE = re.compile(r"[.!?](?=\s)|[。！？]")
_REFUSAL_RE = re.compile(
    r"^\W*(?:i'?m\s+sorry|i\s+am\s+sorry|sorry\b|i\s+can(?:no|')t|i\s+(?:am|'m)\s+(?:not\s+able|unable)|as\s+an\s+ai"
    r"|i\s+won'?t|i\s+will\s+not|i\s+must\s+decline|抱歉|对不起|很抱歉|我无法|我不能|죄송|미안)",
    re.I,
)


def _strip_label(text: str) -> str:
    m = _LABEL_RE.match(text)
    if m:
        tail = _LABEL_TAIL_RE.match(text, m.end())
        if tail:
            return text[tail.end():]
    return text


def _is_heading(line: str) -> bool:
    """A first line to drop: "Here is the prompt:", "## Enhanced prompt", "**Prompt**"."""
    line = line.strip()
    if not line or len(line) > 80:
        return False
    if line.endswith((":", "：")) or line.startswith("#"):
        return True
    m = _LABEL_RE.match(line)
    return m is not None and not line[m.end():].strip(" *_:：")


def _strip_quotes(text: str) -> str:
    """Remove one pair of surrounding quotes at a time, only when the inside holds no such quote."""
    while len(text) >= 2 and _QUOTES.get(text[0]) == text[-1] and text[0] not in text[1:-1] and text[-1] not in text[1:-1]:
        text = text[1:-1].strip()
    return text


def truncate_prompt(text: str, max_chars: int) -> str:
    """Cut ``text`` to at most ``max_chars``: at the last sentence end if one is in the second half,
    else at the last space (English), else hard."""
    if len(text) <= max_chars:
        return text
    head = text[:max_chars]
    ends = [m.end() for m in _SENTENCE_END_RE.finditer(head)]
    if ends and ends[-1] >= max_chars // 2:
        return head[:ends[-1]].rstrip()
    space = head.rfind(" ")
    if space >= max_chars // 2:
        head = head[:space]
    return head.rstrip(" ,，、;；:：")


def clean_answer(text: str, *, max_chars: int | None = None) -> str:
    """An LLM answer as a bare one-paragraph prompt.

    Drops reasoning blocks (``<think>…</think>``; an unclosed one drops the rest, a lone closing tag
    drops what precedes it), a code fence, a leading "Prompt:" / "改写后的提示词：" style label or a short
    "Here is …:" line, surrounding quotes; joins the lines; cuts to ``max_chars``.
    """
    text = _THINK_BLOCK_RE.sub("", text)
    closes = list(_THINK_CLOSE_RE.finditer(text))
    if closes:
        text = text[closes[-1].end():]
    opened = _THINK_OPEN_RE.search(text)
    if opened:
        text = text[:opened.start()]
    text = text.strip()
    fence = _FENCE_RE.match(text)
    if fence:
        text = fence.group(1).strip()
    for _ in range(3):  # a label, then quotes, possibly nested ("Prompt: "…"")
        before = text
        lines = text.split("\n", 1)
        if len(lines) == 2 and _is_heading(lines[0]):
            text = lines[1].strip()
        text = _strip_quotes(_strip_label(text).strip())
        if text == before:
            break
    text = " ".join(text.split())
    text = _CJK_GAP_RE.sub("", text)
    if max_chars is not None:
        text = truncate_prompt(text, max_chars)
    return text


# ---------------------------------------------------------------------------------- LLM base class
class LLMExtender(abc.ABC):
    """Shared logic of the LLM backends: validation, messages, answer checks and the fallback."""

    name: str = "llm"

    def __init__(
        self,
        *,
        max_chars: int | None = None,
        min_chars: int | None = None,
        max_input_chars: int = DEFAULT_MAX_INPUT_CHARS,
    ) -> None:
        if max_chars is not None and max_chars < 1:
            raise ValueError(f"max_chars must be at least 1; got {max_chars}")
        if min_chars is not None and min_chars < 0:
            raise ValueError(f"min_chars must be 0 or more; got {min_chars}")
        self.max_chars = max_chars
        self.min_chars = min_chars
        self.max_input_chars = max_input_chars

    @abc.abstractmethod
    def _complete(self, request: ExtensionRequest) -> str:
        """The model's raw answer to ``request.messages``; raise an :class:`ExtensionError` on failure."""

    def extend(self, prompt: str, *, task: str = "t2v", lang: str = "en", has_image: bool = False) -> ExtensionResult:
        request = prepare_request(
            prompt, task=task, lang=lang, has_image=has_image, max_chars=self.max_chars,
            max_input_chars=self.max_input_chars,
        )
        start = time.monotonic()
        try:
            raw = self._complete(request)
        except ExtensionError as e:
            return self._fallback(request, e.reason, str(e), start)
        except Exception as e:  # noqa: BLE001 - a backend must never break the caller
            return self._fallback(request, "error", f"{type(e).__name__}: {e}", start)
        if not isinstance(raw, str):
            return self._fallback(request, "malformed", f"the backend returned {type(raw).__name__}, not text", start)
        return self._accept(request, raw, start)

    def _fallback(self, request: ExtensionRequest, reason: str, detail: str, start: float,
                  raw: str | None = None) -> ExtensionResult:
        detail = detail.strip() or reason
        return ExtensionResult(
            prompt=request.prompt,
            ok=False,
            backend=self.name,
            warning=f"{detail}; the original prompt was kept",
            reason=reason,
            raw=raw,
            elapsed_s=time.monotonic() - start,
        )

    def _accept(self, request: ExtensionRequest, raw: str, start: float) -> ExtensionResult:
        full = clean_answer(raw)
        answer = truncate_prompt(full, request.max_chars)
        min_chars = self.min_chars if self.min_chars is not None else DEFAULT_MIN_CHARS[request.lang]
        if not answer:
            return self._fallback(request, "empty", "the model gave an empty answer", start, raw)
        if _REFUSAL_RE.match(answer):
            return self._fallback(request, "refusal", f"the model declined: {answer[:120]!r}", start, raw)
        if len(answer) < min_chars:
            return self._fallback(
                request, "too_short", f"the answer is too short ({len(answer)} < {min_chars} characters): {answer!r}",
                start, raw,
            )
        got = detect_language(answer)
        if got != request.lang:
            want_name, got_name = LANGUAGE_NAMES[request.lang][0], LANGUAGE_NAMES.get(got, LANGUAGE_NAMES["other"])[0]
            return self._fallback(
                request, "wrong_language", f"the answer is in {got_name}, not {want_name}", start, raw,
            )
        warning = reason = None
        if len(answer) < len(full):
            warning, reason = f"the answer was cut to {request.max_chars} characters", "truncated"
        return ExtensionResult(answer, True, self.name, warning, reason, raw, time.monotonic() - start)
