"""CUDA benchmark of the denoising loop against diffusers, measured in the same run (not a test).

Same method as ``bench_pipeline.py steps`` but on a GPU, in bfloat16, at the token counts of real
videos: ``WanVideoPipeline.denoise`` vs ``diffusers.WanPipeline`` (``output_type="latent"``), the same
seeded random DiT weights (generated on the GPU in each worker, official names for ours, diffusers names
through our key map), the official sigma grid, the same noise and the same zero-padded 512-token
embeddings. Each implementation runs in its own subprocess so ``torch.cuda.max_memory_allocated`` is
its own. A step is two DiT forwards (cond, uncond) plus the UniPC update; the per-step time is the
median interval between step callbacks after the first (CUDA synchronised in the callback).

Configs (T2V code path, 16 latent channels, VAE stride 8):

* ``5b``: the TI2V-5B DiT shape (dim 3072, 30 layers) at 27,280 tokens, the token count of a TI2V-5B
  1280x704x121 video (here 640x352x121 through the stride-8 VAE: latent 31x44x80).
* ``a14b-10l``: the A14B expert width (dim 5120, 40 heads, ffn 13824) with 10 of its 40 layers, at the
  32,760 tokens of an 832x480x81 video. Time and activation memory scale with the layer count.

Variants (``--variants``; default ``ours diffusers``): ``ours`` (SDPA attention), ``ours-compile``
(``compile=True``: the block compiled once, shared by all blocks), ``ours-sage`` (SageAttention),
``ours-fa`` (FlashAttention 3, else 2), ``diffusers`` and ``diffusers-compile`` (its own regional
compile, ``compile_repeated_blocks``). Both compiled variants use SDPA and the same ``--compile-backend``;
their per-step time excludes the first step, which compiles (reported as "first step"). A variant
whose backend is not installed/usable gets a row saying why instead of numbers.

Usage::

    python bench/bench_gpu.py --configs 5b a14b-10l --steps 4
    python bench/bench_gpu.py --configs 5b --steps 3 --variants ours ours-compile ours-sage ours-fa diffusers diffusers-compile
    WAN_BENCH_PROFILE=1 python bench/bench_gpu.py --configs 5b   # + a torch.profiler table of one forward
    python bench/bench_gpu.py --device cpu --configs tiny         # smoke run of the script on the CPU
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))


@dataclass(frozen=True)
class GpuConfig:
    name: str
    dim: int
    ffn_dim: int
    num_heads: int
    num_layers: int
    size: tuple[int, int]  # (W, H)
    frames: int
    text_dim: int = 4096

    @property
    def latent_shape(self) -> tuple[int, int, int, int]:
        return (16, (self.frames - 1) // 4 + 1, self.size[1] // 8, self.size[0] // 8)

    @property
    def tokens(self) -> int:
        _, f, h, w = self.latent_shape
        return f * (h // 2) * (w // 2)


CONFIGS = {
    "5b": GpuConfig("5b", dim=3072, ffn_dim=14336, num_heads=24, num_layers=30, size=(640, 352), frames=121),
    "tiny": GpuConfig("tiny", dim=128, ffn_dim=256, num_heads=2, num_layers=2, size=(64, 64), frames=5, text_dim=64),
    "a14b-10l": GpuConfig("a14b-10l", dim=5120, ffn_dim=13824, num_heads=40, num_layers=10, size=(832, 480), frames=81),
}


def dit_config(cfg: GpuConfig) -> Any:
    from wan.modules.model import DiTConfig

    return DiTConfig(model_type="t2v", dim=cfg.dim, ffn_dim=cfg.ffn_dim, num_heads=cfg.num_heads,
                     num_layers=cfg.num_layers, in_dim=16, out_dim=16, text_dim=cfg.text_dim)  # fmt: skip


def random_weights(cfg: Any, seed: int, device: str) -> dict[str, Any]:
    """Deterministic bf16 random weights on the GPU under the official names (same in every process)."""
    import torch

    from wan.modules.model import WanModel

    with torch.device("meta"):
        shapes = {k: tuple(v.shape) for k, v in WanModel(cfg).state_dict().items()}
    g = torch.Generator(device=device).manual_seed(seed)
    out: dict[str, Any] = {}
    for key in sorted(shapes):
        shape = shapes[key]
        t = torch.randn(shape, generator=g, device=device)
        if key.endswith(("norm_q.weight", "norm_k.weight", "norm3.weight")):
            t = 1.0 + 0.1 * t
        elif "modulation" in key:
            t = 0.1 * t
        else:
            fan_in = 1
            for s in shape[1:]:
                fan_in *= s
            t = t / max(fan_in if len(shape) > 1 else shape[0], 1) ** 0.5
        out[key] = t.to(torch.bfloat16)
    return out


def inputs(cfg: GpuConfig, device: str) -> tuple[Any, Any, Any]:
    import torch

    g = torch.Generator().manual_seed(1)
    noise = torch.randn(cfg.latent_shape, generator=g)
    ctx = torch.zeros(1, 512, cfg.text_dim)
    ctx[:, :20] = torch.randn(1, 20, cfg.text_dim, generator=g)
    ctx_null = torch.zeros(1, 512, cfg.text_dim)
    ctx_null[:, :12] = torch.randn(1, 12, cfg.text_dim, generator=g)
    return noise.to(device), ctx.to(device, torch.bfloat16), ctx_null.to(device, torch.bfloat16)


VARIANTS = ("ours", "ours-compile", "ours-sage", "ours-fa", "diffusers", "diffusers-compile")


def _attention_of(variant: str, head_dim: int, device: str) -> tuple[str, str | None]:
    """(attention backend name for our pipeline, why it cannot run here or None)."""
    import torch

    from wan.modules.attention import unusable_reason

    if variant == "ours-sage":
        return "sage", unusable_reason("sage", device, torch.bfloat16, head_dim)
    if variant == "ours-fa":
        reasons = []
        for name in ("flash_attn_3", "flash_attn_2"):
            why = unusable_reason(name, device, torch.bfloat16, head_dim)
            if why is None:
                return name, None
            reasons.append(f"{name}: {why}")
        return "flash_attn_2", "; ".join(reasons)
    return "sdpa", None


def worker(variant: str, name: str, steps: int, out_dir: Path, device: str, compile_backend: str) -> dict[str, Any]:
    import torch

    cuda = device == "cuda"
    impl = variant.split("-")[0]
    compiled = variant.endswith("-compile")

    from bench_pipeline import _tiny_parts

    cfg = CONFIGS[name]
    attention, unusable = _attention_of(variant, cfg.dim // cfg.num_heads, device) if impl == "ours" else ("sdpa", None)
    if unusable is not None:  # before any weights: a backend that is not there costs nothing
        return {"skipped": unusable, "gpu": torch.cuda.get_device_name() if cuda else "cpu", "torch": torch.__version__}
    comps, tiny_diffusers = _tiny_parts()
    dcfg = dit_config(cfg)
    sd = random_weights(dcfg, seed=0, device=device)
    noise, ctx, ctx_null = inputs(cfg, device)
    stamps: list[float] = []

    def stamp() -> None:
        if cuda:
            torch.cuda.synchronize()
        stamps.append(time.perf_counter())

    compile_s = 0.0
    if impl == "ours":
        from wan.modules.model import WanModel
        from wan.pipeline import LatentInputs, WanVideoPipeline

        from wan.modules.model import is_float32_parameter

        with torch.device("meta"):
            model = WanModel(dcfg)
        # as wan.load_pipeline does (keep_float32=True): the parameters computed in float32 stay float32
        sd = {k: v.float() if is_float32_parameter(k) else v for k, v in sd.items()}
        model.load_state_dict(sd, assign=True, strict=True)
        del sd
        model.eval().requires_grad_(False)
        comps.experts = {"high_noise": model, "low_noise": model}
        pipe = WanVideoPipeline(comps, device=device, offload=False, compile=compile_backend if compiled else False)
        plan = pipe.plan("x", size=cfg.size, frame_num=cfg.frames, sampling_steps=steps, shift=12.0,
                         guide_scale=(3.0, 4.0), seed=0, any_size=True, attention=attention)  # fmt: skip
        base = _reset_memory(cuda)
        t0 = time.perf_counter()
        with torch.no_grad():
            latents = pipe.denoise(plan, LatentInputs(latents=noise[None]), ctx, ctx_null,
                                   callback=lambda *a: stamp())  # fmt: skip
        assert pipe.last_run is not None
        compile_s = pipe.last_run.compile_seconds
    else:
        import numpy as np
        from accelerate import init_empty_weights
        from diffusers import AutoencoderKLWan, UniPCMultistepScheduler, WanPipeline, WanTransformer3DModel

        from wan.modules.conversion import to_diffusers_dit_state_dict

        with init_empty_weights():
            model = WanTransformer3DModel(**dcfg.to_diffusers_config())
        # as from_pretrained(torch_dtype=bf16) does: modules in _keep_in_fp32_modules stay float32
        keep = tuple(WanTransformer3DModel._keep_in_fp32_modules or ())
        dsd = {k: v.float() if any(f".{m}." in f".{k}" for m in keep) else v
               for k, v in to_diffusers_dit_state_dict(sd).items()}  # fmt: skip
        model.load_state_dict(dsd, assign=True, strict=True)
        del dsd
        del sd
        model.eval().requires_grad_(False)
        # RoPE tables are non-persistent buffers: rebuild them on the GPU (init_empty_weights left them on meta)
        for module in model.modules():
            for bname, buf in list(module.named_buffers(recurse=False)):
                if buf.device.type == "meta":
                    raise RuntimeError(f"diffusers buffer {bname} left on meta")
        model.to(device)
        if compiled:
            model.compile_repeated_blocks(backend=compile_backend, dynamic=False)

        class OfficialGridUniPC(UniPCMultistepScheduler):
            def set_timesteps(self, num_inference_steps: Any = None, device: Any = None, sigmas: Any = None,  # type: ignore[override]
                              mu: Any = None) -> None:  # fmt: skip
                if sigmas is None:
                    sigmas = np.linspace(float(np.float32(0.999)), 0.0, int(num_inference_steps) + 1)[:-1]
                super().set_timesteps(device=device, sigmas=sigmas, mu=mu)

        sched = OfficialGridUniPC(prediction_type="flow_prediction", use_flow_sigmas=True, num_train_timesteps=1000,
                                  flow_shift=12.0)  # fmt: skip
        vae = AutoencoderKLWan.from_pretrained(tiny_diffusers / "vae").to(device)
        pipe = WanPipeline(tokenizer=None, text_encoder=None, vae=vae, scheduler=sched, transformer=model,
                           transformer_2=model, boundary_ratio=0.875)  # fmt: skip
        pipe.set_progress_bar_config(disable=True)

        def on_step(_pipe: Any, i: int, t: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
            stamp()
            return kwargs

        base = _reset_memory(cuda)
        t0 = time.perf_counter()
        with torch.no_grad():
            latents = pipe(prompt_embeds=ctx, negative_prompt_embeds=ctx_null, latents=noise[None],
                           height=cfg.size[1], width=cfg.size[0], num_frames=cfg.frames, num_inference_steps=steps,
                           guidance_scale=4.0, guidance_scale_2=3.0, output_type="latent",
                           callback_on_step_end=on_step).frames  # fmt: skip
    total = time.perf_counter() - t0
    torch.save(latents.float().cpu(), out_dir / f"{variant}-{name}.pt")
    profile = ""
    if os.environ.get("WAN_BENCH_PROFILE") and cuda:
        from torch.profiler import ProfilerActivity, profile as torch_profile

        x, t = noise[None].to(torch.bfloat16), torch.tensor([500], device=device)
        with torch.no_grad(), torch_profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            if impl == "ours":
                model(x, t, ctx)
            else:
                model(hidden_states=x, timestep=t, encoder_hidden_states=ctx, return_dict=False)
            torch.cuda.synchronize()
        profile = prof.key_averages().table(sort_by="self_cuda_time_total", row_limit=18, max_name_column_width=60)
    intervals = [b - a for a, b in zip(stamps, stamps[1:], strict=False)]
    return {
        "per_step_s": statistics.median(intervals) if intervals else stamps[0] - t0,
        "first_step_s": stamps[0] - t0,
        "compile_s": compile_s,
        "attention": attention,
        "total_s": total,
        "weights_bytes": base,
        "peak_bytes": torch.cuda.max_memory_allocated() if cuda else 0,
        "gpu": torch.cuda.get_device_name() if cuda else "cpu",
        "torch": torch.__version__,
        "profile": profile,
    }


def _reset_memory(cuda: bool) -> int:
    import torch

    if not cuda:
        return 0
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    return torch.cuda.memory_allocated()


def run_worker(variant: str, name: str, steps: int, out_dir: Path, device: str, compile_backend: str = "inductor",
               *, keep_going: bool = False) -> dict[str, Any]:  # fmt: skip
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    env = {**os.environ, "PYTHONPATH": path}
    cmd = [sys.executable, __file__, "_worker", variant, name, str(steps), str(out_dir), device, compile_backend]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        if keep_going:  # one failing variant (e.g. a kernel that crashes) still leaves the other rows
            print(f"worker {variant} {name} failed:\n{proc.stderr[-3000:]}", file=sys.stderr, flush=True)
            last = proc.stderr.strip().splitlines()[-1][:160] if proc.stderr.strip() else ""
            return {"skipped": f"failed (rc {proc.returncode}): {last}"}
        raise RuntimeError(f"worker {variant} {name} failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "_worker":
        print(json.dumps(worker(argv[1], argv[2], int(argv[3]), Path(argv[4]), argv[5], argv[6])))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", nargs="+", default=["5b", "a14b-10l"], choices=sorted(CONFIGS))
    parser.add_argument("--device", default="cuda", help="cuda (the benchmark) or cpu (a smoke run of the script)")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "gpu")
    parser.add_argument("--variants", nargs="+", default=["ours", "diffusers"], choices=VARIANTS)
    parser.add_argument("--compile-backend", default="inductor", help="torch.compile backend of the -compile variants "
                        "(aot_eager for a quick CPU smoke run)")  # fmt: skip
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.variants != ["ours", "diffusers"]:
        return variants_table(args)
    import torch

    lines = ["| config | tokens | ours s/step | diffusers s/step | ratio | peak GPU mem ours | peak GPU mem diffusers "
             "| weights | final latents rel. L2 diff (bf16) |", "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    gpu = ""
    for name in args.configs:
        cfg = CONFIGS[name]
        res = {}
        for impl in ("ours", "diffusers"):
            res[impl] = run_worker(impl, name, args.steps, args.out, args.device)
            gpu = f"{res[impl]['gpu']}, torch {res[impl]['torch']}"
            if res[impl]["profile"]:
                print(f"--- profile {impl} {name} (one forward) ---\n{res[impl]['profile']}", file=sys.stderr, flush=True)
            print(f"  [{name}] {impl}: {res[impl]['per_step_s']:.3f} s/step, peak {res[impl]['peak_bytes'] / 2**30:.2f} GiB",
                  file=sys.stderr, flush=True)  # fmt: skip
        a = torch.load(args.out / f"ours-{name}.pt")
        b = torch.load(args.out / f"diffusers-{name}.pt")
        rel = float((a - b).norm() / b.norm())
        o, d = res["ours"], res["diffusers"]
        desc = f"{name}: dim {cfg.dim}, {cfg.num_layers} layers, {cfg.size[0]}x{cfg.size[1]}x{cfg.frames}"
        lines.append(f"| {desc} | {cfg.tokens} | {o['per_step_s']:.2f} | {d['per_step_s']:.2f} | "
                     f"{o['per_step_s'] / d['per_step_s']:.2f}x | {o['peak_bytes'] / 2**30:.1f} GiB | "
                     f"{d['peak_bytes'] / 2**30:.1f} GiB | {o['weights_bytes'] / 2**30:.1f} GiB | {rel:.1e} |")  # fmt: skip
    table = f"GPU: {gpu}; bfloat16 weights, {args.steps} steps, CFG (2 forwards per step), SDPA attention\n\n" + "\n".join(lines)
    print(table, flush=True)
    (args.out / "table.md").write_text(table + "\n")
    return 0


def variants_table(args: argparse.Namespace) -> int:
    """One row per (config, variant): s/step, ratio to diffusers with the same compile setting, first step."""
    import torch

    lines = ["| config | tokens | variant | attention | s/step | vs diffusers (same compile) | first step s (compile s) "
             "| peak GPU mem | final latents rel. L2 vs diffusers |", "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    gpu = ""
    for name in args.configs:
        cfg = CONFIGS[name]
        res: dict[str, dict[str, Any]] = {}
        for variant in args.variants:
            res[variant] = r = run_worker(variant, name, args.steps, args.out, args.device, args.compile_backend,
                                          keep_going=True)  # fmt: skip
            if "gpu" in r:
                gpu = f"{r['gpu']}, torch {r['torch']}"
            note = f"skipped: {r['skipped']}" if "skipped" in r else (
                f"{r['per_step_s']:.3f} s/step, first step {r['first_step_s']:.1f} s")  # fmt: skip
            print(f"  [{name}] {variant}: {note}", file=sys.stderr, flush=True)
        desc = f"{name}: dim {cfg.dim}, {cfg.num_layers} layers, {cfg.size[0]}x{cfg.size[1]}x{cfg.frames}"
        for variant in args.variants:
            r = res[variant]
            if "skipped" in r:
                lines.append(f"| {desc} | {cfg.tokens} | {variant} | - | n/a | n/a | n/a | n/a | {r['skipped']} |")
                continue
            base = "diffusers-compile" if variant.endswith("-compile") else "diffusers"
            done = "per_step_s" in res.get(base, {})
            ratio = f"{r['per_step_s'] / res[base]['per_step_s']:.2f}x" if done else "n/a"
            rel = "n/a"
            if done:
                a, b = torch.load(args.out / f"{variant}-{name}.pt"), torch.load(args.out / f"{base}-{name}.pt")
                rel = f"{float((a - b).norm() / b.norm()):.1e}"
            first = f"{r['first_step_s']:.1f}" + (f" ({r['compile_s']:.1f})" if r.get("compile_s") else "")
            lines.append(f"| {desc} | {cfg.tokens} | {variant} | {r['attention']} | {r['per_step_s']:.2f} | {ratio} | "
                         f"{first} | {r['peak_bytes'] / 2**30:.1f} GiB | {rel} |")  # fmt: skip
    table = (f"GPU: {gpu}; bfloat16 weights, {args.steps} steps (per step: median after the first), CFG, "
             f"compile backend {args.compile_backend}; target: ours-compile <= 0.9x diffusers-compile\n\n"
             + "\n".join(lines))  # fmt: skip
    print(table, flush=True)
    (args.out / "variants.md").write_text(table + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
