"""CPU benchmark of our pipeline against diffusers, measured in the same run (not a test).

Two measurements, each implementation in its own fresh subprocess so peak RSS is honest
(``getrusage(RUSAGE_SELF).ru_maxrss`` of that process, which counts file-backed mapped pages too):

* ``steps``: per-step denoising time (two DiT forwards + CFG + UniPC) of ``WanVideoPipeline.denoise``
  vs ``diffusers.WanPipeline`` (``transformer`` = ``transformer_2`` = the same model, boundary 0.875,
  official sigma grid, same noise, same padded 512-token embeddings, ``output_type="latent"``), with
  identical seeded random weights (generated in each worker from the same seed, official names for
  ours, diffusers names through our key map). Per-step time = median interval between the step
  callbacks after the first step (the first includes warm-up). Configs: ``small`` (dim 768, 4 layers)
  and ``medium`` (dim 1536, 30 layers, the Wan 1.3B shape), latent 3x16x16 (9 frames at 128x128).
* ``load``: load time and peak RSS of a TI2V-5B-sized DiT (dim 3072, 30 layers, 5.0 B parameters,
  bfloat16 safetensors, ~10 GB) written once to ``bench/results/`` in both layouts: ``wan.loading.load_dit``
  (official layout) vs ``WanTransformer3DModel.from_pretrained`` (Diffusers layout). Page cache of the
  files is dropped (``posix_fadvise(DONTNEED)``) before each run, and every weight page is touched
  after loading so both sides have really read the weights.

Usage::

    python bench/bench_pipeline.py steps --configs small medium
    python bench/bench_pipeline.py load
    python bench/bench_pipeline.py all          # both; prints the markdown table

Targets (issue #3): per-step time <= 0.9x diffusers; load peak RSS <= 1.1x the weights' bytes.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
if str(REPO) not in sys.path:  # run as a script from anywhere: make the repo's `wan` importable
    sys.path.insert(0, str(REPO))


@dataclass(frozen=True)
class StepConfig:
    name: str
    dim: int
    ffn_dim: int
    num_heads: int
    num_layers: int
    steps: int
    frames: int = 9
    size: tuple[int, int] = (128, 128)  # (W, H) -> latent 16 x 3 x 16 x 16, 192 tokens
    text_dim: int = 4096


STEP_CONFIGS: dict[str, StepConfig] = {
    "small": StepConfig("small", dim=768, ffn_dim=2048, num_heads=6, num_layers=4, steps=6),
    "medium": StepConfig("medium", dim=1536, ffn_dim=8960, num_heads=12, num_layers=30, steps=4),
}
LOAD_DIT = {"dim": 3072, "ffn_dim": 14336, "num_heads": 24, "num_layers": 30, "in_dim": 48, "out_dim": 48}


def peak_rss_bytes() -> int:
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024  # Linux reports KiB


# ----------------------------------------------------------------------------------- weights


def random_official_state_dict(cfg: Any, seed: int, dtype: Any) -> dict[str, Any]:
    """Deterministic random weights under the official names (same values in every process)."""
    import torch

    from wan.modules.model import WanModel

    with torch.device("meta"):
        shapes = {k: tuple(v.shape) for k, v in WanModel(cfg).state_dict().items()}
    g = torch.Generator().manual_seed(seed)
    out: dict[str, Any] = {}
    for key in sorted(shapes):
        shape = shapes[key]
        if key.endswith("norm_q.weight") or key.endswith("norm_k.weight") or key.endswith("norm3.weight"):
            t = 1.0 + 0.1 * torch.randn(shape, generator=g)
        elif "modulation" in key:
            t = 0.1 * torch.randn(shape, generator=g)
        else:
            fan_in = max(1, int(torch.tensor(shape[1:]).prod().item())) if len(shape) > 1 else shape[0]
            t = torch.randn(shape, generator=g) / fan_in**0.5
        out[key] = t.to(dtype)
    return out


# ------------------------------------------------------------------------------ step workers


def _tiny_parts() -> tuple[Any, Path]:
    """Tiny VAE + text encoder (unused by the timed loop, needed to build the pipelines)."""
    from wan.loading import load_components
    from wan.testing.synthetic import write_tiny_checkpoint

    root = RESULTS / "tiny"
    official = root / "t2v-official"
    diffusers_dir = root / "t2v-diffusers"
    if not (official / "Wan2.1_VAE.pth").is_file():
        write_tiny_checkpoint("t2v-A14B", official, seed=0)
    if not (diffusers_dir / "model_index.json").is_file():
        write_tiny_checkpoint("t2v-A14B", diffusers_dir, seed=0, layout="diffusers")
    import torch

    comps = load_components("t2v-A14B", official, dtype=torch.float32)
    return comps, diffusers_dir


def _inputs(cfg: StepConfig) -> tuple[Any, Any, Any, tuple[int, int, int, int]]:
    import torch

    latent_shape = (16, (cfg.frames - 1) // 4 + 1, cfg.size[1] // 8, cfg.size[0] // 8)
    g = torch.Generator().manual_seed(1)
    noise = torch.randn(latent_shape, generator=g)
    ctx = torch.zeros(1, 512, cfg.text_dim)
    ctx[:, :20] = torch.randn(1, 20, cfg.text_dim, generator=g)
    ctx_null = torch.zeros(1, 512, cfg.text_dim)
    ctx_null[:, :12] = torch.randn(1, 12, cfg.text_dim, generator=g)
    return noise, ctx, ctx_null, latent_shape


def _dit_config(cfg: StepConfig) -> Any:
    from wan.modules.model import DiTConfig

    return DiTConfig(model_type="t2v", dim=cfg.dim, ffn_dim=cfg.ffn_dim, num_heads=cfg.num_heads,
                     num_layers=cfg.num_layers, in_dim=16, out_dim=16, text_dim=cfg.text_dim)  # fmt: skip


def worker_steps_ours(cfg: StepConfig) -> dict[str, Any]:
    import torch

    from wan.modules.model import WanModel
    from wan.pipeline import LatentInputs, WanVideoPipeline

    comps, _ = _tiny_parts()
    dit_cfg = _dit_config(cfg)
    sd = random_official_state_dict(dit_cfg, seed=0, dtype=torch.float32)
    with torch.device("meta"):
        model = WanModel(dit_cfg)
    model.load_state_dict(sd, assign=True)
    model.eval().requires_grad_(False)
    del sd
    comps.experts = {"high_noise": model, "low_noise": model}  # one model serves both names
    pipe = WanVideoPipeline(comps, device="cpu", offload=False)
    noise, ctx, ctx_null, latent_shape = _inputs(cfg)
    plan = pipe.plan("x", size=cfg.size, frame_num=cfg.frames, sampling_steps=cfg.steps, shift=12.0,
                     guide_scale=(3.0, 4.0), seed=0, any_size=True)  # fmt: skip
    assert plan.latent_shape == latent_shape
    stamps: list[float] = []
    t0 = time.perf_counter()
    with torch.no_grad():
        latents = pipe.denoise(plan, LatentInputs(latents=noise[None]), ctx, ctx_null,
                               callback=lambda *a: stamps.append(time.perf_counter()))  # fmt: skip
    total = time.perf_counter() - t0
    return {"stamps": stamps, "t0": t0, "total_s": total, "checksum": float(latents.double().abs().sum())}


def worker_steps_diffusers(cfg: StepConfig) -> dict[str, Any]:
    import numpy as np
    import torch
    from accelerate import init_empty_weights
    from diffusers import AutoencoderKLWan, UniPCMultistepScheduler, WanPipeline, WanTransformer3DModel

    from wan.modules.conversion import to_diffusers_dit_state_dict

    _, tiny_diffusers = _tiny_parts()
    dit_cfg = _dit_config(cfg)
    sd = to_diffusers_dit_state_dict(random_official_state_dict(dit_cfg, seed=0, dtype=torch.float32))
    with init_empty_weights():
        model = WanTransformer3DModel(**dit_cfg.to_diffusers_config())
    model.load_state_dict(sd, assign=True, strict=True)
    model.eval().requires_grad_(False)
    del sd

    class OfficialGridUniPC(UniPCMultistepScheduler):
        def set_timesteps(self, num_inference_steps: Any = None, device: Any = None, sigmas: Any = None, mu: Any = None) -> None:  # type: ignore[override]
            if sigmas is None:
                sigmas = np.linspace(float(np.float32(0.999)), 0.0, int(num_inference_steps) + 1)[:-1]
            super().set_timesteps(device=device, sigmas=sigmas, mu=mu)

    sched = OfficialGridUniPC(prediction_type="flow_prediction", use_flow_sigmas=True, num_train_timesteps=1000, flow_shift=12.0)
    vae = AutoencoderKLWan.from_pretrained(tiny_diffusers / "vae")
    pipe = WanPipeline(tokenizer=None, text_encoder=None, vae=vae, scheduler=sched, transformer=model,
                       transformer_2=model, boundary_ratio=0.875)  # fmt: skip
    pipe.set_progress_bar_config(disable=True)
    noise, ctx, ctx_null, _ = _inputs(cfg)
    stamps: list[float] = []

    def on_step(_pipe: Any, i: int, t: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
        stamps.append(time.perf_counter())
        return kwargs

    t0 = time.perf_counter()
    with torch.no_grad():
        out = pipe(prompt_embeds=ctx, negative_prompt_embeds=ctx_null, latents=noise[None], height=cfg.size[1],
                   width=cfg.size[0], num_frames=cfg.frames, num_inference_steps=cfg.steps, guidance_scale=4.0,
                   guidance_scale_2=3.0, output_type="latent", callback_on_step_end=on_step).frames  # fmt: skip
    total = time.perf_counter() - t0
    return {"stamps": stamps, "t0": t0, "total_s": total, "checksum": float(out.double().abs().sum())}


# ------------------------------------------------------------------------------ load workers


def _ckpt_paths() -> tuple[Path, Path]:
    return RESULTS / "dit5b-official", RESULTS / "dit5b-diffusers"


def write_load_checkpoints() -> int:
    """Writes the 5B-sized DiT (bf16) in both layouts, shard by shard; returns the weights' bytes."""
    import torch
    from safetensors.torch import save_file

    from wan.modules.conversion import to_diffusers_dit_state_dict
    from wan.modules.model import DiTConfig, WanModel

    official, diffusers_dir = _ckpt_paths()
    cfg = DiTConfig(model_type="ti2v", **LOAD_DIT)
    marker = RESULTS / "dit5b.json"
    if marker.is_file():
        return int(json.loads(marker.read_text())["bytes"])
    for d in (official, diffusers_dir):
        d.mkdir(parents=True, exist_ok=True)
    with torch.device("meta"):
        shapes = {k: tuple(v.shape) for k, v in WanModel(cfg).state_dict().items()}
    groups: list[list[str]] = [[k for k in shapes if not k.startswith("blocks.")]]
    for start in range(0, cfg.num_layers, 5):
        groups.append([k for k in shapes if k.startswith("blocks.") and start <= int(k.split(".")[1]) < start + 5])
    n = len(groups)
    g = torch.Generator().manual_seed(0)
    index_o: dict[str, str] = {}
    index_d: dict[str, str] = {}
    total = 0
    for i, keys in enumerate(groups):
        sd = {k: (torch.randn(shapes[k], generator=g) * 0.02).to(torch.bfloat16) for k in keys}
        total += sum(t.numel() * t.element_size() for t in sd.values())
        name = f"diffusion_pytorch_model-{i + 1:05d}-of-{n:05d}.safetensors"
        save_file(sd, str(official / name), metadata={"format": "pt"})
        sd_d = to_diffusers_dit_state_dict(sd)
        save_file(sd_d, str(diffusers_dir / name), metadata={"format": "pt"})
        index_o.update({k: name for k in sd})
        index_d.update({k: name for k in sd_d})
        del sd, sd_d
    for d, index in ((official, index_o), (diffusers_dir, index_d)):
        (d / "diffusion_pytorch_model.safetensors.index.json").write_text(
            json.dumps({"metadata": {"total_size": total}, "weight_map": index}, indent=1)
        )
    (official / "config.json").write_text(json.dumps(cfg.to_config_json(), indent=1))
    dcfg = {"_class_name": "WanTransformer3DModel", "_diffusers_version": "0.42.1", **cfg.to_diffusers_config()}
    dcfg["patch_size"] = list(dcfg["patch_size"])
    (diffusers_dir / "config.json").write_text(json.dumps(dcfg, indent=1))
    marker.write_text(json.dumps({"bytes": total, "params": sum(int(torch.Size(s).numel()) for s in shapes.values())}))
    return total


def drop_page_cache(folder: Path) -> None:
    for f in folder.iterdir():
        if f.is_file():
            fd = os.open(f, os.O_RDONLY)
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


def touch_all(model: Any) -> float:
    """Reads at least one element per 4 KiB page of every parameter, so every weight page is really loaded."""
    import torch

    sums: list[float] = []
    with torch.no_grad():
        for p in model.parameters():
            flat = p.detach().reshape(-1)
            # every 1024th element: <= 4 KiB apart for 2- and 4-byte dtypes, so every page is read, and the
            # same elements on both sides (diffusers keeps some modules in float32)
            sums.append(float(flat[::1024].double().sum()))
    return math.fsum(sorted(sums))  # order-independent: both sides hold the same tensors under other names


def worker_load(impl: str) -> dict[str, Any]:
    import torch

    official, diffusers_dir = _ckpt_paths()
    t0 = time.perf_counter()
    if impl == "ours":
        from wan.loading import load_dit

        model = load_dit(official, dtype=torch.bfloat16, device="cpu")
    else:
        from diffusers import WanTransformer3DModel

        model = WanTransformer3DModel.from_pretrained(diffusers_dir, torch_dtype=torch.bfloat16)
    t_load = time.perf_counter() - t0
    checksum = touch_all(model)
    t_touch = time.perf_counter() - t0
    return {"load_s": t_load, "load_touch_s": t_touch, "checksum": checksum,
            "dtypes": sorted({str(p.dtype) for p in model.parameters()})}  # fmt: skip


# ------------------------------------------------------------------------------------ driver


def run_worker(args: list[str], threads: int) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    proc = subprocess.run([sys.executable, __file__, "_worker", *args], capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"worker {args} failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def per_step(result: dict[str, Any]) -> float:
    stamps = result["stamps"]
    intervals = [b - a for a, b in zip(stamps, stamps[1:], strict=False)]
    return statistics.median(intervals) if intervals else stamps[0] - result["t0"]


def bench_steps(names: list[str], repeats: int, threads: int) -> list[dict[str, Any]]:
    rows = []
    for name in names:
        cfg = STEP_CONFIGS[name]
        per: dict[str, list[float]] = {"ours": [], "diffusers": []}
        rss: dict[str, int] = {"ours": 0, "diffusers": 0}
        sums: dict[str, float] = {}
        for r in range(repeats):
            order = ["ours", "diffusers"] if r % 2 == 0 else ["diffusers", "ours"]
            for impl in order:
                res = run_worker(["steps", impl, name], threads)
                per[impl].append(per_step(res))
                rss[impl] = max(rss[impl], res["peak_rss"])
                sums[impl] = res["checksum"]
                print(f"  [{name}] {impl}: {per[impl][-1]:.3f} s/step, peak RSS {res['peak_rss'] / 2**30:.2f} GiB", file=sys.stderr)
        rel = abs(sums["ours"] - sums["diffusers"]) / max(abs(sums["diffusers"]), 1e-12)
        rows.append({"config": cfg, "ours": min(per["ours"]), "diffusers": min(per["diffusers"]),
                     "rss_ours": rss["ours"], "rss_diffusers": rss["diffusers"], "checksum_rel": rel})  # fmt: skip
    return rows


def bench_load(repeats: int, threads: int) -> dict[str, Any]:
    weights = write_load_checkpoints()
    official, diffusers_dir = _ckpt_paths()
    res: dict[str, list[dict[str, Any]]] = {"ours": [], "diffusers": []}
    for r in range(repeats):
        for impl in (["ours", "diffusers"] if r % 2 == 0 else ["diffusers", "ours"]):
            drop_page_cache(official)
            drop_page_cache(diffusers_dir)
            out = run_worker(["load", impl], threads)
            res[impl].append(out)
            print(f"  [load] {impl}: {out['load_s']:.1f} s (+touch {out['load_touch_s']:.1f} s), "
                  f"peak RSS {out['peak_rss'] / 2**30:.2f} GiB", file=sys.stderr)  # fmt: skip
    best = {k: min(v, key=lambda o: o["load_touch_s"]) for k, v in res.items()}
    return {"weights": weights, **{f"{k}_{m}": best[k][m] for k in best for m in ("load_s", "load_touch_s")},
            "rss_ours": max(o["peak_rss"] for o in res["ours"]), "rss_diffusers": max(o["peak_rss"] for o in res["diffusers"]),
            "checksum_equal": best["ours"]["checksum"] == best["diffusers"]["checksum"]}  # fmt: skip


def gib(n: float) -> str:
    return f"{n / 2**30:.2f} GiB"


def markdown(step_rows: list[dict[str, Any]], load: dict[str, Any] | None, threads: int) -> str:
    import platform

    import torch

    lines = [f"CPU: {os.cpu_count()} cores ({platform.processor() or platform.machine()}), torch {torch.__version__}, "
             f"{threads} torch thread(s) per worker, float32 for the step benchmark", ""]  # fmt: skip
    if step_rows:
        lines += ["| config | tokens | ours s/step | diffusers s/step | ratio (target <= 0.9) | peak RSS ours | peak RSS diffusers | output rel. diff |",
                  "|---|---|---|---|---|---|---|---|"]  # fmt: skip
        for row in step_rows:
            cfg: StepConfig = row["config"]
            tokens = ((cfg.frames - 1) // 4 + 1) * (cfg.size[1] // 16) * (cfg.size[0] // 16)
            desc = f"{cfg.name}: dim {cfg.dim}, {cfg.num_layers} layers, ffn {cfg.ffn_dim}"
            lines.append(f"| {desc} | {tokens} | {row['ours']:.3f} | {row['diffusers']:.3f} | {row['ours'] / row['diffusers']:.2f}x "
                         f"| {gib(row['rss_ours'])} | {gib(row['rss_diffusers'])} | {row['checksum_rel']:.1e} |")  # fmt: skip
        lines.append("")
    if load:
        w = load["weights"]
        lines += ["| 5B-sized DiT load (bf16, 10.0 GB of weights, cold page cache) | load s | load + read every page s | peak RSS | RSS / weights (target <= 1.1) |",
                  "|---|---|---|---|---|",
                  f"| ours: wan.loading.load_dit (official layout) | {load['ours_load_s']:.1f} | {load['ours_load_touch_s']:.1f} | {gib(load['rss_ours'])} | {load['rss_ours'] / w:.2f}x |",
                  f"| diffusers: WanTransformer3DModel.from_pretrained | {load['diffusers_load_s']:.1f} | {load['diffusers_load_touch_s']:.1f} | {gib(load['rss_diffusers'])} | {load['rss_diffusers'] / w:.2f}x |"]  # fmt: skip
        lines.append(f"\nweights: {w / 1e9:.2f} GB; same values loaded on both sides: {load['checksum_equal']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "_worker":
        import torch

        torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
        kind, impl = argv[1], argv[2]
        if kind == "steps":
            cfg = STEP_CONFIGS[argv[3]]
            out = worker_steps_ours(cfg) if impl == "ours" else worker_steps_diffusers(cfg)
        else:
            out = worker_load(impl)
        out["peak_rss"] = peak_rss_bytes()
        print(json.dumps(out))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=("steps", "load", "all"))
    parser.add_argument("--configs", nargs="+", default=["small", "medium"], choices=sorted(STEP_CONFIGS))
    parser.add_argument("--repeats", type=int, default=2, help="runs per implementation (alternating order); best kept")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads per worker (default 1: on a shared 2-core box, 2 threads make timings "
                             "depend on whatever else runs)")  # fmt: skip
    args = parser.parse_args(argv)
    RESULTS.mkdir(parents=True, exist_ok=True)
    step_rows = bench_steps(args.configs, args.repeats, args.threads) if args.what in ("steps", "all") else []
    load = bench_load(args.repeats, args.threads) if args.what in ("load", "all") else None
    table = markdown(step_rows, load, args.threads)
    print(table)
    (RESULTS / f"table-{args.what}.md").write_text(table + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
