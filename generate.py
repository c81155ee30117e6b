"""Command-line generation with official-style flags, over the same pipeline as the app.

    python generate.py --task ti2v-5B --ckpt_dir ./Wan2.2-TI2V-5B --size 1280*704 \
        --prompt "Two anthropomorphic cats in comfy boxing gear fight on a spotlighted stage."

Flags follow the official ``generate.py`` (``--task --size --frame_num --ckpt_dir --offload_model
--t5_cpu --save_file --prompt --base_seed --image --sample_solver --sample_steps --sample_shift
--sample_guide_scale``); additions: ``--negative_prompt``, ``--fps``, ``--device``, ``--dtype``,
``--any_size``, ``--quiet``, ``--compile`` (regional ``torch.compile`` of the DiT block; its compile time
is printed once), ``--attention`` (the attention backend, a request setting) and the memory profile
``--offload {none,expert,block}`` with ``--offload_blocks N`` (``--offload_model true/false`` is the
official spelling of expert/none). Multi-GPU,
under ``torchrun --nproc_per_node N``: ``--ulysses_size U`` (official), ``--cfg_parallel`` (N = 2U),
``--dit_fsdp``, ``--t5_fsdp`` (official); every rank builds the request, rank 0's (its seed) is used,
and only rank 0 prints and writes the mp4. ``--sample_guide_scale`` takes one number (both experts, as official)
or ``LOW,HIGH`` for the A14B experts (the official tuple order). The flags build one
``wan.request.GenerationRequest`` (validated before any weights load); the mp4 carries that
request's own settings JSON in its ``comment`` tag (readable with ``wan.video.read_video_metadata``;
the app restores a form from it).

Continuing a clip from its last frame (i2v-A14B, or ti2v-5B with the frame as image; see
``wan.continuation``)::

    python generate.py --task i2v-A14B --ckpt_dir DIR --continue_from clip1.mp4 --prompt "..." \
        [--overlap 1] [--color_match 0.5] --save_file clip2.mp4
    python -m wan.continuation export clip1.mp4 clip2.mp4 --overlaps 0,1 -o joined.mp4

The new clip's settings record ``parent`` (the file name of ``--continue_from``), ``overlap`` and
``color_match``; its size defaults to the parent's when the task accepts it.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import re
import sys
from pathlib import Path
from typing import Any

from wan.configs import SOLVERS, TASKS, normalize_task
from wan.request import FIELD_HELP  # torch-free

DTYPES = ("bfloat16", "float16", "float32")
OFFLOAD_PROFILES = ("none", "expert", "block")  # = wan.offload.PROFILES (kept torch-free here)
# Request settings with an official flag name (the rest get --<setting> from wan.request.FIELD_HELP).
OFFICIAL_FLAGS = {
    "size": "--size", "frame_num": "--frame_num", "prompt": "--prompt", "negative_prompt": "--negative_prompt",
    "seed": "--base_seed", "sample_solver": "--sample_solver", "sampling_steps": "--sample_steps",
    "shift": "--sample_shift", "guide_scale": "--sample_guide_scale", "loras": "--lora",
}  # fmt: skip
APP_NAME = "wan-playground"  # the app restores settings from videos tagged with this name

EXAMPLE_PROMPTS = {
    "t2v-A14B": "Two anthropomorphic cats in comfy boxing gear and bright gloves fight intensely on a spotlighted stage.",
    "i2v-A14B": "The cat in the picture slowly turns its head toward the camera and blinks, soft afternoon light.",
    "ti2v-5B": "Two anthropomorphic cats in comfy boxing gear and bright gloves fight intensely on a spotlighted stage.",
}


def str2bool(value: str) -> bool:
    """Official-style boolean flag values: true/false, yes/no, 1/0, on/off (case-insensitive)."""
    v = value.strip().lower()
    if v in ("true", "yes", "1", "on", "y", "t"):
        return True
    if v in ("false", "no", "0", "off", "n", "f"):
        return False
    raise argparse.ArgumentTypeError(f"expected a boolean (true/false); got {value!r}")


def parse_size(value: str) -> tuple[int, int]:
    """``"W*H"`` (official; ``x`` also accepted) -> ``(W, H)``, by the request contract's parser."""
    from wan.errors import InputError
    from wan.request import parse_size as request_parse_size

    try:
        return request_parse_size(value)
    except InputError:
        raise argparse.ArgumentTypeError(
            f"size must be WIDTH*HEIGHT with two positive integers, e.g. 1280*720; got {value!r}"
        ) from None


def parse_guide_scale(value: str) -> float | tuple[float, float]:
    """``"5.0"`` -> 5.0; ``"3.0,4.0"`` -> (low_noise, high_noise)."""
    try:
        parts = [float(p) for p in value.split(",")]
    except ValueError:
        parts = []
    if len(parts) == 1:
        return parts[0]
    if len(parts) == 2:
        return (parts[0], parts[1])
    raise argparse.ArgumentTypeError(f"guide scale must be a number or LOW,HIGH; got {value!r}")


def _task_arg(text: str) -> str:
    try:
        return normalize_task(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from e


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="generate.py",
        description="Generate a video with Wan 2.2 (T2V-A14B, I2V-A14B, TI2V-5B). Defaults follow the official configs.",
    )
    p.add_argument("--task", default="t2v-A14B", type=_task_arg, metavar="{" + ",".join(TASKS) + "}",
                   help="task to run (default: t2v-A14B; short forms t2v, i2v, ti2v also work)")
    h = FIELD_HELP
    p.add_argument("--size", type=parse_size, default=None, help=h["size"])
    p.add_argument("--frame_num", type=int, default=None, help=h["frame_num"])
    p.add_argument("--ckpt_dir", required=True, help="checkpoint folder (official or Diffusers layout)")
    p.add_argument("--offload_model", type=str2bool, default=None,
                   help="official flag: true = --offload expert, false = --offload none (default: true on CUDA)")
    p.add_argument("--offload", default=None, choices=OFFLOAD_PROFILES,
                   help="memory profile: none (everything on the GPU), expert (one A14B expert at a time; the "
                        "default on CUDA), block (DiT blocks streamed from pinned RAM --offload_blocks at a time, "
                        "VAE on the GPU only to decode: the least VRAM); overrides --offload_model")
    p.add_argument("--quantize", default=None, choices=["fp8"],
                   help="store the DiT's block linears as float8_e4m3fn with per-channel scales (about half the "
                        "VRAM of bf16; dequantised per layer). Ready scaled-fp8 files load as they are")
    p.add_argument("--t5_quantize", default=None, choices=["fp8"], help="the same for the umT5 text encoder")
    p.add_argument("--t5_file", default=None, metavar="PATH",
                   help="umT5 weights from this file: the official bf16 .pth or a ready fp8 one (LightX2V "
                        "models_t5_umt5-xxl-enc-fp8.pth, ComfyUI umt5_xxl_fp8_e4m3fn_scaled.safetensors; these are "
                        "also found in --ckpt_dir when its bf16 .pth is missing)")
    p.add_argument("--offload_blocks", type=int, default=2, metavar="N",
                   help="block profile: DiT blocks on the GPU at once (the running one + N-1 prefetched; default 2)")
    p.add_argument("--t5_cpu", action="store_true", help="run the text encoder on the CPU")
    p.add_argument("--compile", nargs="?", const="inductor", default=None, metavar="BACKEND",
                   help="torch.compile the DiT block (one graph shared by all blocks; the first step of each size "
                        "compiles); optional torch.compile backend (default: inductor). Not with --offload block")
    p.add_argument("--save_file", default=None, help="output .mp4 path (default: an auto name in the current folder)")
    p.add_argument("--prompt", default=None, help=h["prompt"] + " (default: an example prompt)")
    p.add_argument("--negative_prompt", default=None, help=h["negative_prompt"])
    p.add_argument("--base_seed", type=int, default=-1, help=h["seed"])
    p.add_argument("--image", default=None, help="input image (required for i2v-A14B, optional for ti2v-5B)")
    p.add_argument("--continue_from", default=None, metavar="VIDEO.mp4",
                   help="continue this video from its last frame (i2v-A14B, ti2v-5B; instead of --image): "
                        "the new clip records it as parent and is colour-matched to it (--color_match)")
    p.add_argument("--sample_solver", default=None, choices=SOLVERS, help=h["sample_solver"])
    p.add_argument("--sample_steps", type=int, default=None, help=h["sampling_steps"])
    p.add_argument("--sample_shift", type=float, default=None, help=h["shift"])
    p.add_argument("--sample_guide_scale", type=parse_guide_scale, default=None, help=h["guide_scale"])
    p.add_argument("--lora", action="append", default=None, metavar="PATH[:S|:HIGH,LOW]", help=h["loras"]
                   + " (repeatable; a name is looked up in --lora_dir first)")
    p.add_argument("--lora_dir", default="loras", help="folder of LoRA files and of the presets' LoRAs (default: loras)")
    p.add_argument("--preset", default=None, help="a speed preset from presets/speed_presets.json, e.g. "
                   "lightning-4step or lightning-3phase (its settings are the defaults; flags override them)")
    p.add_argument("--download", action="store_true", help="download a preset's LoRA files into --lora_dir if missing")
    for name, text in FIELD_HELP.items():  # settings without an official flag: --<setting>, parsed by the request
        if name not in OFFICIAL_FLAGS and name != "parent":  # parent: the --continue_from file's name
            p.add_argument(f"--{name}", default=None, metavar=name.upper(), help=text)
    p.add_argument("--device", default=None, help="cuda, cuda:N or cpu (default: cuda when available)")
    p.add_argument("--dtype", default=None, choices=DTYPES, help="DiT weight dtype (default: bfloat16 on CUDA, float32 on CPU)")
    p.add_argument("--any_size", action="store_true", help="accept any size that is a multiple of 16 (A14B) / 32 (5B)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    g = p.add_argument_group("multi-GPU (under torchrun --nproc_per_node N; only rank 0 writes the mp4)")
    g.add_argument("--ulysses_size", type=int, default=1, metavar="U",
                   help="Ulysses sequence parallel over U ranks; must divide the heads (A14B 40, 5B 24). "
                        "N = U, or 2U with --cfg_parallel")
    g.add_argument("--cfg_parallel", action="store_true", help="cond and uncond passes on two rank groups (N = 2U)")
    g.add_argument("--dit_fsdp", action="store_true", help="shard the DiT weights over the ranks (FSDP2)")
    g.add_argument("--t5_fsdp", action="store_true", help="shard the umT5 text encoder over the ranks (FSDP2)")
    return p


def parallel_config(args: argparse.Namespace) -> Any:
    """The ``ParallelConfig`` of a torchrun world (or of any multi-GPU flag); None for one process."""
    import os

    from wan.distributed import ParallelConfig

    flags = args.ulysses_size != 1 or args.cfg_parallel or args.dit_fsdp or args.t5_fsdp
    if not flags and int(os.environ.get("WORLD_SIZE", "1")) == 1:
        return None
    return ParallelConfig(ulysses_size=args.ulysses_size, cfg_parallel=args.cfg_parallel,
                          dit_fsdp=args.dit_fsdp, t5_fsdp=args.t5_fsdp)  # fmt: skip


def default_save_file(task: str, size: tuple[int, int], prompt: str) -> Path:
    """Official-style name: ``{task}_{W*H}_{prompt[:50]}_{time}.mp4`` with unsafe characters replaced."""
    stamp = _dt.datetime.now().strftime("%Y%m%d_%H%M%S")
    words = re.sub(r"[^\w\-]+", "_", prompt[:50]).strip("_") or "video"
    return Path(f"{task}_{size[0]}*{size[1]}_{words}_{stamp}.mp4".replace("*", "x"))


def settings_dict(request: Any, video_shape: tuple[int, ...]) -> dict[str, Any]:
    """The settings stored in the mp4: the request's own serialisation plus where it was made."""
    _, frames, height, width = video_shape
    return {
        **request.to_settings(),
        "app": APP_NAME,
        "source": "generate.py",
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "video": {"width": width, "height": height, "frames": frames, "fps": request.fps},
    }


def build_request(args: argparse.Namespace, prompt: str) -> Any:
    """The one ``GenerationRequest`` of this run: the preset's settings (if any) under the flags given."""
    from wan.errors import InputError
    from wan.request import make_request, parse_values

    values: dict[str, Any] = {}
    if args.preset:
        from playground.speed import PresetError, preset_values

        try:
            preset = preset_values(args.preset, args.task, lora_dir=Path(args.lora_dir), download=args.download)
        except PresetError as e:
            raise InputError("preset", str(e)) from None
        preset["loras"] = [(str(Path(args.lora_dir) / e["name"]), e["strength"]) for e in preset["loras"]]
        values.update(preset)
    values.update({n: getattr(args, n) for n in FIELD_HELP
                   if n not in OFFICIAL_FLAGS and getattr(args, n, None) is not None})
    extra, errors = parse_values(args.task, values)
    if errors:
        raise errors[0]
    if args.lora:
        extra["loras"] = [*extra.get("loras", []), *(_lora_arg(args, text) for text in args.lora)]
    given = {
        "negative_prompt": args.negative_prompt, "size": args.size, "frame_num": args.frame_num,
        "sampling_steps": args.sample_steps, "shift": args.sample_shift, "guide_scale": args.sample_guide_scale,
        "sample_solver": args.sample_solver,
    }  # fmt: skip
    extra.update({k: v for k, v in given.items() if v is not None})
    if args.continue_from:
        from wan.continuation import continue_request

        if args.image:
            raise InputError("image", "--continue_from takes the image from the video's last frame: drop --image")
        return continue_request(args.task, args.continue_from, prompt, seed=args.base_seed, any_size=args.any_size,
                                **extra)
    return make_request(args.task, prompt, image=args.image, last_image=args.last_image, seed=args.base_seed, any_size=args.any_size, **extra)


def _lora_arg(args: argparse.Namespace, text: str) -> tuple[str, Any]:
    """``--lora PATH[:S|:HIGH,LOW]``: a path, or a file name in ``--lora_dir``."""
    from wan.request import lora_from_text

    path, strength = lora_from_text(args.task, text)
    in_dir = Path(args.lora_dir) / path
    return (str(in_dir) if not Path(path).is_file() and in_dir.is_file() else path), strength


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    import wan
    from wan.errors import InputError

    prompt = args.prompt if args.prompt is not None else EXAMPLE_PROMPTS[args.task]
    # one validated request, before any weights load
    try:
        request = build_request(args, prompt)
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.offload_blocks < 1:
        print(f"error: --offload_blocks must be >= 1; got {args.offload_blocks}", file=sys.stderr)
        return 2
    offload = args.offload if args.offload is not None else args.offload_model
    try:
        parallel = parallel_config(args)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        pipe = wan.load_pipeline(
            args.task, args.ckpt_dir, device=args.device, dtype=args.dtype, offload=offload,
            t5_cpu=args.t5_cpu, any_size=args.any_size, offload_blocks=args.offload_blocks,
            quantize=args.quantize, t5_quantize=args.t5_quantize, t5_file=args.t5_file, parallel=parallel,
            compile=args.compile or False,
        )  # fmt: skip
    except (ValueError, RuntimeError, OSError) as e:
        print(f"error: cannot load {args.task} from {args.ckpt_dir}: {e}", file=sys.stderr)
        return 2
    try:
        pipe.attention_plan(request)  # the attention backend can run on this device (else: which and why)
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        if pipe.parallel is not None:
            import torch.distributed as dist

            dist.destroy_process_group()
        return 2
    try:
        return _run(args, pipe, request, prompt)
    finally:
        if pipe.parallel is not None:
            import torch.distributed as dist

            dist.destroy_process_group()


def _run(args: argparse.Namespace, pipe: Any, request: Any, prompt: str) -> int:
    """Generates on every rank; rank 0 (the only rank of a plain run) reports and writes the mp4."""
    from tqdm import tqdm

    from wan import video as wan_video
    from wan.errors import GenerationCancelled

    main_rank = pipe.parallel is None or pipe.parallel.is_main
    quiet = args.quiet or not main_rank
    profile = pipe.profile + (f" x{pipe.offload_blocks}" if pipe.profile == "block" else "")
    if not quiet:
        layout = "" if pipe.parallel is None else f", {pipe.parallel.world_size} ranks: {pipe.parallel.config.describe()}"
        print(f"memory profile: {profile} (device {pipe.device}{layout})", file=sys.stderr)
    bar = tqdm(total=request.sampling_steps, unit="step", disable=quiet, desc=args.task, file=sys.stderr)

    def on_step(step: int, total: int, expert: str, latents: Any) -> None:
        bar.set_postfix_str(expert)
        bar.update(step - bar.n)

    try:
        video = pipe.generate(request, callback=on_step)
    except GenerationCancelled as e:
        print(f"cancelled: {e}", file=sys.stderr)
        return 130
    finally:
        bar.close()
    if not main_rank:
        return 0
    request = pipe.last_run.request  # rank 0's request (its seed) in a parallel run
    save_file = Path(args.save_file) if args.save_file else default_save_file(args.task, request.output_size, prompt)
    save_file.parent.mkdir(parents=True, exist_ok=True)
    wan_video.save_video(video, save_file, fps=request.fps, metadata=settings_dict(request, tuple(video.shape)))
    peak = pipe.last_run.resident_peak_bytes if pipe.last_run is not None else 0
    if pipe.last_run is not None and pipe.last_run.compile_graphs:
        print(f"torch.compile ({args.compile}): {pipe.last_run.compile_graphs} graph(s) of the DiT block compiled in "
              f"{pipe.last_run.compile_seconds:.1f} s (once per size)", file=sys.stderr)  # fmt: skip
    print(f"saved {save_file} ({video.shape[3]}x{video.shape[2]}, {video.shape[1]} frames, "
          f"{request.fps} fps, seed {request.seed}; offload {profile}, DiT weights on the device at most "
          f"{peak / 2**20:.1f} MiB)")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
