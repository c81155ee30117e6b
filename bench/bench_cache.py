"""Benchmark of the step cache (``wan.stepcache``; not a test): DiT forwards saved per cache setting.

``python bench/bench_cache.py`` (CPU, ~1-2 minutes) prints two tables:

1. **MagCache plans**: forwards run / reused on the official schedules (T2V-A14B 40 steps shift 12,
   I2V-A14B 40 steps shift 5, TI2V-5B 50 and 40 steps) with CFG (2 forwards per step). MagCache's
   decisions depend only on the schedule and the calibrated ratios, so these counts are exact for
   the real weights too (``wan.stepcache.plan_decisions``). Settings: the published ones
   (``magcache``: thresh 0.06, K 2, retention 0.4 / 0.1 / 0.2) and Morphic's aggressive E024K2R10.
2. **EasyCache on tiny random weights**: the real pipeline (``wan.testing.synthetic`` checkpoint) at 40
   steps with the published setting. EasyCache decides on the model's outputs, so random weights say
   nothing about real-weight savings: the row shows the mechanism runs, not a speed-up to expect.

``python bench/bench_cache.py device [--layers 1 --steps 40]`` (GPU; ``bench/device_check.sh``): the
pipeline's ``denoise`` at real token counts (T2V-A14B width 5120, 832x480x81 = 32760 tokens, ``--layers``
of the 40 blocks, random bf16 weights, the same model in both expert slots) for off / magcache /
easycache: effective seconds per step (denoise wall time / steps) and forwards run. The target:
``magcache`` >= 1.6x fewer DiT forwards than off on the 40-step schedule.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

RESULTS = REPO / "bench" / "results"
TARGET = 1.6  # fewer DiT forwards at the published conservative setting (the target)
AGGRESSIVE = "magcache:threshold=0.24,max_skips=2,retention=0.1"  # Morphic's E024K2R10 (8xH100, I2V 720p)

# (label, task, steps, shift, has_image)
SCHEDULES = (
    ("T2V-A14B", "t2v-A14B", 40, 12.0, False),
    ("I2V-A14B", "i2v-A14B", 40, 5.0, True),
    ("TI2V-5B t2v", "ti2v-5B", 50, 5.0, False),
    ("TI2V-5B i2v", "ti2v-5B", 50, 5.0, True),
    ("TI2V-5B t2v, 40 steps", "ti2v-5B", 40, 5.0, False),
)


def experts_of(task: str, steps: int, shift: float) -> list[str]:
    """The expert of each step on the official UniPC schedule (high while t >= boundary)."""
    from wan.configs import get_spec
    from wan.schedulers import official_timesteps

    spec = get_spec(task)
    boundary = spec.boundary_timestep
    if boundary is None:
        return ["dense"] * steps
    return ["high_noise" if t >= boundary else "low_noise" for t in official_timesteps(steps, shift)]


def plan_rows() -> list[str]:
    from wan.stepcache import parse_cache, plan_decisions

    rows = ["| schedule | setting | forwards run / total | reused | fewer forwards | cond pattern (R run, . reused) |",
            "|---|---|---|---|---|---|"]
    for label, task, steps, shift, has_image in SCHEDULES:
        experts = experts_of(task, steps, shift)
        rows.append(f"| {label} | off | {2 * steps} / {2 * steps} | 0 | 1.00x | {'R' * steps} |")
        for name in ("magcache", AGGRESSIVE):
            config = parse_cache(task, name)
            log = plan_decisions(config, task, experts, has_image=has_image)
            run = sum(v == "run" for d in log for v in d.values())
            cond = "".join("R" if d["cond"] == "run" else "." for d in log)
            shown = "magcache (published)" if name == "magcache" else "magcache E024K2R10"
            rows.append(f"| {label} | {shown} `{config.text()}` | {run} / {2 * steps} | {2 * steps - run} | "
                        f"{2 * steps / run:.2f}x | {cond} |")
    return rows


def easycache_rows(steps: int) -> list[str]:
    import torch

    from wan.pipeline import load_pipeline
    from wan.testing.synthetic import write_tiny_checkpoint

    root = RESULTS / "tiny" / "t2v-official"
    if not (root / "Wan2.1_VAE.pth").is_file():
        write_tiny_checkpoint("t2v-A14B", root, seed=0)
    pipe = load_pipeline("t2v-A14B", root, device="cpu", dtype=torch.float32, offload=False, any_size=True)
    rows = ["| run (tiny random weights, T2V-A14B code path) | forwards run / total | reused | fewer forwards |",
            "|---|---|---|---|"]
    for cache in (None, "magcache", "easycache"):
        pipe.generate("a red fox runs through fresh snow", size=(32, 32), frame_num=1, sampling_steps=steps,
                      shift=12.0, seed=0, cache=cache)
        run = pipe.last_run
        assert run is not None
        total = run.forwards_run + run.forwards_reused
        label = "off" if cache is None else f"{cache} `{run.request.cache.text()}`"
        rows.append(f"| {label}, {steps} steps | {run.forwards_run} / {total} | {run.forwards_reused} | "
                    f"{total / run.forwards_run:.2f}x |")
    return rows


def device(layers: int, steps: int, dev: str) -> list[str]:
    import torch

    from bench_gpu import CONFIGS, GpuConfig, dit_config, inputs, random_weights
    from bench_pipeline import _tiny_parts
    from wan.modules.model import WanModel, is_float32_parameter
    from wan.pipeline import LatentInputs, WanVideoPipeline

    base = CONFIGS["tiny"] if dev == "cpu" else CONFIGS["a14b-10l"]
    cfg = GpuConfig(f"{base.name}-{layers}l", base.dim, base.ffn_dim, base.num_heads, layers, base.size, base.frames,
                    base.text_dim)
    comps, _ = _tiny_parts()
    dcfg = dit_config(cfg)
    sd = random_weights(dcfg, seed=0, device=dev)
    sd = {k: v.float() if is_float32_parameter(k) else v for k, v in sd.items()}
    with torch.device("meta"):
        model = WanModel(dcfg)
    model.load_state_dict(sd, assign=True, strict=True)
    model.eval().requires_grad_(False)
    comps.experts = {"high_noise": model, "low_noise": model}
    pipe = WanVideoPipeline(comps, device=dev, offload=False)
    noise, ctx, ctx_null = inputs(cfg, dev)
    rows = [f"Device: {dev} ({torch.cuda.get_device_name() if dev == 'cuda' else 'cpu'}), DiT width {cfg.dim}, "
            f"{layers} of 40 blocks, {cfg.tokens} tokens ({cfg.size[0]}x{cfg.size[1]}x{cfg.frames}), {steps} steps, CFG",
            "", "| setting | s/step (effective) | forwards run / total | fewer forwards | speed-up vs off |", "|---|---|---|---|---|"]
    times: dict[str, float] = {}
    for i, cache in enumerate(("off", "off", "magcache", "easycache")):  # the first run is a warm-up
        plan = pipe.plan("x", size=cfg.size, frame_num=cfg.frames, sampling_steps=steps, shift=12.0,
                         guide_scale=(3.0, 4.0), seed=0, any_size=True, cache=cache)
        if dev == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        with torch.no_grad():
            pipe.denoise(plan, LatentInputs(latents=noise[None]), ctx, ctx_null)
        if dev == "cuda":
            torch.cuda.synchronize()
        if i == 0:
            continue
        times[cache] = (time.perf_counter() - t0) / steps
        run = pipe.last_run
        assert run is not None
        total = run.forwards_run + run.forwards_reused
        rows.append(f"| {cache} | {times[cache]:.3f} | {run.forwards_run} / {total} | "
                    f"{total / run.forwards_run:.2f}x | {times['off'] / times[cache]:.2f}x |")
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("mode", nargs="?", default="plans", choices=["plans", "device"])
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--layers", type=int, default=2, help="device: DiT blocks (of 40) in the random model")
    p.add_argument("--device", default=None, help="device mode: cuda (default when available) or cpu")
    args = p.parse_args(argv)
    if args.mode == "device":
        import torch

        dev = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
        print("\n".join(device(args.layers, args.steps, dev)))
        return 0
    rows = plan_rows()
    print("MagCache plans on the official schedules (exact for real weights: decisions depend on the schedule only)\n")
    print("\n".join(rows))
    t2v = next(r for r in rows if r.startswith("| T2V-A14B | magcache (published)"))
    ratio = float(t2v.split("|")[5].strip().rstrip("x"))
    print(f"\nTarget: >= {TARGET}x fewer DiT forwards at the published conservative setting (T2V-A14B, 40 steps): "
          f"{ratio:.2f}x -> {'met' if ratio >= TARGET else 'NOT met'}")
    print("\nEasyCache on tiny random weights (the mechanism runs; its savings on real weights are not measured here)\n")
    print("\n".join(easycache_rows(args.steps)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
