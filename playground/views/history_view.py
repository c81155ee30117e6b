"""The History tab and everything that opens a stored result: the gallery, ``get_result``,
"open in its tab", settings from an uploaded mp4, and the page's ``?gen=`` / pre-fill links."""

from __future__ import annotations

import datetime as _dt
import json
import logging
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import gradio as gr

from playground.history import HistoryEntry, HistoryStore, InvalidIdError, NotOwnerError, UnknownIdError
from playground.images import discard_upload
from playground.i18n import tr
from playground.request import InputError
from playground.share import ShareQuery, parse_query, permalink
from playground.studio import TASK_UI, Studio

from . import ownership
from .common import user_error, AppOptions, app_url, input_error, request_lang, t
from .safe import md, toast
from .task_tab import TaskView

log = logging.getLogger("wan.app")

__all__ = ["GALLERY_LIMIT", "HISTORY_TAB", "HistoryView", "caption"]

HISTORY_TAB = "tab-history"
GALLERY_LIMIT = 24  # results per page
SETTINGS_DIR = Path(tempfile.gettempdir()) / "wan-playground-settings"  # "Download settings (.json)" copies
_DATE_FORMATS = {"en": "%b %d, %Y %H:%M", "ko": "%Y. %m. %d. %H:%M", "zh": "%Y年%m月%d日 %H:%M"}


def _zone(tz: str | None) -> _dt.tzinfo:
    """The browser's time zone (an IANA name sent by the page), else UTC."""
    if tz:
        try:
            from zoneinfo import ZoneInfo

            return ZoneInfo(str(tz)[:64])
        except Exception:  # unknown or malformed name: UTC
            pass
    return _dt.timezone.utc


def when(gen_id: str, lang: str = "en", tz: str | None = None) -> str:
    """The result's date and time (ids are UTC) in the browser's zone, in the language's usual format."""
    try:
        t = _dt.datetime.strptime(gen_id[:15], "%Y%m%d-%H%M%S").replace(tzinfo=_dt.timezone.utc)
    except ValueError:
        return ""
    local = t.astimezone(_zone(tz))
    text = local.strftime(_DATE_FORMATS.get(lang, _DATE_FORMATS["en"]))
    return text if tz else text + " UTC"


def caption(entry: HistoryEntry, lang: str = "en", tz: str | None = None, max_chars: int = 140) -> str:
    """``"Nov 30, 2026 14:05 · t2v-A14B · seed 7 · a red fox ..."``: the gallery caption (full prompt up to ``max_chars``)."""
    p = entry.prompt
    p = p if len(p) <= max_chars else p[: max_chars - 1] + "…"
    return f"{when(entry.id, lang, tz)} · {entry.task} · seed {entry.settings.get('seed', '?')} · {p}"


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
        with gr.Row(elem_classes=["history-bar"], equal_height=True):
            self.search = gr.Textbox(label=t("history.search"), placeholder=t("history.search_placeholder"),
                                     max_lines=1, scale=3, elem_id="history-search")
            self.sort = gr.Radio([(t("history.newest"), "newest"), (t("history.oldest"), "oldest")], value="newest",
                                 label=t("history.sort"), scale=2, elem_id="history-sort")
            self.refresh_btn = gr.Button(t("history.refresh"), size="sm", scale=0, min_width=100)
        with gr.Row(equal_height=False):
            with gr.Column(scale=3):
                self.gallery = gr.Gallery(
                    label=t("history.gallery"), columns=4, rows=2, height=560, allow_preview=False, preview=False,
                    object_fit="contain", interactive=False, elem_id="history-gallery",
                )
                with gr.Row(equal_height=True, elem_classes=["history-pager"]):
                    self.prev_btn = gr.Button(t("history.prev"), size="sm", scale=0, min_width=110, interactive=False,
                                              elem_id="history-prev")
                    self.page_md = gr.Markdown(elem_id="history-page")
                    self.next_btn = gr.Button(t("history.next"), size="sm", scale=0, min_width=110, interactive=False,
                                              elem_id="history-next")
            with gr.Column(scale=2, elem_classes=["history-details"]):
                self.sel_id = gr.Textbox(label="id", max_lines=1, elem_id="history-id")
                self.sel_video = gr.Video(label=t("history.selected"), format="mp4", interactive=False,
                                          elem_id="history-selected", height=320)
                self.sel_link = gr.Textbox(label=t("out.permalink"), interactive=False, buttons=["copy"],
                                           elem_id="history-link")
                with gr.Row():
                    self.open_btn = gr.Button(t("history.open"), variant="primary")
                    # the Timeline tab wires it: the result joins the open timeline (or starts one), to extend it
                    self.timeline_btn = gr.Button(t("history.add_to_timeline"), variant="secondary",
                                                  elem_id="history-to-timeline")
                    self.download_settings = gr.DownloadButton(t("history.download_settings"), value=None,
                                                               variant="secondary", elem_id="history-download")
                self.sel_settings = gr.JSON(label=t("history.settings"), elem_id="history-settings")
                self.delete_btn = gr.Button(t("history.delete"), variant="stop", size="sm", visible=False,
                                            elem_id="history-delete")
        self.upload = gr.File(label=t("history.load_video"), file_types=[".mp4"], type="filepath", elem_id="load-video")
        # the settings read from an uploaded mp4 (the API's answer); the page shows them in the restored tab
        self.upload_settings = gr.JSON(label=t("history.settings"), visible=False)
        self.gallery_ids = gr.State([])
        self.offset = gr.State(0)
        self.tz = gr.Textbox(visible=False, elem_id="history-tz")  # the browser's time zone (IANA name)
        self._api_list = gr.Button(visible=False)  # the list_history API endpoint (first page, newest first)
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
    def _page_io(self) -> dict[str, Any]:
        return dict(inputs=[self.owner, self.search, self.sort, self.offset, self.tz],
                    outputs=[self.gallery, self.gallery_ids, self.page_md, self.offset, self.prev_btn, self.next_btn],
                    queue=False, show_progress="hidden", api_visibility="private")

    def wire(self, demo: gr.Blocks) -> None:
        self._api_list.click(self.list_history, inputs=self.owner, outputs=[self.gallery, self.gallery_ids],
                             queue=False, api_name="list_history", api_visibility="undocumented")
        page = self._page_io()
        self.refresh_btn.click(self.show_page, **page)
        self.search.change(self.first_page, **page, trigger_mode="always_last")
        self.sort.change(self.first_page, **page)
        self.prev_btn.click(self.prev_page, **page)
        self.next_btn.click(self.next_page, **page)
        self.tz.change(self.show_page, **page)
        details = [self.sel_video, self.sel_settings, self.sel_link]
        extras = dict(inputs=self.sel_id, outputs=[self.download_settings, self.delete_btn], queue=False,
                      show_progress="hidden", api_visibility="private")
        self.gallery.select(self.select_result, inputs=self.gallery_ids, outputs=self.sel_id, queue=False,
                            api_visibility="private").then(
            self.get_result, inputs=self.sel_id, outputs=details,
            queue=False, api_visibility="private",
            api_name="show_selected_result",  # keeps "get_result" (from the function's name) for the public endpoint
        ).then(self.selection_extras, **extras)
        # not queued: a file lookup, and over MCP Gradio then returns its three outputs as three content blocks
        self.sel_id.submit(self.get_result, inputs=self.sel_id, outputs=details,
                           api_name="get_result", queue=False).then(self.selection_extras, **extras)
        self.open_btn.click(self.open_in_tab, inputs=self.sel_id, outputs=self.restore_outputs(), queue=False,
                            api_visibility="private")
        self.delete_btn.click(
            self.delete_result, inputs=[self.sel_id, self.owner],
            outputs=[self.sel_id, *details, self.download_settings, self.delete_btn], queue=False,
            api_visibility="private", js="(id, owner) => confirm('Delete ' + id + '?') ? [id, owner] : ['', owner]",
        ).success(self.show_page, **page)
        self.upload.upload(self.settings_from_video, inputs=self.upload, outputs=self.upload_settings,
                           api_name="settings_from_video", queue=False).success(
            self.restore_from_settings, inputs=self.upload_settings, outputs=self.restore_outputs(), queue=False,
            api_visibility="private",
        )
        demo.load(self.init_owner, inputs=self.owner_token, outputs=[self.owner_token, self.owner], queue=False,
                  api_visibility="private").then(self.first_page, **page)
        demo.load(None, outputs=self.tz, js="() => Intl.DateTimeFormat().resolvedOptions().timeZone || ''",
                  api_visibility="private")
        demo.load(self.on_load, outputs=self.restore_outputs(), queue=False, api_visibility="private")

    def on_result(self, event: Any) -> None:
        """After a new result: back to the first page of the gallery (the new result on top)."""
        event.success(self.first_page, **self._page_io())

    # --------------------------------------------------------------------------- handlers
    @staticmethod
    def init_owner(token: Any) -> tuple[str, str | None]:
        """This browser's token (a new one on its first visit) and the owner id derived from it."""
        if ownership.owner_id(token) is None:
            token = ownership.new_token()
        return token, ownership.owner_id(token)

    def _entries(self, owner: str | None, query: str | None = None) -> list[HistoryEntry]:
        """Newest first; on a public server only the visitor's own results (all stay reachable by permalink)."""
        if self.options.public:
            return self.store.list(owner=owner, query=query or None) if owner else []
        return self.store.list(query=query or None)

    def list_history(self, owner: str | None = None) -> tuple[list[tuple[str, str]], list[str]]:
        entries = self._entries(owner)[:GALLERY_LIMIT]
        return [(str(e.video), caption(e)) for e in entries], [e.id for e in entries]

    def show_page(self, owner: str | None, query: str | None, sort: str | None, offset: Any, tz: str | None,
                  request: gr.Request) -> tuple[Any, ...]:
        """One page of results (``GALLERY_LIMIT``), newest or oldest first, filtered by ``query``."""
        lang = request_lang(request)
        query = (query or "").strip()[:200]
        if sort == "oldest":
            entries = self._entries(owner, query)[::-1]
        else:
            entries = self._entries(owner, query)
        count = len(entries)
        pages = max(1, -(-count // GALLERY_LIMIT))
        try:
            offset = max(0, int(offset or 0))
        except (TypeError, ValueError):
            offset = 0
        offset = min(offset, (pages - 1) * GALLERY_LIMIT)
        shown = entries[offset: offset + GALLERY_LIMIT]
        if count:
            info = tr("history.page", lang, page=offset // GALLERY_LIMIT + 1, pages=pages, count=count)
        else:
            info = tr("history.no_match", lang, query=query) if query else tr("history.empty", lang)
        return ([(str(e.video), caption(e, lang, tz)) for e in shown], [e.id for e in shown], md(info), offset,
                gr.Button(interactive=offset > 0), gr.Button(interactive=offset + GALLERY_LIMIT < count))

    def first_page(self, owner: str | None, query: str | None, sort: str | None, offset: Any, tz: str | None,
                   request: gr.Request) -> tuple[Any, ...]:
        return self.show_page(owner, query, sort, 0, tz, request)

    def prev_page(self, owner: str | None, query: str | None, sort: str | None, offset: Any, tz: str | None,
                  request: gr.Request) -> tuple[Any, ...]:
        return self.show_page(owner, query, sort, max(0, int(offset or 0) - GALLERY_LIMIT), tz, request)

    def next_page(self, owner: str | None, query: str | None, sort: str | None, offset: Any, tz: str | None,
                  request: gr.Request) -> tuple[Any, ...]:
        return self.show_page(owner, query, sort, int(offset or 0) + GALLERY_LIMIT, tz, request)

    def selection_extras(self, gen_id: str) -> tuple[Any, Any]:
        """For the selected result: its settings as a .json download, and Delete."""
        try:
            entry = self.store.get(str(gen_id or "").strip())
        except (InvalidIdError, UnknownIdError):
            return gr.DownloadButton(value=None), gr.Button(visible=False)
        SETTINGS_DIR.mkdir(parents=True, exist_ok=True)
        path = SETTINGS_DIR / f"wan-settings-{entry.id}.json"
        path.write_text(json.dumps(entry.settings, ensure_ascii=False, indent=2), encoding="utf-8")
        return gr.DownloadButton(value=str(path)), gr.Button(visible=True)

    def delete_result(self, gen_id: str, owner: str | None, request: gr.Request) -> tuple[Any, ...]:
        """Delete the selected result: on a public server only one made in this browser."""
        gen_id = str(gen_id or "").strip()
        if not gen_id:  # the confirmation was declined
            return (gr.skip(),) * 6
        lang = request_lang(request)
        try:
            self.store.delete(gen_id, owner=owner if self.options.public else None)
        except (InvalidIdError, UnknownIdError, ValueError) as e:
            raise user_error(toast(str(e)), title=tr("error.unknown_result", lang)) from None
        except NotOwnerError as e:
            raise user_error(toast(str(e)), title=tr("error.not_yours", lang)) from None
        log.info("history: deleted %s", gen_id)
        gr.Info(toast(tr("history.deleted", lang, id=gen_id)))
        return "", None, None, "", gr.DownloadButton(value=None), gr.Button(visible=False)

    @staticmethod
    def select_result(ids: list[str], evt: gr.SelectData) -> str:
        return ids[evt.index] if 0 <= evt.index < len(ids) else ""

    def _entry(self, gen_id: Any) -> HistoryEntry:
        try:
            return self.store.get(str(gen_id or "").strip())
        except (InvalidIdError, UnknownIdError) as e:
            raise user_error(toast(str(e)), title="Unknown result") from None  # (API: English)

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
                            link=permalink(app_url(request), entry.id), lang=request_lang(request))

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
                            link=permalink(app_url(request), entry.id) if entry else None,
                            lang=request_lang(request))

    def restore(self, settings: Mapping[str, Any], *, entry: HistoryEntry | None, video: str | None,
                message: str, link: str | None = None, lang: str = "en",
                problems: list[str] | None = None) -> dict[Any, Any]:
        """Select the result's tab, show ``message`` (Markdown, already escaped) and fill the tab."""
        view = self.views[str(settings.get("task"))]
        problems = [] if problems is None else problems  # e.g. a LoRA file missing here: named, left out
        updates: dict[Any, Any] = {self.tabs: gr.Tabs(selected=view.ui.tab_id)}
        updates.update(view.restore_updates(settings, entry=entry, video=video, link=link, problems=problems,
                                            lang=lang))
        if problems:
            message += "\n\n⚠ " + md(" · ".join(problems))
        updates[self.notice] = gr.Markdown(message, visible=True)
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
                lost: list[str] = []
                updates = self.restore(entry.settings, entry=entry, video=str(entry.video), message=message,
                                       link=permalink(app_url(request), entry.id), lang=lang, problems=lost)
                messages.append(message)
                if lost:  # a LoRA of the result is not on this server: named, left out
                    messages.append("⚠ " + md(" · ".join(lost)))
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
