"""Benchmark of ``wan.quant`` fp8 weights (not a test): parameter memory, per-forward time, error.

A mid-size random DiT (default dim 1024, ffn 4096, 8 heads, 6 layers, text_dim 4096; latent
16x4x16x16 = 256 video tokens; batch 1; cross-attention k/v cached with ``encode_context`` as the
pipeline does). Weights ~N(0, 1/fan_in), modulation/head random as in the real model. Rows:

* ``fp32`` / ``bf16``: plain weights in that dtype (the reference is fp32);
* ``fp8 (per-channel|per-tensor), <compute dtype>``: block linears in float8_e4m3fn, dequantised per
  layer in the forward (``FP8Linear``);
* on CUDA also ``fp8 ... + _scaled_mm`` (W8A8 ``torch._scaled_mm``, compute capability >= 8.9).

Columns: parameter bytes of the whole model (MiB) and of the block linears' weights+scales, the
median forward time (``--repeats`` rounds after a warm-up round, every variant once per round;
CUDA synchronised), and the relative L2 of the
output vs the fp32 model. Prints a markdown table. CPU: ~1 minute on 2 cores.

    python bench/bench_fp8.py [--dim 1024 --layers 6 --tokens-grid 4 16 16 --repeats 5 --device cpu]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from wan.modules.model import DiTConfig, WanModel  # noqa: E402
from wan.quant import FP8Linear, is_dit_quantizable, parameter_bytes, quantize_dit, scaled_mm_supported  # noqa: E402


def random_model(cfg: DiTConfig, seed: int = 0) -> WanModel:
    g = torch.Generator().manual_seed(seed)
    model = WanModel(cfg).eval().requires_grad_(False)
    for name, p in model.named_parameters():
        if p.ndim >= 2 and "modulation" not in name:
            p.copy_(torch.randn(p.shape, generator=g) / p[0].numel() ** 0.5)
        elif "modulation" in name:
            p.copy_(torch.randn(p.shape, generator=g) * 0.1)
        elif name.endswith("bias"):
            p.copy_(torch.randn(p.shape, generator=g) * 0.02)
    return model


def linear_bytes(model: WanModel) -> int:
    total = 0
    for name, module in model.named_modules():
        if is_dit_quantizable(name):
            total += module.weight.numel() * module.weight.element_size()
            if isinstance(module, FP8Linear):
                total += module.weight_scale.numel() * 4
    return total


def timed(fn, device: torch.device) -> tuple[float, torch.Tensor]:
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    out = fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dim", type=int, default=1024)
    ap.add_argument("--ffn", type=int, default=None, help="default 4 x dim")
    ap.add_argument("--heads", type=int, default=8)
    ap.add_argument("--layers", type=int, default=6)
    ap.add_argument("--text-dim", type=int, default=4096)
    ap.add_argument("--grid", type=int, nargs=3, default=(4, 16, 16), help="latent F H W (tokens = F*H*W/4)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    cfg = DiTConfig(model_type="t2v", dim=args.dim, ffn_dim=args.ffn or 4 * args.dim, num_heads=args.heads,
                    num_layers=args.layers, in_dim=16, out_dim=16, text_dim=args.text_dim)  # fmt: skip
    base = random_model(cfg)
    g = torch.Generator().manual_seed(1)
    f, h, w = args.grid
    x = torch.randn(1, 16, f, h, w, generator=g).to(device)
    t = torch.tensor([700.0], device=device)
    ctx = torch.randn(1, cfg.text_len, cfg.text_dim, generator=g).to(device)

    low = torch.bfloat16
    variants: list[tuple[str, torch.dtype, bool | None, bool]] = [("fp32", torch.float32, None, False),
                                                                   ("bf16", low, None, False)]  # fmt: skip
    for per_channel in (True, False):
        kind = "per-channel" if per_channel else "per-tensor"
        variants.append((f"fp8 {kind}, fp32 compute", torch.float32, per_channel, False))
        variants.append((f"fp8 {kind}, bf16 compute", low, per_channel, False))
        if device.type == "cuda" and scaled_mm_supported(device):
            variants.append((f"fp8 {kind}, bf16 + _scaled_mm", low, per_channel, True))

    models = []
    for label, dtype, per_channel, scaled_mm in variants:
        model = copy.deepcopy(base).to(dtype)
        if per_channel is not None:
            quantize_dit(model, per_channel=per_channel, use_scaled_mm=scaled_mm)
        model.to(device)
        with torch.inference_mode():
            models.append((label, model, model.encode_context(ctx)))
    # round-robin: each repeat times every variant once, so load from other processes hits all alike
    times: dict[str, list[float]] = {label: [] for label, _, _ in models}
    outs: dict[str, torch.Tensor] = {}
    with torch.inference_mode():
        for r in range(args.repeats + 1):
            for label, model, cache in models:
                seconds, out = timed(lambda m=model, c=cache: m(x, t, c), device)
                if r:  # r == 0: warm-up
                    times[label].append(seconds)
                outs[label] = out.float().cpu()
    reference = outs["fp32"]
    rows = []
    for label, model, _ in models:
        err = ((outs[label] - reference).norm() / reference.norm()).item()
        rows.append((label, parameter_bytes(model), linear_bytes(model), statistics.median(times[label]), err))

    tokens = f * h * w // 4
    print(f"\nDiT dim {cfg.dim}, ffn {cfg.ffn_dim}, {cfg.num_layers} layers, text_dim {cfg.text_dim}; "
          f"{tokens} video tokens; device {device}" + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda"
                                                       else f", {torch.get_num_threads()} threads") + "\n")  # fmt: skip
    print("| weights | params (MiB) | block linears (MiB) | forward (ms) | vs fp32 time | rel L2 vs fp32 |")
    print("|---|---:|---:|---:|---:|---:|")
    t32 = rows[0][3]
    for label, total, lin, seconds, err in rows:
        print(f"| {label} | {total / 2**20:.1f} | {lin / 2**20:.1f} | {seconds * 1e3:.1f} | {seconds / t32:.2f}x | "
              f"{err:.2e} |")  # fmt: skip


if __name__ == "__main__":
    main()
