"""The timeline store: clips of the history in order, persisted next to it, exported as one mp4.

Real files throughout: history entries are real mp4s (``wan.video.save_video``) committed to a real
``HistoryStore``; exports are decoded and their frames counted by the bundled ffmpeg binary.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
import torch

from playground.history import HistoryStore, InvalidIdError, NotOwnerError, UnknownIdError
from playground.timeline import (
    Clip,
    ClipIndexError,
    ClipMismatchError,
    EmptyTimelineError,
    Timeline,
    TimelineStore,
    UnknownClipError,
    UnknownTimelineError,
)
from wan.errors import InputError
from wan.video import load_video_frames, probe_video, read_video_metadata, save_video

OWNER, OTHER = "owner-a", "owner-b"


def ffmpeg_frame_count(path: Path) -> int:
    """Frames of the video stream as the ffmpeg binary counts them (decoding to the null muxer)."""
    import imageio_ffmpeg

    proc = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-i", str(path), "-map", "0:v:0",
                           "-f", "null", "-"], capture_output=True, text=True, timeout=120, check=True)
    return int(re.findall(r"frame=\s*(\d+)", proc.stderr)[-1])


def add_result(history: HistoryStore, frames: int, *, fps: int = 16, size: tuple[int, int] = (48, 32),
               seed: int = 0, overlap: int | None = None, owner: str | None = OWNER) -> str:
    gen_id = history.reserve_id()
    g = torch.Generator().manual_seed(seed)
    video = torch.rand(3, frames, size[1], size[0], generator=g) * 2 - 1
    tmp = history.work_path(gen_id, ".mp4")
    settings = {"task": "i2v-A14B", "prompt": f"clip {seed}", "seed": seed, "fps": fps,
                "video": {"width": size[0], "height": size[1], "frames": frames, "fps": fps}}
    if overlap is not None:
        settings.update({"parent": "x", "overlap": overlap, "color_match": 0.5})
    save_video(video, tmp, fps=fps, metadata=settings)
    history.commit(gen_id, tmp, settings, owner=owner)
    return gen_id


@pytest.fixture
def history(tmp_path: Path) -> HistoryStore:
    return HistoryStore(tmp_path / "outputs")


def test_create_edit_and_survive_a_restart(history: HistoryStore) -> None:
    a, b, c = add_result(history, 9, seed=1), add_result(history, 5, seed=2, overlap=2), add_result(history, 9, seed=3)
    store = TimelineStore(history)
    tl = store.create(OWNER, [a, b], title="  my   story ")
    assert tl.title == "my story" and tl.clips == (Clip(a, 0), Clip(b, 2))  # b's recorded overlap
    assert (history.root / "timelines" / f"{tl.id}.json").is_file()
    tl = store.append(tl.id, c, overlap=1, owner=OWNER)
    assert tl.result_ids == (a, b, c) and store.frame_count(tl) == 9 + 5 + 9 - 2 - 1
    tl = store.move(tl.id, 2, 0, owner=OWNER)
    assert tl.result_ids == (c, a, b)
    d = add_result(history, 9, seed=4)
    tl = store.replace(tl.id, 1, d, owner=OWNER)  # regenerated clip: same place, same overlap
    assert tl.clips[1] == Clip(d, 0)
    tl = store.set_overlap(tl.id, 1, 3, owner=OWNER)
    tl = store.remove(tl.id, 0, owner=OWNER)
    assert tl.clips == (Clip(d, 3), Clip(b, 2))
    assert store.frame_count(tl) == 9 + 5 - 2  # the first clip's overlap is never applied
    tl = store.rename(tl.id, "renamed", owner=OWNER)
    second = store.create(OTHER, [a])
    # a restart: new stores over the same folder see the same timelines
    reopened = TimelineStore(HistoryStore(history.root))
    assert reopened.get(tl.id) == tl and reopened.get(tl.id, OWNER).title == "renamed"
    assert [t.id for t in reopened.list(OWNER)] == [tl.id]
    assert {t.id for t in reopened.list()} == {tl.id, second.id}
    assert Timeline.from_json(json.loads(reopened.path(tl.id).read_text())) == tl
    reopened.delete(tl.id, owner=OWNER)
    with pytest.raises(UnknownTimelineError, match="No timeline with id"):
        reopened.get(tl.id)
    assert history.get(d).id == d  # the clips stay in the history


def test_export_drops_overlaps_and_records_every_clip(history: HistoryStore, tmp_path: Path) -> None:
    a, b, c = add_result(history, 9, seed=1), add_result(history, 5, seed=2, overlap=1), add_result(history, 13, seed=3)
    store = TimelineStore(history)
    tl = store.create(OWNER, [a, b])
    tl = store.append(tl.id, c, overlap=4, owner=OWNER)
    out = store.export(tl.id, owner=OWNER)
    assert out == store.export_path(tl.id) and out.parent == history.root / "timelines"
    expected = 9 + 5 + 13 - 1 - 4
    assert ffmpeg_frame_count(out) == expected == probe_video(out).frames == store.frame_count(tl)
    info = probe_video(out)
    assert (info.width, info.height, info.fps) == (48, 32, 16.0)
    meta = read_video_metadata(out)["comment"]
    assert meta["kind"] == "timeline" and meta["timeline"]["id"] == tl.id and meta["frames"] == expected
    assert [(x["result_id"], x["overlap"], x["frames"]) for x in meta["clips"]] == [(a, 0, 9), (b, 1, 5), (c, 4, 13)]
    assert [x["settings"]["seed"] for x in meta["clips"]] == [1, 2, 3]
    # the frames are the clips' frames, in order, without the dropped ones (up to H.264 re-encoding)
    joined = load_video_frames(out)
    parts = [load_video_frames(history.get(i).video)[:, o:] for i, o in ((a, 0), (b, 1), (c, 4))]
    assert (joined - torch.cat(parts, dim=1)).abs().mean().item() < 0.1
    other = store.export(tl.id, tmp_path / "mine.mp4")  # the operator, to another path
    assert ffmpeg_frame_count(other) == expected
    # moving the first clip away: its overlap (0) now applies, the new first clip's (1) does not
    tl = store.move(tl.id, 0, 2, owner=OWNER)
    assert ffmpeg_frame_count(store.export(tl.id)) == 5 + 13 + 9 - 4 - 0 == store.frame_count(tl)


def test_bad_input_gets_specific_errors(history: HistoryStore) -> None:
    a = add_result(history, 9, seed=1)
    store = TimelineStore(history)
    empty = store.create(OWNER)
    with pytest.raises(EmptyTimelineError, match="has no clips"):
        store.export(empty.id)
    assert not store.export_path(empty.id).exists()
    with pytest.raises(InvalidIdError, match="not a valid timeline id"):
        store.get("../../etc/passwd")
    with pytest.raises(UnknownTimelineError) as e:
        store.get("20200101-000000-abcdef")
    assert isinstance(e.value, UnknownIdError)
    with pytest.raises(UnknownClipError, match="20200101-000000-abcdef is not a result"):
        store.append(empty.id, "20200101-000000-abcdef", owner=OWNER)
    with pytest.raises(InvalidIdError):
        store.append(empty.id, "not-an-id", owner=OWNER)
    with pytest.raises(UnknownClipError):
        store.create(OWNER, ["20200101-000000-abcdef"])
    with pytest.raises(NotOwnerError):
        store.append(empty.id, a, owner=OTHER)
    with pytest.raises(NotOwnerError):
        store.delete(empty.id, owner=OTHER)
    tl = store.append(empty.id, a, owner=OWNER)
    for bad in (9, -1, True, "1"):
        with pytest.raises(InputError) as ie:
            store.set_overlap(tl.id, 0, bad, owner=OWNER)
        assert ie.value.field == "overlap"
    with pytest.raises(ClipIndexError, match="positions 0 to 0"):
        store.remove(tl.id, 1, owner=OWNER)
    with pytest.raises(ClipIndexError):
        store.move(tl.id, 0, 5, owner=OWNER)
    with pytest.raises(InputError, match="title"):
        store.rename(tl.id, "x" * 300, owner=OWNER)
    # clips that cannot form one video
    other_fps = add_result(history, 9, seed=2, fps=24)
    tl = store.append(tl.id, other_fps, owner=OWNER)
    with pytest.raises(ClipMismatchError, match="24 fps"):
        store.export(tl.id)
    other_size = add_result(history, 9, seed=3, size=(64, 32))
    tl = store.replace(tl.id, 1, other_size, owner=OWNER)
    with pytest.raises(ClipMismatchError, match="64x32"):
        store.export(tl.id)
    assert not store.export_path(tl.id).exists()
    # a clip deleted from the history: the export names it
    history.delete(other_size)
    with pytest.raises(UnknownClipError, match=other_size):
        store.export(tl.id)


def test_nothing_half_written_is_listed(history: HistoryStore) -> None:
    a = add_result(history, 9, seed=1)
    store = TimelineStore(history)
    good = store.create(OWNER, [a])
    folder = history.root / "timelines"
    damaged_id = "20200101-000000-abcdef"
    text = json.dumps(good.to_json() | {"id": damaged_id})
    (folder / f"{damaged_id}.json").write_text(text[: len(text) // 2])  # a torn write (not ours: we write atomically)
    (folder / f".{good.id}.json.w1-00000000.x.tmp").write_text(text)   # a writer's temp file
    (folder / "20200101-000000-bbbbbb.json").write_text(json.dumps(good.to_json()))  # id does not match the name
    (folder / "notes.json").write_text("{}")
    dead = folder / f".{good.id}.json.w999999999-0123abcd.x1.tmp"  # a crashed writer's temp file (no such pid)
    dead.write_text(text)
    # (ctime cannot be set back, so the restart uses no grace period; the live writer's file is kept anyway)
    assert [t.id for t in TimelineStore(HistoryStore(history.root, orphan_grace_s=0)).list()] == [good.id]
    assert not dead.exists() and (folder / f".{good.id}.json.w1-00000000.x.tmp").exists()  # a fresh one stays
    with pytest.raises(UnknownTimelineError, match="damaged"):
        store.get(damaged_id)
    # history's own listing is not disturbed by the timelines folder
    assert [e.id for e in history.list()] == [a]


def test_links_do_not_carry_a_continuation() -> None:
    from playground.share import PARAMS, parse_query

    assert not {"parent", "overlap", "color_match", "last_image"} & PARAMS
    q = parse_query({"task": "i2v", "parent": "x.mp4", "overlap": "2", "steps": "7"}, ["t2v-A14B", "i2v-A14B"])
    assert q.prefill == {"sampling_steps": 7} and not q.problems  # unknown link parameters are not read
