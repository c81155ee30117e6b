"""Frames <-> mp4 through the ffmpeg binary bundled with imageio-ffmpeg, settings embedded as metadata.

Writing (``save_video``): a video tensor ``(C=3, F, H, W)`` in [-1, 1] becomes uint8 RGB the way the
official ``save_video`` does it (clamp, ``(x + 1) / 2 * 255``, truncation), then H.264 in an mp4 with
``yuv420p`` pixels (what browsers and phones play). yuv420p needs even sizes: an odd height or width is
padded by repeating the last row / column (``odd="pad"``, default) or cropped by one (``odd="crop"``);
sizes this project generates are multiples of 16 and pass through untouched. The generation settings
are stored JSON-encoded (ASCII-only) in the container's ``comment`` tag. The file is written to a
temporary name in the same folder and renamed into place, so a reader never sees half a video.

Reading: ``read_video_metadata`` returns the container tags (``ffmpeg -f ffmetadata``), with any tag
whose value is a JSON object decoded (so the settings dict is ``result["comment"]``);
``load_video_frames`` decodes the frames back to ``(3, F, H, W)`` float32 in [-1, 1];
``probe_video`` gives width, height, fps and the exact frame count.
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "METADATA_TAG",
    "VideoInfo",
    "frames_to_uint8",
    "load_video_frames",
    "probe_video",
    "read_video_metadata",
    "save_video",
]

METADATA_TAG = "comment"  # the mp4 tag holding our JSON settings (ffmpeg maps it to the iTunes-style ©cmt atom)
_FFMPEG_TIMEOUT_S = 600


@dataclass(frozen=True)
class VideoInfo:
    """What a decoded mp4 holds: ``frames`` is the exact number of decoded frames."""

    width: int
    height: int
    fps: float
    frames: int


def _ffmpeg_exe() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def frames_to_uint8(frames: Tensor, odd: Literal["pad", "crop"] = "pad") -> np.ndarray:
    """``(3, F, H, W)`` in [-1, 1] -> uint8 ``(F, H', W', 3)`` with even ``H'``, ``W'`` (see module doc)."""
    if not isinstance(frames, Tensor):
        raise TypeError(f"frames must be a torch.Tensor (C=3, F, H, W) in [-1, 1]; got {type(frames).__name__}")
    if frames.ndim != 4 or frames.shape[0] != 3:
        raise ValueError(f"frames must have shape (C=3, F, H, W); got {tuple(frames.shape)}")
    if not frames.is_floating_point():
        raise TypeError(f"frames must be a floating-point tensor in [-1, 1]; got {frames.dtype}")
    if min(frames.shape[1:]) < 1:
        raise ValueError(f"frames must have F, H, W >= 1; got shape {tuple(frames.shape)}")
    if odd not in ("pad", "crop"):
        raise ValueError(f"odd must be 'pad' or 'crop'; got {odd!r}")
    x = frames.detach().to(device="cpu", dtype=torch.float32).clamp(-1.0, 1.0)
    x = ((x + 1.0) / 2.0 * 255.0).to(torch.uint8)  # truncation, as the official save_video
    x = x.permute(1, 2, 3, 0)  # (F, H, W, 3)
    _, h, w, _ = x.shape
    if odd == "crop":
        if h < 2 or w < 2:
            raise ValueError(f"cannot crop a {w}x{h} video to even sizes; use odd='pad'")
        x = x[:, : h - h % 2, : w - w % 2]
    else:
        if h % 2:
            x = torch.cat([x, x[:, -1:]], dim=1)
        if w % 2:
            x = torch.cat([x, x[:, :, -1:]], dim=2)
    return np.ascontiguousarray(x.numpy())


def _check_fps(fps: float) -> float:
    if isinstance(fps, bool) or not isinstance(fps, (int, float)) or not (0 < float(fps) <= 240):
        raise ValueError(f"fps must be a number in (0, 240]; got {fps!r}")
    return float(fps)


def _check_quality(quality: float) -> float:
    if isinstance(quality, bool) or not isinstance(quality, (int, float)) or not (1 <= float(quality) <= 10):
        raise ValueError(f"quality must be a number from 1 (smallest file) to 10 (best); got {quality!r}")
    return float(quality)


def save_video(
    frames: Tensor,
    path: str | os.PathLike[str],
    *,
    fps: float,
    metadata: Mapping[str, Any] | None = None,
    quality: float = 8,
    odd: Literal["pad", "crop"] = "pad",
) -> Path:
    """Writes ``frames`` ``(3, F, H, W)`` in [-1, 1] to ``path`` (.mp4, H.264 yuv420p) atomically.

    ``metadata`` (JSON-serialisable) is stored in the ``comment`` tag; ``quality`` is imageio-ffmpeg's
    1..10 scale (8, the official setting, is x264 CRF 10). Returns the final path.
    """
    import imageio_ffmpeg

    fps_f = _check_fps(fps)
    quality_f = _check_quality(quality)
    out = Path(path)
    if out.suffix.lower() != ".mp4":
        raise ValueError(f"path must end in .mp4; got {str(out)!r}")
    if not out.parent.is_dir():
        raise FileNotFoundError(f"folder for the video does not exist: {out.parent}")
    pixels = frames_to_uint8(frames, odd=odd)
    params: list[str] = []
    if metadata is not None:
        if not isinstance(metadata, Mapping):
            raise TypeError(f"metadata must be a mapping (JSON object); got {type(metadata).__name__}")
        try:
            text = json.dumps(dict(metadata), ensure_ascii=True, sort_keys=True, allow_nan=False)
        except (TypeError, ValueError) as e:
            raise ValueError(f"metadata must be JSON-serialisable: {e}") from e
        params += ["-metadata", f"{METADATA_TAG}={text}"]
    n, h, w, _ = pixels.shape
    # a unique hidden name next to the target; ffmpeg creates it (normal permissions), then it is renamed
    tmp = out.with_name(f".{out.stem}.{uuid.uuid4().hex[:12]}.partial.mp4")
    writer = None
    try:
        writer = imageio_ffmpeg.write_frames(
            str(tmp),
            (w, h),
            fps=fps_f,
            quality=quality_f,
            codec="libx264",
            pix_fmt_out="yuv420p",
            macro_block_size=1,  # sizes are even already; never let imageio resize
            ffmpeg_log_level="error",
            output_params=params,
        )
        writer.send(None)  # start ffmpeg
        for i in range(n):
            writer.send(pixels[i])
        writer.close()
        os.replace(tmp, out)
    except BaseException:
        try:
            if writer is not None:
                writer.close()  # stops ffmpeg (a no-op if the writer already finished or failed)
        except Exception:  # noqa: S110  # the original error is the one to report
            pass
        finally:
            tmp.unlink(missing_ok=True)
        raise
    return out


def _unescape_ffmetadata(value: str) -> str:
    out: list[str] = []
    it = iter(value)
    for ch in it:
        if ch == "\\":
            out.append(next(it, ""))
        else:
            out.append(ch)
    return "".join(out)


def _parse_ffmetadata(text: str) -> dict[str, str]:
    """Global tags of an ``;FFMETADATA1`` document (stops at the first [STREAM]/[CHAPTER] section)."""
    lines = text.splitlines()
    tags: dict[str, str] = {}
    i = 0
    while i < len(lines):
        line = lines[i]
        i += 1
        if line.startswith("[") and line.rstrip().endswith("]"):
            break
        if not line or line.startswith(";") or line.startswith("#"):
            continue
        # a value ending in an unescaped backslash continues on the next line (escaped newline)
        while line.endswith("\\") and (len(line) - len(line.rstrip("\\"))) % 2 == 1 and i < len(lines):
            line = line[:-1] + "\\\n" + lines[i]
            i += 1
        key, sep, value = _split_unescaped(line)
        if sep:
            tags[_unescape_ffmetadata(key)] = _unescape_ffmetadata(value)
    return tags


def _split_unescaped(line: str) -> tuple[str, str, str]:
    escaped = False
    for idx, ch in enumerate(line):
        if escaped:
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == "=":
            return line[:idx], "=", line[idx + 1 :]
    return line, "", ""


def _run_ffmpeg(args: list[str], path: Path) -> subprocess.CompletedProcess[bytes]:
    if not path.is_file():
        raise FileNotFoundError(f"video file not found: {path}")
    proc = subprocess.run(
        [_ffmpeg_exe(), "-hide_banner", "-v", "error", *args],
        capture_output=True,
        timeout=_FFMPEG_TIMEOUT_S,
        check=False,
    )
    if proc.returncode != 0:
        err = proc.stderr.decode("utf-8", "replace").strip().splitlines()
        raise ValueError(f"ffmpeg cannot read {path.name!r}: {err[-1] if err else 'exit code %d' % proc.returncode}")
    return proc


def read_video_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Container tags of ``path``; values that are JSON objects (our settings in ``comment``) are decoded.

    Example: ``{"comment": {...settings...}, "encoder": "Lavf..", "major_brand": "isom", ...}``.
    Raises ``FileNotFoundError`` or ``ValueError`` (not a readable media file).
    """
    p = Path(path)
    proc = _run_ffmpeg(["-i", str(p), "-f", "ffmetadata", "-"], p)
    tags = _parse_ffmetadata(proc.stdout.decode("utf-8", "replace"))
    result: dict[str, Any] = {}
    for key, value in tags.items():
        decoded: Any = value
        if value.lstrip().startswith("{"):
            try:
                decoded = json.loads(value)
            except ValueError:
                decoded = value
        result[key] = decoded
    return result


def _read_all(path: Path) -> tuple[dict[str, Any], list[np.ndarray]]:
    import imageio_ffmpeg

    if not path.is_file():
        raise FileNotFoundError(f"video file not found: {path}")
    gen = imageio_ffmpeg.read_frames(str(path), pix_fmt="rgb24")
    try:
        meta: dict[str, Any] = next(gen)
        w, h = (int(v) for v in meta["size"])
        frames = [np.frombuffer(buf, dtype=np.uint8).reshape(h, w, 3) for buf in gen]
    finally:
        gen.close()
    return meta, frames


def probe_video(path: str | os.PathLike[str]) -> VideoInfo:
    """Width, height, fps and exact frame count (decodes the whole file; meant for short clips)."""
    meta, frames = _read_all(Path(path))
    w, h = (int(v) for v in meta["size"])
    return VideoInfo(width=w, height=h, fps=float(meta["fps"]), frames=len(frames))


def load_video_frames(path: str | os.PathLike[str]) -> Tensor:
    """Decodes ``path`` -> float32 ``(3, F, H, W)`` in [-1, 1] (``uint8 / 127.5 - 1``)."""
    _, frames = _read_all(Path(path))
    if not frames:
        raise ValueError(f"{Path(path).name!r} has no video frames")
    x = torch.from_numpy(np.stack(frames)).permute(3, 0, 1, 2).to(torch.float32)
    return x / 127.5 - 1.0
