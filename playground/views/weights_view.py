"""What a task tab shows before the first run: the weights status line, the Draft / Official quality
presets and the English gloss of the (Chinese) default negative prompt.

The status line never names a server folder: the path detail goes to the server log
(``discovery.locate_weights`` logs it once per task).
"""

from __future__ import annotations

from typing import Any

import gradio as gr

from playground.discovery import WeightsStatus, how_to_get
from playground.i18n import tr
from playground.request import size_presets
from wan.configs import ModelSpec

from .common import t
from .endpoints import DEMO_DEFAULTS, default_values
from .safe import md

__all__ = ["DRAFT", "QualityPresets", "draft_values", "initial_values", "negative_gloss", "official_values",
           "status_markdown"]

DRAFT = {"frame_num": 49, "sampling_steps": 20}  # ~3 s of video in about a tenth of the official time


def official_values(spec: ModelSpec, demo: bool) -> dict[str, Any]:
    """The official size (largest landscape preset), frames and steps (in the demo: the demo sizes)."""
    values = default_values(spec, demo)
    if demo:  # the official frames and steps, on the small demo size
        values.update(frame_num=spec.frame_num, sampling_steps=spec.sample_steps)
    return values


def draft_values(spec: ModelSpec, demo: bool) -> dict[str, Any]:
    """A quick look: the 480p-class landscape size (the smallest landscape preset), 49 frames, 20 steps
    (in the demo: the demo's small values)."""
    values = default_values(spec, demo)
    if demo:
        values.update(DEMO_DEFAULTS)
        return values
    presets = size_presets(spec, demo=False)
    landscape = [p for p in presets if p.width > p.height] or presets
    values["size"] = min(landscape, key=lambda p: p.width * p.height).value
    values["frame_num"] = min(DRAFT["frame_num"], spec.frame_num)
    values["sampling_steps"] = min(DRAFT["sampling_steps"], spec.sample_steps)
    return values


initial_values = draft_values  # a first run should not be the slowest configuration


class QualityPresets:
    """Two buttons above the settings: Draft (fast) and Official quality; the estimate line shows the time."""

    def __init__(self, task: str, spec: ModelSpec, demo: bool) -> None:
        self.task, self.spec, self.demo = task, spec, demo

    def build(self) -> QualityPresets:
        with gr.Row(elem_classes=["quality-row"]):
            self.draft_btn = gr.Button(t("preset.draft"), size="sm", variant="secondary", elem_classes=["preset-draft"])
            self.official_btn = gr.Button(t("preset.official"), size="sm", variant="secondary",
                                          elem_classes=["preset-official"])
        return self

    def wire(self, form: dict[str, Any]) -> None:
        names = ("size", "frame_num", "sampling_steps")
        outputs = [form[n] for n in names]
        for btn, values in ((self.draft_btn, draft_values(self.spec, self.demo)),
                            (self.official_btn, official_values(self.spec, self.demo))):
            btn.click(lambda v=values: tuple(v[n] for n in names), outputs=outputs, queue=False,
                      show_progress="hidden", api_visibility="private")


def status_markdown(status: WeightsStatus, lang: str, *, public: bool, download: bool) -> str:
    """One line (found / demo / missing), and when missing a folded "how to get them" (no server paths)."""
    if status.demo:
        return f"• {md(tr('weights.demo', lang))}"
    if status.ready:
        return f"✓ {md(tr('weights.found', lang))}"
    if public:
        line = tr("weights.missing_public", lang)
    elif download:
        line = tr("weights.missing_download", lang)
    else:
        line = tr("weights.missing", lang)
    text = f"⚠ **{md(tr('weights.missing_title', lang))}** — {md(line)}"
    if public:
        return text
    steps = how_to_get(status.task)  # commands and file names only
    return (f"{text}\n\n<details><summary>{md(tr('weights.how', lang))}</summary>\n\n```text\n{steps}\n```\n\n"
            "</details>")


def negative_gloss(negative: str) -> gr.Markdown | None:
    """Under the default Chinese negative prompt: what it says in English."""
    import prompting

    if negative.strip() != prompting.negative_prompt("zh").strip():
        return None
    return gr.Markdown("EN: " + md(prompting.negative_prompt("en")), elem_classes=["negative-gloss"])
