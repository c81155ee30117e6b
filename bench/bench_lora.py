"""CPU benchmark of ``wan.lora`` (not a test): per-step DiT forward time with a LoRA vs none, apply/remove time.

A mid-size random DiT (default dim 768, ffn 3072, 6 heads, 4 layers, text_dim 4096, latent 16x3x16x16
= 192 video tokens, batch 1, cross-attention k/v cached with ``encode_context`` as the pipeline does);
the base model and a copy with the LoRA run alternately, so load from other processes hits both. LoRAs on every block linear (q/k/v/o of both attentions,
ffn.0/2) plus the lightx2v-style extras (diff_b biases, norm3 deltas, head.head.diff), ranks:

* ``r=64*dim/5120`` — the same LoRA/weight FLOP ratio as a rank-64 LoRA on a 14B expert (dim 5120),
  i.e. the case the <= 1.05x target is about;
* ``r=64`` literally (at dim 768 that is ~7x heavier, relatively, than rank 64 on A14B).

Modes: unmerged (hooks, the default) and merged. Forward times and the ratio are medians over
``--repeats`` alternating pairs after a warm-up; apply / strength change / remove are single shots.
Prints a markdown table.
Targets (issue): unmerged <= 1.05x, merged 1.00x. Runtime ~1 minute on 2 cores.

    python bench/bench_lora.py [--dim 768 --layers 4 --repeats 7 --threads 1]
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from wan.lora import apply_loras, load_lora, remove_loras  # noqa: E402
from wan.modules.model import DiTConfig, WanModel  # noqa: E402
from wan.testing.lora import tiny_lora_state_dict  # noqa: E402


def random_model(cfg: DiTConfig, seed: int = 0) -> WanModel:
    g = torch.Generator().manual_seed(seed)
    model = WanModel(cfg).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=g)
            if "norm" in name and name.endswith("weight"):
                p.copy_(1 + 0.1 * noise)
            elif p.ndim == 1 or name.endswith("modulation"):
                p.copy_(0.05 * noise)
            else:
                p.copy_(noise / math.sqrt(p[0].numel()))
    return model


def paired(base_fn, lora_fn, repeats: int) -> tuple[float, float, float]:  # type: ignore[no-untyped-def]
    """Alternating base / LoRA forwards (cancels drift from other load on the machine): medians of the
    base time, the LoRA time and of the per-pair ratio."""
    base_fn(), lora_fn()  # warm-up
    tb, tl, ratios = [], [], []
    for i in range(repeats):
        pair = []
        for fn in ((base_fn, lora_fn) if i % 2 == 0 else (lora_fn, base_fn)):
            t0 = time.perf_counter()
            fn()
            pair.append((fn, time.perf_counter() - t0))
        b = next(t for f, t in pair if f is base_fn)
        lo = next(t for f, t in pair if f is lora_fn)
        tb.append(b)
        tl.append(lo)
        ratios.append(lo / b)
    return statistics.median(tb), statistics.median(tl), statistics.median(ratios)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dim", type=int, default=768)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1: steadier on a shared machine)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cfg = DiTConfig(model_type="t2v", dim=args.dim, ffn_dim=4 * args.dim, num_heads=args.dim // 128,
                    num_layers=args.layers, in_dim=16, out_dim=16)  # fmt: skip
    base_model = random_model(cfg)
    model = random_model(cfg)  # the same weights; gets the LoRAs
    g = torch.Generator().manual_seed(1)
    x = torch.randn(1, 16, 3, 16, 16, generator=g)
    t = torch.tensor([900.0])
    context = torch.zeros(1, cfg.text_len, cfg.text_dim)
    context[:, :20] = torch.randn(1, 20, cfg.text_dim, generator=g)
    with torch.inference_mode():
        base_cache = base_model.encode_context(context)

    def base_step() -> None:
        with torch.inference_mode():
            base_model(x, t, base_cache)

    n_params = sum(p.numel() for p in model.parameters())
    print(f"DiT dim {cfg.dim}, ffn {cfg.ffn_dim}, {cfg.num_layers} layers ({n_params / 1e6:.0f} M params), "
          f"192 video tokens, batch 1, {torch.get_num_threads()} thread(s), {args.repeats} interleaved pairs\n")  # fmt: skip
    rows = []
    for rank in (max(1, round(64 * cfg.dim / 5120)), 64):
        sd = tiny_lora_state_dict(cfg, "official", seed=2, rank=rank, alpha=float(rank), diff_b=True,
                                  norm_diff=True, head_diff=True)  # fmt: skip
        lora = load_lora(sd, name=f"r{rank}")
        for merge in (False, True):
            t0 = time.perf_counter()
            apply_loras(model, [(lora, 1.0)], merge=merge)
            t_apply = time.perf_counter() - t0
            with torch.inference_mode():
                cache = model.encode_context(context)  # cross-attn k/v depend on the LoRA

            def lora_step() -> None:
                with torch.inference_mode():
                    model(x, t, cache)  # noqa: B023

            tb, tl, ratio = paired(base_step, lora_step, args.repeats)
            t0 = time.perf_counter()
            apply_loras(model, [(lora, 0.5)], merge=merge)  # a Lightning-style strength change
            t_change = time.perf_counter() - t0
            t0 = time.perf_counter()
            remove_loras(model)
            t_remove = time.perf_counter() - t0
            rows.append((f"r={rank} ({lora.num_parameters / 1e6:.2f} M)", "merged" if merge else "unmerged",
                         f"{tb * 1e3:.0f}", f"{tl * 1e3:.0f}", f"{ratio:.3f}", f"{t_apply * 1e3:.0f}",
                         f"{t_change * 1e3:.0f}", f"{t_remove * 1e3:.1f}"))  # fmt: skip
    head = ("LoRA (params)", "mode", "base ms", "with LoRA ms", "ratio", "apply ms", "strength change ms", "remove ms")
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
