"""One task tab (T2V, I2V, TI2V): its components and its handlers.

Left: image, prompt, Generate/Cancel, the prompt assistant. Right: the result, the settings, the
weights. The generate endpoint itself is in ``endpoints``; the tab wires it to its form.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import gradio as gr

from playground import assistant
from playground.discovery import WeightsMissing
from playground.engine import Engine
from playground.history import HistoryEntry, HistoryStore
from playground.i18n import tr
from playground.request import InputError, closest_preset, parse_size, size_presets
from playground.studio import TASK_UI, form_values_from_settings
from playground.zerogpu import estimate_gpu_seconds, max_duration, on_zero_gpu
from wan.configs import ModelSpec

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
    request_lang,
    session_of,
    t,
)
from .endpoints import Endpoint, default_values
from . import weights_view
from .safe import code, md, toast

__all__ = ["TAB_KEYS", "TaskView", "estimate_text"]

TAB_KEYS = {"t2v-A14B": "tab.t2v", "i2v-A14B": "tab.i2v", "ti2v-5B": "tab.ti2v"}


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


def summary(settings: Mapping[str, Any]) -> str:
    """The status line of a restored result (stored settings or mp4 metadata: shown escaped)."""
    v = settings.get("video") if isinstance(settings.get("video"), Mapping) else {}
    line = (f"{settings.get('task')} · seed {settings.get('seed')} · {v.get('width')}×{v.get('height')} · "
            f"{v.get('frames')} frames @ {v.get('fps')} fps · {settings.get('sampling_steps')} steps")
    return f"{md(line)}\n\n{code(settings.get('id', ''))}"


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
        self.extenders: dict[str, Any] = {}  # prompt enhancers by kind, the default first (set by the app)

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
                self._build_settings()
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
            self.image = CheckedImage(
                type="filepath", label=t("field.image" if self.ui.image_required else "field.image_optional"),
                sources=["upload", "clipboard"], height=240, elem_classes=["input-image"],
            )
        self.form["prompt"] = gr.Textbox(
            label=t("field.prompt"), placeholder=t("field.prompt_placeholder"), lines=3, elem_classes=["prompt"]
        )
        with gr.Row():
            self.generate_btn = gr.Button(t("btn.generate"), variant="primary", elem_classes=["generate"], scale=3)
            self.cancel_btn = gr.Button(t("btn.cancel"), variant="stop", elem_classes=["cancel"], scale=1)
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
        self.status = gr.Markdown(elem_classes=["status"])
        with gr.Row(equal_height=True):
            # hidden until there is a result: the frontend shows an empty gr.Number as 0
            self.used_seed = gr.Number(None, label=t("out.used_seed"), precision=0, interactive=False, visible=False,
                                       elem_classes=["used-seed"], scale=1)
            self.link = gr.Textbox(label=t("out.permalink"), interactive=False, max_lines=1, buttons=["copy"],
                                   elem_classes=["permalink"], scale=3)
        # on a public server no icon: Gradio's default icon is a file path of the server in /config
        icon = {"icon": None} if self.options.public else {}
        gr.DeepLinkButton(t("out.share"), copied_value="✓", size="sm", **icon)

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
            with gr.Row():
                f["fps"] = CheckedSlider(1, MAX_FPS, value=d["fps"], step=1, label=t("field.fps"), elem_classes=["fps"])
                f["sampling_steps"] = CheckedSlider(1, MAX_STEPS, value=d["sampling_steps"], step=1,
                                                    label=t("field.steps"), elem_classes=["steps"])
            with gr.Row():
                f["shift"] = CheckedSlider(LIMITS.shift.lo, LIMITS.shift.hi, value=spec.sample_shift, step=LIMITS.shift.step,
                                           label=t("field.shift"))
                f["sample_solver"] = gr.Dropdown(list(SOLVERS), value="unipc", label=t("field.solver"))
            with gr.Row():
                g = LIMITS.guide_scale
                for name, expert, label in (("guide_scale_high", "high_noise", "field.guidance_high"),
                                            ("guide_scale_low", "low_noise", "field.guidance_low"),
                                            ("guide_scale", "dense", "field.guidance")):
                    if expert in spec.guide_scale:
                        f[name] = CheckedSlider(g.lo, g.hi, value=spec.guide_scale[expert], step=g.step,
                                                label=t(label))
            with gr.Row(equal_height=True):
                f["seed"] = CheckedNumber(-1, label=t("field.seed"), precision=0, minimum=-1, maximum=MAX_SEED,
                                          elem_classes=["seed"])
                f["randomize_seed"] = gr.Checkbox(True, label=t("field.randomize"), elem_classes=["randomize"])
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
                 self.prompt_fields, self.video, self.used_seed, self.status, self.link]
        return comps + ([self.image] if self.image is not None else [])

    # ---------------------------------------------------------------------------- wiring
    def wire(self, demo: gr.Blocks, endpoint: Endpoint, *, owner: Any, extender: Any,
             on_result: Callable[[Any], None]) -> None:
        """Connect the tab's events; ``on_result(event)`` chains what follows a new result (History)."""
        from .endpoints import extenders_of

        self.extenders = extenders_of(extender)
        self.extender = next(iter(self.extenders.values()))  # the default enhancer
        gen_inputs = {**self.form, "prompt_fields": self.prompt_fields, "owner": owner}
        if self.image is not None:
            gen_inputs["image"] = self.image
        gen_event = self.generate_btn.click(
            endpoint, inputs_kwargs=gen_inputs, outputs=[self.video, self.used_seed, self.status, self.link],
            api_name=self.ui.api_name, concurrency_id="gpu", concurrency_limit=1,
        )
        on_result(gen_event)
        gen_event.success(lambda: gr.Number(visible=True), outputs=self.used_seed, api_visibility="private",
                          queue=False, show_progress="hidden")
        if self.image is not None:
            gen_event.success(self.keep_image, inputs=self.link, outputs=self.image, queue=False,
                              api_visibility="private", show_progress="hidden")
            self.image.upload(self.size_from_image, inputs=self.image, outputs=self.form["size"], queue=False,
                              api_visibility="private")
        self.cancel_btn.click(self.cancel, cancels=[gen_event], queue=False, api_visibility="private")
        self._wire_assistant()
        estimate_inputs = [self.form[k] for k in ("size", "frame_num", "fps", "sampling_steps")]
        gr.on([demo.load, *(c.change for c in estimate_inputs)], self.estimate, inputs=estimate_inputs,
              outputs=self.estimate_md, queue=False, show_progress="hidden", api_visibility="private")
        self.download_btn.click(self.download, outputs=self.weights, concurrency_id="gpu", api_visibility="private")
        demo.load(self.weights_for, outputs=self.weights, queue=False, show_progress="hidden", api_visibility="private")
        self.quality.wire(self.form)

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
    def cancel(self, request: gr.Request) -> None:
        self.cancels.cancel(session_of(request), self.task)

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

    def size_from_image(self, path: str | None) -> Any:
        if not path:
            return gr.skip()
        from playground.images import check_image

        try:
            w, h = check_image(path)
        except InputError as e:
            gr.Warning(toast(str(e)))
            return gr.skip()
        return closest_preset(size_presets(self.spec, demo=self.engine.demo), w, h).value

    def keep_image(self, link: str) -> Any:
        """After a result, show its stored input image: the upload itself is deleted once used."""
        gen_id = (link or "").rpartition("?gen=")[2]
        try:
            path = self.store.image_path(gen_id)
        except ValueError:
            return gr.skip()
        return str(path) if path.is_file() else gr.skip()

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
                        link: str | None = None) -> dict[Any, Any]:
        """Component updates that put a stored result (or an mp4's settings) back into this tab."""
        updates: dict[Any, Any] = {self.form[name]: value for name, value in form_values_from_settings(settings).items()
                                   if name in self.form}
        fields = settings.get("prompt_fields")
        if isinstance(fields, Mapping):
            updates.update(self._assist_updates(fields))
            if fields.get("mode"):
                updates[self.assist_mode] = fields["mode"]
            if fields.get("lang"):
                updates[self.assist_lang] = fields["lang"]
        if self.image is not None:
            updates[self.image] = str(entry.image) if entry is not None and entry.image else None
        if video is not None:
            updates[self.video] = video
            updates[self.used_seed] = gr.Number(settings.get("seed"), visible=True)
            updates[self.status] = summary(settings)
            updates[self.link] = link or ""
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
