"""Peak CUDA memory and time of one TI2V-5B-shaped DiT forward in image mode (per-token timesteps:
first latent frame at t=0), ours with the run-length modulation, ours with the per-token gather
fallback, and diffusers' WanTransformer3DModel, on the same random bf16 weights (not a test).

    python bench/bench_ti2v_memory.py [--layers 30] [--frames 121]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--layers", type=int, default=30)
    parser.add_argument("--frames", type=int, default=121)
    parser.add_argument("--size", default="1280*704")
    parser.add_argument("--dim", type=int, default=3072, help="3072 = TI2V-5B (smaller only for a smoke run)")
    parser.add_argument("--device", default="cuda", help="cuda, or cpu for a smoke run (no memory numbers)")
    args = parser.parse_args()
    import torch

    import wan.modules.model as m
    from bench_gpu import random_weights

    w, h = (int(v) for v in args.size.split("*"))
    dev = args.device
    cuda = dev == "cuda"
    cfg = m.DiTConfig(model_type="ti2v", dim=args.dim, ffn_dim=args.dim * 14336 // 3072, num_heads=args.dim // 128, num_layers=args.layers,
                      in_dim=48, out_dim=48, text_dim=4096)  # fmt: skip
    sd = random_weights(cfg, seed=0, device=dev)
    sd = {k: v.float() if m.is_float32_parameter(k) else v for k, v in sd.items()}
    with torch.device("meta"):
        model = m.WanModel(cfg)
    model.load_state_dict(sd, assign=True, strict=True)
    model.eval().requires_grad_(False)
    f, hl, wl = (args.frames - 1) // 4 + 1, h // 16, w // 16
    g = torch.Generator(device=dev).manual_seed(1)
    x = torch.randn(1, 48, f, hl, wl, generator=g, device=dev)
    ctx = torch.zeros(1, 512, 4096, device=dev, dtype=torch.bfloat16)
    ctx[:, :20] = torch.randn(1, 20, 4096, generator=g, device=dev).bfloat16()
    mask = torch.ones(1, f, hl // 2, wl // 2, device=dev)
    mask[:, 0] = 0
    t = (mask * 700.0).flatten(1)  # [1, L]
    print(f"tokens {t.shape[1]}, layers {args.layers}, dim {args.dim}, device {torch.cuda.get_device_name() if cuda else dev}", flush=True)

    def measure(fn) -> tuple[float, float, object]:
        fn()  # warm-up
        if not cuda:
            t0 = time.perf_counter()
            out = fn()
            return time.perf_counter() - t0, 0.0, out
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        t0 = time.perf_counter()
        out = fn()
        torch.cuda.synchronize()
        return time.perf_counter() - t0, (torch.cuda.max_memory_allocated() - base) / 2**30, out

    rows = []
    with torch.no_grad():
        m.MAX_TIMESTEP_RUNS = 8
        rows.append(("ours, run-length modulation", *measure(lambda: model(x, t, ctx))))
        m.MAX_TIMESTEP_RUNS = 0
        rows.append(("ours, per-token gather", *measure(lambda: model(x, t, ctx))))
        m.MAX_TIMESTEP_RUNS = 8
    ref_out = rows[0][3]
    del model
    if cuda:
        torch.cuda.empty_cache()
    from accelerate import init_empty_weights
    from diffusers import WanTransformer3DModel

    keep = tuple(WanTransformer3DModel._keep_in_fp32_modules or ())
    with init_empty_weights():
        ref = WanTransformer3DModel(**cfg.to_diffusers_config())
    dsd = {k: v.float() if any(f".{p}." in f".{k}" for p in keep) else v
           for k, v in m.to_diffusers_dit_state_dict({k: v.bfloat16() for k, v in sd.items()}).items()}  # fmt: skip
    del sd
    ref.load_state_dict(dsd, assign=True, strict=True)
    del dsd
    ref.to(dev).eval().requires_grad_(False)
    with torch.no_grad():
        rows.append(("diffusers WanTransformer3DModel", *measure(
            lambda: ref(hidden_states=x.bfloat16(), timestep=t, encoder_hidden_states=ctx, return_dict=False)[0])))
    print("\n| one forward, image mode | s | peak activation memory above weights | rel. L2 vs ours (runs) |")
    print("|---|---|---|---|")
    for name, sec, peak, out in rows:
        rel = float((out.float() - ref_out.float()).norm() / ref_out.float().norm())
        print(f"| {name} | {sec:.2f} | {peak:.2f} GiB | {rel:.1e} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
