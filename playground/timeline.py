"""Timelines: ordered lists of history results (clips) that export as one mp4.

Interface (the app's timeline tab, the API endpoints and the tests use exactly this)::

    from playground.timeline import TimelineStore, Timeline, Clip
    store = TimelineStore(history)                  # history: playground.history.HistoryStore
    tl = store.create(owner, result_ids=(), title="")            -> Timeline
    store.get(tid, owner=None)                                   -> Timeline   (owner given: must own it)
    store.list(owner)                                            -> list[Timeline], newest update first
                                                                    (owner None: every timeline)
    store.append(tid, result_id, overlap=None, owner=None)       -> Timeline   (clip added at the end)
    store.replace(tid, index, result_id, owner=None)             -> Timeline   (clip swapped, overlap kept)
    store.move(tid, index, new_index, owner=None)                -> Timeline
    store.remove(tid, index, owner=None)                         -> Timeline
    store.set_overlap(tid, index, overlap, owner=None)           -> Timeline
    store.rename(tid, title, owner=None)                         -> Timeline
    store.delete(tid, owner=None)                                -> None
    store.entries(tl)                                            -> list[HistoryEntry] (one per clip)
    store.frame_count(tl)                                        -> int (frames of the export)
    store.export(tid, out_path=None, owner=None)                 -> Path of the mp4
    store.export_path(tid)                                       -> Path (<history root>/timelines/<tid>.mp4)

    Clip(result_id: str, overlap: int)        # overlap: leading frames of this clip dropped on export
    Timeline(id, owner, title, clips: tuple[Clip, ...], created: str, updated: str)   # ISO-8601 UTC
        .result_ids -> tuple[str, ...]; .to_json() -> dict; Timeline.from_json(d)

    Making a clip to add (playground/studio.py; the API endpoints and the tab use the same calls):
      studio.continue_request(parent, values=None, task=None) -> GenerationRequest   (validate, no run)
      studio.continue_from(parent, values=None, task=None, on_step=, on_status=, cancel=, owner=) -> HistoryEntry
        parent: a result id or an uploaded .mp4; values: form/API values + "overlap", "color_match";
        unset values come from the parent's settings (prompt, frames, fps, steps, solver; shift and
        guidance on the same task); the stored settings record parent/overlap/color_match, and the
        entry's input image is the parent's last frame (a PIL image: no temp file needed).

    The API/MCP endpoints (playground/views/endpoints.py): app.py calls, inside the Blocks and after
    the task tabs are wired, ``register_timeline_api(run, TimelineStore(store), options)`` (``run`` the
    GenerateRunner); it adds hidden components and the endpoints continue_clip, export_timeline,
    timeline_info, create_timeline, timeline_add. Add ``TIMELINE_API_RUNS`` (endpoints.py) to the
    SessionJobCap names in ``configure_queue``.

    Errors (all carry a readable English message, ``str(e)``):
      InvalidIdError (history's; a malformed timeline or result id), UnknownTimelineError (an
      UnknownIdError: no such timeline), UnknownClipError (an UnknownIdError: a result id that is
      not in the history), ClipIndexError (an IndexError: no clip at that position), NotOwnerError
      (history's: another owner's timeline), EmptyTimelineError (a ValueError: export with no clips),
      ClipMismatchError (a ValueError: clips of different fps or size in one export),
      wan.errors.InputError("overlap") (an overlap outside 0..frames-1 of its clip).

Ids are history ids (``new_id``/``validate_id``: ``20260101-120000-a1b2c3``), so the permalink
``/?timeline=<id>`` can never name a path. A timeline is stored as ``<history root>/timelines/<id>.json``,
written atomically (``atomic_write_json``): a reader sees the old or the new file, never half of one,
and a damaged file is skipped by ``list`` (``get`` says it is damaged). The store keeps no state of
its own beyond the files, so re-opening it after a restart gives the same timelines; on opening it
removes a crashed writer's temp files (``recover``, the history's rules).

Owners: like ``HistoryStore``, an owner is an opaque token (``validate_owner``). Changes with
``owner`` given are allowed only on that owner's timelines (``NotOwnerError`` otherwise);
``owner=None`` is the operator (no check). ``get(tid)`` without owner reads any timeline (the
permalink is public, as a result's is). A clip may be any result of the history (results are public
by permalink too).

Overlaps (see ``wan.continuation``): a clip's ``overlap`` is the number of its leading frames dropped
on export, the frames that repeat the end of the clip before it. ``append`` without ``overlap`` takes
the clip's recorded ``overlap`` setting (a continuation records it; other results have 0). The first
clip's overlap is never applied (it has no predecessor), so reordering keeps every clip's value.

Export: every clip's mp4 is decoded (``wan.video.load_video_frames``), joined with
``wan.continuation.stitch`` and written with ``wan.video.save_video`` at the clips' common fps (all
clips must share fps and size: ``ClipMismatchError`` names the first that differs). The export holds
exactly ``sum(frames) - sum(overlaps applied)`` frames; its ``comment`` metadata is
``{"app": "wan-playground", "kind": "timeline", "timeline": {id, title, created, updated},
"fps", "frames", "clips": [{"result_id", "overlap", "frames", "settings": <the clip's settings>}]}``.
Memory: all clips are held decoded at once (float32), about 0.9 GB per 81-frame 1280x720 clip.
"""

from __future__ import annotations

import datetime as _dt
import logging
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from wan.errors import InputError

from .history import (
    HistoryEntry,
    HistoryStore,
    InvalidIdError,
    NotOwnerError,
    UnknownIdError,
    atomic_write_json,
    is_valid_id,
    new_id,
    validate_id,
    validate_owner,
)

__all__ = [
    "APP_NAME",
    "Clip",
    "ClipIndexError",
    "ClipMismatchError",
    "EmptyTimelineError",
    "InvalidIdError",
    "MAX_CLIPS",
    "NotOwnerError",
    "Timeline",
    "TimelineStore",
    "UnknownClipError",
    "UnknownTimelineError",
]

log = logging.getLogger(__name__)

APP_NAME = "wan-playground"  # = playground.studio.APP_NAME (not imported: studio imports this module)
MAX_CLIPS = 64  # clips in one timeline
MAX_TITLE = 200
_FOLDER = "timelines"


class UnknownTimelineError(UnknownIdError):
    """The timeline id is well formed but there is no such timeline on this server."""


class UnknownClipError(UnknownIdError):
    """A clip names a result id that is not (or no longer) in this server's history."""


class ClipIndexError(IndexError):
    """There is no clip at that position of the timeline."""


class EmptyTimelineError(ValueError):
    """The timeline has no clips, so there is nothing to export."""


class ClipMismatchError(ValueError):
    """The clips of a timeline differ in fps or size, so they cannot form one video."""


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


@dataclass(frozen=True)
class Clip:
    """One clip of a timeline: a history result and the leading frames dropped on export."""

    result_id: str
    overlap: int = 0

    def to_json(self) -> dict[str, Any]:
        return {"result_id": self.result_id, "overlap": self.overlap}


@dataclass(frozen=True)
class Timeline:
    id: str
    owner: str | None
    title: str
    clips: tuple[Clip, ...] = ()
    created: str = field(default_factory=_now)
    updated: str = field(default_factory=_now)

    @property
    def result_ids(self) -> tuple[str, ...]:
        return tuple(c.result_id for c in self.clips)

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "owner": self.owner, "title": self.title, "clips": [c.to_json() for c in self.clips],
                "created": self.created, "updated": self.updated}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Timeline:
        """Parses a stored timeline; ``ValueError`` if it is not one (wrong types, bad ids)."""
        if not isinstance(d, Mapping):
            raise ValueError("not a JSON object")
        clips_raw = d.get("clips")
        if not isinstance(clips_raw, list):
            raise ValueError("clips is not a list")
        clips = []
        for c in clips_raw:
            if not isinstance(c, Mapping) or not is_valid_id(c.get("result_id")):
                raise ValueError(f"bad clip {str(c)[:80]}")
            overlap = c.get("overlap", 0)
            if isinstance(overlap, bool) or not isinstance(overlap, int) or overlap < 0:
                raise ValueError(f"bad overlap {overlap!r}")
            clips.append(Clip(c["result_id"], overlap))
        title, owner = d.get("title", ""), d.get("owner")
        if not isinstance(title, str) or not (owner is None or isinstance(owner, str)):
            raise ValueError("bad title or owner")
        return cls(validate_id(d.get("id")), validate_owner(owner), title, tuple(clips),
                   str(d.get("created", "")), str(d.get("updated", "")))


def _check_title(title: Any) -> str:
    if not isinstance(title, str):
        raise InputError("title", f"must be text; got {type(title).__name__}")
    title = " ".join(title.split())
    if len(title) > MAX_TITLE:
        raise InputError("title", f"is {len(title)} characters; the limit is {MAX_TITLE}")
    return title


class TimelineStore:
    """Timelines of one history, persisted as JSON files next to it (see the module doc)."""

    def __init__(self, history: HistoryStore) -> None:
        self.history = history
        self.root = history.root / _FOLDER
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self.recover()

    def recover(self) -> list[Path]:
        """Removes leftovers of crashed writers in the timelines folder (JSON temp files, ffmpeg's partial
        exports), by the history's rules: a dead writer's after ``orphan_grace_s``, others after six hours."""
        import time

        now = time.time()
        removed = []
        for p in self.root.iterdir():
            name = p.name
            if name.startswith(".") and (name.endswith(".tmp") or name.endswith(".partial.mp4")):
                if self.history._stale_temp(p, now):
                    p.unlink(missing_ok=True)
                    removed.append(p)
        return removed

    # paths -----------------------------------------------------------------------------------
    def path(self, tid: str) -> Path:
        return self.root / f"{self._valid(tid)}.json"

    def export_path(self, tid: str) -> Path:
        return self.root / f"{self._valid(tid)}.mp4"

    @staticmethod
    def _valid(tid: Any) -> str:
        try:
            return validate_id(tid)
        except InvalidIdError:
            raise InvalidIdError(
                f"{repr(tid)[:60]} is not a valid timeline id; ids look like 20260101-120000-a1b2c3"
            ) from None

    # reading ---------------------------------------------------------------------------------
    def get(self, tid: str, owner: str | None = None) -> Timeline:
        """The timeline; with ``owner``, only that owner's (``NotOwnerError`` otherwise)."""
        path = self.path(tid)
        owner = validate_owner(owner)
        if not path.is_file():
            raise UnknownTimelineError(
                f"No timeline with id {tid} on this server. It may have been deleted, or the link comes from another server."
            )
        tl = self._read(path)
        if tl is None:
            raise UnknownTimelineError(f"Timeline {tid} is damaged on this server (its file is unreadable).")
        if owner is not None and tl.owner != owner:
            raise NotOwnerError(f"Timeline {tid} was not made in this browser, so it cannot be changed from here.")
        return tl

    def list(self, owner: str | None = None) -> list[Timeline]:
        """Readable timelines (of ``owner``, or all with None), most recently updated first."""
        owner = validate_owner(owner)
        out = []
        for p in self.root.glob("*.json"):
            if not is_valid_id(p.stem):
                continue
            tl = self._read(p)
            if tl is not None and (owner is None or tl.owner == owner):
                out.append(tl)
        return sorted(out, key=lambda t: (t.updated, t.id), reverse=True)

    @staticmethod
    def _read(path: Path) -> Timeline | None:
        import json

        try:
            tl = Timeline.from_json(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError) as e:
            log.warning("timelines: cannot read %s: %s", path.name, e)
            return None
        if tl.id != path.stem:
            log.warning("timelines: %s holds id %s; skipped", path.name, tl.id)
            return None
        return tl

    def entries(self, tl: Timeline) -> list[HistoryEntry]:
        """The history entry of every clip, in order; ``UnknownClipError`` for one that is gone."""
        return [self._entry(c.result_id) for c in tl.clips]

    def _entry(self, result_id: Any) -> HistoryEntry:
        validate_id(result_id)
        try:
            return self.history.get(result_id)
        except UnknownIdError as e:
            raise UnknownClipError(f"Clip {result_id} is not a result on this server: {e}") from None

    @staticmethod
    def _frames_of(entry: HistoryEntry) -> int:
        video = entry.settings.get("video")
        frames = video.get("frames") if isinstance(video, Mapping) else None
        if isinstance(frames, int) and not isinstance(frames, bool) and frames > 0:
            return frames
        from wan.video import probe_video

        return probe_video(entry.video).frames

    def frame_count(self, tl: Timeline) -> int:
        """Frames of ``tl``'s export: the clips' frames minus the overlaps applied (not the first clip's)."""
        entries = self.entries(tl)
        return sum(self._frames_of(e) - (c.overlap if i else 0) for i, (e, c) in enumerate(zip(entries, tl.clips)))

    # writing ---------------------------------------------------------------------------------
    def _write(self, tl: Timeline) -> Timeline:
        atomic_write_json(self.path(tl.id), tl.to_json())
        return tl

    def _change(self, tid: str, owner: str | None, fn: Any) -> Timeline:
        with self._lock:
            tl = self.get(tid, owner)
            clips, title = fn(list(tl.clips), tl.title)
            return self._write(replace(tl, clips=tuple(clips), title=title, updated=_now()))

    def _clip(self, result_id: Any, overlap: int | None) -> Clip:
        entry = self._entry(result_id)
        if overlap is None:
            recorded = entry.settings.get("overlap", 0)
            overlap = recorded if isinstance(recorded, int) and not isinstance(recorded, bool) and recorded >= 0 else 0
        return Clip(entry.id, self._check_overlap(entry, overlap))

    def _check_overlap(self, entry: HistoryEntry, overlap: Any) -> int:
        frames = self._frames_of(entry)
        if isinstance(overlap, bool) or not isinstance(overlap, int) or not 0 <= overlap < frames:
            raise InputError("overlap", f"clip {entry.id} has {frames} frames: the overlap must be an integer from 0 "
                                        f"to {frames - 1}; got {overlap!r}")
        return overlap

    @staticmethod
    def _index(clips: list[Clip], index: Any, what: str = "index") -> int:
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(clips):
            raise ClipIndexError(f"{what} {index!r} is not a clip position: the timeline has {len(clips)} clip(s)"
                                 + (f", positions 0 to {len(clips) - 1}" if clips else ""))
        return index

    def create(self, owner: str | None, result_ids: Iterable[str] = (), title: str = "") -> Timeline:
        """A new timeline of ``result_ids`` (each clip with its recorded overlap)."""
        owner = validate_owner(owner)
        title = _check_title(title)
        ids = list(result_ids)
        if len(ids) > MAX_CLIPS:
            raise InputError("clips", f"a timeline holds at most {MAX_CLIPS} clips; got {len(ids)}")
        clips = tuple(self._clip(r, None) for r in ids)
        with self._lock:
            while True:
                tid = new_id()
                if not self.path(tid).exists():
                    break
            now = _now()
            return self._write(Timeline(tid, owner, title, clips, now, now))

    def append(self, tid: str, result_id: str, overlap: int | None = None, owner: str | None = None) -> Timeline:
        clip = self._clip(result_id, overlap)

        def fn(clips: list[Clip], title: str) -> tuple[list[Clip], str]:
            if len(clips) >= MAX_CLIPS:
                raise InputError("clips", f"a timeline holds at most {MAX_CLIPS} clips")
            return [*clips, clip], title

        return self._change(tid, owner, fn)

    def replace(self, tid: str, index: int, result_id: str, owner: str | None = None) -> Timeline:
        entry = self._entry(result_id)

        def fn(clips: list[Clip], title: str) -> tuple[list[Clip], str]:
            i = self._index(clips, index)
            clips[i] = Clip(entry.id, self._check_overlap(entry, clips[i].overlap))
            return clips, title

        return self._change(tid, owner, fn)

    def set_overlap(self, tid: str, index: int, overlap: int, owner: str | None = None) -> Timeline:
        def fn(clips: list[Clip], title: str) -> tuple[list[Clip], str]:
            i = self._index(clips, index)
            clips[i] = Clip(clips[i].result_id, self._check_overlap(self._entry(clips[i].result_id), overlap))
            return clips, title

        return self._change(tid, owner, fn)

    def move(self, tid: str, index: int, new_index: int, owner: str | None = None) -> Timeline:
        def fn(clips: list[Clip], title: str) -> tuple[list[Clip], str]:
            clip = clips.pop(self._index(clips, index))
            if isinstance(new_index, bool) or not isinstance(new_index, int) or not 0 <= new_index <= len(clips):
                raise ClipIndexError(f"new_index {new_index!r} is not a clip position: positions 0 to {len(clips)}")
            clips.insert(new_index, clip)
            return clips, title

        return self._change(tid, owner, fn)

    def remove(self, tid: str, index: int, owner: str | None = None) -> Timeline:
        def fn(clips: list[Clip], title: str) -> tuple[list[Clip], str]:
            del clips[self._index(clips, index)]
            return clips, title

        return self._change(tid, owner, fn)

    def rename(self, tid: str, title: str, owner: str | None = None) -> Timeline:
        new_title = _check_title(title)
        return self._change(tid, owner, lambda clips, _: (clips, new_title))

    def delete(self, tid: str, owner: str | None = None) -> None:
        """Removes the timeline (and its last export); the clips' results stay in the history."""
        with self._lock:
            self.get(tid, owner)  # exists, and the owner's
            self.path(tid).unlink(missing_ok=True)
            self.export_path(tid).unlink(missing_ok=True)

    # export ----------------------------------------------------------------------------------
    def export(self, tid: str, out_path: str | Path | None = None, owner: str | None = None) -> Path:
        """Writes the timeline as one mp4 (see the module doc) to ``out_path`` (default ``export_path``)."""
        from wan.continuation import stitch
        from wan.video import load_video_frames, save_video

        tl = self.get(tid, owner)
        if not tl.clips:
            raise EmptyTimelineError(f"Timeline {tid} has no clips: add a result before exporting it.")
        entries = self.entries(tl)
        fps = [self._fps(e) for e in entries]
        for i, (e, f) in enumerate(zip(entries, fps)):
            if f != fps[0]:
                raise ClipMismatchError(
                    f"Clip {i + 1} ({e.id}) runs at {f:g} fps but clip 1 ({entries[0].id}) at {fps[0]:g} fps: "
                    "every clip of a timeline needs the same fps (regenerate it at that fps)."
                )
        clips = []
        for i, e in enumerate(entries):
            frames = load_video_frames(e.video)
            if clips and frames.shape[2:] != clips[0].shape[2:]:
                raise ClipMismatchError(
                    f"Clip {i + 1} ({e.id}) is {frames.shape[3]}x{frames.shape[2]} but clip 1 ({entries[0].id}) is "
                    f"{clips[0].shape[3]}x{clips[0].shape[2]}: every clip of a timeline needs the same size."
                )
            clips.append(frames)
        overlaps = [0] + [c.overlap for c in tl.clips[1:]]
        video = stitch(clips, overlaps)
        meta = {
            "app": APP_NAME, "kind": "timeline",
            "timeline": {"id": tl.id, "title": tl.title, "created": tl.created, "updated": tl.updated},
            "fps": fps[0], "frames": int(video.shape[1]),
            "clips": [{"result_id": e.id, "overlap": o, "frames": int(c.shape[1]), "settings": e.settings}
                      for e, o, c in zip(entries, overlaps, clips)],
        }  # fmt: skip
        out = Path(out_path) if out_path is not None else self.export_path(tl.id)
        return save_video(video, out, fps=fps[0], metadata=meta)

    @staticmethod
    def _fps(entry: HistoryEntry) -> float:
        video = entry.settings.get("video")
        fps = video.get("fps") if isinstance(video, Mapping) else entry.settings.get("fps")
        if isinstance(fps, (int, float)) and not isinstance(fps, bool) and fps > 0:
            return float(fps)
        from wan.video import probe_video

        return probe_video(entry.video).fps
