"""Hardening of the result store and the upload checks, from an adversarial probe of the app.

Real files on disk, real ffmpeg (``wan.video.save_video``) and real PIL throughout; monkeypatch is
used only to simulate a full disk (``OSError(ENOSPC)``) and to count concurrent decodes.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
import torch

from playground import history
from playground.history import HistoryStore, UnknownIdError
from wan import video as wan_video

REPO = Path(__file__).resolve().parents[1]


def small_frames(frames: int = 3, height: int = 32, width: int = 48) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.rand(3, frames, height, width, generator=g) * 2 - 1


def write_png(path: Path, size: tuple[int, int] = (64, 48)) -> Path:
    from PIL import Image

    Image.new("RGB", size, "teal").save(path, format="PNG")
    return path


def prepare(store: HistoryStore, *, image: bool = True) -> tuple[str, Path, Path | None]:
    """What the studio does before ``commit``: a real mp4 (and input image) under ``.tmp/``."""
    gen_id = store.reserve_id()
    video = store.work_path(gen_id, ".mp4")
    wan_video.save_video(small_frames(), video, fps=16, metadata={"prompt": "p"})
    img = write_png(store.work_path(gen_id, ".png")) if image else None
    return gen_id, video, img


def commit(store: HistoryStore, *, owner: str | None = None, **settings) -> history.HistoryEntry:
    gen_id, video, img = prepare(store)
    return store.commit(gen_id, video, {"task": "t2v-A14B", "prompt": "p", "seed": 1, **settings}, img, owner=owner)


def names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def enospc(*_a, **_k):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


# ------------------------------------------------------------------------ 1. disk full, orphans
def test_commit_is_all_or_nothing_when_the_json_write_hits_a_full_disk(tmp_path, monkeypatch):
    store = HistoryStore(tmp_path, orphan_grace_s=0)
    gen_id, video, img = prepare(store)
    monkeypatch.setattr(history.os, "fsync", enospc)  # the JSON write is the last step of commit
    with pytest.raises(OSError, match="disk full") as info:
        store.commit(gen_id, video, {"task": "t2v-A14B", "prompt": "p"}, img)
    assert info.value.errno == errno.ENOSPC
    assert names(tmp_path) == [".tmp"]  # no mp4, no input image, no partial JSON
    assert names(store.tmp_dir) == []  # the work files of the failed generation are gone too
    with pytest.raises(UnknownIdError):
        store.get(gen_id)
    assert store.list() == []


def test_commit_rolls_back_the_image_when_moving_the_video_fails(tmp_path, monkeypatch):
    store = HistoryStore(tmp_path, orphan_grace_s=0)
    gen_id, video, img = prepare(store)
    real_replace = os.replace

    def replace(src, dst, *a, **k):
        if str(dst).endswith(".mp4"):
            enospc()
        return real_replace(src, dst, *a, **k)

    monkeypatch.setattr(history.os, "replace", replace)
    with pytest.raises(OSError, match="disk full"):
        store.commit(gen_id, video, {"task": "t2v-A14B", "prompt": "p"}, img)
    assert names(tmp_path) == [".tmp"] and names(store.tmp_dir) == []


def test_commit_failure_keeps_other_results(tmp_path, monkeypatch):
    store = HistoryStore(tmp_path, orphan_grace_s=0)
    kept = commit(store)
    gen_id, video, img = prepare(store)
    monkeypatch.setattr(history.os, "fsync", enospc)
    with pytest.raises(OSError):
        store.commit(gen_id, video, {"task": "t2v-A14B", "prompt": "p"}, img)
    monkeypatch.undo()
    assert [e.id for e in store.list()] == [kept.id]
    assert store.get(kept.id).video.stat().st_size > 0


def test_release_removes_the_work_files_of_a_failed_generation(tmp_path):
    store = HistoryStore(tmp_path)
    gen_id, video, img = prepare(store)
    assert video.stat().st_size > 0 and img is not None and img.is_file()
    store.release(gen_id)  # generation failed after writing (e.g. while saving the input image)
    assert names(store.tmp_dir) == [] and names(tmp_path) == [".tmp"]


def test_get_and_list_never_serve_an_empty_or_missing_video(tmp_path):
    store = HistoryStore(tmp_path)
    empty = commit(store, prompt="empty")
    corrupt = commit(store, prompt="corrupt")
    good = commit(store, prompt="good")
    empty.video.write_bytes(b"")  # what a full disk left behind
    store.settings_path(corrupt.id).write_text("{trunc")
    assert [e.id for e in store.list()] == [good.id]
    for bad in (empty.id, corrupt.id):
        with pytest.raises(UnknownIdError):
            store.get(bad)
    assert store.get(good.id).video.stat().st_size > 0


def test_restart_removes_orphans_and_empty_videos_after_the_grace_period(tmp_path):
    store = HistoryStore(tmp_path)
    good = commit(store)
    orphan_mp4 = tmp_path / "20250101-000000-aaaaaa.mp4"
    wan_video.save_video(small_frames(), orphan_mp4, fps=16)  # mp4 moved in, JSON never written
    orphan_png = write_png(tmp_path / "20250101-000000-bbbbbb.input.png")
    empty = commit(store, prompt="empty")
    empty.video.write_bytes(b"")
    json_tmp = tmp_path / f".{empty.id}.json.w999999999-0123abcd.x1.tmp"  # a JSON temp of a dead writer
    json_tmp.write_text("{")

    # Young orphans may be the in-flight commit of another process: kept (grace period).
    HistoryStore(tmp_path, orphan_grace_s=3600)
    assert orphan_mp4.exists() and orphan_png.exists()

    HistoryStore(tmp_path, orphan_grace_s=0)
    assert names(tmp_path) == sorted([".tmp", f"{good.id}.mp4", f"{good.id}.json", f"{good.id}.input.png"])
    assert [e.id for e in HistoryStore(tmp_path).list()] == [good.id]


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_restart_removes_work_files_of_dead_writers_only(tmp_path):
    store = HistoryStore(tmp_path)
    gen_id = store.reserve_id()
    mine = store.work_path(gen_id, ".mp4")
    mine.write_bytes(b"live")
    dead = store.tmp_dir / f"{gen_id}.w{_dead_pid()}-0123abcd.00000000.mp4"
    dead.write_bytes(b"dead")
    # same pid as this process but another process token: a previous server run in the same container
    previous = store.tmp_dir / f"{gen_id}.w{os.getpid()}-ffffffff.00000000.png"
    previous.write_bytes(b"old")
    HistoryStore(tmp_path, orphan_grace_s=0)
    assert names(store.tmp_dir) == [mine.name]


KILL_SCRIPT = textwrap.dedent(
    """
    import sys, torch
    from playground.history import HistoryStore
    from wan import video as wan_video
    store = HistoryStore(sys.argv[1])
    gen_id = store.reserve_id()
    frames = torch.rand(3, 160, 256, 320) * 2 - 1
    print("writing", flush=True)
    wan_video.save_video(frames, store.work_path(gen_id, ".mp4"), fps=16)
    """
)


def test_kill_9_during_the_mp4_write_leaves_nothing_after_restart(tmp_path):
    proc = subprocess.Popen(
        [sys.executable, "-c", KILL_SCRIPT, str(tmp_path)], cwd=REPO, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "writing"
        deadline = time.monotonic() + 60
        partial: list[Path] = []
        while time.monotonic() < deadline and not partial:
            partial = [p for p in (tmp_path / ".tmp").iterdir() if p.name.endswith(".partial.mp4")]
            time.sleep(0.05)
        assert partial, "ffmpeg never created its partial file"
        assert partial[0].name.startswith(".") and f".w{proc.pid}-" in partial[0].name
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    time.sleep(0.5)  # ffmpeg sees EOF on its stdin and exits
    assert [p for p in (tmp_path / ".tmp").iterdir() if p.name.endswith(".partial.mp4")]  # the fault
    store = HistoryStore(tmp_path, orphan_grace_s=0)  # restart
    assert names(store.tmp_dir) == [] and names(tmp_path) == [".tmp"]
    assert store.list() == []


# ------------------------------------------------------------------------ 2. owner-scoped history
def test_owner_scoped_list_query_offset_and_permalinks(tmp_path):
    store = HistoryStore(tmp_path)
    a1 = commit(store, owner="alice-token", prompt="A Red Fox in snow", task="t2v-A14B")
    b1 = commit(store, owner="bob_token", prompt="a boat", task="ti2v-5B")
    a2 = commit(store, owner="alice-token", prompt="city at night", task="i2v-A14B")
    legacy = commit(store, prompt="no owner")
    assert [e.id for e in store.list()] == [legacy.id, a2.id, b1.id, a1.id]  # unchanged: everything
    assert [e.id for e in store.list(owner="alice-token")] == [a2.id, a1.id]
    assert [e.id for e in store.list(owner="bob_token")] == [b1.id]
    assert store.list(owner="carol") == []
    assert [e.id for e in store.list(owner="alice-token", offset=1)] == [a1.id]
    assert [e.id for e in store.list(owner="alice-token", limit=1)] == [a2.id]
    assert [e.id for e in store.list(limit=2, offset=1)] == [a2.id, b1.id]
    assert [e.id for e in store.list(query="red FOX")] == [a1.id]  # prompt, case-insensitive
    assert [e.id for e in store.list(query="TI2V")] == [b1.id]  # task
    assert [e.id for e in store.list(query=a2.id.upper())] == [a2.id]  # id
    assert [e.id for e in store.list(owner="bob_token", query="fox")] == []
    assert [e.id for e in store.list(query="  ")] == [e.id for e in store.list()]
    # a permalink works for anyone; the owner token is stored but not among the shown settings
    got = store.get(b1.id)
    assert got.owner == "bob_token" and "owner" not in got.settings
    assert json.loads(store.settings_path(b1.id).read_text())["owner"] == "bob_token"
    assert store.get(legacy.id).owner is None
    assert "owner" not in json.loads(store.settings_path(legacy.id).read_text())


def test_owner_must_be_an_opaque_token_never_an_ip(tmp_path):
    store = HistoryStore(tmp_path)
    gen_id, video, img = prepare(store)
    for bad in ("203.0.113.7", "2001:db8::1", "", "x" * 129, "a/b", 42):
        with pytest.raises(ValueError, match="opaque token"):
            store.commit(gen_id, video, {"task": "t2v-A14B"}, img, owner=bad)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="opaque token"):
            store.list(owner=bad)  # type: ignore[arg-type]
    assert names(tmp_path) == [".tmp"]


def test_delete_checks_the_owner_and_removes_all_files(tmp_path):
    store = HistoryStore(tmp_path)
    mine = commit(store, owner="alice-token")
    theirs = commit(store, owner="bob_token")
    legacy = commit(store)
    with pytest.raises(history.NotOwnerError, match=f"Result {theirs.id} was not made in this browser"):
        store.delete(theirs.id, owner="alice-token")
    with pytest.raises(history.NotOwnerError):
        store.delete(legacy.id, owner="alice-token")  # no owner recorded: only the operator may delete
    assert store.get(theirs.id).video.is_file()
    store.delete(mine.id, owner="alice-token")
    assert not any(p.name.startswith(mine.id) for p in tmp_path.iterdir())
    with pytest.raises(UnknownIdError):
        store.get(mine.id)
    with pytest.raises(UnknownIdError, match="nothing was deleted"):
        store.delete(mine.id, owner="alice-token")
    with pytest.raises(history.InvalidIdError):
        store.delete("../x")
    store.delete(legacy.id)  # owner=None: the operator's delete
    assert [e.id for e in store.list()] == [theirs.id]
    assert names(tmp_path) == sorted([".tmp", f"{theirs.id}.json", f"{theirs.id}.mp4", f"{theirs.id}.input.png"])


# ------------------------------------------------------------------------ 3. upload checks
def _big_png(path: Path, size: tuple[int, int] = (4000, 3000)) -> Path:
    """A valid 12 MP image whose file is small (a gradient compresses well) but whose decode is not."""
    import numpy as np
    from PIL import Image

    w, h = size
    row = np.linspace(0, 255, w, dtype=np.uint8)
    Image.fromarray(np.broadcast_to(row, (h, w)).copy(), "L").convert("RGB").save(path, format="PNG")
    return path


def test_concurrent_image_checks_decode_at_most_the_semaphore_value(tmp_path, monkeypatch):
    from PIL import ImageFile

    from playground import images

    path = _big_png(tmp_path / "big.png")
    real_load = ImageFile.ImageFile.load
    lock = threading.Lock()
    state = {"now": 0, "max": 0, "calls": 0}

    def counting_load(self, *a, **k):  # instrumentation: counts decodes running at the same time
        with lock:
            state["now"] += 1
            state["calls"] += 1
            state["max"] = max(state["max"], state["now"])
        try:
            return real_load(self, *a, **k)
        finally:
            with lock:
                state["now"] -= 1

    monkeypatch.setattr(ImageFile.ImageFile, "load", counting_load)
    results: list[object] = [None] * 32
    start = threading.Barrier(32)

    def check(i: int) -> None:
        start.wait()
        try:
            results[i] = images.check_image(path)
        except Exception as e:  # noqa: BLE001  # recorded and asserted below
            results[i] = e

    threads = [threading.Thread(target=check, args=(i,)) for i in range(32)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(120)
    assert results == [(4000, 3000)] * 32
    assert state["calls"] >= 32
    assert 1 <= state["max"] <= images.MAX_CONCURRENT_DECODES == 2


def test_image_pixel_limit_is_checked_from_the_header_before_decoding(tmp_path, monkeypatch):
    from PIL import Image, ImageFile

    from playground import images
    from playground.request import InputError

    huge = tmp_path / "huge.png"
    Image.new("1", (9000, 5000)).save(huge)  # 45 MP, a small file
    calls: list[object] = []
    real_load = ImageFile.ImageFile.load
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self, *a, **k: calls.append(self) or real_load(self, *a, **k))
    with pytest.raises(InputError, match="too large") as info:
        images.check_image(huge)
    assert info.value.field == "image" and calls == []


def test_bad_uploads_give_a_specific_image_error(tmp_path):
    from PIL import Image

    from playground import images
    from playground.request import InputError

    text = tmp_path / "notes.png"
    text.write_text("these are my notes, not a picture\n" * 10)
    tiny = tmp_path / "tiny.png"
    Image.new("RGB", (20, 20), "red").save(tiny)
    full = _big_png(tmp_path / "full.png", (640, 480))
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    oversize = tmp_path / "oversize.png"
    oversize.write_bytes(full.read_bytes())
    with oversize.open("r+b") as f:  # a real (sparse) file just over the limit
        f.truncate(images.MAX_IMAGE_BYTES + 1)
    assert images.MAX_IMAGE_BYTES == 25 * 1024 * 1024  # app.py: max_file_size="25mb" (gradio: MiB)
    cases = {
        text: "'notes.png' is not an image",
        tiny: "20×20 is too small",
        truncated: "'truncated.png' is damaged or truncated",
        oversize: r"'oversize.png' is 25\.0 MB; the limit is 25 MB",
        tmp_path / "gone.png": "missing on the server",
    }
    for path, message in cases.items():
        with pytest.raises(InputError, match=message) as info:
            images.check_image(path)
        assert info.value.field == "image", path
        assert str(tmp_path) not in str(info.value)  # no server paths in user-facing text
    assert images.check_image(full) == (640, 480)


# ------------------------------------------------------------------------ 4. discarding uploads
def test_discard_upload_deletes_only_inside_the_upload_root(tmp_path):
    from playground.images import discard_upload

    root = tmp_path / "gradio"
    (root / "0a1b2c").mkdir(parents=True)
    upload = write_png(root / "0a1b2c" / "cat.png")
    outside = write_png(tmp_path / "secret.png")
    (root / "0a1b2c" / "link.png").symlink_to(outside)  # a link inside the root to a file outside it
    (root / "dir.png").mkdir()
    alias = tmp_path / "alias"
    alias.symlink_to(root, target_is_directory=True)

    assert discard_upload(root / "0a1b2c" / "link.png", root) is False
    assert discard_upload(root / "0a1b2c" / ".." / ".." / "secret.png", root) is False  # traversal
    assert discard_upload(str(outside), str(root)) is False
    assert discard_upload(root, root) is False
    assert discard_upload(root / "dir.png", root) is False
    assert discard_upload(tmp_path / "nope" / "x.png", root) is False
    assert outside.read_bytes()[:4] == b"\x89PNG" and (root / "0a1b2c" / "link.png").is_symlink()

    assert discard_upload(alias / "0a1b2c" / "cat.png", root) is True  # the same file through a link to the root
    assert not upload.exists()
    assert discard_upload(upload, root) is False  # already gone
    (root / "0a1b2c" / "link.png").unlink()
    other = write_png(root / "0a1b2c" / "dog.png")
    assert discard_upload(other, alias) is True
    assert not (root / "0a1b2c").exists() and root.is_dir()  # its emptied folder goes, the root stays
    assert outside.exists()
