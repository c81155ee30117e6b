"""The History tab and everything that opens a stored result: the gallery, ``get_result``,
"open in its tab", settings from an uploaded mp4, and the page's ``?gen=`` / pre-fill links."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import gradio as gr

from playground.history import HistoryEntry, HistoryStore, InvalidIdError, UnknownIdError
from playground.images import discard_upload
from playground.i18n import tr
from playground.request import InputError
from playground.share import ShareQuery, parse_query, permalink
from playground.studio import TASK_UI, Studio

from . import ownership
from .common import user_error, AppOptions, app_url, input_error, request_lang, t
from .safe import md, toast
from .task_tab import TaskView

__all__ = ["GALLERY_LIMIT", "HISTORY_TAB", "HistoryView"]

HISTORY_TAB = "tab-history"
GALLERY_LIMIT = 48


class HistoryView:
    """The History tab over ``store``; restores results into the task ``views``."""

    def __init__(self, studio: Studio, store: HistoryStore, views: Mapping[str, TaskView], options: AppOptions) -> None:
        self.studio = studio
        self.store = store
        self.views = views
        self.options = options

    # ------------------------------------------------------------------------------ build
    def build(self) -> HistoryView:
        gr.Markdown(t("history.hint"))
        with gr.Row():
            self.refresh_btn = gr.Button(t("history.refresh"), size="sm", scale=0)
        self.gallery = gr.Gallery(
            label=t("history.gallery"), columns=4, rows=2, height=460, allow_preview=False, preview=False,
            object_fit="contain", interactive=False, elem_id="history-gallery",
        )
        self.gallery_ids = gr.State([])
        with gr.Row():
            with gr.Column():
                self.sel_id = gr.Textbox(label="id", max_lines=1, elem_id="history-id")
                self.sel_video = gr.Video(label=t("history.selected"), format="mp4", interactive=False)
            with gr.Column():
                self.sel_settings = gr.JSON(label=t("history.settings"))
                self.sel_link = gr.Textbox(label=t("out.permalink"), interactive=False, buttons=["copy"])
                self.open_btn = gr.Button(t("history.open"), variant="primary")
        self.upload = gr.File(label=t("history.load_video"), file_types=[".mp4"], type="filepath", elem_id="load-video")
        self.upload_settings = gr.JSON(label=t("history.settings"), visible=True)
        # the visitor's random token (in the browser's storage) and, per session, its owner id
        self.owner_token = gr.BrowserState(None, storage_key="wan-playground-owner")
        self.owner = gr.State(None)
        return self

    def set_page(self, tabs: gr.Tabs, notice: gr.Markdown) -> None:
        """The page-level components a restore writes: the selected tab and the notice."""
        self.tabs = tabs
        self.notice = notice

    def restore_outputs(self) -> list[Any]:
        outputs: list[Any] = [self.tabs, self.notice]
        for view in self.views.values():
            outputs += view.restorable()
        return outputs

    # ---------------------------------------------------------------------------- wiring
    def wire(self, demo: gr.Blocks) -> None:
        listing = dict(inputs=self.owner, outputs=[self.gallery, self.gallery_ids], queue=False)
        self.refresh_btn.click(self.list_history, **listing, api_name="list_history", api_visibility="undocumented")
        self.gallery.select(self.select_result, inputs=self.gallery_ids, outputs=self.sel_id, queue=False,
                            api_visibility="private").then(
            self.get_result, inputs=self.sel_id, outputs=[self.sel_video, self.sel_settings, self.sel_link],
            queue=False, api_visibility="private",
            api_name="show_selected_result",  # keeps "get_result" (from the function's name) for the public endpoint
        )
        # not queued: a file lookup, and over MCP Gradio then returns its three outputs as three content blocks
        self.sel_id.submit(self.get_result, inputs=self.sel_id, outputs=[self.sel_video, self.sel_settings, self.sel_link],
                           api_name="get_result", queue=False)
        self.open_btn.click(self.open_in_tab, inputs=self.sel_id, outputs=self.restore_outputs(), queue=False,
                            api_visibility="private")
        self.upload.upload(self.settings_from_video, inputs=self.upload, outputs=self.upload_settings,
                           api_name="settings_from_video", queue=False).success(
            self.restore_from_settings, inputs=self.upload_settings, outputs=self.restore_outputs(), queue=False,
            api_visibility="private",
        )
        demo.load(self.init_owner, inputs=self.owner_token, outputs=[self.owner_token, self.owner], queue=False,
                  api_visibility="private").then(self.list_history, **listing, api_visibility="private")
        demo.load(self.on_load, outputs=self.restore_outputs(), queue=False, api_visibility="private")

    def on_result(self, event: Any) -> None:
        """After a new result: refresh the gallery."""
        event.success(self.list_history, inputs=self.owner, outputs=[self.gallery, self.gallery_ids],
                      api_visibility="private", queue=False)

    # --------------------------------------------------------------------------- handlers
    @staticmethod
    def init_owner(token: Any) -> tuple[str, str | None]:
        """This browser's token (a new one on its first visit) and the owner id derived from it."""
        if ownership.owner_id(token) is None:
            token = ownership.new_token()
        return token, ownership.owner_id(token)

    def list_history(self, owner: str | None = None) -> tuple[list[tuple[str, str]], list[str]]:
        if self.options.public:  # only the visitor's own results; everything stays reachable by permalink
            entries = self.store.list(limit=GALLERY_LIMIT, owner=owner) if owner else []
        else:
            entries = self.store.list(limit=GALLERY_LIMIT)
        return [(str(e.video), e.caption()) for e in entries], [e.id for e in entries]

    @staticmethod
    def select_result(ids: list[str], evt: gr.SelectData) -> str:
        return ids[evt.index] if 0 <= evt.index < len(ids) else ""

    def _entry(self, gen_id: Any) -> HistoryEntry:
        try:
            return self.store.get(str(gen_id or "").strip())
        except (InvalidIdError, UnknownIdError) as e:
            raise user_error(toast(str(e)), title="Unknown result") from None

    def get_result(self, gen_id: str, request: gr.Request) -> tuple[str, dict[str, Any], str]:
        """Get a video this server generated earlier, by its id.

        Args:
            gen_id: the result id, e.g. 20260101-120000-a1b2c3 (the `?gen=` part of a permalink, or the id in a generate tool's status line).

        Returns:
            the mp4
            the generation settings (task, prompt, seed, size, frames, fps, steps, ...) as JSON
            the result's permalink
        """
        entry = self._entry(gen_id)
        return str(entry.video), entry.settings, permalink(app_url(request), entry.id)

    def open_in_tab(self, gen_id: str, request: gr.Request) -> dict[Any, Any]:
        entry = self._entry(gen_id)
        message = tr("run.restored", request_lang(request), id=entry.id, task=entry.task)
        return self.restore(entry.settings, entry=entry, video=str(entry.video), message=md(message),
                            link=permalink(app_url(request), entry.id))

    def settings_from_video(self, path: str | None) -> dict[str, Any]:
        """Read the generation settings embedded in an mp4 made by this app (Wan 2.2 Playground).

        Args:
            path: an mp4 generated by this app; its metadata holds the settings.

        Returns:
            the settings (task, prompt, negative prompt, seed, size, frames, fps, steps, shift, guidance, solver, id) as JSON
        """
        if not path:
            raise user_error("Video: no file uploaded", title="No video")
        try:
            settings = self.studio.settings_from_video(path)
        except InputError as e:
            raise input_error(e, "No settings in this video") from None
        finally:
            if self.options.upload_root:
                discard_upload(path, self.options.upload_root)  # read once; nothing keeps the upload
        return settings

    def restore_from_settings(self, settings: dict[str, Any], request: gr.Request) -> dict[Any, Any]:
        entry = None
        gen_id = settings.get("id")
        if isinstance(gen_id, str):
            try:
                entry = self.store.get(gen_id)
            except (InvalidIdError, UnknownIdError):
                entry = None  # made elsewhere: restore the form only
        message = f"Settings loaded from the video ({settings.get('task')}, seed {settings.get('seed')})."
        return self.restore(settings, entry=entry, video=str(entry.video) if entry else None, message=md(message),
                            link=permalink(app_url(request), entry.id) if entry else None)

    def restore(self, settings: Mapping[str, Any], *, entry: HistoryEntry | None, video: str | None,
                message: str, link: str | None = None) -> dict[Any, Any]:
        """Select the result's tab, show ``message`` (Markdown, already escaped) and fill the tab."""
        view = self.views[str(settings.get("task"))]
        updates: dict[Any, Any] = {self.tabs: gr.Tabs(selected=view.ui.tab_id),
                                   self.notice: gr.Markdown(message, visible=True)}
        updates.update(view.restore_updates(settings, entry=entry, video=video, link=link))
        return updates

    def on_load(self, request: gr.Request) -> Any:
        """Open ``?gen=<id>`` (a stored result) or pre-fill a form from ``?task=&prompt=&seed=...``."""
        q: ShareQuery = parse_query(dict(request.query_params), list(TASK_UI), self.studio.policy)
        updates: dict[Any, Any] = {}
        messages: list[str] = []
        lang = request_lang(request)
        if q.gen_id is not None:
            try:
                entry = self.store.get(q.gen_id)
            except (InvalidIdError, UnknownIdError) as e:
                q.problems.append(str(e))
            else:
                message = md(tr("run.restored", lang, id=entry.id, task=entry.task))
                updates = self.restore(entry.settings, entry=entry, video=str(entry.video), message=message,
                                       link=permalink(app_url(request), entry.id))
                messages.append(message)
        elif q.task is not None:
            view = self.views[q.task]
            updates = {self.tabs: gr.Tabs(selected=view.ui.tab_id), **view.prefill_updates(q.prefill, q.problems)}
            messages.append(md(tr("run.prefilled", lang, task=q.task)))
        if q.problems:
            gr.Warning(toast("Some link parameters were ignored: " + "; ".join(q.problems)))
            messages.append("**Link problems:** " + md("; ".join(q.problems)))
        if messages:
            updates[self.notice] = gr.Markdown("\n\n".join(messages), visible=True)
        return updates or gr.skip()  # an empty dict would be read as one output value
