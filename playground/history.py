"""The history of results, persisted on disk so it survives restarts.

Layout of the outputs folder (flat; one id per generation)::

    <id>.mp4          the video (settings also embedded in its metadata)
    <id>.json         the settings JSON; written last, so its presence marks a complete entry
    <id>.input.png    the conditioning image, when there was one
    .tmp/             work files; everything is written here first and moved in with os.replace

Ids look like ``20260101-120000-a1b2c3`` (UTC time + 24 random bits): sortable, URL-safe and
validated by a strict pattern before any path is built from them, so ``?gen=`` cannot traverse.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import os
import re
import secrets
import shutil
import tempfile
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "ID_PATTERN",
    "HistoryEntry",
    "HistoryStore",
    "InvalidIdError",
    "UnknownIdError",
    "atomic_write_json",
    "is_valid_id",
    "new_id",
    "validate_id",
]

log = logging.getLogger(__name__)

ID_PATTERN = re.compile(r"^[0-9]{8}-[0-9]{6}-[0-9a-f]{6}$")
SETTINGS_VERSION = 1
_TMP_MAX_AGE_S = 6 * 3600


class InvalidIdError(ValueError):
    """The text is not a generation id (wrong shape); nothing was looked up."""


class UnknownIdError(KeyError):
    """The id is well formed but there is no such result in this server's history."""

    def __str__(self) -> str:  # KeyError's default repr-quotes the message
        return str(self.args[0]) if self.args else "unknown id"


def new_id(now: float | None = None) -> str:
    t = _dt.datetime.fromtimestamp(time.time() if now is None else now, tz=_dt.timezone.utc)
    return f"{t:%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"


def is_valid_id(text: object) -> bool:
    return isinstance(text, str) and ID_PATTERN.fullmatch(text) is not None


def validate_id(text: object) -> str:
    """Return ``text`` if it is a well-formed id, else raise ``InvalidIdError`` saying what one looks like."""
    if not is_valid_id(text):
        shown = repr(text)[:60]
        raise InvalidIdError(
            f"{shown} is not a valid result id; ids look like 20260101-120000-a1b2c3 "
            "(date-time-6 hex digits)"
        )
    return text  # type: ignore[return-value]


def atomic_write_json(path: Path, data: Mapping[str, Any]) -> None:
    """Write JSON to ``path`` atomically: a temp file in the same folder, fsync, then os.replace."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, ensure_ascii=False, indent=2, sort_keys=False)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@dataclass(frozen=True)
class HistoryEntry:
    id: str
    video: Path
    settings: dict[str, Any]
    image: Path | None

    @property
    def task(self) -> str:
        return str(self.settings.get("task", ""))

    @property
    def prompt(self) -> str:
        return str(self.settings.get("prompt", ""))

    def caption(self, max_chars: int = 60) -> str:
        p = self.prompt
        p = p if len(p) <= max_chars else p[: max_chars - 1] + "…"
        return f"{self.task} · seed {self.settings.get('seed', '?')} · {p}"


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:  # removed while listing; it is skipped later
        return 0.0


class HistoryStore:
    """Results of this server, one id per generation; safe for concurrent writers (threads or processes)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).resolve()
        self.tmp_dir = self.root / ".tmp"
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._reserved: set[str] = set()
        self._clean_tmp()

    # paths -----------------------------------------------------------------------------------
    def video_path(self, gen_id: str) -> Path:
        return self.root / f"{validate_id(gen_id)}.mp4"

    def settings_path(self, gen_id: str) -> Path:
        return self.root / f"{validate_id(gen_id)}.json"

    def image_path(self, gen_id: str) -> Path:
        return self.root / f"{validate_id(gen_id)}.input.png"

    def work_path(self, gen_id: str, suffix: str) -> Path:
        """A fresh path under ``.tmp/`` for files that ``commit`` later moves into place."""
        return self.tmp_dir / f"{validate_id(gen_id)}.{secrets.token_hex(4)}{suffix}"

    # writing ---------------------------------------------------------------------------------
    def reserve_id(self) -> str:
        """A new id that no stored or in-flight result uses."""
        with self._lock:
            while True:
                gen_id = new_id()
                if gen_id not in self._reserved and not self.settings_path(gen_id).exists():
                    self._reserved.add(gen_id)
                    return gen_id

    def commit(
        self,
        gen_id: str,
        video_file: Path,
        settings: Mapping[str, Any],
        image_file: Path | None = None,
    ) -> HistoryEntry:
        """Move the finished files in (mp4, input image) and then write the settings JSON.

        ``video_file`` and ``image_file`` must be on the same filesystem as the store (use
        ``work_path``) so the moves are atomic renames.
        """
        validate_id(gen_id)
        try:
            image_dst = None
            if image_file is not None:
                image_dst = self.image_path(gen_id)
                os.replace(image_file, image_dst)
            os.replace(video_file, self.video_path(gen_id))
            data = {**settings, "id": gen_id, "version": SETTINGS_VERSION}
            data["video_file"] = self.video_path(gen_id).name
            data["image_file"] = image_dst.name if image_dst else None
            atomic_write_json(self.settings_path(gen_id), data)
        finally:
            with self._lock:
                self._reserved.discard(gen_id)
        return HistoryEntry(gen_id, self.video_path(gen_id), data, image_dst)

    def release(self, gen_id: str) -> None:
        """Forget a reserved id whose generation failed or was cancelled."""
        with self._lock:
            self._reserved.discard(gen_id)

    # reading ---------------------------------------------------------------------------------
    def get(self, gen_id: str) -> HistoryEntry:
        """The stored entry, or ``InvalidIdError`` / ``UnknownIdError`` with a readable message."""
        validate_id(gen_id)
        settings_path = self.settings_path(gen_id)
        video = self.video_path(gen_id)
        if not settings_path.is_file() or not video.is_file():
            raise UnknownIdError(
                f"No result with id {gen_id} on this server. It may have been deleted, or the link "
                "comes from another server."
            )
        settings = self._read_settings(settings_path)
        if settings is None:
            raise UnknownIdError(f"The settings file of result {gen_id} is unreadable ({settings_path.name}).")
        image = self.image_path(gen_id)
        return HistoryEntry(gen_id, video, settings, image if image.is_file() else None)

    def list(self, limit: int | None = None) -> list[HistoryEntry]:
        """Complete entries, newest first. Unreadable settings files are logged and skipped."""
        # Newest first: by the id's timestamp, then by file time (ids of the same second).
        files = [p for p in self.root.glob("*.json") if is_valid_id(p.stem)]
        ids = [p.stem for p in sorted(files, key=lambda p: (p.stem[:15], _mtime(p)), reverse=True)]
        entries: list[HistoryEntry] = []
        for gen_id in ids:
            if limit is not None and len(entries) >= limit:
                break
            video = self.video_path(gen_id)
            if not video.is_file():
                log.warning("history: %s.json has no %s; skipped", gen_id, video.name)
                continue
            settings = self._read_settings(self.settings_path(gen_id))
            if settings is None:
                continue
            image = self.image_path(gen_id)
            entries.append(HistoryEntry(gen_id, video, settings, image if image.is_file() else None))
        return entries

    def __len__(self) -> int:
        return sum(1 for p in self.root.glob("*.json") if is_valid_id(p.stem))

    @staticmethod
    def _read_settings(path: Path) -> dict[str, Any] | None:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            log.warning("history: cannot read %s: %s", path, e)
            return None
        if not isinstance(data, dict):
            log.warning("history: %s does not hold a JSON object; skipped", path)
            return None
        return data

    def _clean_tmp(self) -> None:
        """Remove work files left by a crash (older than a few hours, so live runs are untouched)."""
        cutoff = time.time() - _TMP_MAX_AGE_S
        for p in self.tmp_dir.iterdir():
            try:
                if p.stat().st_mtime < cutoff:
                    shutil.rmtree(p) if p.is_dir() else p.unlink()
            except OSError as e:
                log.warning("history: cannot remove stale work file %s: %s", p, e)
