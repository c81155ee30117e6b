"""Continue a video from its last frame: colour matching, last-frame extraction, stitching.

A continuation is an image-to-video run (I2V-A14B, or TI2V-5B with an image) whose first frame is the
parent clip's last decoded frame. The request records it (``wan.request.GenerationRequest`` fields
``parent``, ``overlap``, ``color_match``, ``color_reference``); ``continue_request`` builds such a
request from a parent video (a tensor or an mp4) and ``WanVideoPipeline.continue_video`` runs it.

Overlap semantics. The new clip is conditioned on the parent's last frame, so its frame 0 duplicates
that frame (up to the VAE round trip). ``overlap`` is the number of *leading frames of the new clip*
dropped when clips are joined (``stitch``, the timeline export): 1 (the default of a continuation)
drops exactly the duplicate; more (a few frames, e.g. up to 4) also drops the frames the model needs
to settle after the hand-over; 0 keeps the duplicate. Allowed: ``0 .. frame_num - 1``. The overlap is
not used by the model (only one frame conditions the run); it is recorded with the clip's settings.
A chain of clips with frame counts ``F_i`` and overlaps ``o_i`` (``o_0 = 0``) exports
``sum(F_i) - sum(o_i)`` frames.

Colour matching. Each re-encoded hand-over drifts a little in colour and saturation (the VAE round
trip; Wan2GP issue 2132), and a chain of clips accumulates it. ``match_colors`` moves the per-channel
mean and standard deviation of the whole new clip towards those of a reference (the parent's last
``COLOR_REFERENCE_FRAMES`` frames) in CIE L*a*b* (D65): sRGB -> linear RGB -> XYZ -> Lab and back,
written with torch ops. Lab is used because its channels are roughly perceptually uniform and
decorrelated (lightness apart from the two colour-opponent axes), so a per-channel transfer there
(Reinhard et al., "Color Transfer between Images", 2001, used l-alpha-beta for the same reason)
corrects a colour cast without the hue shifts a per-channel RGB transfer gives. The statistics are
over all frames and pixels of the clip (one global correction, so the clip's own changes over time
are kept). ``strength`` blends in Lab: 0 returns the input unchanged (the same tensor values), 1
gives the reference's Lab mean and std exactly, up to the clamp back into the sRGB gamut.
A channel that is flat in the clip (std below ``1e-6``) is only shifted in mean.

Shapes: videos are ``(3, F, H, W)`` float in [-1, 1] (the pipeline's output, ``wan.video`` frames).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import torch
from torch import Tensor

from .configs import DEFAULT_COLOR_MATCH, DEFAULT_OVERLAP
from .errors import InputError

if TYPE_CHECKING:
    from PIL import Image as PILImage

    from .pipeline import WanVideoPipeline
    from .request import GenerationRequest, RequestPolicy

__all__ = [
    "COLOR_REFERENCE_FRAMES",
    "DEFAULT_COLOR_MATCH",
    "DEFAULT_OVERLAP",
    "color_reference",
    "continue_request",
    "continuation_size",
    "export_videos",
    "last_frame",
    "lab_to_rgb",
    "lab_stats",
    "load_parent",
    "main",
    "match_colors",
    "rgb_to_lab",
    "stitch",
]

COLOR_REFERENCE_FRAMES: Final[int] = 4   # the parent's last frames whose statistics the new clip is matched to
_CHUNK: Final[int] = 8                   # frames converted at once (bounds the float64 work memory)
_FLAT_STD: Final[float] = 1e-6

# sRGB primaries, D65 white (IEC 61966-2-1); XYZ scaled so that Y of white = 1
_RGB_TO_XYZ: Final = ((0.4124564, 0.3575761, 0.1804375),
                      (0.2126729, 0.7151522, 0.0721750),
                      (0.0193339, 0.1191920, 0.9503041))  # fmt: skip
_WHITE_D65: Final = (0.95047, 1.0, 1.08883)
_DELTA: Final[float] = 6.0 / 29.0


# ------------------------------------------------------------------------------ colour space
def _matrix(device: torch.device, dtype: torch.dtype, inverse: bool = False) -> Tensor:
    m = torch.tensor(_RGB_TO_XYZ, dtype=torch.float64)
    m = torch.linalg.inv(m) if inverse else m
    return m.to(device=device, dtype=dtype)


def rgb_to_lab(x: Tensor) -> Tensor:
    """``(3, ...)`` sRGB in [-1, 1] -> CIE Lab (D65) ``(3, ...)``: L in [0, 100], a/b about [-128, 127]."""
    rgb = ((x + 1.0) / 2.0).clamp(0.0, 1.0)
    lin = torch.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    xyz = torch.einsum("ij,j...->i...", _matrix(x.device, x.dtype), lin)
    white = torch.tensor(_WHITE_D65, device=x.device, dtype=x.dtype).view(3, *([1] * (x.ndim - 1)))
    t = xyz / white
    f = torch.where(t > _DELTA**3, t.clamp_min(0.0) ** (1.0 / 3.0), t / (3 * _DELTA**2) + 4.0 / 29.0)
    return torch.stack((116.0 * f[1] - 16.0, 500.0 * (f[0] - f[1]), 200.0 * (f[1] - f[2])))


def lab_to_rgb(lab: Tensor) -> Tensor:
    """The inverse of ``rgb_to_lab``: Lab ``(3, ...)`` -> sRGB in [-1, 1], clamped to the gamut."""
    fy = (lab[0] + 16.0) / 116.0
    f = torch.stack((fy + lab[1] / 500.0, fy, fy - lab[2] / 200.0))
    t = torch.where(f > _DELTA, f**3, 3 * _DELTA**2 * (f - 4.0 / 29.0))
    white = torch.tensor(_WHITE_D65, device=lab.device, dtype=lab.dtype).view(3, *([1] * (lab.ndim - 1)))
    lin = torch.einsum("ij,j...->i...", _matrix(lab.device, lab.dtype, inverse=True), t * white).clamp(0.0, 1.0)
    rgb = torch.where(lin <= 0.0031308, lin * 12.92, 1.055 * lin ** (1.0 / 2.4) - 0.055)
    return rgb * 2.0 - 1.0


def _frames_of(video: Tensor, name: str) -> Tensor:
    """``(3, F, H, W)`` (a ``(3, H, W)`` image becomes one frame); InputError(name) otherwise."""
    if not isinstance(video, Tensor) or not video.is_floating_point():
        raise InputError(name, f"must be a float tensor (3, F, H, W) or (3, H, W) in [-1, 1]; got {type(video).__name__}")
    if video.ndim == 3:
        video = video[:, None]
    if video.ndim != 4 or video.shape[0] != 3 or min(video.shape[1:]) < 1:
        raise InputError(name, f"must have shape (3, F, H, W) or (3, H, W); got {tuple(video.shape)}")
    return video


def lab_stats(video: Tensor) -> tuple[Tensor, Tensor]:
    """Per-channel Lab mean and (population) std of ``video`` ``(3, F, H, W)`` or ``(3, H, W)``, float64 ``[3]``."""
    video = _frames_of(video, "video")
    total = torch.zeros(3, dtype=torch.float64)
    total_sq = torch.zeros(3, dtype=torch.float64)
    count = 0
    for start in range(0, video.shape[1], _CHUNK):
        lab = rgb_to_lab(video[:, start : start + _CHUNK].to("cpu", torch.float64)).flatten(1)
        total += lab.sum(1)
        total_sq += (lab * lab).sum(1)
        count += lab.shape[1]
    mean = total / count
    var = (total_sq / count - mean * mean).clamp_min(0.0)
    return mean, var.sqrt()


def _check_strength(strength: Any) -> float:
    if isinstance(strength, bool) or not isinstance(strength, (int, float)) or not (0.0 <= float(strength) <= 1.0):
        raise InputError("color_match", f"must be a number from 0 (off) to 1 (the reference's colours); got {strength!r}")
    return float(strength)


def match_colors(frames: Tensor, reference: Tensor, strength: float) -> Tensor:
    """``frames`` ``(3, F, H, W)`` in [-1, 1] with their Lab mean/std moved towards ``reference``'s.

    ``reference``: ``(3, F', H', W')`` or ``(3, H, W)`` in [-1, 1] (any size). ``strength`` 0..1 blends
    in Lab (``lab + strength * (matched - lab)``); 0 returns ``frames`` itself, 1 the reference's
    statistics (up to the gamut clamp). Returns float32 on the CPU (the frames' own dtype/device at 0).
    Raises ``InputError("color_match")`` for a strength outside 0..1 or a bad tensor.
    """
    s = _check_strength(strength)
    frames = _frames_of(frames, "color_match")
    reference = _frames_of(reference, "color_reference")
    if s == 0.0:
        return frames
    src_mean, src_std = lab_stats(frames)
    ref_mean, ref_std = lab_stats(reference)
    scale = torch.where(src_std > _FLAT_STD, ref_std / src_std.clamp_min(_FLAT_STD), torch.ones_like(src_std))
    # lab -> lab + s * ((lab - mu_s) * scale + mu_r - lab) = lab * (1 + s * (scale - 1)) + s * (mu_r - mu_s * scale)
    gain = (1.0 + s * (scale - 1.0)).view(3, 1, 1, 1)
    bias = (s * (ref_mean - src_mean * scale)).view(3, 1, 1, 1)
    out = torch.empty(frames.shape, dtype=torch.float32)
    for start in range(0, frames.shape[1], _CHUNK):
        lab = rgb_to_lab(frames[:, start : start + _CHUNK].to("cpu", torch.float64))
        out[:, start : start + _CHUNK] = lab_to_rgb(lab * gain + bias).to(torch.float32)
    return out


# ------------------------------------------------------------------------------ parent video
def load_parent(video: Tensor | str | os.PathLike[str], last: int | None = None) -> Tensor:
    """A parent video as float32 ``(3, F, H, W)`` in [-1, 1]: a tensor as is, or a video file decoded
    like ``wan.video.load_video_frames`` (``uint8 / 127.5 - 1``). ``last``: keep only the last ``last``
    frames (a file is then streamed, so a long upload never sits decoded in memory). A file that is
    missing or not a readable video raises ``InputError("parent")`` naming the file."""
    if last is not None and (isinstance(last, bool) or not isinstance(last, int) or last < 1):
        raise ValueError(f"last must be an integer >= 1 or None; got {last!r}")
    if isinstance(video, Tensor):
        frames = _frames_of(video, "parent").float()
        return frames if last is None else frames[:, -last:]
    if not isinstance(video, (str, os.PathLike)):
        raise InputError("parent", f"must be a video tensor (3, F, H, W) or an mp4 path; got {type(video).__name__}")
    path = Path(video)
    if not path.is_file():
        raise InputError("parent", f"video file not found: {path.name!r}")
    try:
        kept = _read_frames(path, last)
    except (ValueError, OSError, RuntimeError, KeyError, IndexError) as e:  # ffmpeg/imageio: not a video, damaged
        detail = str(e).replace(str(path), path.name).strip().splitlines()
        raise InputError("parent", f"cannot read {path.name!r} as a video ({detail[-1][:200] if detail else type(e).__name__})") from None
    if not kept:
        raise InputError("parent", f"{path.name!r} has no video frames")
    import numpy as np

    x = torch.from_numpy(np.stack(kept)).permute(3, 0, 1, 2).to(torch.float32)
    return x / 127.5 - 1.0


def _read_frames(path: Path, last: int | None) -> list[Any]:
    """Decoded RGB frames (uint8 ``(H, W, 3)`` arrays) of ``path``, only the last ``last`` kept."""
    from collections import deque

    import imageio_ffmpeg
    import numpy as np

    gen = imageio_ffmpeg.read_frames(str(path), pix_fmt="rgb24")
    try:
        meta = next(gen)
        w, h = (int(v) for v in meta["size"])
        kept: deque[Any] = deque(maxlen=last)
        for buf in gen:
            kept.append(np.frombuffer(buf, dtype=np.uint8).reshape(h, w, 3))
    finally:
        gen.close()
    return list(kept)


def _to_pil(frame: Tensor, *, rounded: bool) -> PILImage.Image:
    from PIL import Image

    x = frame.detach().to("cpu", torch.float32).clamp(-1.0, 1.0)
    # frames decoded from an mp4 are u / 127.5 - 1 exactly: round back to u. A generated tensor is
    # truncated like wan.video.save_video does, so the image is the frame the saved mp4 would hold.
    x = (x + 1.0) * 127.5 if rounded else (x + 1.0) / 2.0 * 255.0
    x = x.round() if rounded else x
    return Image.fromarray(x.to(torch.uint8).permute(1, 2, 0).numpy(), mode="RGB")


def last_frame(video: Tensor | str | os.PathLike[str]) -> PILImage.Image:
    """The last frame of a ``(3, F, H, W)`` tensor in [-1, 1] or of an mp4, as an RGB PIL image.

    A file that is not a readable video raises ``InputError("parent")`` naming the file.
    """
    from_file = not isinstance(video, Tensor)
    frames = load_parent(video, last=1)
    return _to_pil(frames[:, -1], rounded=from_file)


def color_reference(video: Tensor, frames: int = COLOR_REFERENCE_FRAMES) -> Tensor:
    """The parent's last ``frames`` frames (fewer if it is shorter): the colour reference of a continuation."""
    video = _frames_of(video, "parent")
    return video[:, -frames:].float().contiguous()


# ------------------------------------------------------------------------------ stitching
def stitch(clips: Sequence[Tensor], overlaps: Sequence[int]) -> Tensor:
    """Clips ``(3, F_i, H, W)`` joined along frames, dropping ``overlaps[i]`` leading frames of clip i.

    ``overlaps[0]`` must be 0 (the first clip has no predecessor); ``0 <= overlaps[i] < F_i``. All clips
    need the same channels, height and width. Returns ``(3, sum F_i - sum overlaps, H, W)``.
    Raises ``InputError("overlap")`` for bad overlaps and ``ValueError`` for clips that do not fit.
    """
    clips = list(clips)
    overlaps = list(overlaps)
    if not clips:
        raise ValueError("nothing to stitch: no clips")
    if len(overlaps) != len(clips):
        raise ValueError(f"one overlap per clip: {len(clips)} clips, {len(overlaps)} overlaps")
    if overlaps[0] != 0:
        raise InputError("overlap", f"the first clip has no predecessor: its overlap must be 0; got {overlaps[0]!r}")
    parts = []
    for i, (clip, overlap) in enumerate(zip(clips, overlaps, strict=True)):
        clip = _frames_of(clip, "clips")
        if clip.shape[0] != clips[0].shape[0] or clip.shape[2:] != clips[0].shape[2:]:
            raise ValueError(
                f"clip {i + 1} is {clip.shape[3]}x{clip.shape[2]} but clip 1 is {clips[0].shape[3]}x{clips[0].shape[2]}: "
                "every clip of one video must have the same size"
            )
        if isinstance(overlap, bool) or not isinstance(overlap, int) or not 0 <= overlap < clip.shape[1]:
            raise InputError(
                "overlap", f"clip {i + 1} has {clip.shape[1]} frames: its overlap must be an integer from 0 to "
                f"{clip.shape[1] - 1}; got {overlap!r}"
            )
        parts.append(clip[:, overlap:])
    return torch.cat(parts, dim=1)


# ------------------------------------------------------------------------------ requests
def continuation_size(task: str, parent_size: tuple[int, int], policy: RequestPolicy | None = None) -> tuple[int, int]:
    """The requested ``size`` (area) of a continuation of a ``parent_size = (W, H)`` clip: the parent's own
    size when ``task`` accepts it under ``policy`` (then the output size is the parent's: I2V-A14B's
    ``i2v_a14b_output_size`` and TI2V-5B's ``best_output_size`` both return a W x H that is already a
    multiple of the stride at that area), else the task's default size, whose output keeps the
    parent's aspect ratio at the default area: a different size, and the frame is resized by the
    task's image policy. Example: a 1280x720 A14B clip continued with TI2V-5B (sizes 1280*704,
    704*1280) runs at 1248x704 (``best_output_size`` at the 5B's area), so it cannot be exported in
    one video with its parent; give ``size`` to choose another area."""
    from .configs import get_spec
    from .request import RequestPolicy, _check_size

    spec = get_spec(task)
    try:
        return _check_size(spec, tuple(parent_size), policy or RequestPolicy())
    except InputError:
        return spec.default_size


def continue_request(
    pipe_or_task: WanVideoPipeline | str,
    parent: Tensor | str | os.PathLike[str],
    prompt: str = "",
    *,
    overlap: int | None = None,
    color_match: float | None = None,
    parent_name: str | None = None,
    **settings: Any,
) -> GenerationRequest:
    """A validated request that continues ``parent`` (a ``(3, F, H, W)`` tensor or an mp4) from its last frame.

    ``pipe_or_task``: a pipeline (its task and policy) or a task name. The parent's last frame becomes
    ``image``; its last ``COLOR_REFERENCE_FRAMES`` frames the ``color_reference``; ``parent_name``
    (default: the mp4's file name, or ``"<video>"`` for a tensor) is recorded as ``parent``. ``size``
    defaults to ``continuation_size`` (the parent's size when the task accepts it). ``overlap``
    defaults to 1, ``color_match`` to ``DEFAULT_COLOR_MATCH``; other ``settings`` are those of
    ``make_request``. Raises ``InputError`` (``"parent"`` for an unreadable video, a text-only task).
    """
    from .request import make_request

    from dataclasses import replace

    from .request import RequestPolicy

    if isinstance(pipe_or_task, str):
        task, policy = pipe_or_task, settings.pop("policy", None)
    else:
        task, policy = pipe_or_task.spec.task, settings.pop("policy", pipe_or_task.policy)
    if settings.get("any_size") is not None:  # make_request's shortcut: the size choice below follows it
        policy = replace(policy or RequestPolicy(), any_size=bool(settings.pop("any_size")))
    if "image" in settings:
        raise InputError("image", "a continuation's image is its parent's last frame; do not give image")
    frames = load_parent(parent, last=COLOR_REFERENCE_FRAMES)
    if parent_name is None:
        parent_name = Path(parent).name if not isinstance(parent, Tensor) else "<video>"
    image = _to_pil(frames[:, -1], rounded=not isinstance(parent, Tensor))
    if settings.get("size") is None:
        from .configs import get_spec

        try:
            get_spec(task)
        except ValueError as e:
            raise InputError("task", str(e)) from None
        settings["size"] = continuation_size(task, (frames.shape[3], frames.shape[2]), policy)
    return make_request(
        task, prompt, image=image, parent=parent_name, overlap=overlap, color_match=color_match,
        color_reference=color_reference(frames), policy=policy, **settings,
    )


# ------------------------------------------------------------------------------ command line
def export_videos(videos: Sequence[str | os.PathLike[str]], overlaps: Sequence[int], out: str | os.PathLike[str]) -> Path:
    """Joins mp4 clips (same fps and size) into ``out`` with ``stitch``; the metadata lists each clip's
    embedded settings (``{"kind": "stitched", "fps", "frames", "clips": [{"file", "overlap", "frames",
    "settings"}]}``). Raises ``InputError`` naming a clip that is not a readable video or differs in fps."""
    from .video import probe_video, read_video_metadata, save_video

    clips, infos = [], []
    for v in videos:
        clips.append(load_parent(v))
        info = probe_video(v)
        if infos and info.fps != infos[0].fps:
            raise InputError("videos", f"{Path(v).name!r} runs at {info.fps:g} fps but {Path(videos[0]).name!r} at "
                                       f"{infos[0].fps:g}: every clip needs the same fps")
        infos.append(info)
    video = stitch(clips, list(overlaps))
    meta = {
        "app": "wan-playground", "kind": "stitched", "fps": infos[0].fps, "frames": int(video.shape[1]),
        "clips": [{"file": Path(v).name, "overlap": o, "frames": int(c.shape[1]),
                   "settings": read_video_metadata(v).get("comment")} for v, o, c in zip(videos, overlaps, clips)],
    }  # fmt: skip
    return save_video(video, out, fps=infos[0].fps, metadata=meta)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m wan.continuation export A.mp4 B.mp4 ... --overlaps 0,1 -o out.mp4``."""
    import argparse
    import sys

    p = argparse.ArgumentParser(prog="python -m wan.continuation", description="Join continued clips into one mp4.")
    sub = p.add_subparsers(dest="command", required=True)
    e = sub.add_parser("export", help="stitch clips, dropping each clip's leading overlap frames")
    e.add_argument("videos", nargs="+", help="the clips, in order (.mp4, same fps and size)")
    e.add_argument("--overlaps", default=None, help="comma-separated leading frames to drop per clip, the first 0 "
                                                    "(default: 0 for the first clip, then each clip's recorded overlap, else 0)")
    e.add_argument("-o", "--output", required=True, help="the joined .mp4")
    args = p.parse_args(argv)
    try:
        if args.overlaps is None:
            overlaps = [0] + [_recorded_overlap(v) for v in args.videos[1:]]
        else:
            try:
                overlaps = [int(x) for x in args.overlaps.split(",")]
            except ValueError:
                raise InputError("overlap", f"--overlaps must be comma-separated integers; got {args.overlaps!r}") from None
        if len(overlaps) != len(args.videos):
            raise InputError("overlap", f"{len(args.videos)} videos need {len(args.videos)} overlaps; got {len(overlaps)}")
        out = export_videos(args.videos, overlaps, args.output)
    except (InputError, ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    from .video import probe_video

    info = probe_video(out)
    print(f"saved {out} ({info.width}x{info.height}, {info.frames} frames, {info.fps:g} fps)")
    return 0


def _recorded_overlap(video: str | os.PathLike[str]) -> int:
    """The ``overlap`` recorded in a clip's settings (a continuation's), else 0 (a clip that continues nothing)."""
    from .video import read_video_metadata

    try:
        settings = read_video_metadata(video).get("comment")
    except (ValueError, OSError):
        settings = None
    overlap = settings.get("overlap") if isinstance(settings, dict) else None
    return overlap if isinstance(overlap, int) and not isinstance(overlap, bool) and overlap >= 0 else 0


if __name__ == "__main__":
    raise SystemExit(main())
