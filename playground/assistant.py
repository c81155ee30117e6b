"""Glue between the prompt-assistant form and the ``prompting`` package.

The form has free-text formula fields (subject, scene, motion and their descriptions), one dropdown
per aesthetic vocabulary group (light source, lighting type, time of day, shot size, lens, color
tone, ...), a visual-style dropdown and a fixed-camera checkbox. Form values travel by name; this
module turns them into ``prompting.PromptFields`` and back, and builds the live preview.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

from prompting import FIXED_CAMERA, MODE_GROUPS, MODE_TEXT_FIELDS, STYLE_GROUP, TEXT_FIELDS
from prompting.vocabulary import LABEL_LANGS

__all__ = [
    "FIXED_CAMERA",
    "NONE_CHOICE",
    "STYLE_GROUP",
    "TEXT_FIELDS",
    "aesthetic_groups",
    "build_preview",
    "conflicts",
    "examples",
    "fields_from_values",
    "group_choices",
    "group_key",
    "mode_notes",
    "term_key",
    "values_from_fields",
    "vocab_translations",
]

NONE_CHOICE = ""


@functools.lru_cache(maxsize=1)
def _vocab() -> Any:
    import prompting

    return prompting.load_vocabulary()


def group_key(group: str) -> str:
    return f"vocab.group.{group}"


def term_key(term_id: str) -> str:
    return f"vocab.term.{term_id}"


def aesthetic_groups() -> list[str]:
    """Vocabulary groups shown as dropdowns (all official groups except the style, shown apart)."""
    import prompting

    return [g for g in prompting.GROUPS if g != STYLE_GROUP]


def group_choices(group: str) -> list[tuple[str, str]]:
    """``[(i18n key, term id), ...]`` for a group, in vocabulary order."""
    return [(term_key(term_id), term_id) for _label, term_id in _vocab().choices(group, "en")]


def vocab_translations() -> dict[str, dict[str, str]]:
    """I18n entries for every group and term label, en / ko / zh, all from the vocabulary (by id)."""
    import prompting

    vocab = _vocab()
    out: dict[str, dict[str, str]] = {lang: {} for lang in LABEL_LANGS}
    for lang in LABEL_LANGS:
        for group in prompting.GROUPS:
            out[lang][group_key(group)] = vocab.group_label(group, lang)
            for label, term_id in vocab.choices(group, lang):
                out[lang][term_key(term_id)] = label
    return out


def fields_from_values(values: Mapping[str, Any]) -> Any:
    """Form values (TEXT_FIELDS, one key per aesthetic group, "style", "fixed_camera") -> PromptFields."""
    import prompting

    aesthetics = {g: values[g] for g in aesthetic_groups() if values.get(g)}
    return prompting.PromptFields(
        **{k: str(values.get(k) or "").strip() for k in TEXT_FIELDS},
        aesthetics=aesthetics,
        style=values.get("style") or None,
        fixed_camera=bool(values.get("fixed_camera")),
    )


def values_from_fields(fields: Mapping[str, Any]) -> dict[str, Any]:
    """A stored ``PromptFields.to_dict()`` -> form values (every form key present, blanks for unset)."""
    import prompting

    stored = {k: v for k, v in fields.items() if k not in ("mode", "lang")}  # ours, not PromptFields'
    pf = prompting.PromptFields.from_dict(stored, strict=False)  # old entries: drop unknown terms
    values: dict[str, Any] = {k: getattr(pf, k) or "" for k in TEXT_FIELDS}
    aesthetics = dict(pf.aesthetics or {})
    for g in aesthetic_groups():
        values[g] = aesthetics.get(g) or NONE_CHOICE
    values["style"] = pf.style or NONE_CHOICE
    values["fixed_camera"] = bool(pf.fixed_camera)
    return values


def build_preview(values: Mapping[str, Any], mode: str, lang: str) -> tuple[str, dict[str, Any] | None]:
    """The prompt the formula builds from the form, and the fields to store with the result.

    Returns ``("", None)`` while the form is empty, so an untouched assistant stores nothing.
    """
    import prompting

    fields = fields_from_values(values)
    if fields.is_empty():
        return "", None
    text = prompting.build_prompt(fields, mode=mode, lang=lang)
    return text, {**fields.to_dict(), "mode": mode, "lang": lang}


def conflicts(values: Mapping[str, Any], lang: str) -> list[str]:
    """Messages for contradictory choices (the builder keeps one of each pair and drops the other)."""
    import prompting

    return [c.message(lang) for c in prompting.find_conflicts(fields_from_values(values))]


def mode_notes(values: Mapping[str, Any], mode: str, lang: str = "en") -> list[str]:
    """What the chosen formula leaves out of the prompt (filled fields and chosen terms it does not use).

    ``lang`` is the UI language (en, ko or zh). Empty when everything filled in is used.
    """
    from .i18n import tr

    if mode not in MODE_GROUPS:
        raise ValueError(f"mode must be one of {', '.join(MODE_GROUPS)}; got {mode!r}")
    fields = fields_from_values(values)
    used_text, used_groups = MODE_TEXT_FIELDS[mode], MODE_GROUPS[mode]
    left_out = [tr(f"assistant.{name}", lang) for name in TEXT_FIELDS
                if name not in used_text and getattr(fields, name).strip()]
    vocab = _vocab()
    label_lang = lang if lang in LABEL_LANGS else "en"
    chosen = dict(fields.aesthetics)
    if fields.style:
        chosen[STYLE_GROUP] = fields.style
    for group, term_id in chosen.items():
        if group not in used_groups:
            left_out.append(vocab.label(term_id, label_lang))
    if not left_out:
        return []
    mode_label = tr(f"assistant.mode_{mode}", lang).split(":")[0].split("：")[0]
    return [tr("assistant.ignored", lang, mode=mode_label, items=", ".join(left_out))]


def examples(task: str) -> list[dict[str, Any]]:
    """The task's example prompts (title, prompt, lang, mode, fields) from ``presets/examples.json``."""
    import prompting

    return prompting.example_prompts(task)
