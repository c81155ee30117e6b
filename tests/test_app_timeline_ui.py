"""The last frame of a first-last frame result (I2V-A14B) in the history: kept next to the result,
restored with it, removed with it and by the start-up clean-up when its result never completed."""

from __future__ import annotations

import os
import time
from pathlib import Path

from PIL import Image

from playground.history import HistoryStore


def _commit(store: HistoryStore, tmp_path, name: str = "a") -> str:
    gen_id = store.reserve_id()
    video = store.work_path(gen_id, ".mp4")
    video.write_bytes(b"not empty")
    store.commit(gen_id, video, {"task": "i2v-A14B", "prompt": name, "last_image": "last.png"})
    return gen_id


def test_last_frame_is_kept_next_to_the_result_and_deleted_with_it(tmp_path):
    store = HistoryStore(tmp_path / "out")
    gen_id = _commit(store, tmp_path)
    path = store.save_last_image(gen_id, Image.new("RGBA", (40, 24), (200, 30, 30, 128)))
    assert path == store.last_image_path(gen_id) and path.name == f"{gen_id}.last.png"
    with Image.open(path) as im:
        assert im.mode == "RGB" and im.size == (40, 24)
    assert not list(store.tmp_dir.iterdir())  # no work file left behind
    # a restart keeps it (its result is complete)
    assert HistoryStore(tmp_path / "out").last_image_path(gen_id).is_file()
    store.delete(gen_id)
    assert not path.exists()


def test_an_orphaned_last_frame_is_removed_on_start(tmp_path):
    store = HistoryStore(tmp_path / "out", orphan_grace_s=0)
    gen_id = store.reserve_id()
    orphan = store.last_image_path(gen_id)
    Image.new("RGB", (8, 8)).save(orphan)
    old = time.time() - 60
    os.utime(orphan, (old, old))
    HistoryStore(tmp_path / "out", orphan_grace_s=0)
    assert not orphan.exists()


def test_the_last_frame_joins_the_request_and_its_problems_are_named(tmp_path):
    """The I2V tab's adapter: the form's requests get the last frame (validated again); what is wrong is named
    "Last frame" in the user's language (the first image's own errors keep their name)."""
    import pytest

    from playground.views.task_tab import last_image_error, with_last_image
    from wan.errors import InputError
    from wan.request import make_request

    samples = Path(__file__).resolve().parents[1] / "assets" / "samples"
    first, last = str(samples / "sunset_lake.png"), str(samples / "cat_portrait.png")
    reqs = [make_request("i2v-A14B", "a", image=first, size="128*96", frame_num=9, seed=s, any_size=True) for s in (1, 2)]
    out = with_last_image(reqs, last)
    assert [r.last_image for r in out] == [last, last] and [r.seed for r in out] == [1, 2]
    assert with_last_image(reqs, None) is reqs
    assert out[0].to_settings()["last_image"] == "cat_portrait.png"  # settings name the file, never a path

    short = [make_request("i2v-A14B", "a", image=first, size="128*96", frame_num=1, any_size=True)]
    with pytest.raises(InputError) as e:
        with_last_image(short, last)
    assert last_image_error(e.value, "en").startswith("Last frame (optional): needs frame_num >= 5")
    assert last_image_error(e.value, "zh").startswith("最后一帧（可选）")
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    with pytest.raises(InputError) as e:
        with_last_image(reqs, str(broken))
    assert e.value.field == "last_image" and "broken.png" in e.value.message
    assert last_image_error(InputError("frame_num", "must be 4n+1"), "en").startswith("Frames")
