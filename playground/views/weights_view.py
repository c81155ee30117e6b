"""What a task tab shows before the first run: the weights status line, the Draft / Official quality
presets and the English gloss of the (Chinese) default negative prompt; and the app's Memory profile
panel (``MemoryPanel``: profile, blocks ahead, fp8, tiled VAE; read-only on a public server).

The status line never names a server folder: the path detail goes to the server log
(``discovery.locate_weights`` logs it once per task).
"""

from __future__ import annotations

from typing import Any

import gradio as gr

from playground.discovery import WeightsStatus, how_to_get
from playground.engine import MAX_OFFLOAD_BLOCKS, MEMORY_PROFILES, Engine, MemorySetting
from playground.i18n import tr
from playground.request import size_presets
from wan.configs import ModelSpec

from .common import AppOptions, request_lang, t, user_error
from .endpoints import DEMO_DEFAULTS, default_values
from .safe import md, toast

__all__ = ["DRAFT", "MemoryPanel", "QualityPresets", "describe_memory", "draft_values", "initial_values", "negative_gloss", "official_values",
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


# --------------------------------------------------------------------------- memory profile
def describe_memory(setting: MemorySetting, lang: str) -> str:
    """``"block · 2 blocks ahead · fp8 · tiled VAE"`` (en, ko or zh)."""
    parts = [setting.offload]
    if setting.offload == "block":
        parts.append(tr("memory.summary_blocks", lang, n=setting.offload_blocks))
    parts.append(tr("memory.summary_fp8" if setting.quantize else "memory.summary_full", lang))
    if setting.tiling:
        parts.append(tr("memory.summary_tiling", lang))
    return " · ".join(parts)


class _BlocksSlider(gr.Slider):
    """The blocks-ahead slider: its value reaches ``MemoryPanel.apply`` as sent, which checks it and
    answers in the user's language (Gradio's own range check speaks English only)."""

    is_template = True

    def preprocess(self, payload: Any) -> Any:
        return payload


def _blocks_value(value: Any) -> int | None:
    """A whole number of blocks from 1 to ``MAX_OFFLOAD_BLOCKS`` (``3``, ``3.0``, ``"3"``), else None."""
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not float(value).is_integer():
        return None
    return int(value) if 1 <= value <= MAX_OFFLOAD_BLOCKS else None


class MemoryPanel:
    """The app-wide memory setting (one engine serves every tab): profile none / expert / block, blocks
    ahead, fp8 weights, tiled VAE, each with its documented GPU/RAM cost next to it.

    *Apply* hands the setting to ``Engine.set_memory``: the next generation loads the models with it (a
    running job finishes with the old one). On a public server (``--public``) the controls are shown
    read-only and no apply event exists: only the operator (server flags) sets memory there.
    """

    def __init__(self, engine: Engine, options: AppOptions) -> None:
        self.engine, self.options = engine, options

    @property
    def editable(self) -> bool:
        return not self.options.public

    def build(self) -> MemoryPanel:
        edit = self.editable
        with gr.Accordion(t("memory.section"), open=False, elem_id="memory-panel", elem_classes=["memory-panel"]):
            with gr.Row(equal_height=False):
                with gr.Column(scale=3, min_width=280):
                    self.profile = gr.Radio([(t(f"memory.profile_{p}"), p) for p in MEMORY_PROFILES],
                                            label=t("memory.profile"), info=t("memory.profile_info"),
                                            interactive=edit, elem_id="memory-profile")
                    self.blocks = _BlocksSlider(1, MAX_OFFLOAD_BLOCKS, step=1, label=t("memory.blocks"),
                                            info=t("memory.blocks_info"), interactive=edit, elem_id="memory-blocks")
                    with gr.Row():
                        self.fp8 = gr.Checkbox(label=t("memory.fp8"), info=t("memory.fp8_info"), interactive=edit,
                                               elem_id="memory-fp8")
                        self.tiling = gr.Checkbox(label=t("memory.tiling"), info=t("memory.tiling_info"),
                                                  interactive=edit, elem_id="memory-tiling")
                with gr.Column(scale=2, min_width=280):
                    gr.Markdown(t("memory.costs"), elem_classes=["memory-costs"])
                    gr.Markdown(t("memory.pending"), elem_classes=["memory-pending"])
            with gr.Row(equal_height=True):
                self.apply_btn = gr.Button(t("memory.apply"), variant="secondary", size="sm", scale=0, min_width=140,
                                           visible=edit, elem_id="memory-apply")
                self.status = gr.Markdown(elem_id="memory-status", elem_classes=["memory-status"])
        return self

    def current(self, request: gr.Request) -> tuple[Any, ...]:
        """The controls filled with the setting the next generation uses, and the status line."""
        mem = self.engine.memory
        lang = request_lang(request)
        line = tr("memory.current", lang, setting=describe_memory(mem, lang))
        if not self.editable:
            line += " " + tr("memory.readonly", lang)
        blocks = gr.update(value=mem.offload_blocks, interactive=self.editable and mem.offload == "block")
        return mem.offload, blocks, bool(mem.quantize), mem.tiling, line

    def apply(self, profile: str, blocks: float, fp8: bool, tiling: bool, request: gr.Request) -> str:
        """Set the memory profile for the next generation (the running one keeps its own).

        Args:
            profile: "none" (all weights on the GPU), "expert" (one A14B expert at a time) or "block"
                (DiT blocks streamed from RAM; the least VRAM).
            blocks: DiT blocks on the GPU at a time in the block profile (1 running + N-1 prefetched).
            fp8: store the DiT block linears and the text encoder as fp8 (about half the weight memory).
            tiling: decode the video in 256-px VAE tiles (lower VRAM peak while decoding).
        Returns:
            What happens now: saved for the next generation, or after the running one.
        """
        lang = request_lang(request)
        if not self.editable:  # no event is wired on a public server; a direct call still gets a clear no
            raise user_error(tr("memory.readonly", lang), title=tr("memory.section_plain", lang))
        n = _blocks_value(blocks)
        if n is None:
            raise user_error(toast(tr("memory.bad_blocks", lang, max=MAX_OFFLOAD_BLOCKS, value=str(blocks)[:40])),
                             title=tr("memory.section_plain", lang))
        try:
            setting = MemorySetting(profile, n, "fp8" if fp8 else None, bool(tiling))
            outcome = self.engine.set_memory(setting)
        except ValueError as e:
            raise user_error(tr("memory.bad", lang, message=e), title=tr("memory.section_plain", lang)) from e
        return tr(f"memory.applied_{outcome}", lang, setting=describe_memory(setting, lang))

    def wire(self, demo: gr.Blocks) -> None:
        outputs = [self.profile, self.blocks, self.fp8, self.tiling, self.status]
        demo.load(self.current, outputs=outputs, queue=False, show_progress="hidden", api_visibility="private")
        if not self.editable:
            return
        # the documented default: tiled VAE on with block, off otherwise (the box can still be changed)
        self.profile.input(lambda p: (p == "block", gr.update(interactive=p == "block")), inputs=self.profile,
                            outputs=[self.tiling, self.blocks], queue=False, show_progress="hidden",
                            api_visibility="private")
        self.apply_btn.click(self.apply, inputs=[self.profile, self.blocks, self.fp8, self.tiling],
                             outputs=self.status, queue=False, api_name="set_memory_profile",
                             api_visibility="undocumented")
