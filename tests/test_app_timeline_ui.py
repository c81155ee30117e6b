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


def test_the_runner_takes_the_last_frame_and_names_its_problems(tmp_path):
    """The shared runner (the I2V tab and generate_i2v): the requests get the last frame (checked like the first
    image); what is wrong is named "Last frame" in the user's language (the first image's own errors keep their name)."""
    import pytest

    from playground.engine import Engine
    from playground.studio import Studio
    from playground.views.common import AppOptions
    from playground.views.endpoints import GenerateRunner
    from playground.request import error_text
    from wan.errors import InputError

    samples = Path(__file__).resolve().parents[1] / "assets" / "samples"
    first, last = str(samples / "sunset_lake.png"), str(samples / "cat_portrait.png")
    store = HistoryStore(tmp_path / "out")
    runner = GenerateRunner(Studio(Engine(demo=True, demo_root=tmp_path / "demo"), store, any_size=True), store, None,
                            AppOptions(demo=True))
    values = {"prompt": "a", "size": "128*96", "frame_num": 9, "seed": 1, "randomize_seed": False}
    reqs = runner.batch_requests("i2v-A14B", values, 2, image=first, last_image=last)
    assert [r.last_image for r in reqs] == [last, last] and [r.seed for r in reqs] == [1, 2]
    assert [r.last_image for r in runner.batch_requests("i2v-A14B", values, 1, image=first)] == [None]
    assert reqs[0].to_settings()["last_image"] == "cat_portrait.png"  # settings name the file, never a path
    assert runner.check("i2v-A14B", values, lang="en", image=first, last_image=last) is None

    short = {**values, "frame_num": 1}
    with pytest.raises(InputError) as e:
        runner.batch_requests("i2v-A14B", short, 1, image=first, last_image=last)
    assert error_text(e.value, "en").startswith("Last frame: needs frame_num >= 5")
    assert error_text(e.value, "zh").startswith("最后一帧（可选）: needs frame_num >= 5")
    assert runner.check("i2v-A14B", short, lang="ko", image=first, last_image=last).startswith("마지막 프레임 (선택)")
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    with pytest.raises(InputError) as e:
        runner.batch_requests("i2v-A14B", values, 1, image=first, last_image=str(broken))
    assert e.value.field == "last_image" and "broken.png" in e.value.message
    assert runner.check("i2v-A14B", values, lang="en", image=first, last_image=str(broken)).startswith(
        "Last frame: 'broken.png'")
    with pytest.raises(InputError) as e:  # a last frame needs the first one
        runner.batch_requests("i2v-A14B", values, 1, last_image=last)
    assert e.value.field == "last_image" and "give image" in e.value.message
    with pytest.raises(InputError) as e:  # only I2V-A14B has a last-frame path
        runner.batch_requests("ti2v-5B", values, 1, image=first, last_image=last)
    assert e.value.field == "last_image" and "i2v-A14B" in e.value.message
    assert error_text(InputError("frame_num", "must be 4n+1"), "en").startswith("Frames")
