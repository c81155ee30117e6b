"""One task tab (T2V, I2V, TI2V): its components and its handlers.

Left: image, prompt, Generate/Cancel, the prompt assistant. Right: the result, the settings, the
weights. The generate endpoint itself is in ``endpoints``; the tab wires it to its form.
"""

from __future__ import annotations

import html
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import Any

import gradio as gr

from playground import assistant
from playground.discovery import WeightsMissing
from playground.engine import Engine
from playground.history import HistoryEntry, HistoryStore
from playground.i18n import tr
from playground.images import check_image, discard_upload
from playground.loras import LoraLibrary, task_dit_config
from playground.request import InputError, closest_preset, error_text, parse_size, size_presets
from playground.share import permalink
from playground.studio import TASK_UI, Studio, form_values_from_settings
from playground.zerogpu import estimate_gpu_seconds, max_duration, on_zero_gpu
from wan.configs import ModelSpec
from wan.modules.attention import CHOICES as ATTENTION_BACKENDS
from wan.request import image_output_size

from .cancel import CancelRegistry
from .common import (
    user_error,
    DEMO_MAX_SIDE,
    LIMITS,
    MAX_FPS,
    MAX_FRAMES,
    MAX_SEED,
    MAX_SIDE,
    MAX_STEPS,
    MIN_SIDE,
    SOLVERS,
    AppOptions,
    CheckedImage,
    CheckedNumber,
    CheckedSlider,
    named,
    app_url,
    request_lang,
    session_of,
    t,
)
from .endpoints import MAX_BATCH, Endpoint, GenerateRunner, RunCancelled, default_values
from .lora_panel import LoraPanel
from . import weights_view

ATTENTION_CHOICES = (*ATTENTION_BACKENDS, "sage:1,1")  # the request's attention values the form offers
from .safe import code, md, toast

__all__ = ["CACHE_PRESETS", "TAB_KEYS", "TaskView", "cache_text", "estimate_text"]

log = logging.getLogger("wan.app")

TAB_KEYS = {"t2v-A14B": "tab.t2v", "i2v-A14B": "tab.i2v", "ti2v-5B": "tab.ti2v"}
CACHE_PRESETS = ("off", "magcache", "easycache")  # the step-cache control: quality / balanced / fast (wan.stepcache)

# Gates of the generate flow, run in the browser: throwing stops the chain (its .success never
# fires) without a toast or an output marked as failed; the status line already says why.
_GATE_JS = "(ok) => { if (!ok) { throw new Error('not started'); } return []; }"
_GATE_QUEUED_JS = "(running) => { if (running) { throw new Error('stops at its next step'); } return []; }"


def estimate_text(task: str, size: str, frames: float, fps: float, steps: float, *, demo: bool,
                  lang: str = "en") -> str:
    """``"81 frames @ 16 fps = 5.1 s of video · estimated GPU time ≈ 950 s (H100-class, bf16)"`` in
    ``lang`` (no GPU estimate in demo mode); empty while a field holds an invalid value."""
    try:
        w, h = parse_size(size)
        n, f = int(frames), max(int(fps), 1)
        secs = None if demo else estimate_gpu_seconds(task, int(steps), n, w, h)
    except (InputError, ValueError, TypeError):
        return ""  # the form shows the invalid field; Generate names it
    parts = [tr("estimate.video", lang, frames=n, fps=f, seconds=f"{n / f:.1f}")]
    if secs is not None:
        parts.append(tr("estimate.gpu", lang, seconds=secs))
        if on_zero_gpu() and secs > max_duration():
            parts.append(tr("estimate.over_zerogpu", lang, limit=max_duration()))
    return " · ".join(parts)


def cache_text(cache: str | None, task: str, steps: float, shift: float, solver: str = "unipc", *,
               lang: str = "en") -> str:
    """The line under the step-cache control: what the setting does and the expected saving. MagCache's
    decisions depend only on the schedule, so its count of reused model evaluations is exact
    (``wan.stepcache.plan_decisions``, with CFG); EasyCache's are made at run time (the authors' figures)."""
    from wan.configs import get_spec
    from wan.schedulers import official_timesteps
    from wan.stepcache import MIN_STEPS, cache_text as setting_text, parse_cache, plan_decisions

    try:
        config = parse_cache(task, cache)
        n = int(steps)
    except InputError as e:
        return f"⚠ {md(error_text(e, lang))}"
    except (TypeError, ValueError):
        return ""
    if config is None:
        return md(tr("cache.info_off", lang))
    custom = setting_text(task, config) not in CACHE_PRESETS
    lines = [tr("cache.info_custom", lang, text=config.text())] if custom else []
    if n < MIN_STEPS:
        lines.append(tr("cache.info_few", lang, min=MIN_STEPS))
    elif config.method == "magcache":
        spec = get_spec(task)
        try:
            ts = official_timesteps(n, float(shift), solver if solver in SOLVERS else "unipc")
        except ValueError:
            return ""
        b = spec.boundary_timestep
        experts = ["dense" if b is None else "high_noise" if t >= b else "low_noise" for t in ts]
        log = plan_decisions(config, task, experts)
        reused = sum(v == "reused" for d in log for v in d.values())
        lines.append(tr("cache.info_magcache", lang, reused=reused, total=2 * n, steps=n,
                        ratio=f"{2 * n / (2 * n - reused):.2f}"))
    else:
        lines.append(tr("cache.info_easycache", lang))
    if not custom and n >= MIN_STEPS:  # the authors' figures hold for their published setting only
        lines.append(tr(f"cache.claim_{config.method}", lang))
    return md(" ".join(lines))


def summary(settings: Mapping[str, Any]) -> str:
    """The status line of a restored result (stored settings or mp4 metadata: shown escaped)."""
    v = settings.get("video") if isinstance(settings.get("video"), Mapping) else {}
    line = (f"{settings.get('task')} · seed {settings.get('seed')} · {v.get('width')}×{v.get('height')} · "
            f"{v.get('frames')} frames @ {v.get('fps')} fps · {settings.get('sampling_steps')} steps")
    return f"{md(line)}\n\n{code(settings.get('id', ''))}"


def has_last_frame(spec: ModelSpec) -> bool:
    """Whether the task takes a last frame (first-last frame video): I2V-A14B, the MoE image-to-video model."""
    return bool(spec.moe and spec.image_input == "required")


class TaskView:
    """The components of one task tab, addressed by name (never by position), and its handlers."""

    def __init__(self, task: str, engine: Engine, store: HistoryStore, cancels: CancelRegistry,
                 options: AppOptions) -> None:
        self.task = task
        self.store = store
        self.ui = TASK_UI[task]
        self.spec: ModelSpec = engine.spec(task)
        self.engine = engine
        self.cancels = cancels
        self.options = options
        self.form: dict[str, Any] = {}      # request fields: prompt, size, seed, ...
        self.assist: dict[str, Any] = {}    # prompt-assistant fields
        self.image: CheckedImage | None = None
        self.last_image: CheckedImage | None = None  # I2V-A14B: the last frame of a first-last frame video
        self.extenders: dict[str, Any] = {}  # prompt enhancers by kind, the default first (set by the app)
        # the server's LoRA folder (the app sets one shared library; this default serves a lone view)
        lora_root = options.lora_dir or (engine.demo_root / "loras" if engine.demo else Path("loras"))
        self.library = LoraLibrary(lora_root, lambda task: task_dit_config(engine, task))

    # ------------------------------------------------------------------------------ build
    def build(self) -> TaskView:
        self._build_weights()
        # .task-row/.inputs/.outputs: on a phone the result follows Generate, before the assistant (style.css)
        with gr.Row(equal_height=False, elem_classes=["task-row"]):
            with gr.Column(scale=3, elem_classes=["inputs"]):
                self._build_inputs()
                self._build_assistant()
                with gr.Accordion(t("field.negative_prompt"), open=False, elem_classes=["negative-acc"]):
                    self.form["negative_prompt"] = gr.Textbox(
                        value=self.spec.negative_prompt, show_label=False, lines=3, elem_classes=["negative"],
                    )
                    weights_view.negative_gloss(self.spec.negative_prompt)
            with gr.Column(scale=2, elem_classes=["outputs"]):
                self._build_outputs()
                self.quality = weights_view.QualityPresets(self.task, self.spec, self.engine.demo).build()
                self.lora_panel = LoraPanel(self.task, self.spec, self.library, self.options).build_fast()
                self._build_settings()
                self.lora_panel.build()
        return self

    def _build_weights(self) -> None:
        """The weights status line (found / demo / missing and how to get them) at the top of the tab."""
        status = self.engine.weights(self.task)
        with gr.Row(elem_classes=["weights-row"], equal_height=True):
            self.weights = gr.Markdown(self.weights_text(), elem_classes=["weights"])
            self.download_btn = gr.Button(t("btn.download"), size="sm", scale=0, min_width=200,
                                          visible=self.options.allow_download and not status.ready)

    def _build_inputs(self) -> None:
        if self.ui.image_allowed:
            with gr.Row(equal_height=True, elem_classes=["image-row"]):
                self.image = CheckedImage(
                    type="filepath", label=t("field.image" if self.ui.image_required else "field.image_optional"),
                    sources=["upload", "clipboard"], height=240, elem_classes=["input-image"],
                )
                if has_last_frame(self.spec):  # first-last frame: the video ends on this image
                    self.last_image = CheckedImage(
                        type="filepath", label=t("field.last_image"), sources=["upload", "clipboard"], height=240,
                        elem_classes=["last-image"],
                    )
                    self.last_image.field = "last_image"  # its upload errors name it (API: generate_i2v's last_image)
            # why an upload was refused, right under the image (the bad image is cleared)
            self.image_note = gr.Markdown(visible=False, elem_classes=["image-note"])
        self.form["prompt"] = gr.Textbox(
            label=t("field.prompt"), placeholder=t("field.prompt_placeholder"), lines=3, elem_classes=["prompt"]
        )
        with gr.Row():
            self.generate_btn = gr.Button(t("btn.generate"), variant="primary", elem_classes=["generate"], scale=4)
            # secondary, and armed only while a job of this user is queued or running
            self.cancel_btn = gr.Button(t("btn.cancel"), variant="secondary", elem_classes=["cancel"], scale=1,
                                        min_width=96, interactive=False)
        d = weights_view.initial_values(self.spec, self.engine.demo)  # the draft preset: not the slowest run
        self.estimate_md = gr.Markdown(  # English here; demo.load and every change write the browser's language
            estimate_text(self.task, d["size"], d["frame_num"], d["fps"], d["sampling_steps"], demo=self.engine.demo),
            elem_classes=["estimate"],
        )

    def _build_assistant(self) -> None:
        modes = [(t("assistant.mode_basic"), "basic"), (t("assistant.mode_advanced"), "advanced")]
        if self.ui.image_allowed:
            modes.append((t("assistant.mode_i2v"), "i2v"))
        with gr.Accordion(t("section.assistant"), open=True, elem_classes=["assistant"]):
            self.examples = gr.Dropdown(
                [(ex["title"], i) for i, ex in enumerate(assistant.examples(self.task))],
                value=None, label=t("assistant.examples"), elem_classes=["examples"],
            )
            with gr.Row():
                self.assist_mode = gr.Radio(modes, value="i2v" if self.ui.image_required else "advanced",
                                            label=t("assistant.mode"), scale=3)
                self.assist_lang = gr.Radio([("English", "en"), ("中文", "zh")], value="en",
                                            label=t("assistant.lang"), scale=1)
            for name, desc in (("subject", "subject_desc"), ("scene", "scene_desc"), ("motion", "motion_desc")):
                with gr.Row():
                    self.assist[name] = gr.Textbox(label=t(f"assistant.{name}"), max_lines=1, scale=1,
                                                   elem_classes=[f"f-{name}"])
                    self.assist[desc] = gr.Textbox(label=t(f"assistant.{desc}"), max_lines=2, scale=2,
                                                   elem_classes=[f"f-{desc}"])
            self._build_aesthetics()
            self.preview = gr.Textbox(label=t("assistant.preview"), lines=3, interactive=False,
                                      elem_classes=["preview"], buttons=["copy"])
            self.assist_note = gr.Markdown(elem_classes=["assist-note"])
            self.prompt_fields = gr.State(None)  # the assistant fields of the last preview
            self._build_enhancer()
            with gr.Row():
                self.use_btn = gr.Button(t("assistant.use"), variant="secondary", elem_classes=["use-prompt"])
                self.extend_btn = gr.Button(t("assistant.extend"), variant="secondary", elem_classes=["extend-prompt"])
                self.undo_btn = gr.Button(t("assistant.undo"), variant="secondary", visible=False,
                                          elem_classes=["undo-prompt"])
            self._build_proposal()

    def _build_enhancer(self) -> None:
        """The enhancer picker: every configured backend (the app's default first) and what it uses."""
        kinds = list(self.extenders) or ["offline"]
        with gr.Row(equal_height=True, elem_classes=["enhancer-row"]):
            self.enhancer = gr.Dropdown([(t(f"assistant.enhancer.{k}"), k) for k in kinds], value=kinds[0],
                                        label=t("assistant.enhancer"), interactive=True, scale=1,
                                        elem_classes=["enhancer"])
            self.enhancer_info = gr.Markdown(self.enhancer_text(kinds[0]), elem_classes=["enhancer-info"])

    def _build_proposal(self) -> None:
        """Extend's answer, shown as a proposal: the prompt changes only on Accept (and Undo brings it back)."""
        with gr.Group(visible=False, elem_classes=["proposal"]) as self.proposal_box:
            self.proposal = gr.Textbox(label=t("assistant.proposal"), lines=4, interactive=True, buttons=["copy"],
                                       elem_classes=["proposal-text"])
            self.proposal_note = gr.Markdown(elem_classes=["proposal-note"])
            with gr.Row():
                self.accept_btn = gr.Button(t("assistant.accept"), variant="primary", size="sm",
                                            elem_classes=["accept-proposal"])
                self.discard_btn = gr.Button(t("assistant.discard"), variant="secondary", size="sm",
                                             elem_classes=["discard-proposal"])
        self.undo_prompt = gr.State(None)  # the prompt before the last Accept

    def _build_aesthetics(self) -> None:
        groups = assistant.aesthetic_groups()
        none = ("—", assistant.NONE_CHOICE)
        with gr.Accordion(t("assistant.aesthetics"), open=True, elem_classes=["aesthetics"]):
            for i in range(0, len(groups), 4):
                with gr.Row():
                    for g in groups[i : i + 4]:
                        self.assist[g] = gr.Dropdown(
                            [none, *((t(k), v) for k, v in assistant.group_choices(g))], value=assistant.NONE_CHOICE,
                            label=t(assistant.group_key(g)), elem_classes=[f"g-{g}"], min_width=160,
                        )
            with gr.Row():
                style = assistant.STYLE_GROUP
                self.assist["style"] = gr.Dropdown(
                    [none, *((t(k), v) for k, v in assistant.group_choices(style))], value=assistant.NONE_CHOICE,
                    label=t(assistant.group_key(style)), elem_classes=["g-style"],
                )
                self.assist["fixed_camera"] = gr.Checkbox(False, label=t("assistant.fixed_camera"))

    def _build_outputs(self) -> None:
        self.video = gr.Video(label=t("out.video"), format="mp4", interactive=False, autoplay=True, loop=True,
                              buttons=["download"], elem_classes=["result-video"])
        # the one progress display of a run (phases, steps k/n, ETA) and its outcome
        self.status = gr.Markdown(elem_classes=["status"], min_height=48)
        self.batch_gallery = gr.Gallery(label=t("out.batch"), visible=False, columns=4, height=150,
                                        allow_preview=False, object_fit="contain", interactive=False,
                                        elem_classes=["batch-gallery"])
        self.batch_ids = gr.State([])
        with gr.Row(equal_height=True):
            # hidden until there is a result: the frontend shows an empty gr.Number as 0
            self.used_seed = gr.Number(None, label=t("out.used_seed"), precision=0, interactive=False, visible=False,
                                       elem_classes=["used-seed"], scale=1)
            # the one share mechanism: the result's permalink (?gen=<id>), shown once a result exists
            self.link = gr.Textbox(label=t("out.permalink"), interactive=False, max_lines=1, buttons=["copy"],
                                   elem_classes=["permalink"], scale=3, visible=False)
        # the documented single-result API endpoint (generate_t2v/i2v/ti2v) hangs on this hidden trigger;
        # the Generate button runs the tab's own flow (check first, then one or a batch of results)
        self.api_trigger = gr.Button(visible=False, elem_classes=["api-trigger"])
        # the API's optional loras (a JSON list) and preset (a name): parameters of the endpoint only
        self.api_loras = gr.Textbox(None, visible=False, label="loras")
        self.api_preset = gr.Textbox(None, visible=False, label="preset")
        # read by the gates in the browser (a gr.State stays on the server): may the run be queued?
        # did Cancel find a running job (else it dequeues the waiting one)?
        self.verdict = gr.Checkbox(False, visible=False, elem_classes=["gen-verdict"])
        self.cancel_found = gr.Checkbox(False, visible=False, elem_classes=["cancel-found"])

    def _size_info(self) -> str | None:
        if not self.options.any_size:
            return None
        if self.options.demo:  # translated key + numbers (the frontend translates the key inside the text)
            return t("size.info_demo") + f" {self.spec.size_multiple} · {MIN_SIDE}–{DEMO_MAX_SIDE} px"
        return t("size.info_any") + f" {self.spec.size_multiple} · {MIN_SIDE}–{MAX_SIDE} px"

    def _build_settings(self) -> None:
        spec, f, demo = self.spec, self.form, self.engine.demo
        d = weights_view.initial_values(spec, demo)
        with gr.Accordion(t("section.settings"), open=True, elem_classes=["settings"]):
            with gr.Row():
                f["size"] = gr.Dropdown([(p.label, p.value) for p in size_presets(spec, demo=demo)], value=d["size"],
                                        label=t("field.size"), allow_custom_value=True, info=self._size_info(),
                                        elem_classes=["size"])
                f["frame_num"] = CheckedSlider(1, MAX_FRAMES, value=d["frame_num"], step=4, label=t("field.frames"),
                                               elem_classes=["frames"])
            # "output will be W×H" when the image's aspect ratio changes the selected size
            self.size_note = gr.Markdown(visible=False, elem_classes=["size-note"])
            with gr.Row():
                f["fps"] = CheckedSlider(1, MAX_FPS, value=d["fps"], step=1, label=t("field.fps"), elem_classes=["fps"])
                f["sampling_steps"] = CheckedSlider(1, MAX_STEPS, value=d["sampling_steps"], step=1,
                                                    label=t("field.steps"), elem_classes=["steps"])
            with gr.Row():
                f["shift"] = CheckedSlider(LIMITS.shift.lo, LIMITS.shift.hi, value=spec.sample_shift, step=LIMITS.shift.step,
                                           label=t("field.shift"), elem_classes=["shift"])
                f["sample_solver"] = gr.Dropdown(list(SOLVERS), value="unipc", label=t("field.solver"),
                                                 elem_classes=["solver"])
                f["attention"] = gr.Dropdown(list(ATTENTION_CHOICES), value="auto", label=t("field.attention"),
                                             info=t("field.attention_info"), allow_custom_value=True,
                                             elem_classes=["attention"])
            with gr.Row():
                g = LIMITS.guide_scale
                for name, expert, label in (("guide_scale_high", "high_noise", "field.guidance_high"),
                                            ("guide_scale_low", "low_noise", "field.guidance_low"),
                                            ("guide_scale", "dense", "field.guidance")):
                    if expert in spec.guide_scale:
                        f[name] = CheckedSlider(g.lo, g.hi, value=spec.guide_scale[expert], step=g.step,
                                                label=t(label))
            with gr.Row(equal_height=True, elem_classes=["cache-row"]):
                f["cache"] = gr.Dropdown([(t(f"cache.{name}"), name) for name in CACHE_PRESETS], value="off",
                                         label=t("field.cache"), allow_custom_value=True, scale=1,
                                         elem_classes=["step-cache"])
                self.cache_info = gr.Markdown(cache_text("off", self.task, d["sampling_steps"], spec.sample_shift),
                                              elem_classes=["cache-info"])
            with gr.Row(equal_height=True):
                f["seed"] = CheckedNumber(-1, label=t("field.seed"), precision=0, minimum=-1, maximum=MAX_SEED,
                                          elem_classes=["seed"])
                f["randomize_seed"] = gr.Checkbox(True, label=t("field.randomize"), elem_classes=["randomize"])
                self.batch_count = gr.Slider(1, MAX_BATCH, value=1, step=1, label=t("field.batch"),
                                             info=t("field.batch_info"), elem_classes=["batch-count"])
        for name, comp in f.items():
            if isinstance(comp, (CheckedSlider, CheckedNumber)):
                named(comp, name)

    def weights_text(self, lang: str = "en") -> str:
        """The weights status line in ``lang``: found / demo / missing and how to get them (no server paths)."""
        return weights_view.status_markdown(self.engine.weights(self.task), lang, public=self.options.public,
                                            download=self.options.allow_download)

    def weights_for(self, request: gr.Request) -> str:
        return self.weights_text(request_lang(request))

    def restorable(self) -> list[Any]:
        """Every component ``restore_updates`` and ``prefill_updates`` may write."""
        comps = [*self.form.values(), *self.assist.values(), self.assist_mode, self.assist_lang, self.preview,
                 self.prompt_fields, self.video, self.used_seed, self.status, self.link, self.batch_gallery,
                 self.batch_ids, *self.lora_panel.restorable()]
        return comps + [c for c in (self.image, self.last_image) if c is not None]

    # ---------------------------------------------------------------------------- wiring
    def wire(self, demo: gr.Blocks, endpoint: Endpoint, *, owner: Any, extender: Any,
             on_result: Callable[[Any], None]) -> None:
        """Connect the tab's events; ``on_result(event)`` chains what follows a new result (History)."""
        from .endpoints import extenders_of

        self.extenders = extenders_of(extender)
        self.extender = next(iter(self.extenders.values()))  # the default enhancer
        self.runner: GenerateRunner = getattr(endpoint, "runner", None) or GenerateRunner(
            Studio(self.engine, self.store, any_size=self.options.any_size, lora_dir=self.library.root),
            self.store, self.cancels, self.options)
        gen_inputs = {**self.form, "prompt_fields": self.prompt_fields, "owner": owner}
        if self.image is not None:
            gen_inputs["image"] = self.image
        # I2V-A14B: the last frame (generate_i2v's last_image: its API position is the last, after preset)
        last = {"last_image": self.last_image} if self.last_image is not None else {}
        result_outputs = [self.video, self.used_seed, self.status, self.link]
        # the API: one result per call, errors raise (the documented contract of generate_t2v/i2v/ti2v)
        api_event = self.api_trigger.click(
            endpoint, inputs_kwargs={**gen_inputs, "loras": self.api_loras, "preset": self.api_preset, **last},
            outputs=result_outputs, api_name=self.ui.api_name,
            concurrency_id="gpu", concurrency_limit=1, show_progress_on=[self.status],
        )
        on_result(api_event)
        self._wire_generate({**gen_inputs, **last, **self.lora_panel.inputs()}, on_result)
        if self.image is not None:
            # preprocess=False: the handler sees a bad file and says why, instead of failing in preprocessing
            self.image.upload(self.check_upload, inputs=self.image,
                              outputs=[self.image, self.image_note, self.form["size"]], queue=False,
                              preprocess=False, show_progress="hidden", api_visibility="private")
            gr.on([self.image.change, self.form["size"].change], self.output_size_note,
                  inputs=[self.form["size"], self.image], outputs=self.size_note, queue=False, preprocess=False,
                  show_progress="hidden", api_visibility="private")
        if self.last_image is not None:
            self.last_image.upload(self.check_last_upload, inputs=self.last_image,
                                   outputs=[self.last_image, self.image_note], queue=False, preprocess=False,
                                   show_progress="hidden", api_visibility="private")
        self.batch_gallery.select(self.pick_batch_result, inputs=self.batch_ids, outputs=result_outputs,
                                  queue=False, show_progress="hidden", api_visibility="private")
        self._wire_assistant()
        cache_inputs = [self.form[k] for k in ("cache", "sampling_steps", "shift", "sample_solver")]
        # always_last: a restore (permalink, link) changes these while the load's own call may still run
        gr.on([demo.load, *(c.change for c in cache_inputs)], self.cache_note, inputs=cache_inputs,
              outputs=self.cache_info, queue=False, show_progress="hidden", trigger_mode="always_last",
              api_visibility="private")
        estimate_inputs = [self.form[k] for k in ("size", "frame_num", "fps", "sampling_steps")]
        gr.on([demo.load, *(c.change for c in estimate_inputs)], self.estimate, inputs=estimate_inputs,
              outputs=self.estimate_md, queue=False, show_progress="hidden", api_visibility="private")
        self.download_btn.click(self.download, outputs=self.weights, concurrency_id="gpu", api_visibility="private")
        demo.load(self.weights_for, outputs=self.weights, queue=False, show_progress="hidden", api_visibility="private")
        self.quality.wire(self.form)
        self.lora_panel.wire(self.form, self.quality)

    def _wire_generate(self, gen_inputs: dict[str, Any], on_result: Callable[[Any], None]) -> None:
        """Generate: a quick unqueued check (a message in the status, nothing blanked), then the queued
        run of one or a batch of results; Cancel is armed from the check until the run ends."""
        check_inputs = {k: v for k, v in gen_inputs.items() if k != "owner"}
        check = self.generate_btn.click(
            self.check, inputs_kwargs=check_inputs, outputs=[self.status, self.verdict, self.cancel_btn],
            queue=False, show_progress="hidden", api_visibility="private",
        )
        outputs = [self.video, self.used_seed, self.status, self.link, self.batch_gallery, self.batch_ids]
        outputs += [c for c in (self.image, self.last_image) if c is not None]
        # the gate runs in the browser: no request, so no HTTP error in the network log for a refused run
        run = check.then(None, inputs=self.verdict, js=_GATE_JS, show_progress="hidden").success(
            self.run_ui, inputs_kwargs={**gen_inputs, "batch": self.batch_count}, outputs=outputs,
            api_name=f"{self.ui.api_name}_ui", api_visibility="private",  # counted by the job cap (queue_guard)
            concurrency_id="gpu", concurrency_limit=1, show_progress_on=[self.status],
        )
        run.then(self.disarm, outputs=self.cancel_btn, queue=False, show_progress="hidden", api_visibility="private")
        on_result(run)
        stop = self.cancel_btn.click(self.cancel, outputs=self.cancel_found, queue=False, show_progress="hidden",
                                     api_visibility="private")
        # a job still waiting in the queue has no step to stop at: take it out of the queue
        stop.then(None, inputs=self.cancel_found, js=_GATE_QUEUED_JS, show_progress="hidden").success(
            self.cancelled_in_queue, outputs=[self.status, self.cancel_btn], cancels=[run], queue=False,
            show_progress="hidden", api_visibility="private",
        )

    def _wire_assistant(self) -> None:
        gr.on(
            [c.change for c in (self.assist_mode, self.assist_lang, *self.assist.values())], self.preview_prompt,
            inputs=[self.assist_mode, self.assist_lang], inputs_kwargs=dict(self.assist),
            outputs=[self.preview, self.prompt_fields, self.assist_note], queue=False, show_progress="hidden",
            trigger_mode="always_last", api_visibility="private",
        )
        self.examples.input(self.use_example, inputs=[self.examples, self.form["prompt"]],
                            outputs=[self.form["prompt"], self.assist_mode, self.assist_lang, *self.assist.values()],
                            api_visibility="private")  # queued: its notices (gr.Info) need the event stream
        self.use_btn.click(lambda text: text if text else gr.skip(), inputs=self.preview, outputs=self.form["prompt"],
                           queue=False, api_visibility="private")
        extend_inputs = [self.preview, self.form["prompt"], self.assist_lang, self.enhancer]
        extend_inputs += [self.image] if self.image is not None else []
        # the offline extender is a quick CPU rewrite: off the queue; an LLM backend waits in its own line
        cheap = set(self.extenders) <= {"offline"}
        self.extend_btn.click(self.extend, inputs=extend_inputs,
                              outputs=[self.proposal, self.proposal_note, self.proposal_box], queue=not cheap,
                              concurrency_id="llm", api_visibility="private", show_progress_on=[self.enhancer])
        self.enhancer.change(self.enhancer_for, inputs=self.enhancer, outputs=self.enhancer_info, queue=False,
                             show_progress="hidden", api_visibility="private")
        private = {"queue": False, "show_progress": "hidden", "api_visibility": "private"}
        self.accept_btn.click(self.accept_proposal, inputs=[self.proposal, self.form["prompt"]],
                              outputs=[self.form["prompt"], self.undo_prompt, self.undo_btn, self.proposal_box],
                              **private)
        self.discard_btn.click(lambda: gr.Group(visible=False), outputs=self.proposal_box, **private)
        self.undo_btn.click(self.undo_accept, inputs=self.undo_prompt,
                            outputs=[self.form["prompt"], self.undo_prompt, self.undo_btn], **private)

    # --------------------------------------------------------------------------- handlers
    # generate flow ------------------------------------------------------------------------
    def check(self, request: gr.Request, image: Any = None, prompt_fields: dict[str, Any] | None = None,
              last_image: Any = None, **values: Any) -> tuple[Any, bool, Any]:
        """Before queueing: the status (why not, in the user's language where the text is ours), the
        verdict, and Cancel armed when the run goes ahead. The shown result is left as it is."""
        lang = request_lang(request)
        values = self.lora_panel.take(values)
        problem = self.runner.check(self.task, values, lang=lang, image=image, prompt_fields=prompt_fields,
                                    last_image=last_image)
        if problem is not None:
            log.info("not started (%s): %s", self.task, problem)
            return f"⚠ {md(tr('gen.not_started', lang, message=problem))}", False, gr.Button(interactive=False)
        return "", True, gr.Button(interactive=True)  # the progress shows here from now on

    @staticmethod
    def disarm() -> Any:
        return gr.Button(interactive=False)

    async def run_ui(self, request: gr.Request, progress: gr.Progress = gr.Progress(), *, batch: Any = 1,
                     image: str | None = None, prompt_fields: dict[str, Any] | None = None,
                     owner: str | None = None, last_image: str | None = None,
                     **values: Any) -> AsyncIterator[dict[Any, Any]]:
        """The tab's run: ``batch`` results in a row (seed, seed+1, ... or random each), each stored with
        its own permalink; the player shows the newest, the batch gallery all. Cancel or a failure ends it
        with a status line; results already made stay."""
        lang = request_lang(request)
        values = self.lora_panel.take(values)
        try:
            count = min(max(int(batch), 1), MAX_BATCH)
        except (TypeError, ValueError):
            count = 1
        try:
            reqs = self.runner.batch_requests(self.task, values, count, image=image, prompt_fields=prompt_fields,
                                              last_image=last_image)
        except InputError as e:
            yield {self.status: f"⚠ {md(tr('gen.not_started', lang, message=error_text(e, lang)))}"}
            return
        entries: list[HistoryEntry] = []
        try:
            async for entry in self.runner.run_batch(reqs, request=request, progress=progress, image=image,
                                                     owner=owner, last_image=last_image):
                entries.append(entry)
                log.info("result %s (%s, %d/%d)", entry.id, self.task, len(entries), count)
                yield self._result_updates(entries, count, request, lang, first=len(entries) == 1)
        except RunCancelled as c:
            text = c.text + (" " + tr("gen.batch_kept", lang, kept=len(entries), count=count) if count > 1 else "")
            yield {self.status: md(text)}
        except gr.Error as e:  # a failure (messages are escaped for toasts): say it where the progress was
            yield {self.status: f"⚠ {md(html.unescape(str(e.message)))}"}

    def _result_updates(self, entries: list[HistoryEntry], count: int, request: gr.Request, lang: str, *,
                        first: bool) -> dict[Any, Any]:
        entry = entries[-1]
        status = self.runner.done_text(entry, lang)
        if count > 1:
            status = f"{len(entries)}/{count} · {status}"
        updates: dict[Any, Any] = {
            self.video: str(entry.video),
            self.used_seed: gr.Number(entry.settings.get("seed"), visible=True),
            self.status: status,
            self.link: gr.Textbox(permalink(app_url(request), entry.id), visible=True),
            self.batch_gallery: gr.Gallery([(str(e.video), f"seed {e.settings.get('seed')}") for e in entries],
                                           visible=count > 1),
            self.batch_ids: [e.id for e in entries],
        }
        if first and self.image is not None and entry.image is not None and entry.image.is_file():
            updates[self.image] = str(entry.image)  # the upload itself is deleted once used
        if first and self.last_image is not None and entry.image is not None:
            last = self.store.last_image_path(entry.id)
            updates[self.last_image] = str(last) if last.is_file() else None
        return updates

    def pick_batch_result(self, ids: list[str], evt: gr.SelectData, request: gr.Request) -> Any:
        """Show a result of the batch in the player, with its seed, status and link."""
        if not 0 <= evt.index < len(ids):
            return gr.skip()
        try:
            entry = self.store.get(ids[evt.index])
        except (ValueError, KeyError):  # InvalidIdError, UnknownIdError (deleted since)
            return gr.skip()
        return (str(entry.video), gr.Number(entry.settings.get("seed"), visible=True),
                self.runner.done_text(entry, request_lang(request)),
                gr.Textbox(permalink(app_url(request), entry.id), visible=True))

    def cancel(self, request: gr.Request) -> bool:
        """Stop this user's running job of this tab at its next step; False when none is running yet."""
        return self.cancels.cancel(session_of(request), self.task)

    @staticmethod
    def cancelled_in_queue(request: gr.Request) -> tuple[str, Any]:
        return md(tr("gen.cancelled_queue", request_lang(request))), gr.Button(interactive=False)

    # uploads and the output size --------------------------------------------------------
    def _local_file(self, payload: Any) -> Path | None:
        """The file of an unprocessed image payload, only inside the upload folder or the history store."""
        raw = payload.get("path") if isinstance(payload, Mapping) else getattr(payload, "path", payload)
        if not isinstance(raw, str) or not raw:
            return None
        try:
            path = Path(raw).resolve(strict=True)
        except (OSError, RuntimeError):
            return None
        roots = [Path(self.options.upload_root or gr.utils.get_upload_folder()), self.store.root]
        for root in roots:
            try:
                if path.is_relative_to(Path(root).resolve()) and path.is_file():
                    return path
            except OSError:
                continue
        return None

    def check_last_upload(self, payload: Any, request: gr.Request) -> tuple[Any, Any]:
        """The last frame answered at once: fine (nothing changes), or why it cannot be used (under the
        images; the bad image is cleared)."""
        lang = request_lang(request)
        path = self._local_file(payload)
        try:
            if path is None:
                raise InputError("last_image", "the upload was not received; upload it again")
            check_image(path)
        except InputError as e:
            log.info("last frame refused (%s): %s", self.task, e)
            if path is not None and self.options.upload_root:
                discard_upload(path, self.options.upload_root)
            return None, gr.Markdown(f"⚠ {md(tr('gen.last_image_bad', lang, message=e.message))}", visible=True)
        return gr.skip(), gr.Markdown("", visible=False)

    def check_upload(self, payload: Any, request: gr.Request) -> tuple[Any, Any, Any]:
        """An upload answered at once: the size preset closest to the image, or why it cannot be used
        (under the image; the bad image is cleared, so Generate names the missing image)."""
        lang = request_lang(request)
        path = self._local_file(payload)
        if path is None:
            return None, gr.Markdown(f"⚠ {md(tr('gen.image_bad', lang, message='the upload was not received; upload it again'))}",
                                     visible=True), gr.skip()
        try:
            w, h = check_image(path)
        except InputError as e:
            log.info("image refused (%s): %s", self.task, e)
            if self.options.upload_root:
                discard_upload(path, self.options.upload_root)
            return None, gr.Markdown(f"⚠ {md(tr('gen.image_bad', lang, message=e.message))}", visible=True), gr.skip()
        preset = closest_preset(size_presets(self.spec, demo=self.engine.demo), w, h).value
        return gr.skip(), gr.Markdown("", visible=False), preset

    def output_size_note(self, size: Any, payload: Any, request: gr.Request) -> Any:
        """``Output will be W×H`` when the image's aspect ratio makes the video differ from ``size``."""
        hidden = gr.Markdown("", visible=False)
        path = self._local_file(payload) if payload else None
        if path is None:
            return hidden
        try:
            from PIL import Image

            with Image.open(path) as im:  # the header only
                image_size = im.size
            wanted = parse_size(size)
            out = image_output_size(self.spec, image_size, wanted)
        except (InputError, OSError, ValueError, TypeError):
            return hidden
        if tuple(out) == tuple(wanted):
            return hidden
        text = tr("gen.output_size", request_lang(request), width=out[0], height=out[1], size=f"{wanted[0]}×{wanted[1]}")
        return gr.Markdown(f"ℹ {md(text)}", visible=True)

    def preview_prompt(self, mode: str, lang: str, request: gr.Request, **values: Any) -> tuple[Any, Any, Any]:
        """The built prompt, the fields to store with it, and notes: contradictory choices
        (the builder keeps one of each pair) and what the chosen formula leaves out."""
        ui_lang = request_lang(request)
        try:
            text, fields = assistant.build_preview(values, mode, lang)
            notes = assistant.conflicts(values, "zh" if ui_lang == "zh" else "en")
            notes += assistant.mode_notes(values, mode, ui_lang)
        except (ValueError, KeyError) as e:
            gr.Warning(toast(f"Prompt assistant: {e}"))
            return gr.skip(), gr.skip(), f"⚠ {md(e)}"
        return text, fields, "\n\n".join(f"⚠ {n}" for n in notes)

    def use_example(self, index: int | None, typed: str | None, request: gr.Request) -> Any:
        """Fill the assistant from the chosen example, and the prompt too when it is empty (a typed prompt
        is kept: a notice says "Use as prompt" applies the example)."""
        examples = assistant.examples(self.task)
        if index is None or not 0 <= int(index) < len(examples):
            return gr.skip()
        ex = examples[int(index)]
        updates: dict[Any, Any] = {}
        if (typed or "").strip() and typed.strip() != ex["prompt"].strip():
            gr.Info(tr("assistant.example_kept", request_lang(request)))
        else:
            updates[self.form["prompt"]] = ex["prompt"]
        if ex.get("image"):
            gr.Info(tr("assistant.example_image", request_lang(request)))
        updates.update(self._assist_updates(ex.get("fields") or {}))
        if ex.get("mode") in ("basic", "advanced") or (ex.get("mode") == "i2v" and self.ui.image_allowed):
            updates[self.assist_mode] = ex["mode"]
        if ex.get("lang") in ("en", "zh"):
            updates[self.assist_lang] = ex["lang"]
        return updates

    # prompt enhancer ------------------------------------------------------------------------
    def enhancer_text(self, kind: str, lang: str = "en") -> str:
        """What the chosen enhancer uses (model, endpoint host) and which others are not configured; on a
        public server only the kind (no model paths or hosts)."""
        lines = []
        if kind == "offline":
            lines.append(tr("assistant.enhancer_offline_info", lang))
        elif not self.options.public:
            ext = self.extenders.get(kind)
            if kind == "openai" and ext is not None:
                from urllib.parse import urlsplit

                lines.append(tr("assistant.enhancer_uses", lang,
                                detail=f"{getattr(ext, 'model', '?')} @ {urlsplit(getattr(ext, 'url', '')).netloc}"))
            elif kind == "local" and ext is not None:
                lines.append(tr("assistant.enhancer_uses", lang, detail=getattr(ext, "model_id", "?")))
        missing = [k for k in ("openai", "local") if k not in self.extenders]
        if missing and not self.options.public:
            lines.append(tr("assistant.enhancers_missing", lang,
                            items=", ".join(tr(f"assistant.enhancer.{k}", lang) for k in missing))
                         + " (--extender-url / --extender-model)")
        return md(" ".join(lines))

    def enhancer_for(self, kind: str, request: gr.Request) -> str:
        return self.enhancer_text(kind, request_lang(request))

    def extend(self, preview_text: str, prompt: str, lang: str, backend: str | None, image: str | None = None,
               request: gr.Request | None = None) -> Any:
        """A proposal from the chosen enhancer, shown next to the prompt; the prompt itself is not touched."""
        ui_lang = request_lang(request)
        text = (prompt or "").strip() or (preview_text or "").strip()
        if not text:
            raise user_error(tr("assistant.extend_empty", ui_lang), title="Empty prompt")
        kind = backend if backend in self.extenders else next(iter(self.extenders), "offline")
        extender = self.extenders.get(kind) or self.extender
        label = tr(f"assistant.enhancer.{kind}", ui_lang)
        try:
            result = extender.extend(text, task=self.task, lang=lang, has_image=bool(image))
        except ValueError as e:  # input the extender refuses (e.g. too long): say why
            raise user_error(toast(f"Prompt extension: {e}"), title="Cannot extend") from None
        if not result.ok:
            gr.Warning(toast(tr("assistant.extend_failed", ui_lang, backend=label, reason=result.warning or "")))
            return gr.skip(), gr.skip(), gr.skip()
        notes = [tr("assistant.proposal_note", ui_lang, backend=label)]
        if result.reason == "untranslated" and kind == "offline":
            notes.append(tr("assistant.kept_language", ui_lang))
        elif result.warning:
            notes.append(f"⚠ {result.warning}")
        return result.prompt, md(" ".join(notes)), gr.Group(visible=True)

    @staticmethod
    def accept_proposal(proposal: str, prompt: str) -> Any:
        """Put the proposal in the prompt; keep the previous prompt for Undo."""
        if not (proposal or "").strip():
            return gr.skip(), gr.skip(), gr.skip(), gr.Group(visible=False)
        return proposal.strip(), prompt or "", gr.Button(visible=True), gr.Group(visible=False)

    @staticmethod
    def undo_accept(previous: str | None) -> Any:
        if previous is None:
            return gr.skip(), None, gr.Button(visible=False)
        return previous, None, gr.Button(visible=False)

    def estimate(self, size: str, frames: float, fps: float, steps: float, request: gr.Request) -> str:
        return estimate_text(self.task, size, frames, fps, steps, demo=self.engine.demo, lang=request_lang(request))

    def cache_note(self, cache: str | None, steps: float, shift: float, solver: str, request: gr.Request) -> str:
        return cache_text(cache, self.task, steps, shift, solver, lang=request_lang(request))

    def download(self, request: gr.Request, progress: gr.Progress = gr.Progress(track_tqdm=True)) -> str:
        lang = request_lang(request)
        if not self.options.allow_download:
            raise user_error(tr("weights.download_off", lang), title=tr("error.download_off", lang))
        try:
            self.engine.download(self.task, progress=lambda msg: progress(0, desc=msg))
        except WeightsMissing as e:
            raise user_error(toast(str(e)), title=tr("error.download_failed", lang)) from None
        return self.weights_text(lang)

    # ---------------------------------------------------------------------------- restore
    def _assist_updates(self, fields: Mapping[str, Any]) -> dict[Any, Any]:
        return {self.assist[name]: value for name, value in assistant.values_from_fields(fields).items()
                if name in self.assist}

    def restore_updates(self, settings: Mapping[str, Any], *, entry: HistoryEntry | None, video: str | None,
                        link: str | None = None, problems: list[str] | None = None,
                        lang: str = "en") -> dict[Any, Any]:
        """Component updates that put a stored result (or an mp4's settings) back into this tab; what
        cannot be restored here (a LoRA file missing from this server) is appended to ``problems``."""
        values = form_values_from_settings(settings)
        updates: dict[Any, Any] = {self.form[name]: value for name, value in values.items() if name in self.form}
        updates.update(self.lora_panel.restore_updates(settings, values, problems if problems is not None else [],
                                                       lang))
        fields = settings.get("prompt_fields")
        if isinstance(fields, Mapping):
            updates.update(self._assist_updates(fields))
            if fields.get("mode"):
                updates[self.assist_mode] = fields["mode"]
            if fields.get("lang"):
                updates[self.assist_lang] = fields["lang"]
        if self.image is not None:
            updates[self.image] = str(entry.image) if entry is not None and entry.image else None
        if self.last_image is not None:  # restored with the first image (a link never names a file)
            last = self.store.last_image_path(entry.id) if entry is not None and entry.image else None
            updates[self.last_image] = str(last) if last is not None and last.is_file() else None
        if video is not None:
            updates[self.video] = video
            updates[self.used_seed] = gr.Number(settings.get("seed"), visible=True)
            updates[self.status] = summary(settings)
            updates[self.link] = gr.Textbox(link or "", visible=bool(link))
            updates[self.batch_gallery] = gr.Gallery(None, visible=False)
            updates[self.batch_ids] = []
        return updates

    def prefill_updates(self, prefill: Mapping[str, Any], problems: list[str]) -> dict[Any, Any]:
        """Updates from a pre-fill link's values; what is not a setting of this tab goes to ``problems``."""
        updates: dict[Any, Any] = {}
        for name, value in prefill.items():
            if name in self.form:
                updates[self.form[name]] = value
            else:
                problems.append(f"{name}: not a setting of the {self.task} tab")
        if "seed" in prefill:
            updates[self.form["randomize_seed"]] = False
        return updates
