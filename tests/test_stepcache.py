"""Step cache (``wan.stepcache``): MagCache and EasyCache decisions, exact residual reuse, the request field.

Oracles. MagCache: the decisions are re-derived here from the published algorithm
(``MagCache4Wan2.2/magcache_generate.py``: one forward counter ``cnt`` over cond/uncond, the
published ratio table with ``[1, 1]`` prepended, the retention rules in forward units, and the expert
split from the published ``get_timesteps`` formula), written out as a plain loop that shares no code
with ``wan.stepcache``; the 40-step T2V-A14B pattern is also given literally. EasyCache: its formula is
re-evaluated here on the inputs and outputs recorded from the real run. Reuse: the velocity the
solver receives at a reused step is rebuilt from the recorded forwards (``x + (v_c - x_c)``) and must
match bit for bit. Every run is the real pipeline on tiny random weights (``conftest.tiny_ckpt``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import wan.pipeline as wan_pipeline
from wan import stepcache
from wan.errors import InputError
from wan.pipeline import WanVideoPipeline, load_pipeline
from wan.request import flat_values, make_request, parse_values, request_from_values
from wan.stepcache import StepCache, StepCacheRun, parse_cache, plan_decisions

PROMPT = "a red fox runs through fresh snow"
SIZE = (32, 32)  # t2v-A14B: a 4x4 latent, 4 tokens per frame (fast on a CPU)
FRAMES = 1

# The published ratio table of T2V-A14B, written out again (Appendix A of the research notes).
PUBLISHED_T2V = [1.00124, 1.00155, 0.99822, 0.99851, 0.99696, 0.99687, 0.99703, 0.99732, 0.9966, 0.99679, 0.99602,
                 0.99658, 0.99578, 0.99664, 0.99484, 0.9949, 0.99633, 0.996, 0.99659, 0.99683, 0.99534, 0.99549,
                 0.99584, 0.99577, 0.99681, 0.99694, 0.99563, 0.99554, 0.9944, 0.99473, 0.99594, 0.9964, 0.99466,
                 0.99461, 0.99453, 0.99481, 0.99389, 0.99365, 0.99391, 0.99406, 0.99354, 0.99361, 0.99283, 0.99278,
                 0.99268, 0.99263, 0.99057, 0.99091, 0.99125, 0.99126, 0.65523, 0.65252, 0.98808, 0.98852, 0.98765,
                 0.98736, 0.9851, 0.98535, 0.98311, 0.98339, 0.9805, 0.9806, 0.97776, 0.97771, 0.97278, 0.97286,
                 0.96731, 0.96728, 0.95857, 0.95855, 0.94385, 0.94385, 0.92118, 0.921, 0.88108, 0.88076, 0.80263,
                 0.80181]  # fmt: skip
# What the derivation below gives for T2V-A14B, 40 steps, thresh 0.06, K 2, retention 0.4 (R = run, . = reused):
T2V_40_PATTERN = "RRRRRRRRRR..R..R..R..R..R.RRRRRR.R.R.RRR"


def published_high_steps(steps: int, shift: float, boundary: float) -> int:
    """The published ``get_timesteps``: ``linspace(1, 0.01, N+1)[:-1]`` shifted, ``t = int64(sigma * 1000)``."""
    sigmas = np.linspace(1.0, 0.01, steps + 1)[:-1]
    sigmas = shift * sigmas / (1 + (shift - 1) * sigmas)
    timesteps = (sigmas * 1000).astype(np.float32).astype(np.int64)
    return int((timesteps >= 1000 * boundary).sum())


def published_magcache(ratios: list[float], steps: int, split: int | None, mode: str, thresh: float, k: int,
                       retention: float) -> list[bool]:
    """The published ``magcache_forward`` decisions, one per forward (cond, uncond, cond, ...): True = skip."""
    mag = np.array([1.0] * 2 + ratios)
    if len(mag) != steps * 2:
        def interp(src: np.ndarray, n: int) -> np.ndarray:
            if n == 1:
                return np.array([src[-1]])
            return src[np.round(np.arange(n) * ((len(src) - 1) / (n - 1))).astype(int)]
        mag = np.concatenate([interp(mag[0::2], steps).reshape(-1, 1), interp(mag[1::2], steps).reshape(-1, 1)],
                             axis=1).reshape(-1)
    num, split2 = steps * 2, None if split is None else split * 2
    acc_ratio, acc_steps, acc_err = [1.0, 1.0], [0, 0], [0.0, 0.0]
    out = []
    for cnt in range(num):
        use = True
        if split2 is not None:
            if mode == "i2v":
                if cnt < int(split2 + (num - split2) * retention):
                    use = False
            elif cnt < int(split2 * retention) or (cnt <= ((num - split2) * retention + split2) and cnt >= split2):
                use = False
        elif cnt < int(num * retention):
            use = False
        skip = False
        if use:
            b = cnt % 2
            acc_ratio[b] *= mag[cnt]
            acc_steps[b] += 1
            acc_err[b] += np.abs(1 - acc_ratio[b])
            if acc_err[b] < thresh and acc_steps[b] <= k:
                skip = True
            else:
                acc_ratio[b], acc_steps[b], acc_err[b] = 1.0, 0, 0.0
        out.append(skip)
    return out


def pattern(log: list[dict[str, str]], branch: str) -> str:
    return "".join("R" if d.get(branch) == "run" else "." if d.get(branch) == "reused" else "-" for d in log)


def forwards_log(pipe: WanVideoPipeline) -> list[dict[str, str]]:
    run = pipe.last_run
    assert run is not None
    return [{b: v for b in ("cond", "uncond") if (v := getattr(f, b)) is not None} for f in run.forwards]


@pytest.fixture(scope="module")
def t2v(tiny_ckpt: Callable[..., Path]) -> WanVideoPipeline:
    return load_pipeline("t2v-A14B", tiny_ckpt("t2v-A14B"), device="cpu", dtype=torch.float32, offload=False,
                         any_size=True)


def generate(pipe: WanVideoPipeline, steps: int, cache: Any = None, **kw: Any) -> torch.Tensor:
    settings = {"size": SIZE, "frame_num": FRAMES, "sampling_steps": steps, "seed": 3, **kw}
    return pipe.generate(PROMPT, cache=cache, **settings)


# ------------------------------------------------------------------------------ MagCache


def test_magcache_decisions_on_the_official_t2v_schedule_follow_the_published_algorithm(t2v: WanVideoPipeline) -> None:
    split = published_high_steps(40, 12.0, 0.875)
    expected = published_magcache(PUBLISHED_T2V, 40, split, "t2v", 0.06, 2, 0.4)
    exp_log = [{"cond": "reused" if expected[2 * i] else "run", "uncond": "reused" if expected[2 * i + 1] else "run"}
               for i in range(40)]
    assert pattern(exp_log, "cond") == pattern(exp_log, "uncond") == T2V_40_PATTERN
    # the real run: official 40-step schedule (shift 12), the published T2V-A14B setting ("magcache" preset)
    generate(t2v, 40, "magcache", shift=12.0)
    run = t2v.last_run
    assert run is not None and run.request.cache == StepCache("magcache", 0.06, max_skips=2, retention=0.4)
    assert run.experts.count("high_noise") == split == 26
    assert forwards_log(t2v) == exp_log
    assert (run.forwards_run, run.forwards_reused) == (52, 28)  # 80 / 52 = 1.54x fewer DiT forwards


@pytest.mark.parametrize("task, steps, shift, has_image", [
    ("i2v-A14B", 40, 5.0, True), ("ti2v-5B", 50, 5.0, False), ("ti2v-5B", 50, 5.0, True),
    ("t2v-A14B", 30, 12.0, False), ("i2v-A14B", 25, 5.0, True),  # other step counts: nearest-neighbour ratios
])
def test_magcache_plans_follow_the_published_algorithm(task: str, steps: int, shift: float, has_image: bool) -> None:
    config = stepcache.preset("magcache", task)
    assert config is not None
    table = {("i2v-A14B", True): "i2v-A14B", ("ti2v-5B", False): "ti2v-5B", ("ti2v-5B", True): "ti2v-5B-i2v",
             ("t2v-A14B", False): "t2v-A14B"}[(task, has_image)]
    if task == "ti2v-5B":
        split, mode, experts = None, "single", ["dense"] * steps
    else:
        boundary = 0.875 if task == "t2v-A14B" else 0.9
        split = published_high_steps(steps, shift, boundary)
        mode = "i2v" if task == "i2v-A14B" else "t2v"
        experts = ["high_noise"] * split + ["low_noise"] * (steps - split)
    expected = published_magcache(list(stepcache.MAG_RATIOS[table]), steps, split, mode, config.threshold,
                                  config.max_skips, config.retention)
    log = plan_decisions(config, task, experts, has_image=has_image)
    assert [log[i // 2]["cond" if i % 2 == 0 else "uncond"] == "reused" for i in range(2 * steps)] == expected
    assert any(expected)


def test_threshold_zero_is_bit_identical_to_no_cache(t2v: WanVideoPipeline) -> None:
    ref = generate(t2v, 10)
    assert all(f.cond == f.uncond == "run" for f in t2v.last_run.forwards)  # recorded without a cache too
    for cache in ("magcache:0", "easycache:0"):
        out = generate(t2v, 10, cache)
        assert torch.equal(out, ref), cache
        assert t2v.last_run.forwards_reused == 0 and t2v.last_run.forwards_run == 20
    assert not torch.equal(generate(t2v, 10, "magcache:threshold=0.5,max_skips=3,retention=0.2"), ref)
    assert t2v.last_run.forwards_reused > 0


def test_few_step_runs_are_never_cached(t2v: WanVideoPipeline) -> None:
    ref = generate(t2v, 4)
    out = generate(t2v, 4, "magcache:threshold=3,max_skips=20,retention=0")
    assert torch.equal(out, ref) and t2v.last_run.forwards_reused == 0


class Recorder:
    """Records every computed DiT forward (input latents, output) and every velocity the solver gets."""

    def __init__(self, pipe: WanVideoPipeline, monkeypatch: pytest.MonkeyPatch) -> None:
        self.forwards: list[tuple[torch.Tensor, torch.Tensor]] = []
        self.velocities: list[torch.Tensor] = []
        for model in pipe.experts.experts.values():
            model.register_forward_hook(lambda m, args, out: self.forwards.append((args[0].clone(), out.clone())))
        real = wan_pipeline.make_scheduler
        recorder = self

        def make(*a: Any, **k: Any) -> Any:
            sched = real(*a, **k)
            step = sched.step

            def record_step(v: torch.Tensor, t: Any, x: torch.Tensor) -> torch.Tensor:
                recorder.velocities.append(v.clone())
                return step(v, t, x)

            sched.step = record_step
            return sched

        monkeypatch.setattr(wan_pipeline, "make_scheduler", make)

    def remove(self, pipe: WanVideoPipeline) -> None:
        for model in pipe.experts.experts.values():
            model._forward_hooks.clear()


def test_only_uncond_skips_and_reuse_is_exact(tiny_ckpt: Callable[..., Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """cond ratios far from 1 (never skipped), uncond ratios 1 (skipped up to K): cond and uncond keep
    separate state, and a reused uncond is exactly ``x + (v_c - x_c)`` of its last computed forward."""
    pipe = load_pipeline("t2v-A14B", tiny_ckpt("t2v-A14B"), device="cpu", dtype=torch.float32, offload=False,
                         any_size=True)
    monkeypatch.setitem(stepcache.MAG_RATIOS, "t2v-A14B", tuple(v for _ in range(39) for v in (0.5, 1.0)))
    rec = Recorder(pipe, monkeypatch)
    steps, guide = 12, {"high_noise": 4.0, "low_noise": 3.0}
    generate(pipe, steps, "magcache:threshold=0.05,max_skips=2,retention=0.2", shift=12.0, guide_scale=guide)
    log = forwards_log(pipe)
    assert pattern(log, "cond") == "R" * steps
    uncond = pattern(log, "uncond")
    assert "." in uncond and ".." in uncond and "..." not in uncond  # K = 2 consecutive reuses at most
    experts = pipe.last_run.experts
    # replay: computed forwards in call order (uncond when it ran, then cond); rebuild each step's velocity
    it = iter(rec.forwards)
    last_uncond: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    for i in range(steps):
        if log[i]["uncond"] == "run":
            x_u, unc = next(it)
            last_uncond[experts[i]] = (x_u, unc)
        x, cond = next(it)
        if log[i]["uncond"] == "run":
            assert torch.equal(x_u, x)
        else:
            x_c, v_c = last_uncond[experts[i]]  # residual of this expert only
            unc = x.float() + (v_c.float() - x_c.float())
        g = guide[experts[i]]
        assert torch.equal(rec.velocities[i], unc + g * (cond - unc)), i
    assert next(it, None) is None
    rec.remove(pipe)


# ------------------------------------------------------------------------------ EasyCache


def easycache_expected(xs: list[torch.Tensor], outs: dict[int, torch.Tensor], experts: tuple[str, ...],
                       thresh: float, first: int, last: int) -> list[bool]:
    """EasyCache's formula for one branch, straight from the paper's reference loop: True = reuse.
    ``outs[i]``: the output recorded at each computed step (the run's own decisions say which)."""
    decisions: list[bool] = []
    k = acc = None
    x_prev = x_c = v_c = None
    expert = None
    for i, x in enumerate(xs):
        if experts[i] != expert:  # a new expert: the state starts afresh
            expert, k, acc, x_prev, x_c, v_c = experts[i], None, 0.0, None, None, None
        reuse = False
        if i < first or i >= last:
            acc = 0.0
        elif x_prev is not None and v_c is not None and k is not None:
            acc += k * (x - x_prev).abs().mean().item() / v_c.abs().mean().item()
            if acc < thresh:
                reuse = True
            else:
                acc = 0.0
        x_prev = x
        decisions.append(reuse)
        if not reuse:
            v = outs[i]
            if v_c is not None:
                k = (v - v_c).abs().mean().item() / (x - x_c).abs().mean().item()
            x_c, v_c = x, v
    return decisions


@pytest.mark.parametrize("task, steps", [("t2v-A14B", 16), ("ti2v-5B", 12)])
def test_easycache_decisions_follow_its_formula(task: str, steps: int, tiny_ckpt: Callable[..., Path],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    pipe = load_pipeline(task, tiny_ckpt(task), device="cpu", dtype=torch.float32, offload=False, any_size=True)
    rec = Recorder(pipe, monkeypatch)
    size = SIZE if task == "t2v-A14B" else (64, 64)
    start = 0.25
    # the threshold: between the cumulative estimates this run produces (found with a first, uncached run)
    pipe.generate(PROMPT, size=size, frame_num=FRAMES, sampling_steps=steps, seed=3, guide_scale=1.0)
    xs0, vs0 = [x for x, _ in rec.forwards], [v for _, v in rec.forwards]
    def mean_abs(t: torch.Tensor) -> float:
        return t.abs().mean().item()
    increments = [mean_abs(vs0[i - 1] - vs0[i - 2]) / mean_abs(xs0[i - 1] - xs0[i - 2])
                  * mean_abs(xs0[i] - xs0[i - 1]) / mean_abs(vs0[i - 1]) for i in range(2, steps)]
    thresh = 2.5 * float(np.median(increments))  # about two reused steps, then one computed
    rec.forwards.clear()
    latents: list[torch.Tensor] = []
    cache = {"method": "easycache", "threshold": thresh, "start": start, "end": 1.0}
    pipe.generate(PROMPT, size=size, frame_num=FRAMES, sampling_steps=steps, seed=3, guide_scale=1.0, cache=cache,
                  callback=lambda s, n, e, lat: latents.append(lat.clone()))
    run = pipe.last_run
    log = forwards_log(pipe)
    assert all(set(d) == {"cond"} for d in log)  # guidance 1: one forward per step
    x0 = pipe.prepare_latents(run.request).latents
    xs = [x0, *latents[:-1]]
    computed = [i for i in range(steps) if log[i]["cond"] == "run"]
    assert len(computed) == len(rec.forwards)
    outs = {}
    for i, (x, v) in zip(computed, rec.forwards, strict=True):
        assert torch.equal(x, xs[i])
        outs[i] = v
    first = int(np.floor(start * steps + 0.5))
    expected = easycache_expected(xs, outs, run.experts, thresh, first, steps - 1)
    assert [d["cond"] == "reused" for d in log] == expected
    assert any(expected) and not all(expected[first:-1])  # both decisions occur
    rec.remove(pipe)


# ------------------------------------------------------------------------- LoRA and fp8


def test_caching_works_with_lora_and_fp8(tiny_ckpt: Callable[..., Path], tmp_path: Path) -> None:
    """fp8 weights (``quantize="fp8"``) with a per-expert LoRA: threshold 0 is bit-identical to no
    cache, MagCache reuses forwards with the LoRA acting on the computed ones, EasyCache runs."""
    from wan.testing.lora import write_tiny_lora

    lora = write_tiny_lora(tmp_path / "style.safetensors", "t2v-A14B", "official", seed=5)
    pipe = load_pipeline("t2v-A14B", tiny_ckpt("t2v-A14B"), device="cpu", dtype=torch.float32, offload=False,
                         any_size=True, quantize="fp8")
    assert pipe.experts.experts["high_noise"].blocks[0].self_attn.q.weight.dtype == torch.float8_e4m3fn
    loras = [(str(lora), {"high_noise": 1.0, "low_noise": 0.5})]
    ref = generate(pipe, 10, loras=loras)
    assert torch.equal(generate(pipe, 10, "magcache:0", loras=loras), ref)
    mag = "magcache:threshold=0.5,max_skips=3,retention=0.2"
    plain = generate(pipe, 10, mag)
    plain_log = forwards_log(pipe)
    out = generate(pipe, 10, mag, loras=loras)
    run = pipe.last_run
    assert run.completed and run.forwards_reused > 0 and torch.isfinite(out).all()
    assert forwards_log(pipe) == plain_log  # MagCache decides on the schedule only
    assert run.lora_strengths[0] == (1.0,) and run.lora_strengths[-1] == (0.5,)
    assert not torch.equal(out, plain)  # the LoRA acts on the computed forwards
    out = generate(pipe, 10, "easycache:threshold=0.3,start=0.2", loras=loras)
    assert pipe.last_run.completed and torch.isfinite(out).all()


def test_caching_in_the_block_profile_matches_the_resident_run(t2v: WanVideoPipeline,
                                                               tiny_ckpt: Callable[..., Path]) -> None:
    block = load_pipeline("t2v-A14B", tiny_ckpt("t2v-A14B"), device="cpu", dtype=torch.float32, offload="block",
                          any_size=True)
    mag = "magcache:threshold=0.5,max_skips=3,retention=0.2"
    assert torch.equal(generate(block, 10, mag), generate(t2v, 10, mag))
    assert forwards_log(block) == forwards_log(t2v) and block.last_run.forwards_reused > 0


# ---------------------------------------------------------------------------- the request


def test_cache_is_a_request_setting() -> None:
    assert make_request("t2v-A14B", PROMPT).cache is None
    req = make_request("t2v-A14B", PROMPT, cache="magcache")
    assert req.cache == StepCache("magcache", 0.06, max_skips=2, retention=0.4)
    assert make_request("i2v-A14B", PROMPT, image=_image(), cache="magcache").cache.retention == 0.1
    assert make_request("ti2v-5B", PROMPT, cache="easycache").cache == StepCache("easycache", 0.05, start=0.14)
    settings = req.to_settings()
    assert settings["cache"] == {"method": "magcache", "threshold": 0.06, "max_skips": 2, "retention": 0.4}
    assert request_from_values("t2v-A14B", settings).cache == req.cache
    assert req.with_changes(seed=5).cache == req.cache
    # text forms (forms, links, the CLI) and JSON
    assert parse_cache("t2v-A14B", "magcache:0.12") == StepCache("magcache", 0.12, max_skips=2, retention=0.4)
    assert parse_cache("ti2v-5B", "easycache:threshold=0.1,start=0.2,end=0.9") == StepCache(
        "easycache", 0.1, start=0.2, end=0.9)
    assert parse_cache("t2v-A14B", '{"method": "magcache", "threshold": 0.2, "max_skips": 3}').max_skips == 3
    for off in (None, "", "off", "None"):
        assert parse_cache("t2v-A14B", off) is None
    assert flat_values("t2v-A14B", {"cache": req.cache}) == {"cache": "magcache"}
    custom = parse_cache("t2v-A14B", "magcache:0.1")
    text = flat_values("t2v-A14B", {"cache": custom})["cache"]
    assert text == "magcache:threshold=0.1,max_skips=2,retention=0.4" and parse_cache("t2v-A14B", text) == custom
    kwargs, errors = parse_values("t2v-A14B", {"cache": "easycache"})
    assert not errors and make_request("t2v-A14B", PROMPT, **kwargs).cache.method == "easycache"


@pytest.mark.parametrize("value, message", [
    ("teacache", "must be off, magcache, easycache"),
    ("magcache:5", "threshold must be from 0 to 3"),
    ("magcache:start=0.1", "magcache takes threshold, max_skips, retention"),
    ("magcache:max_skips=1.5", "whole number"),
    ("easycache:start=0.9,end=0.5", "start (0.9) must not be after end (0.5)"),
    ('{"method": "magcache", "threshold": "x"}', "threshold must be a number"),
    ("{bad json", "is not valid JSON"),
    (3, "got int"),
    (StepCache("teacache", 0.1), "method must be one of magcache, easycache"),
])
def test_bad_cache_values_name_the_field_and_the_forms(value: Any, message: str) -> None:
    with pytest.raises(InputError) as e:
        make_request("t2v-A14B", PROMPT, cache=value)
    assert e.value.field == "cache" and message in e.value.message, e.value.message


def test_cache_is_a_share_link_parameter() -> None:
    from playground.share import PARAMS, parse_query, prefill_link

    assert "cache" in PARAMS
    q = parse_query({"task": "t2v", "cache": "easycache", "prompt": "x"}, ("t2v-A14B", "i2v-A14B", "ti2v-5B"))
    assert q.prefill["cache"] == "easycache" and not q.problems
    q = parse_query({"task": "t2v", "cache": "magcache:7"}, ("t2v-A14B",))
    assert q.problems and q.problems[0].startswith("cache: threshold must be from 0 to 3")
    assert "cache=magcache%3A0.1" in prefill_link("http://h/", "t2v-A14B", cache="magcache:0.1")


def _image() -> Any:
    from PIL import Image

    return Image.new("RGB", (80, 48), (120, 60, 30))


# --------------------------------------------------------------------------------- the app


def test_the_app_runs_records_and_restores_the_cache_setting(tmp_path: Path) -> None:
    """The form value reaches the request, the result's settings record the setting and the forwards
    it saved (and the status line says so); restoring the result puts the setting back in the form."""
    from playground.engine import Engine
    from playground.history import HistoryStore
    from playground.studio import Studio, form_values_from_settings
    from playground.views.endpoints import GenerateRunner
    from playground.views.task_tab import CACHE_PRESETS, cache_text

    studio = Studio(Engine(demo=True, demo_root=tmp_path / "demo"), HistoryStore(tmp_path / "out"), any_size=True)
    values = {"prompt": PROMPT, "size": "32*32", "frame_num": 1, "sampling_steps": 10, "seed": 1, "cache": "magcache"}
    req = studio.build_request("t2v-A14B", values)
    assert req.cache == stepcache.preset("magcache", "t2v-A14B")
    entry = studio.generate(req)
    settings = entry.settings
    assert settings["cache"] == {"method": "magcache", "threshold": 0.06, "max_skips": 2, "retention": 0.4}
    plan = plan_decisions(req.cache, "t2v-A14B", studio.engine.pipeline("t2v-A14B").last_run.experts)
    reused = sum(v == "reused" for d in plan for v in d.values())
    assert settings["forwards"] == {"run": 20 - reused, "reused": reused} and reused > 0
    assert f"step cache: {reused} of 20 model evaluations reused" in GenerateRunner.done_text(entry, "en")
    assert form_values_from_settings(settings)["cache"] == "magcache"
    off = studio.generate(studio.build_request("t2v-A14B", {**values, "cache": "off"}))
    assert off.settings["cache"] is None and off.settings["forwards"] == {"run": 20, "reused": 0}
    assert "step cache" not in GenerateRunner.done_text(off, "en")
    # the info line under the control: exact MagCache counts, the EasyCache figures, the few-step rule
    assert CACHE_PRESETS == ("off", *stepcache.METHODS)
    def plain(markdown: str) -> str:  # the line is escaped Markdown
        return markdown.replace("\\", "")

    assert "reuses 28 of 80 model evaluations at 40 steps" in plain(cache_text("magcache", "t2v-A14B", 40, 12.0))
    assert "21 of 80" in plain(cache_text("magcache", "i2v-A14B", 40, 5.0))
    assert "2.2×" in plain(cache_text("easycache", "t2v-A14B", 40, 12.0))
    assert "Under 10 steps" in plain(cache_text("magcache", "t2v-A14B", 4, 5.0))
    assert plain(cache_text("teacache", "t2v-A14B", 40, 12.0)).startswith("⚠ Step cache")
    assert "复用 80 次模型计算中的 28 次" in plain(cache_text("magcache", "t2v-A14B", 40, 12.0, lang="zh"))
