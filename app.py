#!/usr/bin/env python
"""Wan 2.2 Playground — the Gradio app. A thin shell: UI and event wiring only.

    python app.py [--demo] [--ckpt-dir DIR] [--host 127.0.0.1] [--port 7860] [--share] [--mcp]
                  [--outputs DIR] [--download] [--queue-size N] [--extender offline|openai|local]

The models live in ``playground.engine.Engine`` (lazy, one task resident); validation, the history
store and share links live in ``playground``. ``--demo`` runs the whole flow on CPU with tiny random
weights (the videos are noise). Importing this module loads no model and does not import torch.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import threading
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from playground.zerogpu import on_zero_gpu

if on_zero_gpu():  # ZeroGPU needs `spaces` imported before anything initialises CUDA
    import spaces  # noqa: F401

import gradio as gr

from playground import assistant
from playground.discovery import WeightsMissing
from playground.engine import Engine, GenerationCancelled, StepInfo
from playground.history import HistoryEntry, HistoryStore, InvalidIdError, UnknownIdError
from playground.i18n import LANGS, STRINGS, lang_from_header, tr
from playground.request import (
    DEMO_MAX_SIDE,
    MAX_FPS,
    MAX_FRAMES,
    MAX_SEED,
    MAX_SIDE,
    MAX_STEPS,
    MIN_SIDE,
    SOLVERS,
    InputError,
    closest_preset,
    size_presets,
)
from playground.share import ShareQuery, parse_query, permalink
from playground.studio import TASK_UI, Studio, TaskUI, form_values_from_settings
from playground.zerogpu import estimate_gpu_seconds, max_duration

log = logging.getLogger("wan.app")

ROOT = Path(__file__).resolve().parent
ASSETS = ROOT / "assets"
TAB_KEYS = {"t2v-A14B": "tab.t2v", "i2v-A14B": "tab.i2v", "ti2v-5B": "tab.ti2v"}
HISTORY_TAB = "tab-history"
GALLERY_LIMIT = 48
DEMO_DEFAULTS = {"frame_num": 9, "sampling_steps": 4}  # with the demo sizes: seconds on a CPU

THEME = gr.themes.Default(primary_hue="violet", secondary_hue="sky", neutral_hue="slate", radius_size="md")
# Dark by default; `?__theme=light` keeps Gradio's light theme.
DARK_BY_DEFAULT_JS = """
() => {
  const params = new URLSearchParams(window.location.search);
  if (params.get('__theme') !== 'light') { document.body.classList.add('dark'); }
}
"""


# ------------------------------------------------------------------------------------ i18n
def build_i18n() -> gr.I18n:
    """UI strings (en/ko/zh) plus the prompt vocabulary's group and term labels."""
    tables = {lang: dict(STRINGS[lang]) for lang in LANGS}
    for lang, extra in assistant.vocab_translations().items():
        tables[lang].update(extra)
    return gr.I18n(**tables)


_T = gr.I18n()  # keys only; the translations are passed to launch() by build_i18n()


def t(key: str) -> Any:
    return _T(key)


def request_lang(request: gr.Request | None) -> str:
    if request is None:
        return "en"
    return lang_from_header(request.headers.get("accept-language"))


def app_url(request: gr.Request | None) -> str:
    """The page URL the user sees (for permalinks): the Referer, else the server URL."""
    if request is None:
        return "http://127.0.0.1:7860/"
    referer = request.headers.get("referer")
    if referer:
        parts = urlsplit(referer)
        if parts.scheme in ("http", "https") and parts.netloc:
            return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))
    url = str(request.url)
    cut = url.find("/gradio_api/")
    return (url[:cut] if cut >= 0 else url.split("?")[0]).rstrip("/") + "/"


class CheckedImage(gr.Image):
    """``gr.Image`` that answers a non-image, corrupt or oversized upload with a clear message.

    Gradio decodes uploads before the handler runs; without this check a text file sent as an
    image fails inside Gradio with a generic error.
    """

    is_template = True  # rendered by the frontend as a plain "image" component

    def preprocess(self, payload: Any) -> Any:
        path = getattr(payload, "path", None)
        if path:
            from playground.images import check_image

            try:
                check_image(path)
            except InputError as e:
                raise gr.Error(str(e), title="Invalid image") from None
        return super().preprocess(payload)


# ----------------------------------------------------------------------------- the tabs
@dataclass
class TaskTab:
    """The components of one task tab, addressed by name (never by position)."""

    task: str
    ui: TaskUI
    spec: Any
    form: dict[str, Any] = field(default_factory=dict)        # request fields: prompt, size, seed, ...
    assist: dict[str, Any] = field(default_factory=dict)      # prompt-assistant fields
    image: Any = None
    prompt_fields: Any = None                                 # gr.State: fields used by the last preview
    preview: Any = None
    assist_mode: Any = None
    assist_lang: Any = None
    assist_note: Any = None
    examples: Any = None
    use_btn: Any = None
    extend_btn: Any = None
    video: Any = None
    used_seed: Any = None
    status: Any = None
    link: Any = None
    weights: Any = None
    download_btn: Any = None
    generate_btn: Any = None
    cancel_btn: Any = None
    estimate: Any = None

    def restorable(self) -> list[Any]:
        comps = [*self.form.values(), *self.assist.values(), self.assist_mode, self.assist_lang, self.preview,
                 self.prompt_fields]
        comps += [self.video, self.used_seed, self.status, self.link]
        return comps + ([self.image] if self.image is not None else [])


def _default_size(spec: Any, demo: bool) -> str:
    presets = size_presets(spec, demo=demo)
    if demo:
        return presets[0].value
    landscape = [p for p in presets if p.width > p.height] or presets
    return max(landscape, key=lambda p: p.width * p.height).value


def _defaults(spec: Any, demo: bool) -> dict[str, Any]:
    """Initial form values: the official ones, or small ones in demo mode (seconds on CPU)."""
    return {
        "size": _default_size(spec, demo),
        "frame_num": DEMO_DEFAULTS["frame_num"] if demo else spec.frame_num,
        "fps": spec.sample_fps,
        "sampling_steps": DEMO_DEFAULTS["sampling_steps"] if demo else spec.sample_steps,
    }


def _build_assistant(tab: TaskTab) -> None:
    modes = [(t("assistant.mode_basic"), "basic"), (t("assistant.mode_advanced"), "advanced")]
    if tab.ui.image_allowed:
        modes.append((t("assistant.mode_i2v"), "i2v"))
    with gr.Accordion(t("section.assistant"), open=True, elem_classes=["assistant"]):
        tab.examples = gr.Dropdown(
            [(ex["title"], i) for i, ex in enumerate(assistant.examples(tab.task))],
            value=None, label=t("assistant.examples"), elem_classes=["examples"],
        )
        with gr.Row():
            tab.assist_mode = gr.Radio(
                modes, value="i2v" if tab.ui.image_required else "advanced", label=t("assistant.mode"), scale=3
            )
            tab.assist_lang = gr.Radio([("English", "en"), ("中文", "zh")], value="en", label=t("assistant.lang"), scale=1)
        a = tab.assist
        for name, desc in (("subject", "subject_desc"), ("scene", "scene_desc"), ("motion", "motion_desc")):
            with gr.Row():
                a[name] = gr.Textbox(label=t(f"assistant.{name}"), max_lines=1, scale=1, elem_classes=[f"f-{name}"])
                a[desc] = gr.Textbox(label=t(f"assistant.{desc}"), max_lines=2, scale=2, elem_classes=[f"f-{desc}"])
        groups = assistant.aesthetic_groups()
        with gr.Accordion(t("assistant.aesthetics"), open=True, elem_classes=["aesthetics"]):
            for i in range(0, len(groups), 4):
                with gr.Row():
                    for g in groups[i : i + 4]:
                        a[g] = gr.Dropdown(
                            [("—", assistant.NONE_CHOICE), *((t(k), v) for k, v in assistant.group_choices(g))],
                            value=assistant.NONE_CHOICE,
                            label=t(assistant.group_key(g)),
                            elem_classes=[f"g-{g}"],
                            min_width=160,
                        )
            with gr.Row():
                a["style"] = gr.Dropdown(
                    [("—", assistant.NONE_CHOICE), *((t(k), v) for k, v in assistant.group_choices(assistant.STYLE_GROUP))],
                    value=assistant.NONE_CHOICE,
                    label=t(assistant.group_key(assistant.STYLE_GROUP)),
                    elem_classes=["g-style"],
                )
                a["fixed_camera"] = gr.Checkbox(False, label=t("assistant.fixed_camera"))
        tab.preview = gr.Textbox(
            label=t("assistant.preview"), lines=3, interactive=False, elem_classes=["preview"], buttons=["copy"]
        )
        tab.assist_note = gr.Markdown(elem_classes=["assist-note"])
        tab.prompt_fields = gr.State(None)
        with gr.Row():
            tab.use_btn = gr.Button(t("assistant.use"), variant="secondary", elem_classes=["use-prompt"])
            tab.extend_btn = gr.Button(t("assistant.extend"), variant="secondary", elem_classes=["extend-prompt"])


def _size_info(spec: Any, *, demo: bool, any_size: bool) -> str | None:
    if not any_size:
        return None
    if demo:
        return f"demo: any W*H, multiples of {spec.size_multiple}, {MIN_SIDE}–{DEMO_MAX_SIDE} px per side"
    return f"any W*H, multiples of {spec.size_multiple}, {MIN_SIDE}–{MAX_SIDE} px per side"


def _build_settings(tab: TaskTab, *, demo: bool, any_size: bool) -> None:
    spec, f = tab.spec, tab.form
    presets = size_presets(spec, demo=demo)
    d = _defaults(spec, demo)
    with gr.Accordion(t("section.settings"), open=True, elem_classes=["settings"]):
        with gr.Row():
            f["size"] = gr.Dropdown(
                [(p.label, p.value) for p in presets],
                value=d["size"],
                label=t("field.size"),
                allow_custom_value=True,
                info=_size_info(spec, demo=demo, any_size=any_size),
                elem_classes=["size"],
            )
            f["frame_num"] = gr.Slider(1, MAX_FRAMES, value=d["frame_num"], step=4, label=t("field.frames"),
                                       elem_classes=["frames"])
        with gr.Row():
            f["fps"] = gr.Slider(1, MAX_FPS, value=d["fps"], step=1, label=t("field.fps"), elem_classes=["fps"])
            f["sampling_steps"] = gr.Slider(1, MAX_STEPS, value=d["sampling_steps"], step=1, label=t("field.steps"),
                                            elem_classes=["steps"])
        with gr.Row():
            f["shift"] = gr.Slider(0.5, 20.0, value=spec.sample_shift, step=0.5, label=t("field.shift"))
            f["sample_solver"] = gr.Dropdown(list(SOLVERS), value="unipc", label=t("field.solver"))
        with gr.Row():
            if spec.moe:
                low, high = spec.guide_scale
                f["guide_scale_high"] = gr.Slider(0.0, 20.0, value=high, step=0.1, label=t("field.guidance_high"))
                f["guide_scale_low"] = gr.Slider(0.0, 20.0, value=low, step=0.1, label=t("field.guidance_low"))
            else:
                f["guide_scale"] = gr.Slider(0.0, 20.0, value=spec.guide_scale, step=0.1, label=t("field.guidance"))
        with gr.Row(equal_height=True):
            f["seed"] = gr.Number(-1, label=t("field.seed"), precision=0, minimum=-1, maximum=MAX_SEED,
                                  elem_classes=["seed"])
            f["randomize_seed"] = gr.Checkbox(True, label=t("field.randomize"), elem_classes=["randomize"])


def _build_task_tab(task: str, engine: Engine, *, any_size: bool) -> TaskTab:
    """Left: image, prompt, Generate/Cancel, the prompt assistant. Right: the result, settings, weights."""
    tab = TaskTab(task=task, ui=TASK_UI[task], spec=engine.spec(task))
    with gr.Row(equal_height=False):
        with gr.Column(scale=3, elem_classes=["inputs"]):
            if tab.ui.image_allowed:
                tab.image = CheckedImage(
                    type="filepath",
                    label=t("field.image" if tab.ui.image_required else "field.image_optional"),
                    sources=["upload", "clipboard"],
                    height=240,
                    elem_classes=["input-image"],
                )
            tab.form["prompt"] = gr.Textbox(
                label=t("field.prompt"), placeholder=t("field.prompt_placeholder"), lines=3, elem_classes=["prompt"]
            )
            with gr.Row():
                tab.generate_btn = gr.Button(t("btn.generate"), variant="primary", elem_classes=["generate"], scale=3)
                tab.cancel_btn = gr.Button(t("btn.cancel"), variant="stop", elem_classes=["cancel"], scale=1)
            d = _defaults(tab.spec, engine.demo)
            tab.estimate = gr.Markdown(  # English here; demo.load and every change write the browser's language
                _estimate_text(task, d["size"], d["frame_num"], d["fps"], d["sampling_steps"], demo=engine.demo),
                elem_classes=["estimate"],
            )
            _build_assistant(tab)
            with gr.Accordion(t("field.negative_prompt"), open=False):
                tab.form["negative_prompt"] = gr.Textbox(
                    value=tab.spec.negative_prompt, show_label=False, lines=3, elem_classes=["negative"]
                )
        with gr.Column(scale=2, elem_classes=["outputs"]):
            tab.video = gr.Video(
                label=t("out.video"), format="mp4", interactive=False, autoplay=True, loop=True,
                buttons=["download"], elem_classes=["result-video"],
            )
            tab.status = gr.Markdown(elem_classes=["status"])
            with gr.Row(equal_height=True):
                # hidden until there is a result: the frontend shows an empty gr.Number as 0
                tab.used_seed = gr.Number(
                    None, label=t("out.used_seed"), precision=0, interactive=False, visible=False,
                    elem_classes=["used-seed"], scale=1,
                )
                tab.link = gr.Textbox(
                    label=t("out.permalink"), interactive=False, max_lines=1, buttons=["copy"],
                    elem_classes=["permalink"], scale=3,
                )
            gr.DeepLinkButton(t("out.share"), copied_value="✓", size="sm")
            _build_settings(tab, demo=engine.demo, any_size=any_size)
            with gr.Accordion(t("section.model"), open=engine.demo):
                tab.weights = gr.Markdown(engine.weights(task).detail, elem_classes=["weights"])
                tab.download_btn = gr.Button(t("btn.download"), size="sm", visible=not engine.demo)
    return tab


# ----------------------------------------------------------------------------- the factory
def create_demo(
    engine: Engine,
    store: HistoryStore,
    *,
    extender: Any = None,
    any_size: bool | None = None,
) -> gr.Blocks:
    """Build the Blocks app over ``engine`` (models) and ``store`` (history on disk)."""
    any_size = engine.demo if any_size is None else any_size
    if extender is None:
        import prompting

        extender = prompting.make_extender("offline")
    studio = Studio(engine, store, any_size=any_size)
    cancel_flags: dict[tuple[str, str], threading.Event] = {}
    flags_lock = threading.Lock()
    tasks = list(TASK_UI)

    with gr.Blocks(title="Wan 2.2 Playground", fill_width=True, delete_cache=(3600, 6 * 3600)) as demo:
        with gr.Row(elem_classes=["header"]):
            gr.Markdown(f"# {STRINGS['en']['app.title']}", elem_classes=["title"])
        gr.Markdown(t("app.subtitle"), elem_classes=["subtitle"])
        if engine.demo:
            gr.Markdown(t("app.demo_badge"), elem_classes=["demo-badge"], elem_id="demo-badge")
        notice = gr.Markdown(visible=False, elem_classes=["notice"], elem_id="notice")

        tabs_by_task: dict[str, TaskTab] = {}
        with gr.Tabs(selected=TASK_UI[tasks[0]].tab_id, elem_id="tabs") as tabs:
            for task in tasks:
                with gr.Tab(t(TAB_KEYS[task]), id=TASK_UI[task].tab_id, elem_id=TASK_UI[task].tab_id):
                    tabs_by_task[task] = _build_task_tab(task, engine, any_size=any_size)
            with gr.Tab(t("tab.history"), id=HISTORY_TAB, elem_id=HISTORY_TAB):
                gr.Markdown(t("history.hint"))
                with gr.Row():
                    refresh_btn = gr.Button(t("history.refresh"), size="sm", scale=0)
                gallery = gr.Gallery(
                    label=t("history.gallery"), columns=4, rows=2, height=460, allow_preview=False, preview=False,
                    object_fit="contain", interactive=False, elem_id="history-gallery",
                )
                gallery_ids = gr.State([])
                with gr.Row():
                    with gr.Column():
                        sel_id = gr.Textbox(label="id", max_lines=1, elem_id="history-id")
                        sel_video = gr.Video(label=t("history.selected"), format="mp4", interactive=False)
                    with gr.Column():
                        sel_settings = gr.JSON(label=t("history.settings"))
                        sel_link = gr.Textbox(label=t("out.permalink"), interactive=False, buttons=["copy"])
                        open_btn = gr.Button(t("history.open"), variant="primary")
                upload = gr.File(label=t("history.load_video"), file_types=[".mp4"], type="filepath", elem_id="load-video")
                upload_settings = gr.JSON(label=t("history.settings"), visible=True)

        restore_outputs: list[Any] = [tabs, notice]
        for tab in tabs_by_task.values():
            restore_outputs += tab.restorable()

        # ------------------------------------------------------------------ restore helpers
        def restore(settings: Mapping[str, Any], *, entry: HistoryEntry | None, video: str | None,
                    message: str, link: str | None = None) -> dict[Any, Any]:
            task = str(settings.get("task"))
            tab = tabs_by_task[task]
            updates: dict[Any, Any] = {tabs: gr.Tabs(selected=tab.ui.tab_id), notice: gr.Markdown(message, visible=True)}
            for name, value in form_values_from_settings(settings).items():
                if name in tab.form:
                    updates[tab.form[name]] = value
            fields = settings.get("prompt_fields")
            if isinstance(fields, Mapping):
                for name, value in assistant.values_from_fields(fields).items():
                    if name in tab.assist:
                        updates[tab.assist[name]] = value
                if fields.get("mode"):
                    updates[tab.assist_mode] = fields["mode"]
                if fields.get("lang"):
                    updates[tab.assist_lang] = fields["lang"]
            if tab.image is not None:
                updates[tab.image] = str(entry.image) if entry is not None and entry.image else None
            if video is not None:
                updates[tab.video] = video
                updates[tab.used_seed] = gr.Number(settings.get("seed"), visible=True)
                updates[tab.status] = _summary(settings)
                updates[tab.link] = link or ""
            return updates

        def on_load(request: gr.Request) -> Any:
            """Open ``?gen=<id>`` (a stored result) or pre-fill a form from ``?task=&prompt=&seed=...``."""
            q: ShareQuery = parse_query(dict(request.query_params), tasks)
            updates: dict[Any, Any] = {}
            messages: list[str] = []
            lang = request_lang(request)
            if q.gen_id is not None:
                try:
                    entry = store.get(q.gen_id)
                except (InvalidIdError, UnknownIdError) as e:
                    q.problems.append(str(e))
                else:
                    message = tr("run.restored", lang, id=entry.id, task=entry.task)
                    updates = restore(entry.settings, entry=entry, video=str(entry.video), message=message,
                                      link=permalink(app_url(request), entry.id))
                    messages.append(message)
            elif q.task is not None:
                tab = tabs_by_task[q.task]
                updates = {tabs: gr.Tabs(selected=tab.ui.tab_id)}
                for name, value in q.prefill.items():
                    if name in tab.form:
                        updates[tab.form[name]] = value
                    else:
                        q.problems.append(f"{name}: not a setting of the {q.task} tab")
                if "seed" in q.prefill:
                    updates[tab.form["randomize_seed"]] = False
                messages.append(tr("run.prefilled", lang, task=q.task))
            if q.problems:
                gr.Warning("Some link parameters were ignored: " + "; ".join(q.problems))
                messages.append("**Link problems:** " + "; ".join(q.problems))
            if messages:
                updates[notice] = gr.Markdown("\n\n".join(messages), visible=True)
            return updates or gr.skip()  # an empty dict would be read as one output value

        # ------------------------------------------------------------------ generation
        def make_generate(tab: TaskTab) -> Callable[..., Any]:
            task = tab.task

            async def generate(
                request: gr.Request,
                progress: gr.Progress = gr.Progress(),
                image: str | None = None,                 # optional for API clients (TI2V text-only)
                prompt_fields: dict[str, Any] | None = None,
                **values: Any,
            ):
                lang = request_lang(request)
                try:
                    req = studio.build_request(task, values, image=image, prompt_fields=prompt_fields)
                except InputError as e:
                    raise gr.Error(str(e), title="Invalid input") from None
                key = (request.session_hash or "api", task)
                cancel = threading.Event()
                with flags_lock:
                    cancel_flags[key] = cancel
                progress(0, desc=tr("run.queued", lang))

                def on_step(info: StepInfo) -> None:
                    progress((info.step, info.total), desc=info.describe(lang))

                def on_status(msg_key: str, **fmt: Any) -> None:
                    progress(0, desc=tr(msg_key, lang, **fmt))

                try:
                    entry = await asyncio.to_thread(
                        studio.generate, req, on_step=on_step, on_status=on_status, cancel=cancel
                    )
                except asyncio.CancelledError:
                    cancel.set()  # Cancel button, client disconnect or job.cancel(): stop at the next step
                    raise
                except GenerationCancelled:
                    raise gr.Error("Generation cancelled.", title="Cancelled") from None
                except (WeightsMissing, InputError) as e:
                    raise gr.Error(str(e), title="Cannot generate") from None
                except Exception as e:  # a bug or a pipeline error: log it fully, tell the user, keep serving
                    log.exception("generation failed for %s", task)
                    raise gr.Error(f"Generation failed: {type(e).__name__}: {e}", title="Generation failed") from None
                finally:
                    with flags_lock:
                        if cancel_flags.get(key) is cancel:
                            del cancel_flags[key]
                s = entry.settings
                status = tr("run.done", lang, seconds=s["elapsed_s"], seed=req.seed, width=s["video"]["width"],
                            height=s["video"]["height"], frames=s["video"]["frames"], fps=req.fps)
                return str(entry.video), req.seed, f"{status}\n\n`{entry.id}`", permalink(app_url(request), entry.id)

            _describe_generate(generate, tab, demo=engine.demo)
            return generate

        def make_cancel(tab: TaskTab) -> Callable[..., None]:
            def cancel(request: gr.Request) -> None:
                with flags_lock:
                    flag = cancel_flags.get((request.session_hash or "api", tab.task))
                if flag is not None:
                    flag.set()
            return cancel

        # ------------------------------------------------------------------ assistant
        def make_preview(tab: TaskTab) -> Callable[..., Any]:
            def preview(mode: str, lang: str, request: gr.Request, **values: Any) -> tuple[Any, Any, Any]:
                """The built prompt, the fields to store with it, and notes: contradictory choices
                (the builder keeps one of each pair) and what the chosen formula leaves out."""
                ui_lang = request_lang(request)
                try:
                    text, fields = assistant.build_preview(values, mode, lang)
                    notes = assistant.conflicts(values, "zh" if ui_lang == "zh" else "en")
                    notes += assistant.mode_notes(values, mode, ui_lang)
                except (ValueError, KeyError) as e:
                    gr.Warning(f"Prompt assistant: {e}")
                    return gr.skip(), gr.skip(), f"⚠ {e}"
                return text, fields, "\n\n".join(f"⚠ {n}" for n in notes)
            return preview

        def make_example(tab: TaskTab) -> Callable[..., Any]:
            def use_example(index: int | None, request: gr.Request) -> Any:
                """Fill the prompt and the assistant from the chosen example."""
                examples = assistant.examples(tab.task)
                if index is None or not 0 <= int(index) < len(examples):
                    return gr.skip()
                ex = examples[int(index)]
                updates: dict[Any, Any] = {tab.form["prompt"]: ex["prompt"]}
                if ex.get("image"):
                    gr.Info(tr("assistant.example_image", request_lang(request)))
                for name, value in assistant.values_from_fields(ex.get("fields") or {}).items():
                    if name in tab.assist:
                        updates[tab.assist[name]] = value
                if ex.get("mode") in ("basic", "advanced") or (ex.get("mode") == "i2v" and tab.ui.image_allowed):
                    updates[tab.assist_mode] = ex["mode"]
                if ex.get("lang") in ("en", "zh"):
                    updates[tab.assist_lang] = ex["lang"]
                return updates
            return use_example

        def make_extend(tab: TaskTab) -> Callable[..., Any]:
            def extend(preview_text: str, prompt: str, lang: str, image: str | None = None) -> str:
                text = (prompt or "").strip() or (preview_text or "").strip()
                if not text:
                    raise gr.Error("Prompt: nothing to extend; type a prompt or fill the assistant first", title="Empty prompt")
                try:
                    result = extender.extend(text, task=tab.task, lang=lang, has_image=bool(image))
                except ValueError as e:  # input the extender refuses (e.g. too long): say why
                    raise gr.Error(f"Prompt extension: {e}", title="Cannot extend") from None
                if result.warning:
                    gr.Warning(f"Prompt extension ({result.backend}): {result.warning}")
                if not result.ok:
                    return gr.skip()
                gr.Info(f"Prompt extended with the {result.backend} backend.")
                return result.prompt
            return extend

        # ------------------------------------------------------------------ history
        def list_history() -> tuple[list[tuple[str, str]], list[str]]:
            entries = store.list(limit=GALLERY_LIMIT)
            return [(str(e.video), e.caption()) for e in entries], [e.id for e in entries]

        def get_result(gen_id: str, request: gr.Request) -> tuple[str, dict[str, Any], str]:
            """Get a video this server generated earlier, by its id.

            Args:
                gen_id: the result id, e.g. 20260101-120000-a1b2c3 (the `?gen=` part of a permalink, or the id in a generate tool's status line).

            Returns:
                the mp4
                the generation settings (task, prompt, seed, size, frames, fps, steps, ...) as JSON
                the result's permalink
            """
            try:
                entry = store.get(str(gen_id or "").strip())
            except (InvalidIdError, UnknownIdError) as e:
                raise gr.Error(str(e), title="Unknown result") from None
            return str(entry.video), entry.settings, permalink(app_url(request), entry.id)

        def select_result(ids: list[str], evt: gr.SelectData) -> str:
            return ids[evt.index] if 0 <= evt.index < len(ids) else ""

        def open_in_tab(gen_id: str, request: gr.Request) -> dict[Any, Any]:
            try:
                entry = store.get(str(gen_id or "").strip())
            except (InvalidIdError, UnknownIdError) as e:
                raise gr.Error(str(e), title="Unknown result") from None
            return restore(entry.settings, entry=entry, video=str(entry.video),
                           message=tr("run.restored", request_lang(request), id=entry.id, task=entry.task),
                           link=permalink(app_url(request), entry.id))

        def settings_from_video(path: str | None) -> dict[str, Any]:
            """Read the generation settings embedded in an mp4 made by this app (Wan 2.2 Playground).

            Args:
                path: an mp4 generated by this app; its metadata holds the settings.

            Returns:
                the settings (task, prompt, negative prompt, seed, size, frames, fps, steps, shift, guidance, solver, id) as JSON
            """
            if not path:
                raise gr.Error("Video: no file uploaded", title="No video")
            try:
                return studio.settings_from_video(path)
            except InputError as e:
                raise gr.Error(str(e), title="No settings in this video") from None

        def restore_from_settings(settings: dict[str, Any], request: gr.Request) -> dict[Any, Any]:
            entry = None
            gen_id = settings.get("id")
            if isinstance(gen_id, str):
                try:
                    entry = store.get(gen_id)
                except (InvalidIdError, UnknownIdError):
                    entry = None  # made elsewhere: restore the form only
            return restore(
                settings, entry=entry, video=str(entry.video) if entry else None,
                message=f"Settings loaded from the video ({settings.get('task')}, seed {settings.get('seed')}).",
                link=permalink(app_url(request), entry.id) if entry else None,
            )

        # ------------------------------------------------------------------ wiring
        for tab in tabs_by_task.values():
            gen_inputs = dict(tab.form)
            gen_inputs["prompt_fields"] = tab.prompt_fields
            if tab.image is not None:
                gen_inputs["image"] = tab.image
            gen_event = tab.generate_btn.click(
                make_generate(tab),
                inputs_kwargs=gen_inputs,
                outputs=[tab.video, tab.used_seed, tab.status, tab.link],
                api_name=tab.ui.api_name,
                concurrency_id="gpu",
                concurrency_limit=1,
            )
            gen_event.success(list_history, outputs=[gallery, gallery_ids], api_visibility="private", queue=False)
            gen_event.success(lambda: gr.Number(visible=True), outputs=tab.used_seed, api_visibility="private",
                              queue=False, show_progress="hidden")
            tab.cancel_btn.click(make_cancel(tab), cancels=[gen_event], queue=False, api_visibility="private")

            assist_inputs = {name: comp for name, comp in tab.assist.items()}
            gr.on(
                [c.change for c in (tab.assist_mode, tab.assist_lang, *tab.assist.values())],
                make_preview(tab),
                inputs=[tab.assist_mode, tab.assist_lang],
                inputs_kwargs=assist_inputs,
                outputs=[tab.preview, tab.prompt_fields, tab.assist_note],
                queue=False,
                show_progress="hidden",
                trigger_mode="always_last",
                api_visibility="private",
            )
            tab.examples.input(
                make_example(tab), inputs=tab.examples,
                outputs=[tab.form["prompt"], tab.assist_mode, tab.assist_lang, *tab.assist.values()],
                queue=False, api_visibility="private",
            )
            tab.use_btn.click(lambda text: text if text else gr.skip(), inputs=tab.preview, outputs=tab.form["prompt"],
                              queue=False, api_visibility="private")
            extend_inputs = [tab.preview, tab.form["prompt"], tab.assist_lang] + ([tab.image] if tab.image is not None else [])
            tab.extend_btn.click(make_extend(tab), inputs=extend_inputs, outputs=tab.form["prompt"],
                                 concurrency_id="llm", api_visibility="private")
            estimate_inputs = [tab.form[k] for k in ("size", "frame_num", "fps", "sampling_steps")]
            gr.on([demo.load, *(c.change for c in estimate_inputs)], _make_estimate(tab, engine.demo),
                  inputs=estimate_inputs, outputs=tab.estimate, queue=False, show_progress="hidden",
                  api_visibility="private")
            if tab.image is not None:
                tab.image.upload(_make_size_from_image(tab, engine.demo), inputs=tab.image, outputs=tab.form["size"],
                                 queue=False, api_visibility="private")
            tab.download_btn.click(_make_download(engine, tab), outputs=tab.weights, concurrency_id="gpu",
                                   api_visibility="private")

        refresh_btn.click(list_history, outputs=[gallery, gallery_ids], queue=False, api_name="list_history",
                          api_visibility="undocumented")
        gallery.select(select_result, inputs=gallery_ids, outputs=sel_id, queue=False, api_visibility="private").then(
            get_result, inputs=sel_id, outputs=[sel_video, sel_settings, sel_link], api_visibility="private",
            api_name="show_selected_result",  # keeps "get_result" (from the function's name) for the public endpoint
        )
        # not queued: a file lookup, and over MCP Gradio then returns its three outputs as three content blocks
        sel_id.submit(get_result, inputs=sel_id, outputs=[sel_video, sel_settings, sel_link], api_name="get_result",
                      queue=False)
        open_btn.click(open_in_tab, inputs=sel_id, outputs=restore_outputs, api_visibility="private")
        upload.upload(settings_from_video, inputs=upload, outputs=upload_settings, api_name="settings_from_video").success(
            restore_from_settings, inputs=upload_settings, outputs=restore_outputs, api_visibility="private"
        )
        demo.load(on_load, outputs=restore_outputs, api_visibility="private").then(
            list_history, outputs=[gallery, gallery_ids], api_visibility="private"
        )
        gr.api(_make_extend_api(extender), api_name="extend_prompt")
    return demo


_TASK_TITLES = {
    "t2v-A14B": "text-to-video with the A14B two-expert MoE model",
    "i2v-A14B": "image-to-video with the A14B two-expert MoE model: the image is the first frame",
    "ti2v-5B": "text-to-video or text+image-to-video with the dense TI2V-5B model (720p)",
}


def _describe_generate(fn: Callable[..., Any], tab: TaskTab, *, demo: bool) -> None:
    """Name ``fn`` after its API endpoint and give it a signature and an ``Args:`` docstring.

    ``generate`` takes the form fields as ``**values``; Gradio builds the API docs and the MCP tool
    schema from the signature and the docstring, so list every field there with what it accepts.
    """
    import inspect

    spec, task = tab.spec, tab.task
    presets = ", ".join(p.value for p in size_presets(spec, demo=demo))
    sizes = f"one of {presets}"
    d = _defaults(spec, demo)
    args = {
        "prompt": "what the video shows (English or Chinese): subject, scene, motion, light, camera; "
                  "use extend_prompt to turn a short idea into a detailed prompt.",
        "negative_prompt": "what to avoid; default: the official Wan 2.2 negative prompt (Chinese).",
        "size": f"the video size as a 'W*H' string, {sizes}. Default {d['size']}.",
        "frame_num": f"number of frames, 4n+1 between 1 and {MAX_FRAMES} (e.g. 81). Default {d['frame_num']}.",
        "fps": f"frames per second of the mp4, 1 to {MAX_FPS}. Default {spec.sample_fps}.",
        "sampling_steps": f"denoising steps, 1 to {MAX_STEPS}; more is slower and sharper. Default {d['sampling_steps']}.",
        "shift": f"noise-schedule shift of the flow-matching sampler. Default {spec.sample_shift:g}.",
        "sample_solver": f"the sampler: {', '.join(SOLVERS)}. Default unipc.",
        "seed": f"random seed, 0 to {MAX_SEED} (-1: random); used only when randomize_seed is false.",
        "randomize_seed": "pick a random seed (the seed used is returned). Default true.",
    }
    if spec.moe:
        low, high = spec.guide_scale
        args["guide_scale_high"] = f"classifier-free guidance of the high-noise expert (early steps: layout, motion). Default {high:g}."
        args["guide_scale_low"] = f"classifier-free guidance of the low-noise expert (late steps: detail). Default {low:g}."
    else:
        args["guide_scale"] = f"classifier-free guidance scale. Default {spec.guide_scale:g}."
    if tab.ui.image_required:
        args["image"] = "the first frame (PNG, JPEG or WebP, at most 25 MB); required. The video keeps the image's aspect ratio at about the pixel area of size."
    elif tab.ui.image_allowed:
        args["image"] = "optional first frame (PNG, JPEG or WebP, at most 25 MB); leave empty for text-to-video."
    lines = [f"Generate a video with Wan 2.2 {task}: {_TASK_TITLES.get(task, task)}.", "", "Args:"]
    lines += [f"    {name}: {args[name]}" for name in (*tab.form, *(["image"] if tab.image is not None else []))]
    lines += ["", "Returns:", "    the mp4", "    the seed actually used",
              "    a status line with the time taken and the result id", "    the result's permalink (?gen=<id>)"]
    fn.__name__ = fn.__qualname__ = tab.ui.api_name
    fn.__doc__ = "\n".join(lines)
    sig = inspect.signature(fn)
    params = [p for p in sig.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
    params += [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY) for name in tab.form]
    fn.__signature__ = sig.replace(parameters=params)  # type: ignore[attr-defined]


def _summary(settings: Mapping[str, Any]) -> str:
    v = settings.get("video") or {}
    return (
        f"{settings.get('task')} · seed {settings.get('seed')} · {v.get('width')}×{v.get('height')} · "
        f"{v.get('frames')} frames @ {v.get('fps')} fps · {settings.get('sampling_steps')} steps"
        f"\n\n`{settings.get('id', '')}`"
    )


def _make_estimate(tab: TaskTab, demo: bool) -> Callable[..., str]:
    def estimate(size: str, frames: float, fps: float, steps: float, request: gr.Request) -> str:
        return _estimate_text(tab.task, size, frames, fps, steps, demo=demo, lang=request_lang(request))
    return estimate


def _estimate_text(task: str, size: str, frames: float, fps: float, steps: float, *, demo: bool,
                   lang: str = "en") -> str:
    """``"81 frames @ 16 fps = 5.1 s of video · estimated GPU time ≈ 950 s (H100-class, bf16)"`` in
    ``lang`` (no GPU estimate in demo mode); empty while a field holds an invalid value."""
    from playground.request import parse_size

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


def _make_size_from_image(tab: TaskTab, demo: bool) -> Callable[[str | None], Any]:
    def size_from_image(path: str | None) -> Any:
        if not path:
            return gr.skip()
        from playground.images import check_image

        try:
            w, h = check_image(path)
        except InputError as e:
            gr.Warning(str(e))
            return gr.skip()
        return closest_preset(size_presets(tab.spec, demo=demo), w, h).value
    return size_from_image


def _make_download(engine: Engine, tab: TaskTab) -> Callable[..., str]:
    def download(progress: gr.Progress = gr.Progress(track_tqdm=True)) -> str:
        try:
            path = engine.download(tab.task, progress=lambda msg: progress(0, desc=msg))
        except WeightsMissing as e:
            raise gr.Error(str(e), title="Download failed") from None
        return f"{tab.task} weights: {path}"
    return download


def _make_extend_api(extender: Any) -> Callable[..., str]:
    def extend_prompt(prompt: str, task: str = "t2v-A14B", lang: str = "en", has_image: bool = False) -> str:
        """Extend a short video prompt into a detailed one in the Wan 2.2 prompt-extension style (subject, scene, motion, light, camera); use the result as the prompt of a generate tool.

        Args:
            prompt: the short prompt to extend, e.g. "a red fox in the snow".
            task: the model the prompt is for: "t2v-A14B" (text-to-video), "i2v-A14B" (image-to-video) or "ti2v-5B" (text or text + image).
            lang: the language of the extended prompt: "en" (English) or "zh" (Chinese).
            has_image: true if the video will start from an input image (i2v-A14B, or ti2v-5B with an image); the prompt then describes motion and camera rather than the scene. Default false.

        Returns:
            the extended prompt
        """
        if not (prompt or "").strip():
            raise gr.Error("prompt: is empty", title="Empty prompt")
        if task not in TASK_UI:
            raise gr.Error(f"task: {task!r} is not one of {', '.join(TASK_UI)}", title="Invalid input")
        try:
            result = extender.extend(prompt, task=task, lang=lang, has_image=has_image)
        except ValueError as e:
            raise gr.Error(f"Prompt extension: {e}", title="Invalid input") from None
        if not result.ok:
            raise gr.Error(f"Prompt extension failed ({result.backend}): {result.warning}", title="Extension failed")
        return str(result.prompt)
    return extend_prompt


# ----------------------------------------------------------------------------- launch
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Wan 2.2 Playground (Gradio).")
    p.add_argument("--demo", action="store_true", help="tiny random weights: the whole UI on CPU in seconds (videos are noise)")
    p.add_argument("--ckpt-dir", type=Path, default=None, help="checkpoint folder (else WAN_CKPT_DIR, else the Hugging Face cache)")
    p.add_argument("--download", action="store_true", help="download missing weights from the Hugging Face Hub on first use")
    p.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"))
    p.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", "7860")))
    p.add_argument("--share", action="store_true", help="create a public *.gradio.live link")
    p.add_argument("--mcp", action="store_true", help="also serve the API as an MCP server (needs gradio[mcp])")
    p.add_argument("--outputs", type=Path, default=ROOT / "outputs", help="history folder (mp4 + settings JSON)")
    p.add_argument("--demo-dir", type=Path, default=ROOT / ".demo_ckpt", help="where --demo writes its tiny weights")
    p.add_argument("--queue-size", type=int, default=16, help="maximum number of queued generations")
    p.add_argument("--any-size", action="store_true", help="allow any W*H that is a multiple of the model stride")
    p.add_argument("--device", default=None, help="cuda, cuda:1 or cpu (default: cuda when available)")
    p.add_argument("--dtype", default=None, choices=["bfloat16", "float16", "float32"])
    p.add_argument("--offload", action=argparse.BooleanOptionalAction, default=None,
                   help="offload idle experts / encoders to the CPU (default: the pipeline's choice)")
    p.add_argument("--extender", default="offline", choices=["offline", "openai", "local"],
                   help="prompt extension backend for the 'Extend with LLM' button")
    p.add_argument("--extender-model", default=None, help="model name for the openai / local extender")
    p.add_argument("--extender-url", default=None, help="base URL of an OpenAI-compatible endpoint")
    return p.parse_args(argv)


def make_extender(args: argparse.Namespace) -> Any:
    import prompting

    options: dict[str, Any] = {}
    if args.extender_model:
        options["model"] = args.extender_model
    if args.extender_url:
        options["base_url"] = args.extender_url
    return prompting.make_extender(args.extender, **options)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.mcp:
        try:
            import mcp  # noqa: F401
        except ImportError as e:
            sys.exit(f"--mcp needs the MCP extra ({e}): pip install -r requirements.txt (or pip install 'gradio[mcp]')")
        # The generate tools take the prompt assistant's fields from a gr.State; over MCP it stays None
        # (no assistant fields are stored with the result), which is what we want: no warning for it.
        warnings.filterwarnings("ignore", message="This MCP server includes a tool that has a gr.State input")
    engine = Engine(
        ckpt_dir=args.ckpt_dir, demo=args.demo, demo_root=args.demo_dir, device=args.device,
        dtype=args.dtype, offload=args.offload, allow_download=args.download,
    )
    store = HistoryStore(args.outputs)
    demo = create_demo(engine, store, extender=make_extender(args), any_size=args.any_size or args.demo)
    demo.queue(max_size=args.queue_size, default_concurrency_limit=1)
    demo.launch(
        server_name=args.host,
        server_port=args.port,
        share=args.share,
        mcp_server=args.mcp,
        allowed_paths=[str(store.root)],
        max_file_size="25mb",
        i18n=build_i18n(),
        theme=THEME,
        css_paths=[ASSETS / "style.css"],
        js=DARK_BY_DEFAULT_JS,
        favicon_path=ASSETS / "favicon.png" if (ASSETS / "favicon.png").is_file() else None,
        footer_links=["api", "gradio", "settings"],
    )


if __name__ == "__main__":
    main()
