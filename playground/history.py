"""The history of results, persisted on disk so it survives restarts.

Layout of the outputs folder (flat; one id per generation)::

    <id>.mp4          the video (settings also embedded in its metadata)
    <id>.json         the settings JSON; written last, so its presence marks a complete entry
    <id>.input.png    the conditioning image, when there was one
    <id>.last.png     the last frame of a first-last frame video (I2V-A14B), when there was one
    .tmp/             work files; everything is written here first and moved in with os.replace

``commit`` is all-or-nothing: on any failure (a full disk, typically) it removes what it already
moved into place and the work files, and raises an ``OSError`` that says so. ``get`` and ``list``
only return entries whose JSON is readable and whose mp4 exists and is not empty.

Crash recovery (``HistoryStore.__init__``): work files are named after their writer,
``<id>.w<pid>-<token>.<random><suffix>`` (``token`` is random per process, so a restarted server that
got the same pid, as is usual in a container, does not mistake its predecessor's files for its own);
ffmpeg's ``.<stem>.<random>.partial.mp4`` and the JSON temp files carry the same tag. On start the store
removes, from ``.tmp/`` and the outputs folder,

* tagged temp/work files whose writer process is gone and that were not modified in the last
  ``orphan_grace_s`` seconds (the grace period also covers other pid namespaces sharing the folder);
* untagged temp/work files older than six hours;
* ``<id>.mp4`` / ``<id>.input.png`` without ``<id>.json`` once older than ``orphan_grace_s`` (commit
  writes the JSON last, so a younger one may be another process's commit in flight);
* empty ``<id>.mp4`` files, and with them their JSON and input image (such an entry cannot be served).

Ids look like ``20260101-120000-a1b2c3`` (UTC time + 24 random bits): sortable, URL-safe and
validated by a strict pattern before any path is built from them, so ``?gen=`` cannot traverse.
"""

from __future__ import annotations

import datetime as _dt
import errno
import json
import logging
import os
import re
import secrets
import shutil
import stat
import tempfile
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "ID_PATTERN",
    "OWNER_PATTERN",
    "HistoryEntry",
    "HistoryStore",
    "InvalidIdError",
    "NotOwnerError",
    "UnknownIdError",
    "atomic_write_json",
    "is_valid_id",
    "new_id",
    "validate_id",
    "validate_owner",
]

log = logging.getLogger(__name__)

ID_PATTERN = re.compile(r"^[0-9]{8}-[0-9]{6}-[0-9a-f]{6}$")
# An owner is an opaque token the app derives from a browser-scoped secret (a hash, never a raw IP:
# dots and colons are not allowed, so neither an IPv4 nor an IPv6 address passes).
OWNER_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
_TMP_MAX_AGE_S = 6 * 3600
DEFAULT_ORPHAN_GRACE_S = 300.0

# Tags work/temp files with their writer: pid plus a per-process random token (see the module doc).
_PROCESS_TOKEN = secrets.token_hex(4)
_WRITER_TAG = re.compile(r"\.w([0-9]{1,10})-([0-9a-f]{8})\.")
_ENTRY_FILE = re.compile(r"^([0-9]{8}-[0-9]{6}-[0-9a-f]{6})\.(mp4|json|input\.png|last\.png)$")
_DISK_FULL = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}


def _writer_tag() -> str:
    return f"w{os.getpid()}-{_PROCESS_TOKEN}"


class InvalidIdError(ValueError):
    """The text is not a generation id (wrong shape); nothing was looked up."""


class NotOwnerError(PermissionError):
    """The entry belongs to someone else (or to nobody), so this caller may not change it."""


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
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{_writer_tag()}.", suffix=".tmp", dir=path.parent)
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
    owner: str | None = None  # kept out of ``settings``: those are shown to anyone with the permalink

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


def validate_owner(owner: object) -> str | None:
    """``None`` or an owner token (``OWNER_PATTERN``); anything else raises ``ValueError``."""
    if owner is None:
        return None
    if not isinstance(owner, str) or OWNER_PATTERN.fullmatch(owner) is None:
        raise ValueError(
            "owner must be an opaque token of 1-128 letters, digits, '-' or '_' (derive it from a "
            "browser-scoped secret; never pass an IP address)"
        )
    return owner


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:  # removed while listing; it is skipped later
        return 0.0


def _changed_at(st: os.stat_result) -> float:
    # ctime too: os.replace keeps the mtime of the work file but sets the ctime, so a file that was
    # just moved into place counts as fresh.
    return max(st.st_mtime, st.st_ctime)


def _pid_alive(pid: int, token: str) -> bool:
    if pid == os.getpid():
        return token == _PROCESS_TOKEN  # same pid, other token: a previous run of this server
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError, ValueError):
        return False
    except OSError:  # EPERM: alive, owned by another user
        return True
    return True


def _remove(path: Path) -> bool:
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
        return True
    except OSError as e:
        log.warning("history: cannot remove %s: %s", path, e)
        return False


class HistoryStore:
    """Results of this server, one id per generation; safe for concurrent writers (threads or processes).

    ``orphan_grace_s``: how old an incomplete entry (mp4 or input image without its JSON) or a dead
    writer's temp file must be before the start-up clean-up removes it (see the module doc).
    """

    def __init__(self, root: str | Path, *, orphan_grace_s: float = DEFAULT_ORPHAN_GRACE_S) -> None:
        if orphan_grace_s < 0:
            raise ValueError(f"orphan_grace_s must be >= 0; got {orphan_grace_s}")
        self.root = Path(root).resolve()
        self.tmp_dir = self.root / ".tmp"
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        self.orphan_grace_s = float(orphan_grace_s)
        self._lock = threading.Lock()
        self._reserved: set[str] = set()
        self._work: dict[str, list[Path]] = {}
        self.recover()

    # paths -----------------------------------------------------------------------------------
    def video_path(self, gen_id: str) -> Path:
        return self.root / f"{validate_id(gen_id)}.mp4"

    def settings_path(self, gen_id: str) -> Path:
        return self.root / f"{validate_id(gen_id)}.json"

    def image_path(self, gen_id: str) -> Path:
        return self.root / f"{validate_id(gen_id)}.input.png"

    def last_image_path(self, gen_id: str) -> Path:
        """Where the last frame of a first-last frame result is kept (it may not exist)."""
        return self.root / f"{validate_id(gen_id)}.last.png"

    def save_last_image(self, gen_id: str, image: Any) -> Path:
        """Keep a result's last frame (a PIL image) as ``<id>.last.png`` (temp file, then os.replace)."""
        dst = self.last_image_path(gen_id)
        tmp = self.work_path(gen_id, ".last.png")
        try:
            image.convert("RGB").save(tmp, format="PNG")
            os.replace(tmp, dst)
        finally:
            self._discard_work(gen_id)
        return dst

    def work_path(self, gen_id: str, suffix: str) -> Path:
        """A fresh path under ``.tmp/`` for files that ``commit`` later moves into place.

        The name carries this process's writer tag, so a restart can tell leftovers of a dead
        writer. ``commit`` (on failure) and ``release`` remove the work files of ``gen_id``.
        """
        validate_id(gen_id)
        if "/" in suffix or "\\" in suffix or "\0" in suffix:
            raise ValueError(f"suffix must be a plain file suffix such as '.mp4'; got {suffix!r}")
        path = self.tmp_dir / f"{gen_id}.{_writer_tag()}.{secrets.token_hex(4)}{suffix}"
        with self._lock:
            self._work.setdefault(gen_id, []).append(path)
        return path

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
        *,
        owner: str | None = None,
    ) -> HistoryEntry:
        """Move the finished files in (mp4, input image) and then write the settings JSON.

        ``video_file`` and ``image_file`` must be on the same filesystem as the store (use
        ``work_path``) so the moves are atomic renames. All or nothing: on any failure whatever was
        moved into place is removed again, as are the work files, and an ``OSError`` says the
        result was not stored ("disk full: ..." when the disk is full). ``owner`` (an opaque
        token, see ``OWNER_PATTERN``) is stored as ``"owner"`` in the JSON and scopes ``list``.
        """
        validate_id(gen_id)
        owner = validate_owner(owner)
        video_file = Path(video_file)
        image_file = None if image_file is None else Path(image_file)
        placed: list[Path] = []
        try:
            video_dst = self.video_path(gen_id)
            image_dst = self.image_path(gen_id) if image_file is not None else None
            data = {k: v for k, v in settings.items() if k != "owner"}
            data["id"] = gen_id  # the schema version is the request's own ("settings_version")
            data["video_file"] = video_dst.name
            data["image_file"] = image_dst.name if image_dst else None
            if owner is not None:
                data["owner"] = owner
            if video_file.stat().st_size == 0:
                raise OSError(errno.EIO, "the video file is empty (was the disk full while writing it?)")
            if image_file is not None and image_dst is not None:
                os.replace(image_file, image_dst)
                placed.append(image_dst)
            os.replace(video_file, video_dst)
            placed.append(video_dst)
            atomic_write_json(self.settings_path(gen_id), data)  # last: marks the entry complete
        except BaseException as e:
            for p in reversed(placed):
                _remove(p)
            for p in (video_file, image_file):
                if p is not None and p.parent == self.tmp_dir:
                    _remove(p)
            self._discard_work(gen_id)
            with self._lock:
                self._reserved.discard(gen_id)
            if isinstance(e, OSError):
                raise self._store_error(gen_id, e) from e
            raise
        with self._lock:
            self._reserved.discard(gen_id)
            self._work.pop(gen_id, None)
        settings_out = {k: v for k, v in data.items() if k != "owner"}
        return HistoryEntry(gen_id, video_dst, settings_out, image_dst, owner)

    @staticmethod
    def _store_error(gen_id: str, e: OSError) -> OSError:
        code = e.errno if e.errno is not None else errno.EIO
        if code in _DISK_FULL:
            text = (
                f"disk full: result {gen_id} could not be saved because the outputs folder has no space "
                "left; nothing of it was kept. Free some space and generate again"
            )
        else:  # strerror only: no server paths in a message a user may see
            text = f"result {gen_id} could not be saved ({e.strerror or type(e).__name__}); nothing of it was kept"
        return OSError(code, text)

    def release(self, gen_id: str) -> None:
        """Forget a reserved id whose generation failed or was cancelled, removing its work files."""
        with self._lock:
            self._reserved.discard(gen_id)
        self._discard_work(gen_id)

    def _discard_work(self, gen_id: str) -> None:
        with self._lock:
            paths = self._work.pop(gen_id, [])
        for p in paths:
            _remove(p)
            # ffmpeg's partial file, should save_video have been interrupted without its clean-up
            for partial in self.tmp_dir.glob(f".{p.stem}.*.partial.mp4"):
                _remove(partial)

    def delete(self, gen_id: str, owner: str | None = None) -> None:
        """Remove a result (JSON first, then mp4 and input image).

        With ``owner`` given, only that owner's entries may be deleted: another owner's entry, an
        entry without owner or one whose settings are unreadable raises ``NotOwnerError``.
        ``owner=None`` is the operator's delete (no check).
        """
        validate_id(gen_id)
        owner = validate_owner(owner)
        files = (self.settings_path(gen_id), self.video_path(gen_id), self.image_path(gen_id),
                 self.last_image_path(gen_id))
        if not any(p.exists() for p in files):
            raise UnknownIdError(f"No result with id {gen_id} on this server; nothing was deleted.")
        if owner is not None:
            settings = self._read_settings(files[0]) if files[0].is_file() else None
            if settings is None or settings.get("owner") != owner:
                raise NotOwnerError(
                    f"Result {gen_id} was not made in this browser, so it cannot be deleted from here."
                )
        for p in files:
            try:
                p.unlink(missing_ok=True)
            except OSError as e:
                raise OSError(e.errno, f"result {gen_id} could not be fully deleted ({e.strerror})") from e

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
        entry = self._load(gen_id)
        if entry is None:
            raise UnknownIdError(
                f"Result {gen_id} is damaged on this server (its video is empty or its settings file "
                "is unreadable)."
            )
        return entry

    def list(
        self,
        limit: int | None = None,
        owner: str | None = None,
        offset: int = 0,
        query: str | None = None,
    ) -> list[HistoryEntry]:
        """Complete entries, newest first; damaged ones (empty or missing mp4, unreadable JSON) are skipped.

        ``owner``: only that owner's entries. ``query``: case-insensitive substring of the prompt,
        task or id. ``offset`` entries that pass the filters are skipped, then at most ``limit``
        are returned.
        """
        if limit is not None and limit < 0:
            raise ValueError(f"limit must be >= 0; got {limit}")
        if offset < 0:
            raise ValueError(f"offset must be >= 0; got {offset}")
        owner = validate_owner(owner)
        needle = query.strip().casefold() if isinstance(query, str) else ""
        # Newest first: by the id's timestamp, then by file time (ids of the same second).
        files = [p for p in self.root.glob("*.json") if is_valid_id(p.stem)]
        ids = [p.stem for p in sorted(files, key=lambda p: (p.stem[:15], _mtime(p)), reverse=True)]
        entries: list[HistoryEntry] = []
        skipped = 0
        for gen_id in ids:
            if limit is not None and len(entries) >= limit:
                break
            entry = self._load(gen_id)
            if entry is None:
                continue
            if owner is not None and entry.owner != owner:
                continue
            if needle and not any(needle in s.casefold() for s in (entry.prompt, entry.task, entry.id)):
                continue
            if skipped < offset:
                skipped += 1
                continue
            entries.append(entry)
        return entries

    def __len__(self) -> int:
        return sum(1 for p in self.root.glob("*.json") if is_valid_id(p.stem))

    def _load(self, gen_id: str) -> HistoryEntry | None:
        """The entry if it is complete and servable, else ``None`` (logged)."""
        video = self.video_path(gen_id)
        try:
            st = video.stat()
        except OSError:
            log.warning("history: %s.json has no %s; skipped", gen_id, video.name)
            return None
        if not stat.S_ISREG(st.st_mode) or st.st_size == 0:
            log.warning("history: %s is empty or not a file; skipped", video.name)
            return None
        settings = self._read_settings(self.settings_path(gen_id))
        if settings is None:
            return None
        owner = settings.pop("owner", None)
        image = self.image_path(gen_id)
        return HistoryEntry(gen_id, video, settings, image if image.is_file() else None,
                            owner if isinstance(owner, str) else None)

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

    # crash recovery --------------------------------------------------------------------------
    def recover(self) -> list[Path]:
        """Remove leftovers of crashed or failed writers (run on start; see the module doc).

        Returns the paths removed.
        """
        now = time.time()
        removed: list[Path] = []
        try:
            tmp_items = list(self.tmp_dir.iterdir())
        except OSError as e:
            log.warning("history: cannot list %s: %s", self.tmp_dir, e)
            tmp_items = []
        for p in tmp_items:
            if self._stale_temp(p, now) and _remove(p):
                removed.append(p)
        by_id: dict[str, set[str]] = {}
        for p in self.root.iterdir():
            name = p.name
            if name == ".tmp":
                continue
            if name.startswith(".") and (name.endswith(".tmp") or name.endswith(".partial.mp4")):
                if self._stale_temp(p, now) and _remove(p):
                    removed.append(p)
                continue
            m = _ENTRY_FILE.match(name)
            if m:
                by_id.setdefault(m.group(1), set()).add(m.group(2))
        for gen_id, kinds in by_id.items():
            video, settings, image = self.video_path(gen_id), self.settings_path(gen_id), self.image_path(gen_id)
            last = self.last_image_path(gen_id)
            try:
                empty_video = "mp4" in kinds and video.stat().st_size == 0
            except OSError:
                empty_video = False
            if empty_video:  # never servable; the JSON and image of such an entry go with it
                log.warning("history: removing result %s: its video is empty", gen_id)
                for p in (settings, video, image, last):
                    if p.exists() and _remove(p):
                        removed.append(p)
                continue
            if "json" in kinds:
                continue
            for kind, p in (("mp4", video), ("input.png", image), ("last.png", last)):
                if kind not in kinds:
                    continue
                try:
                    age = now - _changed_at(p.lstat())
                except OSError:
                    continue
                if age >= self.orphan_grace_s and not settings.exists():
                    log.warning("history: removing %s: its result was never completed", p.name)
                    if _remove(p):
                        removed.append(p)
        return removed

    def _stale_temp(self, path: Path, now: float) -> bool:
        try:
            age = now - _changed_at(path.lstat())
        except OSError:
            return False
        m = _WRITER_TAG.search(path.name)
        if m and not _pid_alive(int(m.group(1)), m.group(2)):
            return age >= self.orphan_grace_s
        return age > _TMP_MAX_AGE_S  # live (or unknown) writer: only very old files
