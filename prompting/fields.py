"""The prompt-formula fields: free text for subject / scene / motion plus vocabulary choices."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

from .vocabulary import FIXED_CAMERA, GROUPS, STYLE_GROUP, load_vocabulary

__all__ = ["TEXT_FIELDS", "Conflict", "PromptFields", "find_conflicts", "resolve_conflicts"]

#: The free-text fields, in formula order.
TEXT_FIELDS: tuple[str, ...] = ("subject", "subject_desc", "scene", "scene_desc", "motion", "motion_desc")
_DICT_KEYS = (*TEXT_FIELDS, "aesthetics", "style", "fixed_camera")


@dataclass(frozen=True)
class PromptFields:
    """What the prompt assistant's form holds.

    ``aesthetics`` maps a group id (any of :data:`GROUPS` except ``"style"``) to one term id of that
    group. It is normalised on construction, so equal choices compare equal:

    * empty values are dropped and the mapping is ordered like :data:`GROUPS` (and read-only);
    * a ``"style"`` key moves to :attr:`style` (it must agree with ``style`` if both are given);
    * the ``fixed_camera`` term under ``"camera_movement"`` becomes ``fixed_camera=True``.

    Unknown groups or term ids raise ``ValueError`` naming the field and the allowed values.
    """

    subject: str = ""
    subject_desc: str = ""
    scene: str = ""
    scene_desc: str = ""
    motion: str = ""
    motion_desc: str = ""
    aesthetics: Mapping[str, str] = field(default_factory=dict)
    style: str | None = None
    fixed_camera: bool = False

    def __post_init__(self) -> None:
        vocab = load_vocabulary()
        for name in TEXT_FIELDS:
            value = getattr(self, name)
            if not isinstance(value, str):
                raise ValueError(f"PromptFields.{name} must be a string; got {type(value).__name__}")
        if not isinstance(self.fixed_camera, bool):
            raise ValueError(f"PromptFields.fixed_camera must be a bool; got {self.fixed_camera!r}")
        if not isinstance(self.aesthetics, Mapping):
            raise ValueError(
                f"PromptFields.aesthetics must be a mapping group id -> term id; got {type(self.aesthetics).__name__}"
            )

        style = self.style or None
        fixed = self.fixed_camera
        chosen: dict[str, str] = {}
        for group, term_id in self.aesthetics.items():
            if term_id in (None, ""):
                continue
            if group not in GROUPS:
                raise ValueError(
                    f"PromptFields.aesthetics: unknown group {group!r}; allowed: {', '.join(GROUPS)}"
                )
            allowed = [t.id for t in vocab.groups[group]]
            if term_id not in allowed:
                raise ValueError(
                    f"PromptFields.aesthetics[{group!r}]: unknown term {term_id!r}; allowed: {', '.join(allowed)}"
                )
            if group == STYLE_GROUP:
                if style is not None and style != term_id:
                    raise ValueError(
                        f"PromptFields: style {style!r} and aesthetics['style'] {term_id!r} disagree; give one"
                    )
                style = term_id
            elif term_id == FIXED_CAMERA:
                fixed = True
            else:
                chosen[group] = term_id
        if style is not None:
            allowed = [t.id for t in vocab.groups[STYLE_GROUP]]
            if style not in allowed:
                raise ValueError(f"PromptFields.style: unknown style {style!r}; allowed: {', '.join(allowed)}")
        ordered = {g: chosen[g] for g in GROUPS if g in chosen}
        object.__setattr__(self, "aesthetics", MappingProxyType(ordered))
        object.__setattr__(self, "style", style)
        object.__setattr__(self, "fixed_camera", fixed)

    def __hash__(self) -> int:
        return hash((*(getattr(self, n) for n in TEXT_FIELDS), tuple(self.aesthetics.items()), self.style,
                     self.fixed_camera))

    @property
    def term_ids(self) -> tuple[str, ...]:
        """Every chosen term id: style first, then aesthetics in group order, then fixed camera."""
        ids = ([self.style] if self.style else []) + list(self.aesthetics.values())
        return tuple(ids + ([FIXED_CAMERA] if self.fixed_camera else []))

    def is_empty(self) -> bool:
        return not any(getattr(self, n).strip() for n in TEXT_FIELDS) and not self.term_ids

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict (for share links and history); :meth:`from_dict` reverses it."""
        return {
            **{n: getattr(self, n) for n in TEXT_FIELDS},
            "aesthetics": dict(self.aesthetics),
            "style": self.style,
            "fixed_camera": self.fixed_camera,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], *, strict: bool = True) -> PromptFields:
        """Rebuild from :meth:`to_dict` output. Missing keys take their defaults; ``None`` text is "".

        ``strict=False`` drops unknown keys, groups and term ids (an old history entry or a link made by
        another version) instead of raising ``ValueError``.
        """
        if not isinstance(d, Mapping):
            raise ValueError(f"PromptFields.from_dict expects a mapping; got {type(d).__name__}")
        unknown = [k for k in d if k not in _DICT_KEYS]
        if unknown and strict:
            raise ValueError(f"PromptFields: unknown key(s) {', '.join(map(repr, unknown))}; allowed: {', '.join(_DICT_KEYS)}")
        kwargs: dict[str, Any] = {}
        for name in TEXT_FIELDS:
            value = d.get(name)
            kwargs[name] = "" if value is None else value
        aesthetics = d.get("aesthetics") or {}
        style = d.get("style") or None
        if not strict:
            vocab = load_vocabulary()
            if isinstance(aesthetics, Mapping):
                aesthetics = {
                    g: t for g, t in aesthetics.items()
                    if g in GROUPS and isinstance(t, str) and t in vocab and vocab.term(t).group == g
                }
            else:
                aesthetics = {}
            if not (isinstance(style, str) and style in vocab and vocab.term(style).group == STYLE_GROUP):
                style = None
            kwargs = {k: v if isinstance(v, str) else str(v) for k, v in kwargs.items()}
        kwargs["aesthetics"] = aesthetics
        kwargs["style"] = style
        fixed = d.get("fixed_camera", False)
        kwargs["fixed_camera"] = bool(fixed) if not strict or isinstance(fixed, bool) else fixed
        return cls(**kwargs)


@dataclass(frozen=True)
class Conflict:
    """Two chosen terms that contradict each other; the builder keeps ``kept`` and drops ``dropped``."""

    kept: str
    dropped: str
    reason: str

    def message(self, lang: str = "en") -> str:
        vocab = load_vocabulary()
        kept, dropped = vocab.label(self.kept, lang), vocab.label(self.dropped, lang)
        if lang == "zh":
            return f"“{dropped}”与“{kept}”矛盾，已省略“{dropped}”"
        return f"{dropped!r} contradicts {kept!r} ({self.reason}); {dropped!r} is left out"


def find_conflicts(fields: PromptFields) -> tuple[Conflict, ...]:
    """The contradictory pairs among the chosen terms (rules in ``presets/vocabulary.json``)."""
    chosen = set(fields.term_ids)
    out = []
    for rule in load_vocabulary().conflicts:
        if rule.keep in chosen:
            out.extend(Conflict(rule.keep, d, rule.reason) for d in rule.drop if d in chosen)
    return tuple(out)


def resolve_conflicts(fields: PromptFields) -> tuple[PromptFields, tuple[Conflict, ...]]:
    """``fields`` without the losing term of each conflict, and the conflicts that were resolved."""
    conflicts = find_conflicts(fields)
    if not conflicts:
        return fields, ()
    dropped = {c.dropped for c in conflicts}
    aesthetics = {g: t for g, t in fields.aesthetics.items() if t not in dropped}
    style = None if fields.style in dropped else fields.style
    return replace(fields, aesthetics=aesthetics, style=style), conflicts
