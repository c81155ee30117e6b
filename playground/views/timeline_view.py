"""The Timeline tab: long videos made of clips, each continuing from the last frame of another.

A timeline (``playground.timeline.TimelineStore``) is an ordered list of history results. The tab shows
its clips (video, prompt, seed), and runs the three ways to make a clip through the same jobs path as a
task tab's Generate (a quick unqueued check, the GPU queue with its per-session cap, progress in the
status line, Cancel at the next step or out of the queue):

* the generate box (one input for text, an image or a video; a note says what will run): text alone is
  text-to-video (T2V-A14B), an image is image-to-video (I2V-A14B or TI2V-5B, the "Model" choice), a
  video is continued from its last frame; the clip joins the open timeline (or starts one);
* Extend: continue the timeline's last clip with a new prompt (overlap, colour matching);
* Regenerate: the selected clip again with another seed or prompt (a continuation continues the same
  parent again); the new result replaces it.

Move up/down, Remove and Export (one mp4, shown and offered for download) act on the stored timeline;
``/?timeline=<id>`` reopens it (after a restart too: timelines are files next to the history).
"""

from __future__ import annotations

import asyncio
import html
import logging
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

import gradio as gr

from playground.history import HistoryEntry, HistoryStore, InvalidIdError, NotOwnerError, UnknownIdError, is_valid_id
from playground.i18n import tr
from playground.images import check_image, discard_upload
from playground.request import InputError, error_text
from playground.studio import TASK_UI, Studio
from playground.timeline import (
    ClipIndexError, ClipMismatchError, EmptyTimelineError, Timeline, TimelineStore, UnknownClipError,
    UnknownTimelineError,
)

from .cancel import CancelRegistry
from .common import MAX_SEED, AppOptions, app_url, request_lang, session_of, t, user_error
from .endpoints import GenerateRunner, RunCancelled
from .safe import code, md, toast
from .task_tab import TaskView

__all__ = ["CONTINUE_TASKS", "RUN_API_NAMES", "TIMELINE_TAB", "TimelineView", "timeline_link"]

log = logging.getLogger("wan.app")

TIMELINE_TAB = "tab-timeline"
TEXT_TASK = "t2v-A14B"
CONTINUE_TASKS = ("i2v-A14B", "ti2v-5B")  # the tasks that start from an image (a continuation's last frame)
MAX_OVERLAP = 8                            # the overlap slider's end (the request allows up to frame_num - 1)
VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov", ".webm", ".mkv", ".avi")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif")
# the queued runs (counted by the per-session job cap, see app.configure_queue)
RUN_API_NAMES = ("timeline_start_ui", "timeline_extend_ui", "timeline_regenerate_ui")
CANCEL_KEY = "timeline"

_GATE_JS = "(ok) => { if (!ok) { throw new Error('not started'); } return []; }"
_GATE_QUEUED_JS = "(running) => { if (running) { throw new Error('stops at its next step'); } return []; }"


def timeline_link(url: str, tid: str) -> str:
    """``http://host:7860/`` + id -> ``http://host:7860/?timeline=<id>`` (query and fragment dropped)."""
    if not is_valid_id(tid):
        raise ValueError(f"{tid!r} is not a valid timeline id")
    parts = urlsplit(url)
    path = parts.path if parts.path.endswith("/") else parts.path + "/"
    return urlunsplit((parts.scheme, parts.netloc, path, "", "")) + "?" + urlencode({"timeline": tid})


def _short(text: str, n: int = 90) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


class TimelineView:
    """The Timeline tab over ``timelines``; new clips run through ``runner`` (the task tabs' runner)."""

    def __init__(self, studio: Studio, store: HistoryStore, timelines: TimelineStore, views: Mapping[str, TaskView],
                 cancels: CancelRegistry, options: AppOptions) -> None:
        self.studio = studio
        self.store = store
        self.timelines = timelines
        self.views = views
        self.cancels = cancels
        self.options = options

    # ------------------------------------------------------------------------------ build
    def build(self) -> TimelineView:
        gr.Markdown(t("timeline.hint"), elem_classes=["timeline-hint"])
        with gr.Group(elem_id="timeline-box-group"):
            self.box = gr.MultimodalTextbox(
                label=t("timeline.box"), placeholder=t("timeline.box_placeholder"), file_count="single",
                sources=["upload"], lines=2, elem_id="timeline-box", submit_btn=t("timeline.box_run"),
            )
            self.route = gr.Markdown(t("timeline.route_empty"), elem_id="timeline-route")
        with gr.Row(equal_height=False, elem_classes=["timeline-row"]):
            with gr.Column(scale=3, elem_classes=["timeline-clips-col"]):
                with gr.Row(equal_height=False, elem_classes=["timeline-bar"]):
                    self.pick = gr.Dropdown([], value=None, label=t("timeline.open"), scale=3, elem_id="timeline-pick")
                    self.title = gr.Textbox(label=t("timeline.title"), placeholder=t("timeline.title_placeholder"),
                                            max_lines=1, scale=2, elem_id="timeline-title")
                    self.new_btn = gr.Button(t("timeline.new"), size="sm", scale=0, min_width=130,
                                             elem_id="timeline-new")
                self.summary = gr.Markdown(t("timeline.none"), elem_id="timeline-summary")
                self.gallery = gr.Gallery(label=t("timeline.clips"), columns=4, height="auto", allow_preview=False,
                                          preview=False, object_fit="contain", interactive=False,
                                          elem_id="timeline-clips")
                self.selected_md = gr.Markdown(t("timeline.pick_clip"), elem_id="timeline-selected")
                with gr.Row(elem_classes=["timeline-actions"]):
                    self.up_btn = gr.Button(t("timeline.up"), size="sm", elem_id="timeline-up")
                    self.down_btn = gr.Button(t("timeline.down"), size="sm", elem_id="timeline-down")
                    self.remove_btn = gr.Button(t("timeline.remove"), size="sm", variant="stop",
                                                elem_id="timeline-remove")
                with gr.Accordion(t("timeline.regenerate_section"), open=True, elem_id="timeline-regen"):
                    self.regen_prompt = gr.Textbox(label=t("field.prompt"), lines=2, elem_id="timeline-regen-prompt")
                    with gr.Row(equal_height=True):
                        self.regen_seed = gr.Number(-1, label=t("field.seed"), precision=0, minimum=-1,
                                                    maximum=MAX_SEED, elem_id="timeline-regen-seed")
                        self.regen_random = gr.Checkbox(True, label=t("field.randomize"),
                                                        elem_id="timeline-regen-random")
                        self.regen_btn = gr.Button(t("timeline.regenerate"), variant="secondary",
                                                   elem_id="timeline-regen-btn", elem_classes=["timeline-run"])
            with gr.Column(scale=2, elem_classes=["timeline-out-col"]):
                self.player = gr.Video(label=t("timeline.player"), format="mp4", interactive=False, autoplay=True,
                                       loop=True, buttons=["download"], elem_id="timeline-player",
                                       elem_classes=["result-video"])
                self.status = gr.Markdown(elem_classes=["status"], elem_id="timeline-status", min_height=48)
                with gr.Group(elem_id="timeline-extend"):
                    self.ext_prompt = gr.Textbox(label=t("timeline.extend_prompt"), lines=2,
                                                 placeholder=t("timeline.extend_placeholder"),
                                                 elem_id="timeline-extend-prompt")
                    with gr.Row():
                        self.task = gr.Radio([("I2V-A14B", "i2v-A14B"), ("TI2V-5B", "ti2v-5B")], value="i2v-A14B",
                                             label=t("timeline.model"), elem_id="timeline-task")
                    with gr.Row():
                        self.overlap = gr.Slider(0, MAX_OVERLAP, value=1, step=1, label=t("timeline.overlap"),
                                                 info=t("timeline.overlap_info"), elem_id="timeline-overlap")
                        self.color = gr.Slider(0, 1, value=0.5, step=0.05, label=t("timeline.color"),
                                               info=t("timeline.color_info"), elem_id="timeline-color")
                    with gr.Row():
                        self.extend_btn = gr.Button(t("timeline.extend"), variant="primary",
                                                    elem_id="timeline-extend-btn", elem_classes=["timeline-run"],
                                                    scale=4)
                        self.cancel_btn = gr.Button(t("btn.cancel"), variant="secondary", elem_classes=["cancel"],
                                                    elem_id="timeline-cancel", scale=1, min_width=96,
                                                    interactive=False)
                with gr.Row(equal_height=True):
                    self.export_btn = gr.Button(t("timeline.export"), variant="secondary", elem_id="timeline-export")
                    self.export_file = gr.DownloadButton(t("timeline.download"), value=None, visible=False,
                                                         elem_id="timeline-download")
                self.link = gr.Textbox(label=t("timeline.link"), interactive=False, max_lines=1, buttons=["copy"],
                                       visible=False, elem_id="timeline-link", elem_classes=["permalink"])
        # the open timeline's id and the selected clip's position (read by the page: plain hidden fields)
        self.tid = gr.Textbox("", visible=False, elem_id="timeline-id")
        self.index = gr.Number(None, visible=False, precision=0, elem_id="timeline-index")
        self.run_task = gr.State(None)  # the task of this session's timeline run (what Cancel stops)
        self.verdict = gr.Checkbox(False, visible=False)
        self.cancel_found = gr.Checkbox(False, visible=False)
        return self

    def set_page(self, tabs: gr.Tabs, notice: gr.Markdown, owner: Any) -> None:
        """The page-level components: the selected tab, the notice, the visitor's owner id (a gr.State)."""
        self.tabs = tabs
        self.notice = notice
        self.owner = owner

    # ---------------------------------------------------------------------------- wiring
    def _view_outputs(self) -> list[Any]:
        """What showing a timeline writes."""
        return [self.tid, self.index, self.summary, self.gallery, self.selected_md, self.link, self.pick,
                self.title, self.regen_prompt, self.regen_seed, self.regen_random]

    def _form_inputs(self) -> dict[str, Any]:
        """The task tabs' settings (size, frames, steps, seed, ...) for a clip made from the generate box."""
        inputs: dict[str, Any] = {}
        for task, view in self.views.items():
            short = TASK_UI[task].api_name.removeprefix("generate_")
            inputs.update({f"{short}__{name}": comp for name, comp in view.form.items() if name != "prompt"})
        return inputs

    def wire(self, demo: gr.Blocks, history: Any) -> None:
        quick = {"queue": False, "show_progress": "hidden", "api_visibility": "private"}
        gr.on([self.box.change, self.task.change, demo.load], self.route_note, inputs=[self.box, self.task],
              outputs=self.route, **quick)
        view = self._view_outputs()
        owner = self.owner

        # the three runs: check (unqueued) -> gate in the browser -> the queued run -> Cancel disarmed
        base = {"tid": self.tid, "owner": owner, "task": self.task, "overlap": self.overlap,
                "color_match": self.color}
        runs = []
        for trigger, check, run, extra, api_name in (
            (self.box.submit, self.check_start, self.run_start, {"box": self.box, **self._form_inputs()},
             RUN_API_NAMES[0]),
            (self.extend_btn.click, self.check_extend, self.run_extend, {"prompt": self.ext_prompt}, RUN_API_NAMES[1]),
            (self.regen_btn.click, self.check_regenerate, self.run_regenerate,
             {"index": self.index, "prompt": self.regen_prompt, "seed": self.regen_seed,
              "randomize": self.regen_random}, RUN_API_NAMES[2]),
        ):
            inputs = {**base, **extra}
            checked = trigger(check, inputs_kwargs=inputs, outputs=[self.status, self.verdict, self.cancel_btn,
                                                                    self.run_task], **quick)
            done = checked.then(None, inputs=self.verdict, js=_GATE_JS, show_progress="hidden").success(
                run, inputs_kwargs=inputs, outputs=[self.status, self.player, self.box, self.ext_prompt, *view],
                api_name=api_name, api_visibility="private", concurrency_id="gpu", concurrency_limit=1,
                show_progress_on=[self.status],
            )
            done.then(lambda: gr.Button(interactive=False), outputs=self.cancel_btn, **quick)
            history.on_result(done)
            runs.append(done)
        stop = self.cancel_btn.click(self.cancel, inputs=self.run_task, outputs=self.cancel_found, **quick)
        stop.then(None, inputs=self.cancel_found, js=_GATE_QUEUED_JS, show_progress="hidden").success(
            self.cancelled_in_queue, outputs=[self.status, self.cancel_btn], cancels=runs, **quick)

        self.gallery.select(self.select_clip, inputs=[self.tid], outputs=[self.index, self.selected_md, self.player,
                                                                           self.regen_prompt, self.regen_seed,
                                                                           self.regen_random], **quick)
        edits = [*view, self.player, self.status]
        self.up_btn.click(self.move_up, inputs=[self.tid, self.index, owner], outputs=edits, **quick)
        self.down_btn.click(self.move_down, inputs=[self.tid, self.index, owner], outputs=edits, **quick)
        self.remove_btn.click(self.remove, inputs=[self.tid, self.index, owner], outputs=edits, **quick)
        gr.on([self.title.submit, self.title.blur], self.rename, inputs=[self.tid, self.title, self.index, owner],
              outputs=edits, **quick)
        self.new_btn.click(self.new_timeline, inputs=owner, outputs=[*view, self.player, self.status, self.export_file],
                           **quick)
        self.pick.input(self.open_picked, inputs=[self.pick, owner], outputs=[*view, self.player, self.status,
                                                                            self.export_file], **quick)
        self.export_btn.click(self.export, inputs=[self.tid], outputs=[self.player, self.export_file, self.status],
                              concurrency_id="export", concurrency_limit=1, show_progress_on=[self.status],
                              api_visibility="private")
        # "Add to timeline" on a History result
        history.timeline_btn.click(self.add_result, inputs=[history.sel_id, self.tid, owner],
                                   outputs=[self.tabs, self.notice, *view, self.player, self.status], **quick)
        owner.change(self.list_choices, inputs=[owner, self.tid], outputs=self.pick, **quick)
        demo.load(self.on_load, inputs=owner, outputs=[self.tabs, self.notice, *view, self.player], **quick)

    # --------------------------------------------------------------------------- showing
    def _scope(self, owner: str | None) -> str | None:
        """Whose timelines may be changed: on a public server only the visitor's own; else any (the operator)."""
        return owner if self.options.public else None

    def list_choices(self, owner: str | None, selected: str | None = None, clear: bool = False) -> Any:
        """The picker's timelines (a public server lists the visitor's own; all stay reachable by link)."""
        if self.options.public and not owner:
            items: list[Timeline] = []
        else:
            items = self.timelines.list(owner if self.options.public else None)
        choices = [(f"{tl.title or tl.id} · {len(tl.clips)}", tl.id) for tl in items[:100]]
        if selected and selected not in {c[1] for c in choices}:
            choices.insert(0, (selected, selected))
        if not selected and not clear:  # a new list only: the shown timeline stays selected
            return gr.Dropdown(choices=choices)
        return gr.Dropdown(choices=choices, value=selected or None)

    def _caption(self, i: int, entry: HistoryEntry) -> str:
        return f"{i + 1} · seed {entry.settings.get('seed', '?')} · {_short(entry.prompt, 60)}"

    def show(self, tl: Timeline | None, request: gr.Request, owner: str | None, *, index: int | None = None
             ) -> dict[Any, Any]:
        """Updates that show ``tl`` (None: no timeline open), the clip at ``index`` selected."""
        lang = request_lang(request)
        if tl is None:
            return {self.tid: "", self.index: None, self.summary: md(tr("timeline.none", lang)), self.title: "",
                    self.gallery: gr.Gallery(value=[], selected_index=None),
                    self.selected_md: md(tr("timeline.pick_clip", lang)), self.link: gr.Textbox("", visible=False),
                    self.pick: self.list_choices(owner, clear=True), self.regen_prompt: "", self.regen_seed: -1,
                    self.regen_random: True}
        entries, missing = [], []
        for c in tl.clips:
            try:
                entries.append(self.store.get(c.result_id))
            except (InvalidIdError, UnknownIdError):
                missing.append(c.result_id)
        items = [(str(e.video), self._caption(i, e)) for i, e in enumerate(entries)]
        if index is not None and not 0 <= index < len(entries):
            index = len(entries) - 1 if entries else None
        updates: dict[Any, Any] = {
            self.tid: tl.id, self.index: index, self.summary: self.summary_text(tl, entries, lang, missing),
            self.title: tl.title,
            self.gallery: gr.Gallery(value=items, selected_index=index),
            self.link: gr.Textbox(timeline_link(app_url(request), tl.id), visible=True),
            self.pick: self.list_choices(owner, tl.id),
        }
        updates.update(self._selection(entries[index] if index is not None else None, index, len(entries), lang))
        return updates

    def _selection(self, entry: HistoryEntry | None, index: int | None, count: int, lang: str) -> dict[Any, Any]:
        if entry is None or index is None:
            return {self.selected_md: md(tr("timeline.pick_clip", lang)), self.regen_prompt: "",
                    self.regen_seed: -1, self.regen_random: True}
        s = entry.settings
        video = s.get("video") if isinstance(s.get("video"), Mapping) else {}
        line = tr("timeline.clip_line", lang, index=index + 1, count=count, task=entry.task, seed=s.get("seed"),
                  frames=video.get("frames", "?"))
        if s.get("parent"):
            line += " · " + tr("timeline.continues", lang, parent=s.get("parent"), overlap=s.get("overlap", 0))
        text = f"{md(line)}\n\n{md(_short(entry.prompt, 300))}\n\n{code(entry.id)}"
        return {self.selected_md: text, self.regen_prompt: entry.prompt, self.regen_seed: s.get("seed", -1),
                self.regen_random: False}

    def summary_text(self, tl: Timeline, entries: list[HistoryEntry], lang: str, missing: list[str]) -> str:
        name = tl.title or tl.id
        if not entries:
            text = md(tr("timeline.empty", lang, name=name))
        else:
            fps = entries[0].settings.get("fps") or 16
            try:
                frames = self.timelines.frame_count(tl)
            except (UnknownIdError, InvalidIdError):
                frames = sum(int((e.settings.get("video") or {}).get("frames") or 0) for e in entries)
            text = md(tr("timeline.summary", lang, name=name, clips=len(entries), frames=frames,
                         seconds=f"{frames / float(fps):.1f}", fps=fps))
        if missing:
            text += "\n\n⚠ " + md(tr("timeline.missing", lang, ids=", ".join(missing)))
        return text

    def _get(self, tid: Any, lang: str) -> Timeline:
        """The open timeline, or a clear error (no timeline open, a bad or unknown id)."""
        tid = str(tid or "").strip()
        if not tid:
            raise user_error(tr("timeline.no_timeline", lang), title=tr("timeline.error", lang))
        try:
            return self.timelines.get(tid)
        except (InvalidIdError, UnknownTimelineError) as e:
            raise user_error(toast(str(e)), title=tr("timeline.error", lang)) from None

    # --------------------------------------------------------------------------- handlers
    def route_note(self, box: Any, task: str, request: gr.Request) -> str:
        """What the generate box will run, for what it holds now (in the visitor's language)."""
        return self._route_text(box, task, request_lang(request))

    def _route_text(self, box: Any, task: str, lang: str) -> str:
        text, files = _box_parts(box)
        if not files:
            return md(tr("timeline.route_text" if text else "timeline.route_empty", lang))
        kind = _file_kind(files[0])
        name = Path(files[0]).name
        if kind == "image":
            return md(tr("timeline.route_image", lang, task=task))
        if kind == "video":
            return md(tr("timeline.route_video", lang, task=task))
        return "⚠ " + md(tr("timeline.bad_file", lang, name=name))

    def select_clip(self, tid: str, evt: gr.SelectData, request: gr.Request) -> Any:
        lang = request_lang(request)
        try:
            tl = self.timelines.get(str(tid or ""))
            entry = self.store.get(tl.clips[evt.index].result_id)
        except (InvalidIdError, UnknownIdError, IndexError):
            return (gr.skip(),) * 6
        sel = self._selection(entry, evt.index, len(tl.clips), lang)
        return (evt.index, sel[self.selected_md], str(entry.video), sel[self.regen_prompt], sel[self.regen_seed],
                sel[self.regen_random])

    def _change(self, fn: Any, tid: Any, owner: str | None, request: gr.Request, *, index: Any) -> Any:
        """A quick edit of the open timeline (unqueued: a problem is said in the status line, not a toast)."""
        lang = request_lang(request)
        try:
            self._get(tid, lang)
            tl = fn()
        except gr.Error as e:
            return {self.status: f"⚠ {md(html.unescape(str(e.message)))}"}
        except (ClipIndexError, NotOwnerError, UnknownIdError, InvalidIdError, InputError) as e:
            return {self.status: f"⚠ {md(str(e))}"}
        updates = self.show(tl, request, owner, index=index() if callable(index) else index)
        selected = updates[self.index]
        try:  # the player follows the selection (a removed clip leaves it)
            video = str(self.store.get(tl.clips[selected].result_id).video) if selected is not None else None
        except (InvalidIdError, UnknownIdError, IndexError):
            video = None
        return {**updates, self.player: video, self.status: ""}

    def _index(self, index: Any, lang: str) -> int:
        if index is None or index == "":
            raise user_error(tr("timeline.pick_first", lang), title=tr("timeline.error", lang))
        return int(index)

    def move_up(self, tid: str, index: Any, owner: str | None, request: gr.Request) -> Any:
        lang = request_lang(request)
        pos = lambda: max(self._index(index, lang) - 1, 0)  # noqa: E731
        return self._change(lambda: self.timelines.move(tid, self._index(index, lang), pos(), owner=self._scope(owner)),
                            tid, owner, request, index=pos)

    def move_down(self, tid: str, index: Any, owner: str | None, request: gr.Request) -> Any:
        lang = request_lang(request)
        pos = lambda: min(self._index(index, lang) + 1, max(len(self._get(tid, lang).clips) - 1, 0))  # noqa: E731
        new = {}

        def move() -> Timeline:
            new["index"] = pos()
            return self.timelines.move(tid, self._index(index, lang), new["index"], owner=self._scope(owner))

        return self._change(move, tid, owner, request, index=lambda: new["index"])

    def remove(self, tid: str, index: Any, owner: str | None, request: gr.Request) -> Any:
        lang = request_lang(request)
        return self._change(lambda: self.timelines.remove(tid, self._index(index, lang), owner=self._scope(owner)),
                            tid, owner, request, index=lambda: max(self._index(index, lang) - 1, 0))

    def rename(self, tid: str, title: str, index: Any, owner: str | None, request: gr.Request) -> Any:
        """The open timeline's title (shown in the picker and the summary); nothing to do without a timeline."""
        if not str(tid or "").strip():
            return {self.status: gr.skip()}
        try:
            if self.timelines.get(tid).title == " ".join(str(title or "").split()):
                return {self.status: gr.skip()}  # unchanged (a blur after a submit)
        except (InvalidIdError, UnknownIdError):
            pass  # said by _change
        i = None if index in (None, "") else int(index)
        return self._change(lambda: self.timelines.rename(tid, str(title or ""), owner=self._scope(owner)), tid, owner,
                            request, index=i)

    def new_timeline(self, owner: str | None, request: gr.Request) -> Any:
        """Close the open timeline: the next clip starts a new one."""
        updates = self.show(None, request, owner)
        updates.update({self.player: None, self.status: "", self.export_file: gr.DownloadButton(value=None,
                                                                                                visible=False)})
        return updates

    def open_picked(self, tid: str | None, owner: str | None, request: gr.Request) -> Any:
        lang = request_lang(request)
        try:
            tl = self._get(tid, lang)
        except gr.Error as e:
            return {self.status: f"⚠ {md(html.unescape(str(e.message)))}"}
        updates = self.show(tl, request, owner, index=len(tl.clips) - 1 if tl.clips else None)
        updates.update(self._last_clip_player(tl))
        updates.update({self.status: "", self.export_file: gr.DownloadButton(value=None, visible=False)})
        return updates

    def _last_clip_player(self, tl: Timeline) -> dict[Any, Any]:
        try:
            return {self.player: str(self.store.get(tl.clips[-1].result_id).video)} if tl.clips else {self.player: None}
        except (InvalidIdError, UnknownIdError):
            return {self.player: None}

    def add_result(self, gen_id: str, tid: str, owner: str | None, request: gr.Request) -> Any:
        """History's "Add to timeline": the selected result joins the open timeline (or starts one)."""
        lang = request_lang(request)
        gen_id = str(gen_id or "").strip()
        try:
            entry = self.store.get(gen_id)
        except (InvalidIdError, UnknownIdError) as e:  # said at the top of the page (the History tab stays)
            return {self.notice: gr.Markdown(f"⚠ {md(tr('error.unknown_result', lang))}: {md(str(e))}", visible=True)}
        tl = self._add(entry.id, tid, owner, overlap=0 if not entry.settings.get("parent") else None)
        updates = self.show(tl, request, owner, index=len(tl.clips) - 1)
        message = md(tr("timeline.added", lang, id=entry.id, name=tl.title or tl.id))
        updates.update({self.tabs: gr.Tabs(selected=TIMELINE_TAB), self.notice: gr.Markdown(message, visible=True),
                        self.player: str(entry.video), self.status: message})
        return updates

    def _add(self, result_id: str, tid: Any, owner: str | None, overlap: int | None = None,
             parent: str | None = None) -> Timeline:
        """``result_id`` appended to the open timeline ``tid`` when this visitor may change it, else to a new
        timeline (which starts with ``parent`` when that is a result of this server)."""
        tid = str(tid or "").strip()
        if is_valid_id(tid):
            try:
                return self.timelines.append(tid, result_id, overlap=overlap, owner=self._scope(owner))
            except (UnknownTimelineError, NotOwnerError):
                pass  # gone, or someone else's (a public server): the clip starts a timeline of this visitor
        first = [parent] if parent and is_valid_id(parent) and self._exists(parent) else []
        tl = self.timelines.create(owner, first)
        return self.timelines.append(tl.id, result_id, overlap=overlap if first else 0)

    def _exists(self, gen_id: str) -> bool:
        try:
            self.store.get(gen_id)
            return True
        except (InvalidIdError, UnknownIdError):
            return False

    # ------------------------------------------------------------------ export and links
    async def export(self, tid: str, request: gr.Request) -> Any:
        """The whole timeline as one mp4: shown in the player and offered for download."""
        lang = request_lang(request)
        try:
            tl = self._get(tid, lang)
        except gr.Error as e:
            return gr.skip(), gr.skip(), f"⚠ {md(html.unescape(str(e.message)))}"
        try:
            path = await asyncio.to_thread(self.timelines.export, tl.id)
        except (EmptyTimelineError, ClipMismatchError, UnknownClipError, UnknownIdError) as e:
            # where the user looks (the status under the player) and as a toast; the last export is hidden
            text = tr("timeline.export_empty", lang) if isinstance(e, EmptyTimelineError) else str(e)
            log.info("timeline %s not exported: %s", tl.id, e)
            gr.Warning(toast(text), title=tr("timeline.error", lang))
            return gr.skip(), gr.DownloadButton(value=None, visible=False), f"⚠ {md(text)}"
        frames = self.timelines.frame_count(tl)
        status = md(tr("timeline.exported", lang, clips=len(tl.clips), frames=frames))
        log.info("timeline %s exported (%d clips, %d frames)", tl.id, len(tl.clips), frames)
        return str(path), gr.DownloadButton(value=str(path), visible=True), status

    def on_load(self, owner: str | None, request: gr.Request) -> Any:
        """``/?timeline=<id>``: the Timeline tab with that timeline open, or a notice saying why not."""
        raw = request.query_params.get("timeline") if request is not None else None
        if raw is None:
            return gr.skip()
        lang = request_lang(request)
        try:
            tl = self.timelines.get(str(raw))
        except (InvalidIdError, UnknownTimelineError) as e:
            message = "**" + md(tr("timeline.link_problem", lang)) + "** " + md(str(e))
            return {self.notice: gr.Markdown(message, visible=True)}
        updates = self.show(tl, request, owner, index=len(tl.clips) - 1 if tl.clips else None)
        updates.update(self._last_clip_player(tl))
        updates[self.tabs] = gr.Tabs(selected=TIMELINE_TAB)
        updates[self.notice] = gr.Markdown(md(tr("timeline.opened", lang, name=tl.title or tl.id,
                                                 clips=len(tl.clips))), visible=True)
        return updates

    # ------------------------------------------------------------------------- the runs
    @property
    def runner(self) -> GenerateRunner:
        return next(iter(self.views.values())).runner

    def cancel(self, task: str | None, request: gr.Request) -> bool:
        """Stop this session's running timeline job at its next step; False when it is still queued."""
        return bool(task) and self.cancels.cancel(session_of(request), str(task))

    @staticmethod
    def cancelled_in_queue(request: gr.Request) -> tuple[str, Any]:
        return md(tr("gen.cancelled_queue", request_lang(request))), gr.Button(interactive=False)

    def _verdict(self, build: Any, lang: str) -> tuple[Any, bool, Any, Any]:
        """Run ``build`` (-> a request, or raise): the check's outputs (status, verdict, Cancel, run task)."""
        try:
            req = build()
        except (InvalidIdError, UnknownIdError) as e:
            return f"⚠ {md(tr('gen.not_started', lang, message=str(e)))}", False, gr.Button(interactive=False), None
        except InputError as e:
            return f"⚠ {md(tr('gen.not_started', lang, message=_error(e, lang)))}", False, gr.Button(interactive=False), None
        except gr.Error as e:
            return f"⚠ {md(tr('gen.not_started', lang, message=html.unescape(str(e.message))))}", False, \
                gr.Button(interactive=False), None
        status = self.studio.engine.weights(req.task)
        if not status.ready and not self.options.allow_download:
            return (f"⚠ {md(tr('gen.not_started', lang, message=tr('gen.weights_missing', lang, task=req.task)))}",
                    False, gr.Button(interactive=False), None)
        return "", True, gr.Button(interactive=True), req.task

    # the generate box ----------------------------------------------------------------------
    def _start_request(self, box: Any, task: str, overlap: Any, color_match: Any, forms: Mapping[str, Any],
                       lang: str) -> tuple[Any, str | None]:
        """The request of the generate box, and the parent result id (a video of this server's history)."""
        text, files = _box_parts(box)
        if not files:
            if not text:
                raise InputError("prompt", tr("timeline.box_empty", lang))
            return self._form_request(TEXT_TASK, text, forms, None), None
        path = files[0]
        kind = _file_kind(path)
        if kind == "image":
            check_image(path)
            return self._form_request(_continue_task(task), text, forms, path), None
        if kind == "video":
            src = self.studio.continuation_source(path)  # an upload of one of our results: recorded under its id
            return self._continuation(src, text, task, overlap, color_match), \
                (src.entry.id if src.entry is not None else None)
        raise InputError("video", tr("timeline.bad_file", lang, name=Path(path).name))

    def _form_request(self, task: str, prompt: str, forms: Mapping[str, Any], image: str | None) -> Any:
        short = TASK_UI[task].api_name.removeprefix("generate_")
        values = {k.split("__", 1)[1]: v for k, v in forms.items() if k.startswith(f"{short}__")}
        values["prompt"] = prompt
        return self.studio.build_request(task, values, image=image)

    def _continuation(self, parent: Any, prompt: str, task: Any, overlap: Any, color_match: Any,
                      **values: Any) -> Any:
        """The request that continues ``parent`` (a result id, an uploaded mp4 or a ``ContinuationSource``) from
        its last frame: ``Studio.continue_request`` (what ``values`` leave out comes from the parent; an empty
        prompt is the parent's)."""
        values = {**values, "prompt": prompt, "overlap": _int(overlap, "overlap"),
                  "color_match": _float(color_match, "color_match")}
        return self.studio.continue_request(parent, values, task=_continue_task(task))

    def check_start(self, request: gr.Request, box: Any = None, tid: str = "", owner: str | None = None,
                    task: str = "i2v-A14B", overlap: Any = 1, color_match: Any = 0.5, **forms: Any) -> Any:
        lang = request_lang(request)
        return self._verdict(lambda: self._start_request(box, task, overlap, color_match, forms, lang)[0], lang)

    async def run_start(self, request: gr.Request, progress: gr.Progress = gr.Progress(), *, box: Any = None,
                        tid: str = "", owner: str | None = None, task: str = "i2v-A14B", overlap: Any = 1,
                        color_match: Any = 0.5, **forms: Any) -> AsyncIterator[dict[Any, Any]]:
        lang = request_lang(request)
        try:
            req, parent = self._start_request(box, task, overlap, color_match, forms, lang)
        except (InputError, InvalidIdError, UnknownIdError) as e:
            message = _error(e, lang) if isinstance(e, InputError) else str(e)
            yield {self.status: f"⚠ {md(tr('gen.not_started', lang, message=message))}"}
            return
        _, files = _box_parts(box)
        async for updates in self._run(req, request, progress, owner, lang,
                                       lambda entry: self._add(entry.id, tid, owner, parent=parent)):
            yield updates
        if files and self.options.upload_root:
            discard_upload(files[0], self.options.upload_root)

    # Extend ------------------------------------------------------------------------------
    def _extend_request(self, tid: Any, prompt: Any, task: str, overlap: Any, color_match: Any, lang: str) -> Any:
        tl = self._get(tid, lang)
        if not tl.clips:
            raise InputError("timeline", tr("timeline.extend_empty", lang))
        try:
            parent = self.store.get(tl.clips[-1].result_id)
        except (InvalidIdError, UnknownIdError) as e:
            raise InputError("timeline", str(e)) from None
        return self._continuation(parent.id, str(prompt or "").strip(), task, overlap, color_match)

    def check_extend(self, request: gr.Request, tid: str = "", owner: str | None = None, task: str = "i2v-A14B",
                     overlap: Any = 1, color_match: Any = 0.5, prompt: str = "") -> Any:
        lang = request_lang(request)
        return self._verdict(lambda: self._extend_request(tid, prompt, task, overlap, color_match, lang), lang)

    async def run_extend(self, request: gr.Request, progress: gr.Progress = gr.Progress(), *, tid: str = "",
                         owner: str | None = None, task: str = "i2v-A14B", overlap: Any = 1, color_match: Any = 0.5,
                         prompt: str = "") -> AsyncIterator[dict[Any, Any]]:
        lang = request_lang(request)
        try:
            req = self._extend_request(tid, prompt, task, overlap, color_match, lang)
        except (InputError, gr.Error, InvalidIdError, UnknownIdError) as e:
            message = _error(e, lang) if isinstance(e, InputError) else html.unescape(str(getattr(e, "message", e)))
            yield {self.status: f"⚠ {md(tr('gen.not_started', lang, message=message))}"}
            return
        async for updates in self._run(req, request, progress, owner, lang,
                                       lambda entry: self._append(tid, entry, owner, lang)):
            yield updates

    def _append(self, tid: str, entry: HistoryEntry, owner: str | None, lang: str) -> Timeline:
        try:
            return self.timelines.append(tid, entry.id, owner=self._scope(owner))
        except NotOwnerError:  # someone else's timeline (a public server): the clip starts one of this visitor
            return self._add(entry.id, "", owner, parent=entry.settings.get("parent"))

    # Regenerate --------------------------------------------------------------------------
    def _regenerate_request(self, tid: Any, index: Any, prompt: Any, seed: Any, randomize: Any, lang: str) -> Any:
        tl = self._get(tid, lang)
        i = self._index(index, lang)
        if not 0 <= i < len(tl.clips):
            raise InputError("timeline", tr("timeline.pick_first", lang))
        try:
            entry = self.store.get(tl.clips[i].result_id)
        except (InvalidIdError, UnknownIdError) as e:
            raise InputError("timeline", str(e)) from None
        s = entry.settings
        prompt = str(prompt or "").strip() or entry.prompt
        seed_v = -1 if randomize or seed in (None, "") else seed
        restored = self.studio.restore_form(s)
        values = {**restored.values, "prompt": prompt, "seed": seed_v, "randomize_seed": seed_v == -1}
        parent_id = s.get("parent")
        if parent_id and is_valid_id(parent_id) and self._exists(parent_id):  # a continuation: the same parent again
            kept = {k: v for k, v in values.items() if k not in ("prompt", "overlap", "color_match", "parent", "size")}
            return self._continuation(parent_id, prompt, entry.task, s.get("overlap", 1), s.get("color_match", 0.0),
                                      **kept)
        if parent_id:  # its parent is not a result here: the stored first frame again, without colour matching
            values["color_match"] = 0
        image = str(entry.image) if entry.image is not None else None
        last = self.store.last_image_path(entry.id)  # a first-last frame clip: its last frame again
        return self.studio.build_request(entry.task, values, image=image, prompt_fields=restored.prompt_fields,
                                         last_image=str(last) if image and last.is_file() else None)

    def check_regenerate(self, request: gr.Request, tid: str = "", owner: str | None = None, task: str = "",
                         overlap: Any = 1, color_match: Any = 0.5, index: Any = None, prompt: str = "", seed: Any = -1,
                         randomize: bool = True) -> Any:
        lang = request_lang(request)
        return self._verdict(lambda: self._regenerate_request(tid, index, prompt, seed, randomize, lang), lang)

    async def run_regenerate(self, request: gr.Request, progress: gr.Progress = gr.Progress(), *, tid: str = "",
                             owner: str | None = None, task: str = "", overlap: Any = 1, color_match: Any = 0.5,
                             index: Any = None, prompt: str = "", seed: Any = -1,
                             randomize: bool = True) -> AsyncIterator[dict[Any, Any]]:
        lang = request_lang(request)
        try:
            req = self._regenerate_request(tid, index, prompt, seed, randomize, lang)
            i = int(index)
        except (InputError, gr.Error, TypeError, ValueError, UnknownIdError) as e:
            message = _error(e, lang) if isinstance(e, InputError) else html.unescape(str(getattr(e, "message", e)))
            yield {self.status: f"⚠ {md(tr('gen.not_started', lang, message=message))}"}
            return

        def place(entry: HistoryEntry) -> Timeline:
            return self.timelines.replace(tid, i, entry.id, owner=self._scope(owner))

        async for updates in self._run(req, request, progress, owner, lang, place, index=i):
            yield updates

    # the run itself ------------------------------------------------------------------------
    async def _run(self, req: Any, request: gr.Request, progress: gr.Progress, owner: str | None, lang: str,
                   place: Any, *, index: int | None = None) -> AsyncIterator[dict[Any, Any]]:
        """Run ``req`` like a task tab's Generate (queue, progress, Cancel), then ``place(entry)`` it in a
        timeline; yields the tab's updates."""
        try:
            async for entry in self.runner.run_batch([req], request=request, progress=progress, owner=owner):
                log.info("timeline clip %s (%s)", entry.id, entry.task)
                try:
                    tl = place(entry)
                except (UnknownIdError, InvalidIdError, NotOwnerError, ClipIndexError, InputError) as e:
                    yield {self.status: f"⚠ {md(tr('timeline.not_placed', lang, id=entry.id, message=str(e)))}",
                           self.player: str(entry.video)}
                    return
                updates = self.show(tl, request, owner, index=len(tl.clips) - 1 if index is None else index)
                updates.update({self.status: self.runner.done_text(entry, lang), self.player: str(entry.video),
                                self.box: gr.MultimodalTextbox(value=None), self.ext_prompt: ""})
                yield updates
        except RunCancelled as c:
            yield {self.status: md(c.text)}
        except gr.Error as e:
            yield {self.status: f"⚠ {md(html.unescape(str(e.message)))}"}


# ------------------------------------------------------------------------------- helpers
def _box_parts(box: Any) -> tuple[str, list[str]]:
    """The generate box's text and file paths (a MultimodalTextbox value: ``{"text", "files"}``)."""
    if not isinstance(box, Mapping):
        return (str(box or "").strip(), [])
    files = []
    for f in box.get("files") or []:
        path = f.get("path") if isinstance(f, Mapping) else getattr(f, "path", f)
        if isinstance(path, str) and path:
            files.append(path)
    return str(box.get("text") or "").strip(), files


def _file_kind(path: str) -> str:
    """``"image"``, ``"video"`` or ``"other"``, by the file's name (its content is checked before use)."""
    suffix = Path(path).suffix.lower()
    if suffix in IMAGE_SUFFIXES:
        return "image"
    if suffix in VIDEO_SUFFIXES:
        return "video"
    return "other"


def _continue_task(task: Any) -> str:
    if task not in CONTINUE_TASKS:
        raise InputError("task", f"continue with one of {', '.join(CONTINUE_TASKS)}; got {str(task)[:40]!r}")
    return str(task)


def _int(value: Any, name: str) -> int:
    try:
        f = float(value)
    except (TypeError, ValueError):
        raise InputError(name, f"must be a whole number; got {str(value)[:40]!r}") from None
    if not f.is_integer():
        raise InputError(name, f"must be a whole number; got {value!r}")
    return int(f)


def _float(value: Any, name: str) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise InputError(name, f"must be a number from 0 to 1; got {str(value)[:40]!r}") from None


def _error(e: InputError, lang: str) -> str:
    if e.field in ("timeline", "video") or (e.field == "prompt" and e.message == tr("timeline.box_empty", lang)):
        return e.message
    return error_text(e, lang)
