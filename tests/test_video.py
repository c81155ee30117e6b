"""wan.video: mp4 writing (official uint8 conversion, even sizes, atomic), settings metadata round trip."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from wan import video as wan_video


def ramp_video(frames: int = 5, height: int = 48, width: int = 64) -> torch.Tensor:
    """(3, F, H, W) in [-1, 1]: smooth gradients that H.264 keeps within a few levels."""
    f = torch.linspace(-0.6, 0.6, frames)[:, None, None]
    y = torch.linspace(-0.8, 0.8, height)[None, :, None]
    x = torch.linspace(-0.8, 0.8, width)[None, None, :]
    return torch.stack([(x + 0 * y + f).clamp(-1, 1), (y + 0 * x).expand(frames, -1, -1), (0.5 * x - 0.5 * y).expand(frames, -1, -1)])


def test_frames_to_uint8_matches_official_truncation() -> None:
    x = torch.tensor([-2.0, -1.0, -0.5, 0.0, 0.999, 1.0, 3.0]).view(1, 1, 1, 7).expand(3, 1, 1, 7)
    x = torch.cat([x, x[:, :, :, -1:]], dim=3)  # even width
    x = torch.cat([x, x], dim=2)  # even height
    out = wan_video.frames_to_uint8(x)
    assert out.dtype == np.uint8 and out.shape == (1, 2, 8, 3)
    # (x + 1) / 2 * 255 truncated: -1 -> 0, -0.5 -> 63 (63.75), 0 -> 127 (127.5), 0.999 -> 254, clamp outside
    assert out[0, 0, :, 0].tolist() == [0, 0, 63, 127, 254, 255, 255, 255]


@pytest.mark.parametrize(("odd", "expected_hw"), [("pad", (48, 64)), ("crop", (46, 62))])
def test_odd_sizes_are_made_even(odd: str, expected_hw: tuple[int, int]) -> None:
    x = torch.rand(3, 2, 47, 63) * 2 - 1
    out = wan_video.frames_to_uint8(x, odd=odd)  # type: ignore[arg-type]
    assert out.shape[1:3] == expected_hw
    if odd == "pad":  # last row / column repeated
        assert np.array_equal(out[:, 47], out[:, 46]) and np.array_equal(out[:, :, 63], out[:, :, 62])
    # the original pixels are kept unchanged in both modes
    full = wan_video.frames_to_uint8(torch.cat([x, x[:, :, -1:]], 2)[..., :62].contiguous(), odd="crop")
    assert np.array_equal(out[:, :46, :62], full[:, :46, :62])


def test_save_read_round_trip(tmp_path: Path) -> None:
    frames = ramp_video()
    settings = {
        "app": "wan-playground",
        "task": "ti2v-5B",
        "prompt": 'a "quoted" prompt = with ; special # chars \\ and\nnewline',
        "negative_prompt": "色调艳丽，过曝，静态",
        "guide_scale": [3.0, 4.0],
        "seed": 2**40 + 3,
        "nested": {"a": [1, 2, {"b": None}]},
    }
    path = wan_video.save_video(frames, tmp_path / "out.mp4", fps=24, metadata=settings)
    assert path == tmp_path / "out.mp4" and path.is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.mp4"]  # the temporary file was renamed away
    meta = wan_video.read_video_metadata(path)
    assert meta[wan_video.METADATA_TAG] == settings
    info = wan_video.probe_video(path)
    assert (info.width, info.height, info.frames) == (64, 48, 5)
    assert info.fps == pytest.approx(24.0)
    decoded = wan_video.load_video_frames(path)
    assert decoded.shape == (3, 5, 48, 64) and decoded.dtype == torch.float32
    assert decoded.min() >= -1 and decoded.max() <= 1
    # quality 8 (x264 CRF 10) keeps smooth content within a few levels
    assert (decoded - frames).abs().mean() < 0.03


def test_save_without_metadata_and_overwrite(tmp_path: Path) -> None:
    path = tmp_path / "v.mp4"
    wan_video.save_video(ramp_video(frames=1), path, fps=16)
    assert wan_video.METADATA_TAG not in wan_video.read_video_metadata(path)
    wan_video.save_video(ramp_video(frames=9), path, fps=16, metadata={"x": 1}, quality=5)
    assert wan_video.probe_video(path).frames == 9
    assert wan_video.read_video_metadata(path)["comment"] == {"x": 1}


def test_failed_write_leaves_nothing(tmp_path: Path) -> None:
    target = tmp_path / "keep.mp4"
    wan_video.save_video(ramp_video(), target, fps=16, metadata={"v": 1})
    before = target.read_bytes()
    with pytest.raises(ValueError, match="JSON"):
        wan_video.save_video(ramp_video(), target, fps=16, metadata={"bad": object()})
    with pytest.raises(ValueError, match="JSON"):
        wan_video.save_video(ramp_video(), target, fps=16, metadata={"nan": float("nan")})
    assert target.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.mp4"]


def test_error_while_writing_closes_the_writer_and_removes_the_temp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An error between frames (e.g. Ctrl-C) stops ffmpeg via writer.close() and deletes the partial file."""
    import imageio_ffmpeg

    real_write_frames = imageio_ffmpeg.write_frames
    events: list[str] = []

    class Interrupted(Exception):
        pass

    class Writer:
        def __init__(self, *args: object, **kwargs: object) -> None:
            self.inner = real_write_frames(*args, **kwargs)
            self.sent = 0

        def send(self, frame: object) -> None:
            if frame is not None:
                self.sent += 1
                if self.sent == 3:
                    raise Interrupted("stopped after two frames")
            self.inner.send(frame)

        def close(self) -> None:
            events.append("close")
            self.inner.close()

    monkeypatch.setattr(imageio_ffmpeg, "write_frames", Writer)
    target = tmp_path / "out.mp4"
    with pytest.raises(Interrupted):
        wan_video.save_video(ramp_video(frames=9), target, fps=16)
    assert events == ["close"]
    assert list(tmp_path.iterdir()) == []  # no partial file left behind, nothing at the target


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"fps": 0}, ValueError, "fps"),
        ({"fps": True}, ValueError, "fps"),
        ({"fps": 16, "quality": 11}, ValueError, "quality"),
        ({"fps": 16, "metadata": ["not", "a", "dict"]}, TypeError, "metadata"),
        ({"fps": 16, "odd": "stretch"}, ValueError, "odd"),
    ],
)
def test_save_argument_errors(tmp_path: Path, kwargs: dict, exc: type, match: str) -> None:
    with pytest.raises(exc, match=match):
        wan_video.save_video(ramp_video(), tmp_path / "x.mp4", **kwargs)


@pytest.mark.parametrize(
    ("frames", "exc", "match"),
    [
        (torch.zeros(5, 48, 64), ValueError, "C=3"),
        (torch.zeros(4, 5, 48, 64), ValueError, "C=3"),
        (torch.zeros(3, 5, 48, 64, dtype=torch.uint8), TypeError, "floating"),
        (np.zeros((3, 5, 48, 64)), TypeError, "torch.Tensor"),
        (torch.zeros(3, 0, 48, 64), ValueError, ">= 1"),
    ],
)
def test_bad_frames(tmp_path: Path, frames: object, exc: type, match: str) -> None:
    with pytest.raises(exc, match=match):
        wan_video.save_video(frames, tmp_path / "x.mp4", fps=16)  # type: ignore[arg-type]


def test_path_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"\.mp4"):
        wan_video.save_video(ramp_video(), tmp_path / "x.avi", fps=16)
    with pytest.raises(FileNotFoundError, match="folder"):
        wan_video.save_video(ramp_video(), tmp_path / "missing" / "x.mp4", fps=16)
    with pytest.raises(FileNotFoundError):
        wan_video.read_video_metadata(tmp_path / "nope.mp4")
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"\x00\x00\x00\x18ftypmp42 not really a video")
    with pytest.raises(ValueError, match="junk.mp4"):
        wan_video.read_video_metadata(junk)


def test_ffmetadata_parser_unescapes() -> None:
    text = ";FFMETADATA1\ntitle=a\\=b\\;c\\#d\\\\e\ncomment=line1\\\nline2\n[STREAM]\ncomment=stream-level\n"
    tags = wan_video._parse_ffmetadata(text)
    assert tags == {"title": "a=b;c#d\\e", "comment": "line1\nline2"}


def test_metadata_is_ascii_json_in_comment(tmp_path: Path) -> None:
    path = wan_video.save_video(ramp_video(), tmp_path / "a.mp4", fps=16, metadata={"p": "中文"})
    raw = path.read_bytes()
    assert json.dumps({"p": "中文"}).encode() in raw  # \\u escapes: survives any tag encoding
