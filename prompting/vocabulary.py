"""The official Wan 2.2 aesthetic vocabulary (zh + en), loaded from ``presets/vocabulary.json``.

A :class:`Term` is one dictionary entry (e.g. ``medium_shot`` = "Medium shot" / 中景 / 미디엄 샷) in
one :data:`GROUPS` group. Every group and term has a label in each of :data:`LABEL_LANGS`, keyed by
its id in the JSON: ``en`` and ``zh`` are the official terms the builder writes; ``ko`` is a display
label for the app only (never written into a prompt, never parsed). The :class:`Vocabulary` answers UI questions (labels, dropdown choices) and
finds terms in free text (used by the parser and by the builder to avoid repeating a term).

Matching rules, shared by the parser and the builder so that they always agree:

* a *clause* (text between commas / full stops, in either language) that is exactly one of a term's
  spellings (label or alias, case- and whitespace-insensitive) is that term;
* inside longer prose only *distinctive* spellings are recognised: English ones of two words or
  more (word-bounded), Chinese ones of three characters or more. Single words such as "happy" or
  two-character Chinese words such as 白天 are too common in ordinary prose to mean the term.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

__all__ = [
    "GROUPS",
    "LABEL_LANGS",
    "LANGS",
    "PRESETS_DIR",
    "STYLE_GROUP",
    "CAMERA_GROUPS",
    "FIXED_CAMERA",
    "ConflictRule",
    "Term",
    "TermMatch",
    "Vocabulary",
    "load_vocabulary",
    "normalize_text",
    "check_label_lang",
    "check_lang",
]

#: Vocabulary group ids, in the order the builder writes their terms.
GROUPS: tuple[str, ...] = (
    "light_source",
    "lighting",
    "time_of_day",
    "shot_size",
    "composition",
    "lens",
    "camera_angle",
    "shot_type",
    "camera_movement",
    "camera_movement_advanced",
    "color_tone",
    "style",
    "special_effect",
    "motion_type",  # sports / actions (not "motion": that is a PromptFields text field)
    "emotion",
)
#: The group whose term goes to ``PromptFields.style`` (not to ``aesthetics``).
STYLE_GROUP = "style"
#: Groups that describe how the camera moves; the builder writes them last, as their own sentence.
CAMERA_GROUPS: tuple[str, ...] = ("camera_movement", "camera_movement_advanced")
#: The "fixed camera" term id (group ``camera_movement``), also set by ``PromptFields.fixed_camera``.
FIXED_CAMERA = "fixed_camera"
#: Output languages of the builder and the extenders.
LANGS: tuple[str, ...] = ("en", "zh")
#: Languages of the display labels (group and term names in the UI): the output languages and Korean.
LABEL_LANGS: tuple[str, ...] = ("en", "ko", "zh")

PRESETS_DIR = Path(__file__).resolve().parent.parent / "presets"

_CJK_RE = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_MIN_EMBEDDED_EN_WORDS = 2
_MIN_EMBEDDED_ZH_CHARS = 3


def check_lang(lang: str) -> str:
    """Return ``lang`` if it is an output language, else raise ``ValueError`` naming the choices."""
    if lang not in LANGS:
        raise ValueError(f"lang must be one of {', '.join(map(repr, LANGS))}; got {lang!r}")
    return lang


def check_label_lang(lang: str) -> str:
    """Return ``lang`` if the vocabulary has labels in it, else raise ``ValueError`` naming the choices."""
    if lang not in LABEL_LANGS:
        raise ValueError(f"label lang must be one of {', '.join(map(repr, LABEL_LANGS))}; got {lang!r}")
    return lang


def normalize_text(text: str) -> str:
    """Casefold and collapse whitespace: the key under which term spellings are compared."""
    return " ".join(text.casefold().split())


@dataclass(frozen=True)
class Term:
    """One vocabulary entry. ``en``/``zh`` are the labels the builder writes; ``ko`` is a display
    label only (not a spelling); aliases only parse."""

    id: str
    en: str
    zh: str
    ko: str
    group: str
    aliases_en: tuple[str, ...] = ()
    aliases_zh: tuple[str, ...] = ()
    note: str = ""

    def label(self, lang: str) -> str:
        """The label in ``lang`` ("en", "ko" or "zh")."""
        return {"en": self.en, "ko": self.ko, "zh": self.zh}[check_label_lang(lang)]

    @property
    def spellings(self) -> tuple[str, ...]:
        """Every spelling that means this term: labels first, then aliases."""
        return (self.en, self.zh, *self.aliases_en, *self.aliases_zh)


@dataclass(frozen=True)
class ConflictRule:
    """``keep`` and each of ``drop`` contradict each other; when both are chosen ``keep`` wins."""

    keep: str
    drop: tuple[str, ...]
    reason: str


@dataclass(frozen=True)
class TermMatch:
    """A term found in text: ``text[start:end]`` is the spelling that matched."""

    term: Term
    start: int
    end: int


def _label(entry: Mapping[str, object], lang: str, what: str) -> str:
    """``entry[lang]``: a non-empty string, else ``ValueError`` naming the group or term."""
    value = entry.get(lang)
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"vocabulary: {what} has no {lang!r} label")
    return value


def _is_distinctive(spelling: str) -> bool:
    if _CJK_RE.search(spelling):
        return len(spelling.replace(" ", "")) >= _MIN_EMBEDDED_ZH_CHARS
    return len(spelling.split()) >= _MIN_EMBEDDED_EN_WORDS


def _spelling_pattern(spelling: str) -> str:
    body = r"\s+".join(re.escape(part) for part in spelling.split())
    if _CJK_RE.search(spelling):
        return body  # no word boundaries in Chinese
    return rf"(?<![\w-]){body}(?![\w-])"


@dataclass(frozen=True, eq=False)
class Vocabulary:
    """All groups and terms. Build it with :func:`load_vocabulary` (cached)."""

    groups: Mapping[str, tuple[Term, ...]]
    labels: Mapping[str, Mapping[str, str]]  # group id -> {lang: label} for every LABEL_LANGS lang
    conflicts: tuple[ConflictRule, ...] = ()
    _terms: Mapping[str, Term] = field(default_factory=dict, repr=False)
    _by_spelling: Mapping[str, Term] = field(default_factory=dict, repr=False)
    _embedded_re: re.Pattern[str] | None = field(default=None, repr=False)
    _embedded_terms: tuple[Term, ...] = field(default=(), repr=False)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> Vocabulary:
        """Build from the ``presets/vocabulary.json`` document; raise ``ValueError`` if malformed."""
        raw_groups = data.get("groups")
        if not isinstance(raw_groups, list):
            raise ValueError("vocabulary: 'groups' must be a list")
        groups: dict[str, tuple[Term, ...]] = {}
        labels: dict[str, Mapping[str, str]] = {}
        terms: dict[str, Term] = {}
        by_spelling: dict[str, Term] = {}
        for g in raw_groups:
            gid = g["id"]
            if gid not in GROUPS:
                raise ValueError(f"vocabulary: unknown group {gid!r}; expected one of {', '.join(GROUPS)}")
            labels[gid] = MappingProxyType({lang: _label(g, lang, f"group {gid!r}") for lang in LABEL_LANGS})
            group_terms = []
            for t in g["terms"]:
                term = Term(
                    id=t["id"],
                    en=_label(t, "en", f"term {t['id']!r}"),
                    zh=_label(t, "zh", f"term {t['id']!r}"),
                    ko=_label(t, "ko", f"term {t['id']!r}"),
                    group=gid,
                    aliases_en=tuple(t.get("aliases_en", ())),
                    aliases_zh=tuple(t.get("aliases_zh", ())),
                    note=t.get("note", ""),
                )
                if term.id in terms:
                    raise ValueError(f"vocabulary: duplicate term id {term.id!r}")
                for spelling in term.spellings:
                    key = normalize_text(spelling)
                    other = by_spelling.get(key)
                    if other is not None and other.id != term.id:
                        raise ValueError(
                            f"vocabulary: spelling {spelling!r} is used by both {other.id!r} and {term.id!r}"
                        )
                    by_spelling[key] = term
                terms[term.id] = term
                group_terms.append(term)
            groups[gid] = tuple(group_terms)
        missing = [g for g in GROUPS if g not in groups]
        if missing:
            raise ValueError(f"vocabulary: missing groups {', '.join(missing)}")
        if FIXED_CAMERA not in terms or terms[FIXED_CAMERA].group != "camera_movement":
            raise ValueError(f"vocabulary: the {FIXED_CAMERA!r} term must be in group 'camera_movement'")
        rules = []
        for c in data.get("conflicts", []):  # type: ignore[union-attr]
            rule = ConflictRule(keep=c["keep"], drop=tuple(c["drop"]), reason=c.get("reason", ""))
            for tid in (rule.keep, *rule.drop):
                if tid not in terms:
                    raise ValueError(f"vocabulary: conflict rule names unknown term {tid!r}")
            rules.append(rule)

        # One alternation for the distinctive spellings, longest first so that "extreme close-up"
        # wins over "close-up" and 极端全景 over 全景.
        embedded = sorted(
            {(s, t.id) for t in terms.values() for s in t.spellings if _is_distinctive(s)},
            key=lambda st: (-len(st[0]), st[0]),
        )
        pattern = "|".join(f"(?P<t{i}>{_spelling_pattern(s)})" for i, (s, _) in enumerate(embedded))
        return cls(
            groups=MappingProxyType(groups),
            labels=MappingProxyType(labels),
            conflicts=tuple(rules),
            _terms=MappingProxyType(terms),
            _by_spelling=MappingProxyType(by_spelling),
            _embedded_re=re.compile(pattern, re.IGNORECASE) if pattern else None,
            _embedded_terms=tuple(terms[tid] for _, tid in embedded),
        )

    # ------------------------------------------------------------------ lookups
    def __contains__(self, term_id: object) -> bool:
        return term_id in self._terms

    def __iter__(self) -> Iterator[Term]:
        for gid in GROUPS:
            yield from self.groups[gid]

    def term(self, term_id: str) -> Term:
        """The term with this id; ``ValueError`` if there is none."""
        try:
            return self._terms[term_id]
        except (KeyError, TypeError):
            raise ValueError(f"unknown vocabulary term id {term_id!r}") from None

    def check_group(self, group: str) -> str:
        if group not in self.groups:
            raise ValueError(f"group must be one of {', '.join(GROUPS)}; got {group!r}")
        return group

    def group_label(self, group: str, lang: str) -> str:
        """The group's display name, e.g. ``("shot_size", "zh") -> "景别"`` (``lang`` in LABEL_LANGS)."""
        return self.labels[self.check_group(group)][check_label_lang(lang)]

    def choices(self, group: str, lang: str) -> list[tuple[str, str]]:
        """Dropdown choices ``[(label, term id), ...]`` in vocabulary order (``lang`` in LABEL_LANGS)."""
        check_label_lang(lang)
        return [(t.label(lang), t.id) for t in self.groups[self.check_group(group)]]

    def label(self, term_id: str, lang: str) -> str:
        """The term's label in ``lang`` ("en", "ko" or "zh")."""
        return self.term(term_id).label(lang)

    def lookup(self, spelling: str) -> Term | None:
        """The term one of whose spellings is exactly ``spelling`` (case/space-insensitive)."""
        return self._by_spelling.get(normalize_text(spelling))

    def find_embedded(self, text: str) -> list[TermMatch]:
        """Distinctive spellings found anywhere in ``text``, left to right, never overlapping."""
        if self._embedded_re is None:
            return []
        out = []
        for m in self._embedded_re.finditer(text):
            index = int(m.lastgroup[1:])  # type: ignore[index]
            out.append(TermMatch(self._embedded_terms[index], m.start(), m.end()))
        return out

    def mentions(self, text: str) -> set[str]:
        """Ids of the terms that :meth:`find_embedded` finds in ``text``."""
        return {m.term.id for m in self.find_embedded(text)}


@functools.lru_cache(maxsize=4)
def _load(path: Path) -> Vocabulary:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"vocabulary file not found: {path} (expected presets/vocabulary.json)") from None
    return Vocabulary.from_json(data)


def load_vocabulary(path: str | Path | None = None) -> Vocabulary:
    """The vocabulary from ``presets/vocabulary.json`` (or ``path``); loaded once, then cached."""
    return _load(Path(path).resolve() if path is not None else PRESETS_DIR / "vocabulary.json")
