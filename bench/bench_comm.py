"""Communication volume of one denoising step under Ulysses (and CFG-parallel), from the real shapes.

    python bench/bench_comm.py                      # A14B 720p 81 frames, 5B 720p 121 frames; U = 2, 4, 8
    python bench/bench_comm.py --ulysses 2 4 --dtype float16
    python bench/bench_comm.py overhead [--device cuda --layers 8]   # world size 1 vs plain, s/step

No GPU and no weights needed: the real ``WanModel`` of each task (full size) is built on the meta
device with a ``SequenceParallel`` whose collectives only record the buffers they would send, and
one real forward runs through it, so every count and shape below comes from the code path that
runs on the GPUs (patch embedding, padding, the per-block all-to-alls, the final all-gather).

Per step: CFG runs 2 forwards on every rank (cond, uncond), or 1 with ``--cfg_parallel`` plus one
all-gather of the velocity between the two CFG ranks. An all-to-all of a B-byte buffer over p ranks
sends B(p-1)/p bytes from each rank (its own chunk stays); an all-gather of b bytes per rank sends
b(p-1) from each rank (ring). The official code does 3 all-to-alls in (q, k, v) + 1 out per block;
ours stacks q, k, v into one (same bytes, 2 calls per block).
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from wan.configs import get_spec  # noqa: E402
from wan.distributed.ulysses import SequenceParallel  # noqa: E402
from wan.modules.model import WanModel  # noqa: E402

# (task, label, width, height, frames): the official 720p settings
SHAPES = (("t2v-A14B", "A14B 1280x720x81", 1280, 720, 81), ("ti2v-5B", "5B 1280x704x121", 1280, 704, 121))


class RecordingSequenceParallel(SequenceParallel):
    """The real sharding/attention code; the two collectives record their buffers instead of sending."""

    def __init__(self, size: int) -> None:
        super().__init__(None, size, 0)
        self.calls: list[tuple[str, tuple[int, ...], int]] = []

    def _all_to_all(self, x: torch.Tensor) -> torch.Tensor:
        self.calls.append(("all_to_all", tuple(x.shape), x.numel() * x.element_size()))
        return torch.empty_like(x)

    def gather(self, x: torch.Tensor) -> torch.Tensor:
        self.calls.append(("all_gather", tuple(x.shape), x.numel() * x.element_size()))
        return torch.empty(x.shape[0], self.seq_len, *x.shape[2:], dtype=x.dtype, device=x.device)


@dataclass
class Row:
    label: str
    layout: str
    tokens: int
    per_rank: int
    a2a_calls: int
    a2a_buffer: int      # bytes of one all-to-all buffer (q/k/v in; out is 1/3 of it)
    a2a_sent: int        # bytes each rank sends in all-to-alls per step
    gather_sent: int     # bytes each rank sends in all-gathers per step (sequence + CFG)


def forward_calls(task: str, width: int, height: int, frames: int, size: int, dtype: torch.dtype):
    spec = get_spec(task)
    with torch.device("meta"):
        model = WanModel(spec.dit).to(dtype)
    sp = RecordingSequenceParallel(size)
    model.set_sequence_parallel(sp)
    st, sh, sw = spec.vae_stride
    latent = (1, spec.dit.out_dim, (frames - 1) // st + 1, height // sh, width // sw)
    x = torch.empty(latent, device="meta", dtype=dtype)
    y = None
    if spec.dit.in_dim > spec.dit.out_dim:
        y = torch.empty(1, spec.dit.in_dim - spec.dit.out_dim, *latent[2:], device="meta", dtype=dtype)
    ctx = torch.empty(1, spec.dit.text_len, spec.dit.text_dim, device="meta", dtype=dtype)
    with torch.no_grad():
        out = model(x, torch.tensor([900], device="meta"), ctx, y=y)
    return sp, out, latent


def measure(task: str, label: str, width: int, height: int, frames: int, ulysses: int, cfg: bool,
            dtype: torch.dtype) -> Row:  # fmt: skip
    sp, out, latent = forward_calls(task, width, height, frames, ulysses, dtype)
    forwards = 1 if cfg else 2
    a2a = [b for kind, _, b in sp.calls if kind == "all_to_all"]
    gathers = [b for kind, _, b in sp.calls if kind == "all_gather"]
    p = ulysses
    a2a_sent = forwards * sum(b * (p - 1) // p for b in a2a)
    gather_sent = forwards * sum(b * (p - 1) for b in gathers)
    if cfg:  # the velocity [1, z, F, H, W] float32 goes to the other CFG rank once per step
        gather_sent += math.prod(out.shape) * 4
    tokens = sp.seq_len
    return Row(label, f"cfg 2 x ulysses {p}" if cfg else f"ulysses {p}", tokens, -(-tokens // p),
               forwards * len(a2a), max(a2a), a2a_sent, gather_sent)  # fmt: skip


def fmt_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{n:.0f} B"
        n /= 1024
    return str(n)


def overhead_main(argv: list[str]) -> int:
    """World size 1 vs the plain path: CFG step time of one expert at the real token count."""
    import os
    import socket
    import time

    import torch.distributed as dist

    from bench_memory import DEVICE_TASKS, _materialise
    from wan.distributed import ParallelConfig, init_parallel
    from wan.modules.model import DiTConfig

    ap = argparse.ArgumentParser(prog="bench_comm.py overhead", description=overhead_main.__doc__)
    ap.add_argument("--task", default="ti2v-5B", choices=list(DEVICE_TASKS))
    ap.add_argument("--layers", type=int, default=8, help="DiT blocks (fewer than the real model: a short check)")
    ap.add_argument("--steps", type=int, default=3, help="timed CFG steps per path (best kept)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args(argv)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    os.environ.update(RANK="0", WORLD_SIZE="1", LOCAL_RANK="0", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    state = init_parallel(ParallelConfig(ulysses_size=1), args.device)
    dev = state.device
    dims, (w, h, frames), stride = DEVICE_TASKS[args.task]
    cfg = DiTConfig(**{**dims, "num_layers": args.layers})
    with torch.device("meta"):
        model = WanModel(cfg)
    _materialise(model, "", model, dev, False, torch.Generator(device=dev).manual_seed(0))
    model.eval()
    cuda = dev.type == "cuda"
    g = torch.Generator(device=dev).manual_seed(1)
    x = torch.randn(1, cfg.in_dim, (frames - 1) // 4 + 1, h // stride, w // stride, generator=g, device=dev)
    ctx = torch.randn(1, cfg.text_len, cfg.text_dim, generator=g, device=dev).bfloat16()
    t = torch.tensor([900], device=dev)

    def step(parallel: bool) -> torch.Tensor:
        u, c = model(x, t, uncond), model(x, t, cond)
        out = u + 4.0 * (c - u)
        if parallel:
            state.agree_stop(False)  # the one per-step collective of a world-size-1 run
        return out

    paths = {"plain": (None, False), "world 1": (None, True), "world 1 + Ulysses hooks (size 1)": (SequenceParallel(None, 1, 0), True)}
    best: dict[str, float] = {}
    with torch.no_grad():
        cond, uncond = model.encode_context(ctx), model.encode_context(torch.zeros_like(ctx))
        outs = {}
        for round_ in range(args.steps + 1):  # the first round warms up; paths alternate
            for name, (sp, parallel) in paths.items():
                model.set_sequence_parallel(sp)
                if cuda:
                    torch.cuda.synchronize()
                t0 = time.perf_counter()
                outs[name] = step(parallel)
                if cuda:
                    torch.cuda.synchronize()
                if round_ > 0:
                    best[name] = min(best.get(name, float("inf")), time.perf_counter() - t0)
    dist.destroy_process_group()
    tokens = x.shape[2] * (x.shape[3] // 2) * (x.shape[4] // 2)
    print(f"World-size-1 overhead: {args.task} dims, {args.layers} blocks, {tokens} tokens, CFG step, {dev}\n")
    print("| path | s/step | vs plain | max abs diff vs plain |")
    print("|---|---|---|---|")
    for name in paths:
        diff = (outs[name] - outs["plain"]).abs().max().item()
        print(f"| {name} | {best[name]:.4f} | {best[name] / best['plain']:.3f}x | {diff:.2e} |")
    ratio = best["world 1"] / best["plain"]
    print(f"\nOverhead: world size 1 runs at {ratio:.3f}x plain (target <= 1.02x): {'PASS' if ratio <= 1.02 else 'FAIL'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["overhead"]:
        return overhead_main(argv[1:])
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--ulysses", type=int, nargs="+", default=[2, 4, 8])
    p.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16", "float32"])
    args = p.parse_args(argv)
    dtype = getattr(torch, args.dtype)
    rows = []
    for task, label, w, h, f in SHAPES:
        for u in args.ulysses:
            rows.append(measure(task, label, w, h, f, u, False, dtype))
        for u in args.ulysses:
            if 2 * u <= max(args.ulysses):  # the same GPU counts with CFG-parallel
                rows.append(measure(task, label, w, h, f, u, True, dtype))
    print(f"Communication per denoising step and rank ({args.dtype} activations, CFG on, 1 video)\n")
    print("| shape | layout | GPUs | tokens | tokens/rank | all-to-alls/step | all-to-all buffer (qkv) "
          "| all-to-all sent/step | all-gather sent/step | total sent/step |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        gpus = int(r.layout.split()[-1]) * (2 if r.layout.startswith("cfg") else 1)
        print(f"| {r.label} | {r.layout} | {gpus} | {r.tokens} | {r.per_rank} | {r.a2a_calls} | {fmt_bytes(r.a2a_buffer)} "
              f"| {fmt_bytes(r.a2a_sent)} | {fmt_bytes(r.gather_sent)} | {fmt_bytes(r.a2a_sent + r.gather_sent)} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
