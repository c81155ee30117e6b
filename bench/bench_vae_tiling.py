"""Benchmark of the tiled VAE (not a test): decode time and peak memory, tiled vs untiled.

For each VAE (Wan 2.1, Wan 2.2) with random weights, decodes random latents at a moderate size
(default 256x448 pixels, 9 frames = 3 latent frames) untiled and with each tiling, and reports:

* wall time of ``vae.decode`` (median of ``--repeats``, after a warm-up decode);
* peak *tensor* memory on the CPU: live bytes of every tensor storage created during the call, tracked
  by :class:`PeakTensorBytes` (a ``TorchDispatchMode`` that adds each new output storage and subtracts it
  when it is freed — deterministic, unlike RSS; kernel-internal scratch buffers are not seen);
* peak RSS growth of a fresh child process over its first (warm-up) decode (``ru_maxrss`` before
  and after; includes allocator slack and oneDNN primitives, so it is noisier);
* on CUDA (when available, ``--device cuda``): ``torch.cuda.max_memory_allocated`` instead.

``--width full`` uses the real architectures (Wan 2.1 dim 96; Wan 2.2 160/256) — slow on a CPU;
the default ``--width half`` halves the channel widths so a CPU run takes about a minute.

    python bench/bench_vae_tiling.py [--vae 21 22] [--size 256 448] [--frames 9] [--width half|full]
                                     [--tiles 128x96 128x96:tiles] [--device cpu|cuda] [--repeats 1]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
import weakref
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from torch.utils._python_dispatch import TorchDispatchMode  # noqa: E402
from torch.utils._pytree import tree_flatten  # noqa: E402

from wan.modules.vae21 import Wan21VAE, Wan21VAEConfig  # noqa: E402
from wan.modules.vae22 import Wan22VAE, Wan22VAEConfig  # noqa: E402
from wan.modules.vae_blocks import ChunkedVideoVAE  # noqa: E402


class PeakTensorBytes(TorchDispatchMode):
    """Peak bytes of tensor storages allocated (and still alive) while the mode is active.

    Storages that existed before (weights, inputs) are not counted. ``peak`` is the maximum of the
    running sum; ``live`` what is still allocated.
    """

    def __init__(self) -> None:
        super().__init__()
        self.live = 0
        self.peak = 0
        self._seen: set[int] = set()

    def _free(self, key: int, nbytes: int) -> None:
        self._seen.discard(key)
        self.live -= nbytes

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor) and t.device.type != "meta":
                storage = t.untyped_storage()
                key = id(storage)
                if key in self._seen:
                    continue
                self._seen.add(key)
                nbytes = storage.nbytes()
                self.live += nbytes
                self.peak = max(self.peak, self.live)
                weakref.finalize(storage, self._free, key, nbytes)
        return out


def build_vae(version: str, width: str, seed: int = 0) -> ChunkedVideoVAE:
    if version == "21":
        vae: ChunkedVideoVAE = Wan21VAE(Wan21VAEConfig() if width == "full" else Wan21VAEConfig(dim=48))
    else:
        vae = Wan22VAE(Wan22VAEConfig() if width == "full" else Wan22VAEConfig(dim=80, dec_dim=128))
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in vae.named_parameters():
            noise = torch.randn(p.shape, generator=g)
            p.copy_(1.0 + 0.2 * noise if name.endswith("gamma") else noise / max(p[0].numel(), 1) ** 0.5)
    return vae.eval()


def latents(vae: ChunkedVideoVAE, frames: int, height: int, width: int) -> torch.Tensor:
    s = vae.stride[1]
    g = torch.Generator().manual_seed(1)
    return torch.randn(1, vae.z_dim, (frames - 1) // 4 + 1, height // s, width // s, generator=g)


def parse_tile(text: str) -> tuple[int, int, str] | None:
    """``none`` or ``TILExSTRIDE[:order]`` (order ``frames`` or ``tiles``)."""
    if text == "none":
        return None
    sizes, _, order = text.partition(":")
    tile, stride = (int(v) for v in sizes.split("x"))
    return tile, stride, order or "frames"


def measure_child(args: argparse.Namespace, version: str, tile: str) -> dict[str, float]:
    """Run one decode in a fresh process; returns its timings and memory figures."""
    cmd = [sys.executable, __file__, "--child", version, tile, "--size", *map(str, args.size),
           "--frames", str(args.frames), "--width", args.width, "--device", args.device,
           "--repeats", str(args.repeats), "--threads", str(args.threads)]  # fmt: skip
    res = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


def child(args: argparse.Namespace, version: str, tile_text: str) -> None:
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    vae = build_vae(version, args.width).to(device)
    z = latents(vae, args.frames, *args.size).to(device)
    tile = parse_tile(tile_text)
    if tile is None:
        vae.disable_tiling()
    else:
        vae.enable_tiling(tile[0], tile[1], order=tile[2])  # type: ignore[arg-type]
    times = []
    result: dict[str, float] = {}
    if device.type == "cuda":
        vae.decode(z[:, :, :1])  # warm-up (cuDNN autotune, lazy init)
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        for _ in range(args.repeats):
            start = time.perf_counter()
            out = vae.decode(z)
            torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
            del out
        result["cuda_peak_mib"] = (torch.cuda.max_memory_allocated() - base) / 2**20
    else:
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        vae.decode(z)  # warm-up (oneDNN builds a primitive per new shape); its peak RSS is reported
        result["rss_growth_mib"] = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) / 1024
        for _ in range(args.repeats):
            start = time.perf_counter()
            out = vae.decode(z)
            times.append(time.perf_counter() - start)
            del out
        with PeakTensorBytes() as tracker:
            out = vae.decode(z)
        del out
        result["tensor_peak_mib"] = tracker.peak / 2**20
    result["seconds"] = statistics.median(times)
    print(json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--vae", nargs="+", default=["21", "22"], choices=["21", "22"])
    parser.add_argument("--size", nargs=2, type=int, default=[256, 448], metavar=("H", "W"))
    parser.add_argument("--frames", type=int, default=9)
    parser.add_argument("--width", choices=["half", "full"], default="half")
    parser.add_argument("--tiles", nargs="+", default=["128x96", "128x96:tiles", "192x128", "192x128:tiles"],
                        help="TILExSTRIDE[:ORDER] in pixels (square tiles), order frames (default) or tiles")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--child", nargs=2, metavar=("VAE", "TILE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args, *args.child)
        return
    h, w = args.size
    print(f"VAE decode, {args.width}-width random weights, {args.frames} frames {h}x{w}, device {args.device}, "
          f"{args.threads} threads, median of {args.repeats}\n")  # fmt: skip
    mem_col = "CUDA max allocated" if args.device.startswith("cuda") else "tensor peak | RSS growth"
    print(f"| VAE | tiling (tile/stride px) | decode s | {mem_col} | vs untiled |")
    print("|---|---|---|---|---|")
    for version in args.vae:
        base = None
        for tile in ["none", *args.tiles]:
            r = measure_child(args, version, tile)
            peak = r.get("cuda_peak_mib", r.get("tensor_peak_mib", 0.0))
            base = base or peak
            mem = (f"{peak:.0f} MiB" if "cuda_peak_mib" in r
                   else f"{r['tensor_peak_mib']:.0f} MiB | {r['rss_growth_mib']:.0f} MiB")  # fmt: skip
            label = "untiled" if tile == "none" else tile.replace("x", " / ").replace(":", ", order ")
            print(f"| Wan {version[0]}.{version[1]} | {label} | {r['seconds']:.2f} | {mem} | {peak / base:.2f}x |",
                  flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
