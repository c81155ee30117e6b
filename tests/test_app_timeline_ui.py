"""The last frame of a first-last frame result (I2V-A14B) in the history: kept next to the result,
restored with it, removed with it and by the start-up clean-up when its result never completed."""

from __future__ import annotations

import os
import time

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
