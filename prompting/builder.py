"""The official prompt formulas, as text: build a prompt from fields, and parse one back.

Formulas (official Wan 2.2 guide):

* ``basic``    : subject + scene + motion
* ``advanced`` : subject (+ description) + scene (+ description) + motion (+ description)
                 + aesthetic control + stylization
* ``i2v``      : motion (+ description) + camera movement; the image supplies subject, scene and style

Layout, like the official examples: the chosen style comes first, then the aesthetic terms as a
comma-separated run, then the description (English: subject and scene in one sentence, the motion in
the next; basic mode writes subject, scene and motion as one sentence), and the camera movement last. English output uses
sentences (", " and ". "), Chinese output uses full-width punctuation ("，" and "。"). A term is written
once, in the output language; a term the free text already names is not repeated; of two
contradictory terms only the winner of the rule in ``presets/vocabulary.json`` is written (see
:func:`prompting.find_conflicts`). The fixed-camera choice applies in every mode.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from .fields import TEXT_FIELDS, PromptFields, resolve_conflicts
from .vocabulary import CAMERA_GROUPS, FIXED_CAMERA, GROUPS, STYLE_GROUP, check_lang, load_vocabulary, normalize_text

__all__ = ["MODES", "MODE_GROUPS", "MODE_TEXT_FIELDS", "build_prompt", "parse_prompt"]

MODES: tuple[str, ...] = ("basic", "advanced", "i2v")
#: The vocabulary groups each mode writes (the fixed-camera choice is written in every mode).
MODE_GROUPS: Mapping[str, tuple[str, ...]] = MappingProxyType({
    "basic": (),
    "advanced": GROUPS,
    "i2v": ("motion_type", "emotion", "camera_movement", "camera_movement_advanced"),
})
#: The free-text fields each mode writes.
MODE_TEXT_FIELDS: Mapping[str, tuple[str, ...]] = MappingProxyType({
    "basic": ("subject", "scene", "motion"),
    "advanced": TEXT_FIELDS,
    "i2v": ("motion", "motion_desc"),
})

_TRIM = " \t\r\n,.;:!?，。；：！？、…"
# Clause separators: commas and full stops of both languages ("." only before a space or the end,
# so "3.5" and "Mr.Smith" stay whole), semicolons, question/exclamation marks and line breaks.
_SEP_RE = re.compile(r"(?:\s*(?:[,，、;；。！？!?\n]|\.(?=\s|$))\s*)+")
_SENTENCE_SEP = set("。！？!?.\n")


def _check_mode(mode: str) -> str:
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(map(repr, MODES))}; got {mode!r}")
    return mode


def _clean_piece(text: str) -> str:
    return " ".join(text.split()).strip(_TRIM)


def _sentence(text: str) -> str:
    """Capitalise the first letter and end with a full stop (English)."""
    if text[:1].islower():
        text = text[0].upper() + text[1:]
    return text + "."


def _lower_tag(label: str) -> str:
    """Lower-case a label's first letter for use inside a run ("Medium shot" -> "medium shot"),
    leaving acronym-like starts alone ("3D cartoon style", "ECU")."""
    if len(label) > 1 and label[0].isupper() and not label[1].isupper():
        return label[0].lower() + label[1:]
    return label


@dataclass(frozen=True)
class _Parts:
    tags: tuple[str, ...]
    description: tuple[str, ...]  # subject and scene pieces
    action: tuple[str, ...]  # motion pieces
    camera: tuple[str, ...]


def _parts(fields: PromptFields, mode: str, lang: str) -> _Parts:
    vocab = load_vocabulary()
    fields, _ = resolve_conflicts(fields)
    text_names = MODE_TEXT_FIELDS[mode]
    seen: set[str] = set()

    def take(names: tuple[str, ...]) -> tuple[str, ...]:
        out = []
        for name in names:
            if name not in text_names:
                continue
            piece = _clean_piece(getattr(fields, name))
            key = normalize_text(piece)
            if piece and key not in seen:
                seen.add(key)
                out.append(piece)
        return tuple(out)

    description = take(("subject", "subject_desc", "scene", "scene_desc"))
    action = take(("motion", "motion_desc"))
    mentioned = vocab.mentions(" ".join(description + action))

    def labels(ids: list[str]) -> tuple[str, ...]:
        out = []
        for tid in ids:
            label = vocab.label(tid, lang)
            key = normalize_text(label)
            if tid not in mentioned and key not in seen:
                seen.add(key)
                out.append(label)
        return tuple(out)

    groups = MODE_GROUPS[mode]
    tag_ids = [fields.style] if fields.style and STYLE_GROUP in groups else []
    tag_ids += [t for g, t in fields.aesthetics.items() if g in groups and g not in CAMERA_GROUPS]
    camera_ids = [t for g, t in fields.aesthetics.items() if g in groups and g in CAMERA_GROUPS]
    if fields.fixed_camera:
        camera_ids.append(FIXED_CAMERA)
    return _Parts(labels(tag_ids), description, action, labels(camera_ids))


def build_prompt(fields: PromptFields, *, mode: str = "basic", lang: str = "en") -> str:
    """The prompt the formula ``mode`` builds from ``fields``, written in ``lang`` ("en" or "zh").

    Returns "" when the fields hold nothing that ``mode`` uses (for example only aesthetic choices
    in ``basic`` mode). Free text is written as typed (it is not translated); vocabulary terms are
    written in ``lang``. Raises ``ValueError`` for an unknown mode or language.
    """
    _check_mode(mode)
    check_lang(lang)
    if not isinstance(fields, PromptFields):
        raise ValueError(f"fields must be a PromptFields; got {type(fields).__name__}")
    p = _parts(fields, mode, lang)
    if lang == "zh":
        sentences = []
        body = p.tags + p.description + p.action
        if body:
            sentences.append("，".join(body) + "。")
        if p.camera:
            sentences.append("，".join(p.camera) + "。")
        return "".join(sentences)
    sentences = []
    if p.tags:
        sentences.append(_sentence(", ".join([p.tags[0], *map(_lower_tag, p.tags[1:])])))
    if mode == "basic" and (p.description or p.action):  # one sentence: "A fox, in the snow, trots."
        sentences.append(_sentence(", ".join(p.description + p.action)))
    else:
        if p.description:
            sentences.append(_sentence(", ".join(p.description)))
        if p.action:
            sentences.append(_sentence(", ".join(p.action)))
    if p.camera:
        sentences.append(_sentence(", ".join([p.camera[0], *map(_lower_tag, p.camera[1:])])))
    return " ".join(sentences)


def parse_prompt(text: str, *, rest_field: str = "subject") -> PromptFields:
    """Read vocabulary terms (en or zh, any official spelling) back out of a prompt.

    A clause that is exactly a term is taken out of the text; a distinctive spelling inside prose
    (see :mod:`prompting.vocabulary`) is recognised but left in place. The first term found for a
    group wins; later ones of the same group stay in the text. What is left of the text goes to
    ``rest_field`` (default "subject"; use "motion" for an image-to-video prompt, so that building it
    again in ``i2v`` mode keeps the text). ``build_prompt(parse_prompt(p))`` reproduces a built
    prompt ``p`` in the same mode and language.
    """
    if not isinstance(text, str):
        raise ValueError(f"text must be a string; got {type(text).__name__}")
    if rest_field not in TEXT_FIELDS:
        raise ValueError(f"rest_field must be one of {', '.join(TEXT_FIELDS)}; got {rest_field!r}")
    vocab = load_vocabulary()

    # Split into clauses, each with the separator that follows it.
    clauses: list[list[str]] = []  # [clause, separator]
    pos = 0
    for m in _SEP_RE.finditer(text):
        clauses.append([text[pos:m.start()], m.group()])
        pos = m.end()
    clauses.append([text[pos:], ""])

    # Candidate terms in text order: (position, term, clause index if the clause is the term).
    found = []
    offset = 0
    for i, (clause, sep) in enumerate(clauses):
        term = vocab.lookup(clause) if clause.strip() else None
        if term is not None:
            found.append((offset, term, i))
        else:
            found.extend((offset + m.start, m.term, None) for m in vocab.find_embedded(clause))
        offset += len(clause) + len(sep)
    found.sort(key=lambda f: f[0])

    aesthetics: dict[str, str] = {}
    style: str | None = None
    fixed = False
    taken: set[str] = set()
    consumed: set[int] = set()
    for _, term, clause_index in found:
        key = "camera_movement" if term.id == FIXED_CAMERA else term.group
        if key in taken:
            continue
        taken.add(key)
        if term.group == STYLE_GROUP:
            style = term.id
        elif term.id == FIXED_CAMERA:
            fixed = True
        else:
            aesthetics[term.group] = term.id
        if clause_index is not None:
            consumed.add(clause_index)

    # Rebuild the rest; a removed clause passes its separator on when it is the stronger one
    # ("A cat, medium shot. It runs" -> "A cat. It runs").
    kept: list[list[str]] = []
    for i, (clause, sep) in enumerate(clauses):
        if i not in consumed:
            if clause.strip() or kept:
                kept.append([clause, sep])
            continue
        if kept and _strength(sep) > _strength(kept[-1][1]):
            kept[-1][1] = sep
    rest = "".join(c + s for c, s in kept).strip(_TRIM)
    return PromptFields(**{rest_field: rest}, aesthetics=aesthetics, style=style, fixed_camera=fixed)


def _strength(sep: str) -> int:
    if not sep:
        return 0
    return 2 if any(ch in _SENTENCE_SEP for ch in sep.strip(" ") or sep) else 1
