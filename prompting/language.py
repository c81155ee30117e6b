"""Which writing system a prompt uses (Hangul, Chinese characters, kana, Latin, other)."""

from __future__ import annotations

import unicodedata

__all__ = ["LANGUAGE_NAMES", "detect_language", "matches_language"]

#: Names used in the instructions we give an LLM, per detected language code.
LANGUAGE_NAMES: dict[str, tuple[str, str]] = {  # code -> (English name, Chinese name)
    "en": ("English", "英文"),
    "zh": ("Chinese", "中文"),
    "ko": ("Korean", "韩文"),
    "ja": ("Japanese", "日文"),
    "other": ("a language other than English or Chinese", "英文和中文以外的语言"),
    "unknown": ("an unknown language", "未知语言"),
}


def _script(ch: str) -> str | None:
    o = ord(ch)
    if 0xAC00 <= o <= 0xD7A3 or 0x1100 <= o <= 0x11FF or 0x3130 <= o <= 0x318F:
        return "ko"
    if 0x3040 <= o <= 0x30FF or 0x31F0 <= o <= 0x31FF:
        return "ja"
    if 0x3400 <= o <= 0x4DBF or 0x4E00 <= o <= 0x9FFF or 0xF900 <= o <= 0xFAFF:
        return "han"
    if ch.isalpha():
        name = unicodedata.name(ch, "")
        return "latin" if name.startswith("LATIN") else "other"
    return None


def detect_language(text: str) -> str:
    """"ko", "ja", "zh", "en", "other" or "unknown" (no letters at all).

    The script with the most weight wins: a Hangul syllable, kana or Chinese character weighs as much
    as three Latin letters (about one word); kana make the Chinese characters beside them Japanese.
    """
    counts = {"ko": 0, "ja": 0, "han": 0, "latin": 0, "other": 0}
    for ch in text:
        s = _script(ch)
        if s is not None:
            counts[s] += 1
    kana = counts["ja"]
    scores = {
        "ko": counts["ko"] * 3,
        "ja": (kana + counts["han"]) * 3 if kana else 0,
        "zh": 0 if kana else counts["han"] * 3,
        "en": counts["latin"],
        "other": counts["other"],
    }
    best = max(scores, key=lambda k: scores[k])
    return best if scores[best] else "unknown"


def matches_language(text: str, lang: str) -> bool:
    """Whether ``text`` is written in ``lang`` ("en" or "zh") by :func:`detect_language`."""
    return detect_language(text) == lang
