"""``app.py --gpus N`` on CPU: N real gloo worker ranks spawned by the app (tiny random weights).

- The engine of ``--gpus 2`` returns the same video as the single-process engine, with step and decode
  progress; Cancel stops every rank; a worker killed mid-job gives a clear error, the group restarts
  and the next job is again identical.
- The real server (``python app.py --demo --gpus 2``, driven by gradio_client) serves a video whose
  frames equal ``--gpus 1``'s, and survives a killed worker.
"""

from __future__ import annotations

import os
import re
import signal
import threading
import time

import pytest
import torch

from playground.engine import Engine
from wan.errors import GenerationCancelled
from wan.request import make_request

from test_app import API, ID_RE, generate_args, launch_app, settings_of, stop_app

pytestmark = pytest.mark.slow

SETTINGS = {"size": (80, 48), "frame_num": 9, "sampling_steps": 4, "seed": 21, "shift": 1.0, "any_size": True}


@pytest.fixture(scope="module")
def demo_root(tmp_path_factory):
    return tmp_path_factory.mktemp("demo_ckpt")


@pytest.fixture(scope="module")
def reference(demo_root):
    engine = Engine(demo=True, demo_root=demo_root, device="cpu")
    return engine.generate(make_request("t2v-A14B", "a fox in the snow", **SETTINGS))


def test_group_engine_matches_single_process_cancels_and_survives_a_killed_worker(demo_root, reference):
    from playground.multigpu import GroupEngine, WorkerGroupError

    engine = GroupEngine(gpus=2, demo=True, demo_root=demo_root, device="cpu")
    try:
        req = make_request("t2v-A14B", "a fox in the snow", **SETTINGS)
        steps, statuses = [], []
        video = engine.generate(req, on_step=steps.append, on_status=lambda key, **_: statuses.append(key))
        assert torch.equal(video, reference)
        assert [(s.phase, s.step, s.expert) for s in steps if s.phase == "denoise"] == [
            ("denoise", 1, "high_noise"), ("denoise", 2, "low_noise"), ("denoise", 3, "low_noise"), ("denoise", 4, "low_noise")]
        assert [s.step for s in steps if s.phase == "decode"] == [1, 2, 3]
        assert statuses == ["run.loading", "run.encoding"] and engine.resident_task == "t2v-A14B"

        cancel = threading.Event()
        with pytest.raises(GenerationCancelled):  # Cancel after step 1 stops both ranks
            engine.generate(req, on_step=lambda s: cancel.set(), cancel=cancel)
        assert engine.generate(req) is not None and engine.group.restarts == 0  # same group, still serving

        pids = engine.group.pids
        with pytest.raises(WorkerGroupError, match=r"rank 1 exited with code -9.*restarted.*keeps serving"):
            engine.generate(req, on_step=lambda s: s.step == 1 and os.kill(pids[1], signal.SIGKILL))
        assert engine.group.restarts == 1 and not set(engine.group.pids) & set(pids)
        assert engine.resident_task is None
        assert torch.equal(engine.generate(req), reference)  # the new group reloads and serves

        os.kill(engine.group.pids[0], signal.SIGKILL)  # a rank that dies while idle: restarted before the next job
        engine.group.procs[0].join(10)
        assert torch.equal(engine.generate(req), reference) and engine.group.restarts == 2
    finally:
        engine.close()
    assert engine.group.procs == []


def test_layout_for_tasks_and_world_sizes():
    from playground.multigpu import layout_for
    from wan.distributed import ParallelConfigError

    assert layout_for("t2v-A14B", 8).describe() == "ulysses 8"
    assert layout_for("ti2v-5B", 6).describe() == "ulysses 6"
    assert layout_for("t2v-A14B", 10).describe() == "ulysses 10"
    assert layout_for("t2v-A14B", 16).describe() == "cfg 2 x ulysses 8"
    assert layout_for("ti2v-5B", 16).describe() == "cfg 2 x ulysses 8"
    with pytest.raises(ParallelConfigError, match="does not divide the 40 attention heads"):
        layout_for("t2v-A14B", 3)


def _worker_pids(log_text: str) -> list[int]:
    found = re.findall(r"worker group: \d+ ranks started \(pids \[([\d, ]+)\]\)", log_text)
    assert found, log_text[-3000:]
    return [int(p) for p in found[-1].split(",")]


def _frames(path) -> torch.Tensor:
    from wan import video as wan_video

    return wan_video.load_video_frames(path)


def test_app_gpus2_serves_the_same_video_and_survives_a_killed_worker(tmp_path, demo_root):
    args = generate_args("t2v-A14B", seed=77, sampling_steps=3)
    single = launch_app(tmp_path / "out1", tmp_path / "app1.log", "--demo-dir", str(demo_root))
    try:
        ref_video = single.client().predict(api_name=API["t2v-A14B"], **args)[0]
        ref = _frames(ref_video)
    finally:
        stop_app(single)
    server = launch_app(tmp_path / "out2", tmp_path / "app2.log", "--demo-dir", str(demo_root), "--gpus", "2")
    try:
        client = server.client()
        video, _, _, link = client.predict(api_name=API["t2v-A14B"], **args)
        assert torch.equal(_frames(video), ref)
        s = settings_of(server, ID_RE.search(link).group(1))  # rank 0's run record reaches the settings
        assert s["forwards"] == {"run": 6, "reused": 0} and s["memory"]["gpus"] == 2, s
        pids = _worker_pids(server.log_text())
        # a long job; kill rank 1 once it is running
        job = client.submit(api_name=API["t2v-A14B"], **generate_args("t2v-A14B", seed=78, sampling_steps=100, frame_num=33))
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not job.done():
            if any(u.desc and u.desc.startswith("step ") for u in (job.status().progress_data or [])):
                break
            time.sleep(0.02)
        assert not job.done()
        os.kill(pids[1], signal.SIGKILL)
        with pytest.raises(Exception, match=r"rank 1 exited with code -9.*restarted"):
            job.result()
        new_pids = _worker_pids(server.log_text())
        assert new_pids != pids
        again = client.predict(api_name=API["t2v-A14B"], **args)[0]  # the restarted group serves
        assert torch.equal(_frames(again), ref)
        assert server.proc.poll() is None
    finally:
        stop_app(server)
    for pid in _worker_pids(server.log_text()):  # the workers went with the app
        with pytest.raises(ProcessLookupError):
            for _ in range(50):
                os.kill(pid, 0)
                time.sleep(0.2)
