"""CPU benchmark of the memory profiles (not a test): host peak RSS of a load, and the residency ledger.

For each profile (none / expert / block) a fresh subprocess loads a mid-size random TI2V-5B-layout
checkpoint (official layout; DiT dim 1024, 8 layers by default: ~0.5 GB of float32 weights, tiny VAE
and umT5) with ``wan.load_pipeline(..., device="cpu", offload=profile)``, then runs one short
generation. Reported per profile:

* host RSS growth of the load: peak (``ru_maxrss``) and after the load, minus the RSS after a warm-up
  load of a tiny checkpoint (so the imports a load pulls in are not counted) — against the weight bytes (the target: peak <= 1.1x the weight bytes, i.e.
  no second copy of the weights; on CUDA the page-locked copy *replaces* the pageable one);
* the residency ledger's maximum over the run (bytes of DiT weights the profile held on the compute
  device) and its bound (everything / one expert / N blocks + the non-block parameters).

On a CPU device every profile keeps the same host copy (nothing is pinned), so the RSS numbers are the
load path's; the ledger is the same bookkeeping that runs on a GPU. Runtime: well under a minute.

    python bench/bench_memory.py [--dim 1024 --layers 8 --blocks 2 --dtype float32]

``device`` (used by ``bench/device_check.sh``): one CFG denoise step of one expert at the real token
counts (T2V-A14B width at 832x480x81, TI2V-5B at 1280x704x121) per profile (+fp8 when ``wan.quant``
exists), random weights built on meta and filled on the device (moved to the host for expert/block):
peak VRAM, s/step vs resident, the ledger; ``--tasks tiny --device cpu`` is its smoke run::

    python bench/bench_memory.py device [--tasks ti2v-5B t2v-A14B --profiles none expert block]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
RESULTS = REPO / "bench" / "results" / "memory"
PROFILES = ("none", "expert", "block")


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def write_checkpoint(out: Path, dim: int, layers: int) -> int:
    """A TI2V-5B official-layout checkpoint with a ``dim``/``layers`` random DiT; returns its weight bytes."""
    import dataclasses

    import torch

    from wan.modules.model import WanModel
    from wan.testing import synthetic

    marker = out / f".dit-{dim}-{layers}"
    if not marker.is_file():
        synthetic.write_tiny_checkpoint("ti2v-5B", out)
        cfg = dataclasses.replace(synthetic.tiny_dit_config("ti2v-5B"), dim=dim, ffn_dim=4 * dim,
                                  num_heads=dim // 128, num_layers=layers)  # fmt: skip
        sd = synthetic._random_state_dict(synthetic._module_shapes(WanModel, cfg), 0, "bench-memory")
        for f in out.glob("diffusion_pytorch_model*"):
            f.unlink()
        synthetic._write_json(out / "config.json", cfg.to_config_json())
        synthetic._write_weights(sd, out, "diffusion_pytorch_model.safetensors", shards=2)
        del sd
        torch.cuda.empty_cache() if torch.cuda.is_available() else None
        marker.write_text("")
    return sum(f.stat().st_size for f in out.iterdir() if f.suffix in (".safetensors", ".pth"))


def worker(ckpt: str, profile: str, blocks: int, dtype: str) -> dict[str, Any]:
    import resource

    import torch

    import wan

    torch.set_num_threads(1)
    # warm-up: a tiny load first, so the baseline includes every module a load imports (tokenizer, ...)
    warm = wan.load_pipeline("ti2v-5B", str(Path(ckpt).parent / "tiny"), device="cpu", dtype=dtype, offload=profile)
    del warm
    import gc

    gc.collect()
    base = _rss_bytes()
    base_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    pipe = wan.load_pipeline("ti2v-5B", ckpt, device="cpu", dtype=dtype, offload=profile, offload_blocks=blocks, any_size=True)
    after = _rss_bytes()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    dit = sum(t.numel() * t.element_size() for m in pipe.experts.experts.values() for t in m.state_dict().values())
    pipe.generate("a fox", size=(64, 32), frame_num=5, sampling_steps=2, seed=0)
    run = pipe.last_run
    run_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    bound = dit
    if profile == "block":
        bound = pipe.experts.bound()  # type: ignore[union-attr]
    return {
        "profile": profile,
        "load_peak_delta": max(peak, base_peak) - base,
        "load_after_delta": after - base,
        "run_peak_delta": max(run_peak, base_peak) - base,
        "dit_bytes": dit,
        "ledger_peak": run.resident_peak_bytes if run else 0,
        "ledger_bound": bound,
    }


# ------------------------------------------------------------------ device: one step, real shapes

# (DiT dims, (W, H, frames) of the real video, VAE stride): A14B expert width at 832x480x81, 5B at 1280x704x121
DEVICE_TASKS = {
    "t2v-A14B": ({"model_type": "t2v", "dim": 5120, "ffn_dim": 13824, "num_heads": 40, "num_layers": 40,
                  "in_dim": 16, "out_dim": 16, "text_dim": 4096}, (832, 480, 81), 8),
    "ti2v-5B": ({"model_type": "ti2v", "dim": 3072, "ffn_dim": 14336, "num_heads": 24, "num_layers": 30,
                 "in_dim": 48, "out_dim": 48, "text_dim": 4096}, (1280, 704, 121), 16),
    "tiny": ({"model_type": "t2v", "dim": 64, "ffn_dim": 128, "num_heads": 2, "num_layers": 6,
              "in_dim": 16, "out_dim": 16, "text_dim": 64}, (64, 64, 5), 8),
}  # fmt: skip


def _materialise(model: Any, prefix: str, module: Any, device: Any, host: bool, g: Any) -> None:
    """Random weights for ``module`` (on meta) generated on ``device``; moved to the CPU when ``host``."""
    import math

    import torch

    from wan.modules.model import is_float32_parameter

    for mod_name, mod in module.named_modules():
        for pname, p in list(mod._parameters.items()):
            if p is None or p.device.type != "meta":
                continue
            full = ".".join(x for x in (prefix, mod_name, pname) if x)
            t = torch.randn(p.shape, generator=g, device=device)
            if full.endswith(("norm_q.weight", "norm_k.weight", "norm3.weight")):
                t = 1.0 + 0.1 * t
            elif "modulation" in full:
                t = 0.1 * t
            elif p.ndim > 1:
                t = t / math.sqrt(math.prod(p.shape[1:]))
            else:
                t = 0.05 * t
            t = t.to(torch.float32 if is_float32_parameter(full) else torch.bfloat16)
            mod._parameters[pname] = torch.nn.Parameter(t.to("cpu") if host else t, requires_grad=False)


def device_step(task: str, profile: str, blocks: int, fp8: bool, device: str, forwards: int) -> dict[str, Any]:
    """One CFG denoise step (2 forwards, cross-attention k/v cached as the pipeline does) of one expert
    at the real token count, random bf16 weights built on meta and filled on the device (streamed to
    the host for expert/block). Returns peak device memory and seconds per step."""
    import time

    import torch

    from wan.modules.model import DiTConfig, WanModel
    from wan.offload import make_offloader

    dims, (w, h, frames), stride = DEVICE_TASKS[task]
    cfg = DiTConfig(**dims)
    cuda = torch.device(device).type == "cuda"
    with torch.device("meta"):
        model = WanModel(cfg)
    host = profile != "none"
    g = torch.Generator(device=device).manual_seed(0)
    t0 = time.perf_counter()
    for name, child in model.named_children():
        if name != "blocks":
            _materialise(model, name, child, device, host, g)
    for i, block in enumerate(model.blocks):
        _materialise(model, f"blocks.{i}", block, device, False, g)
        if fp8:
            from wan.quant import is_dit_quantizable, quantize_dit

            names = [n for n, _ in block.named_modules() if n and is_dit_quantizable(f"blocks.{i}.{n}")]
            quantize_dit(model, only=[f"blocks.{i}.{n}" for n in names])
        if host:
            block.to("cpu")
    model.eval().requires_grad_(False)
    build_s = time.perf_counter() - t0
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    off = make_offloader({"expert": model}, device, profile, blocks=blocks)
    model = off.activate("expert")
    if cuda:
        torch.cuda.synchronize()
    place_s = time.perf_counter() - t0
    f_lat, h_lat, w_lat = (frames - 1) // 4 + 1, h // stride, w // stride
    gx = torch.Generator(device=device).manual_seed(1)
    x = torch.randn(1, cfg.in_dim, f_lat, h_lat, w_lat, generator=gx, device=device)
    ctx = torch.zeros(1, cfg.text_len, cfg.text_dim, device=device, dtype=torch.bfloat16)
    ctx[:, :20] = torch.randn(1, 20, cfg.text_dim, generator=gx, device=device).bfloat16()
    t = torch.tensor([900], device=device)
    times = []
    with torch.no_grad():
        cond, uncond = model.encode_context(ctx), model.encode_context(torch.zeros_like(ctx))
        model(x, t, uncond)  # warm-up forward
        for _ in range(max(forwards // 2, 1)):
            if cuda:
                torch.cuda.synchronize()
            t1 = time.perf_counter()
            out_u = model(x, t, uncond)
            out_c = model(x, t, cond)
            out = out_u + 4.0 * (out_c - out_u)
            if cuda:
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t1)
    ok = bool(torch.isfinite(out).all())
    ledger = off.ledger.peak
    off.release()
    return {
        "task": task, "profile": profile + (f" x{blocks}" if profile == "block" else "") + (" +fp8" if fp8 else ""),
        "tokens": f_lat * (h_lat // 2) * (w_lat // 2), "s_per_step": min(times), "build_s": build_s, "place_s": place_s,
        "peak_bytes": torch.cuda.max_memory_allocated() if cuda else 0, "ledger_peak": ledger, "finite": ok,
        "gpu": torch.cuda.get_device_name() if cuda else "cpu",
    }


def device_main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="bench_memory.py device", description="one denoise step per task/profile")
    ap.add_argument("--tasks", nargs="+", default=["ti2v-5B", "t2v-A14B"], choices=sorted(DEVICE_TASKS))
    ap.add_argument("--profiles", nargs="+", default=["none", "expert", "block"])
    ap.add_argument("--blocks", type=int, default=2)
    ap.add_argument("--fp8", choices=("auto", "yes", "no"), default="auto", help="also +fp8 rows (auto: if wan.quant exists)")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--forwards", type=int, default=2, help="timed forwards (2 = one CFG step)")
    ap.add_argument("--timeout", type=int, default=240, help="seconds per case (each runs in its own process)")
    args = ap.parse_args(argv)
    fp8 = args.fp8 == "yes"
    if args.fp8 == "auto":
        import importlib.util

        fp8 = importlib.util.find_spec("wan.quant") is not None
    cases = [(task, prof, False) for task in args.tasks for prof in args.profiles]
    if fp8:
        cases += [(task, prof, True) for task in args.tasks for prof in ("none", "block") if prof in args.profiles]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)}
    rows: list[dict[str, Any]] = []
    for task, prof, q in cases:
        cmd = [sys.executable, __file__, "_device", task, prof, str(args.blocks), str(int(q)), args.device, str(args.forwards)]
        label = f"{task} {prof}{' +fp8' if q else ''}"
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False, timeout=args.timeout)
            if proc.returncode != 0:
                tail = (proc.stderr.strip().splitlines() or ["?"])[-1][:160]
                rows.append({"task": task, "profile": label.split(" ", 1)[1], "error": f"rc {proc.returncode}: {tail}"})
            else:
                rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        except subprocess.TimeoutExpired:
            rows.append({"task": task, "profile": label.split(" ", 1)[1], "error": f"timeout {args.timeout}s"})
        print(f"  {label}: {rows[-1]}", file=sys.stderr, flush=True)
    gib = 2**30
    resident = {r["task"]: r["s_per_step"] for r in rows if r.get("profile") == "none" and "s_per_step" in r}
    gpu = next((r["gpu"] for r in rows if "gpu" in r), "?")
    lines = [f"Device: {gpu}; one expert, bf16 random weights, one CFG step (2 forwards, cached text k/v) at the "
             "real token count; block = offload_blocks N", "",
             "| task | profile | tokens | s/step | vs resident | peak VRAM (max_memory_allocated) | ledger max (DiT weights) "
             "| placement s | finite |", "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['task']} | {r['profile']} | | FAILED: {r['error']} | | | | | |")
            continue
        base = resident.get(r["task"])
        ratio = f"{r['s_per_step'] / base:.2f}x" if base else "n/a"
        lines.append(f"| {r['task']} | {r['profile']} | {r['tokens']} | {r['s_per_step']:.2f} | {ratio} | "
                     f"{r['peak_bytes'] / gib:.2f} GiB | {r['ledger_peak'] / gib:.2f} GiB | {r['place_s']:.1f} | {r['finite']} |")  # fmt: skip
    print("\n".join(lines), flush=True)
    return 0 if all("error" not in r for r in rows) else 1


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "_worker":
        print(json.dumps(worker(argv[1], argv[2], int(argv[3]), argv[4])))
        return 0
    if argv and argv[0] == "_device":
        a = argv[1:]
        print(json.dumps(device_step(a[0], a[1], int(a[2]), bool(int(a[3])), a[4], int(a[5]))))
        return 0
    if argv and argv[0] == "device":
        return device_main(argv[1:])
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dim", type=int, default=1024)
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--blocks", type=int, default=2, help="offload_blocks for the block profile")
    ap.add_argument("--dtype", default="float32", help="load dtype (float32 = the file's: no cast)")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    ckpt = args.out / "ckpt"
    ckpt.mkdir(parents=True, exist_ok=True)
    weight_bytes = write_checkpoint(ckpt, args.dim, args.layers)
    if not (args.out / "tiny" / "config.json").is_file():
        from wan.testing.synthetic import write_tiny_checkpoint

        write_tiny_checkpoint("ti2v-5B", args.out / "tiny")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)}
    rows = []
    for profile in PROFILES:
        cmd = [sys.executable, __file__, "_worker", str(ckpt), profile, str(args.blocks), args.dtype]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False, timeout=600)
        if proc.returncode != 0:
            print(f"{profile}: FAILED\n{proc.stderr[-3000:]}", file=sys.stderr)
            return 1
        rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    mib = 2**20
    lines = [
        f"CPU, DiT dim {args.dim} x {args.layers} layers ({args.dtype}), weights on disk {weight_bytes / mib:.0f} MiB "
        f"(DiT {rows[0]['dit_bytes'] / mib:.0f} MiB); block: offload_blocks={args.blocks}",
        "",
        "| profile | load: peak RSS growth | RSS growth after load | peak RSS growth, load + one run (weights touched) "
        "| / weight bytes | ledger max (DiT on device) | ledger bound |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['profile']} | {r['load_peak_delta'] / mib:.0f} MiB | {r['load_after_delta'] / mib:.0f} MiB | "
            f"{r['run_peak_delta'] / mib:.0f} MiB | {r['run_peak_delta'] / weight_bytes:.2f}x | "
            f"{r['ledger_peak'] / mib:.1f} MiB | {r['ledger_bound'] / mib:.1f} MiB |"
        )
    table = "\n".join(lines)
    print(table)
    (args.out / "table.md").write_text(table + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
