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


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "_worker":
        print(json.dumps(worker(argv[1], argv[2], int(argv[3]), argv[4])))
        return 0
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
