"""The app engine and studio in-process, on the real pipeline with tiny random weights (``--demo``)."""

from __future__ import annotations

import threading
import weakref
from pathlib import Path

import pytest

from playground.engine import Engine, GenerationCancelled, StepInfo
from playground.history import HistoryStore
from playground.studio import Studio, form_values_from_settings

ROOT = Path(__file__).resolve().parents[1]
SAMPLE_IMAGE = ROOT / "assets" / "samples" / "cat_portrait.png"


@pytest.fixture(scope="module")
def engine():
    # The repo's .demo_ckpt cache (gitignored) is shared with `app.py --demo`; it is written once.
    return Engine(demo=True, demo_root=ROOT / ".demo_ckpt")


def _values(task: str, engine: Engine, **over):
    spec = engine.spec(task)
    v = {
        "prompt": "a paper boat drifting down a rainy street",
        "negative_prompt": spec.negative_prompt,
        "size": "160*96",
        "frame_num": 9,
        "fps": spec.sample_fps,
        "sampling_steps": 6,
        "shift": spec.sample_shift,
        "sample_solver": "unipc",
        "seed": 11,
        "randomize_seed": False,
    }
    if spec.moe:
        v.update(guide_scale_low=spec.guide_scale["low_noise"], guide_scale_high=spec.guide_scale["high_noise"])
    else:
        v["guide_scale"] = spec.guide_scale["dense"]
    return {**v, **over}


def test_steps_report_expert_phase_and_eta(engine, tmp_path):
    studio = Studio(engine, HistoryStore(tmp_path), any_size=True)
    req = studio.build_request("t2v-A14B", _values("t2v-A14B", engine))
    reported: list[StepInfo] = []
    video = engine.generate(req, on_step=reported.append)
    assert tuple(video.shape) == (3, 9, 96, 160)
    infos = [i for i in reported if i.phase == "denoise"]
    decoded = [i for i in reported if i.phase == "decode"]
    assert reported == infos + decoded  # every denoising step, then the decode, in order
    assert [(i.step, i.total, i.expert) for i in decoded] == [(1, 3, "vae"), (2, 3, "vae"), (3, 3, "vae")]
    assert [i.step for i in infos] == list(range(1, 7)) and all(i.total == 6 for i in infos)
    experts = [i.expert for i in infos]
    assert experts[0] == "high_noise" and experts[-1] == "low_noise"
    assert experts == sorted(experts)  # the high-noise expert runs first, then the low-noise one
    assert infos[0].eta_s is None and infos[-1].eta_s == pytest.approx(0.0, abs=1e-6)
    assert infos[2].describe().startswith("step 3/6 · high-noise expert · ETA ")
    assert "고노이즈" in infos[0].describe("ko")


def test_one_task_resident_and_switching_unloads(engine, tmp_path):
    studio = Studio(engine, HistoryStore(tmp_path), any_size=True)
    engine.generate(studio.build_request("ti2v-5B", _values("ti2v-5B", engine, sampling_steps=2)))
    assert engine.resident_task == "ti2v-5B"
    old = weakref.ref(engine.pipeline("ti2v-5B"))
    engine.generate(studio.build_request("t2v-A14B", _values("t2v-A14B", engine, sampling_steps=2)))
    assert engine.resident_task == "t2v-A14B"
    assert old() is None, "the previous task's pipeline must be released when another task loads"


def test_cancel_stops_at_the_next_step(engine, tmp_path):
    studio = Studio(engine, HistoryStore(tmp_path), any_size=True)
    req = studio.build_request("ti2v-5B", _values("ti2v-5B", engine, sampling_steps=50))
    cancel = threading.Event()
    seen: list[int] = []

    def on_step(info: StepInfo) -> None:
        seen.append(info.step)
        if info.step == 3:
            cancel.set()

    with pytest.raises(GenerationCancelled):
        engine.generate(req, on_step=on_step, cancel=cancel)
    assert max(seen) <= 4, seen


def test_studio_stores_result_and_restores_form(engine, tmp_path):
    store = HistoryStore(tmp_path)
    studio = Studio(engine, store, any_size=True)
    values = _values("i2v-A14B", engine, seed=5)
    fields = {"subject": "a cat", "scene": "a windowsill", "mode": "i2v", "lang": "en"}
    req = studio.build_request("i2v-A14B", values, image=str(SAMPLE_IMAGE), prompt_fields=fields)
    entry = studio.generate(req)
    assert entry.image is not None and entry.image.is_file()
    assert store.get(entry.id).settings["prompt_fields"]["subject"] == "a cat"
    embedded = studio.settings_from_video(entry.video)
    assert embedded["id"] == entry.id and embedded["seed"] == 5
    restored = form_values_from_settings(embedded)
    for key in ("prompt", "size", "frame_num", "sampling_steps", "seed", "guide_scale_low", "guide_scale_high"):
        assert restored[key] == values[key], key
    assert restored["randomize_seed"] is False


def test_concurrent_generate_calls_are_serialised(engine, tmp_path):
    """Jobs from several threads run one after another: their denoising steps never interleave."""
    studio = Studio(engine, HistoryStore(tmp_path), any_size=True)
    trace: list[int] = []

    def run(i: int) -> None:
        req = studio.build_request("ti2v-5B", _values("ti2v-5B", engine, seed=i, sampling_steps=3))
        studio.generate(req, on_step=lambda info: trace.append(i))

    threads = [threading.Thread(target=run, args=(i,)) for i in range(3)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(120)
    assert len(studio.store.list()) == 3
    runs = [job for k, job in enumerate(trace) if k == 0 or trace[k - 1] != job]
    assert sorted(runs) == [0, 1, 2], f"steps interleaved: {trace}"


def test_memory_profile_and_fp8_are_recorded_with_the_result(tmp_path):
    """`app.py --offload block --quantize fp8`: the engine loads with them and every result says so."""
    import torch

    fp8 = Engine(demo=True, demo_root=ROOT / ".demo_ckpt", offload="block", quantize="fp8")
    store = HistoryStore(tmp_path)
    studio = Studio(fp8, store, any_size=True)
    entry = studio.generate(studio.build_request("ti2v-5B", _values("ti2v-5B", fp8, sampling_steps=2)))
    assert entry.settings["memory"] == {"offload": "block", "offload_blocks": 2, "quantize": "fp8", "vae_tiling": True}
    pipe = fp8.pipeline("ti2v-5B")
    block = pipe.experts.experts["dense"].blocks[0]
    assert block.self_attn.q.weight.dtype == torch.float8_e4m3fn  # the block linears are stored in fp8


def test_out_of_memory_frees_the_device_and_names_the_next_profile(tmp_path):
    """An out-of-memory error inside a run (raised here from the step callback, as torch raises it from
    any kernel) unloads the pipeline, says which setting to try next, and the engine serves the next job."""
    import torch

    from playground.engine import OutOfMemory

    eng = Engine(demo=True, demo_root=ROOT / ".demo_ckpt", offload="expert")
    studio = Studio(eng, HistoryStore(tmp_path), any_size=True)
    req = studio.build_request("t2v-A14B", _values("t2v-A14B", eng, sampling_steps=2))

    def oom(info: StepInfo) -> None:
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    with pytest.raises(OutOfMemory, match=r"t2v-A14B at 160x96, 9 frames \(memory profile expert\).*--offload block"):
        eng.generate(req, on_step=oom)
    assert eng.resident_task is None  # freed
    assert tuple(eng.generate(req).shape) == (3, 9, 96, 160)  # and the next job runs
