"""Continuing a clip from its last frame: colour matching in Lab, last frame, stitch, the request
fields, the conditioning of tiny I2V-A14B / TI2V-5B pipelines, and the command line.

Everything runs for real: tiny random checkpoints (``tiny_ckpt``), the pipelines on the CPU, mp4s
through the bundled ffmpeg.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import generate as cli
from wan.continuation import (
    DEFAULT_COLOR_MATCH,
    continuation_size,
    continue_request,
    export_videos,
    lab_stats,
    lab_to_rgb,
    last_frame,
    load_parent,
    match_colors,
    rgb_to_lab,
    stitch,
)
from wan.errors import InputError
from wan.pipeline import WanVideoPipeline, load_pipeline
from wan.request import FIELD_HELP, i2v_a14b_output_size, make_request, request_from_values
from wan.video import load_video_frames, probe_video, read_video_metadata, save_video

ROOT = Path(__file__).resolve().parents[1]
FRAMES, STEPS = 5, 2
SIZE = {"i2v-A14B": (64, 48), "ti2v-5B": (64, 64)}


def synthetic(frames: int, h: int, w: int, *, seed: int, centre: tuple[float, float, float], spread: float) -> torch.Tensor:
    """A smooth colour video in [-1, 1] well inside the gamut (no clamp on the way through Lab)."""
    g = torch.Generator().manual_seed(seed)
    base = torch.tensor(centre).view(3, 1, 1, 1)
    return (base + spread * (torch.rand(3, frames, h, w, generator=g) * 2 - 1)).clamp(-1, 1)


# ------------------------------------------------------------------------------ colour matching
def test_lab_conversion_known_values_and_round_trip() -> None:
    white, red = torch.ones(3, 1, 1), torch.tensor([1.0, -1.0, -1.0]).view(3, 1, 1)
    lab_white = rgb_to_lab(white.double()).flatten()
    assert torch.allclose(lab_white, torch.tensor([100.0, 0.0, 0.0], dtype=torch.float64), atol=1e-2)
    lab_red = rgb_to_lab(red.double()).flatten()  # CIE Lab of sRGB (255, 0, 0), D65
    assert torch.allclose(lab_red, torch.tensor([53.24, 80.09, 67.20], dtype=torch.float64), atol=0.02)
    x = torch.rand(3, 4, 8, 8, dtype=torch.float64) * 2 - 1
    assert (lab_to_rgb(rgb_to_lab(x)) - x).abs().max() < 1e-9


def test_strength_zero_is_the_identity() -> None:
    frames = synthetic(5, 12, 16, seed=1, centre=(0.2, -0.1, -0.3), spread=0.3)
    reference = synthetic(2, 8, 8, seed=2, centre=(-0.2, 0.1, 0.3), spread=0.2)
    out = match_colors(frames, reference, 0)
    assert out is frames and torch.equal(out, frames.clone())


def test_strength_one_gives_the_reference_statistics_and_blends_linearly() -> None:
    frames = synthetic(6, 12, 16, seed=1, centre=(0.1, -0.05, -0.2), spread=0.25)
    reference = synthetic(3, 10, 14, seed=2, centre=(-0.05, 0.1, 0.15), spread=0.15)
    src_mean, src_std = lab_stats(frames)
    ref_mean, ref_std = lab_stats(reference)
    assert (src_mean - ref_mean).abs().max() > 3  # really different colours to start with
    matched = match_colors(frames, reference, 1.0)
    assert matched.shape == frames.shape and matched.dtype == torch.float32
    mean, std = lab_stats(matched)
    # float32 output: the Lab statistics match up to float32 rounding of the frames
    assert torch.allclose(mean, ref_mean, atol=2e-3), (mean, ref_mean)
    assert torch.allclose(std, ref_std, atol=2e-3), (std, ref_std)
    for s in (0.25, 0.5):  # in Lab, mean and std move linearly with the strength
        mean_s, std_s = lab_stats(match_colors(frames, reference, s))
        assert torch.allclose(mean_s, (1 - s) * src_mean + s * ref_mean, atol=2e-3)
        assert torch.allclose(std_s, (1 - s) * src_std + s * ref_std, atol=2e-3)
    # a single reference frame (3, H, W) works too
    single = reference[:, -1]
    mean1, _ = lab_stats(match_colors(frames, single, 1.0))
    assert torch.allclose(mean1, lab_stats(single)[0], atol=2e-3)


def test_color_match_rejects_bad_strengths_and_tensors() -> None:
    frames = synthetic(2, 4, 4, seed=1, centre=(0, 0, 0), spread=0.2)
    for bad in (-0.1, 1.5, float("nan"), True, "0.5"):
        with pytest.raises(InputError) as e:
            match_colors(frames, frames, bad)
        assert e.value.field == "color_match"
    with pytest.raises(InputError, match="shape"):
        match_colors(frames[:2], frames, 0.5)


# ------------------------------------------------------------------------------ last frame, stitch
def test_last_frame_from_tensor_and_mp4(tmp_path: Path) -> None:
    video = synthetic(5, 16, 24, seed=3, centre=(0.1, 0.0, -0.1), spread=0.5)
    img = last_frame(video)
    assert img.size == (24, 16) and img.mode == "RGB"
    expected = ((video[:, -1].clamp(-1, 1) + 1) / 2 * 255).to(torch.uint8).permute(1, 2, 0).numpy()
    assert np.array_equal(np.asarray(img), expected)  # the frame save_video would write
    path = save_video(video, tmp_path / "clip.mp4", fps=16)
    decoded = load_video_frames(path)
    from_file = np.asarray(last_frame(path))
    assert np.array_equal(from_file, ((decoded[:, -1] + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 0).numpy())


def test_last_frame_errors_name_the_file(tmp_path: Path) -> None:
    not_video = tmp_path / "notes.mp4"
    not_video.write_text("this is not a video")
    with pytest.raises(InputError) as e:
        last_frame(not_video)
    assert e.value.field == "parent" and "notes.mp4" in e.value.message
    with pytest.raises(InputError, match="not found: 'gone.mp4'"):
        last_frame(tmp_path / "gone.mp4")
    with pytest.raises(InputError, match="shape"):
        last_frame(torch.zeros(4, 2, 8, 8))


def test_stitch_drops_the_overlaps() -> None:
    clips = [torch.full((3, n, 4, 6), float(i) / 10) for i, n in enumerate((9, 5, 13))]
    out = stitch(clips, [0, 1, 3])
    assert out.shape == (3, 9 + 5 + 13 - 1 - 3, 4, 6)
    assert torch.equal(out[:, :9], clips[0]) and torch.equal(out[:, 9:13], clips[1][:, 1:])
    assert torch.equal(out[:, 13:], clips[2][:, 3:])
    assert stitch(clips, [0, 0, 0]).shape[1] == 27
    with pytest.raises(InputError, match="first clip"):
        stitch(clips, [1, 0, 0])
    with pytest.raises(InputError, match="clip 2 has 5 frames"):
        stitch(clips, [0, 5, 0])
    with pytest.raises(ValueError, match="same size"):
        stitch([clips[0], torch.zeros(3, 5, 4, 8)], [0, 1])
    with pytest.raises(ValueError, match="one overlap per clip"):
        stitch(clips, [0, 1])


# ------------------------------------------------------------------------------ the request
def test_request_fields_and_errors(tmp_path: Path) -> None:
    assert {"parent", "overlap", "color_match"} <= set(FIELD_HELP)
    image = last_frame(synthetic(1, 48, 64, seed=4, centre=(0, 0, 0), spread=0.4))
    plain = make_request("i2v-A14B", "go", image=image, size=(64, 48), any_size=True)
    assert (plain.parent, plain.overlap, plain.color_match) == (None, 0, 0.0)
    s = plain.to_settings()
    assert (s["parent"], s["overlap"], s["color_match"]) == (None, 0, 0.0)
    ref = torch.zeros(3, 2, 8, 8)
    req = make_request("i2v-A14B", "go", image=image, size=(64, 48), any_size=True, frame_num=9,
                       parent=str(tmp_path / "clip1.mp4"), color_reference=ref)
    assert (req.parent, req.overlap, req.color_match) == ("clip1.mp4", 1, DEFAULT_COLOR_MATCH)
    settings = req.to_settings()
    assert (settings["parent"], settings["overlap"], settings["color_match"]) == ("clip1.mp4", 1, 0.5)
    assert "color_reference" not in settings
    back = request_from_values("i2v-A14B", settings, image=image, color_reference=ref)
    assert back == req and back.to_settings() == settings
    assert req.with_changes(seed=3).color_reference is ref
    cases = [
        ("t2v-A14B", {"parent": "a.mp4"}, "parent", "text-to-video only"),
        ("ti2v-5B", {"parent": "a.mp4"}, "parent", "give it as image"),
        ("i2v-A14B", {"image": image, "overlap": 1}, "overlap", "continuation only"),
        ("i2v-A14B", {"image": image, "parent": "a", "frame_num": 5, "overlap": 5}, "overlap", "at most 4"),
        ("i2v-A14B", {"image": image, "parent": "a", "overlap": -1}, "overlap", "integer"),
        ("i2v-A14B", {"image": image, "parent": "a", "color_match": 0.5}, "color_match", "color_reference"),
        ("i2v-A14B", {"image": image, "parent": "a", "color_match": 2.0, "color_reference": ref}, "color_match", "0 to 1"),
        ("i2v-A14B", {"image": image, "parent": "a", "color_reference": torch.zeros(2, 4)}, "color_reference", "tensor"),
        ("i2v-A14B", {"image": image, "parent": ""}, "parent", "name"),
    ]
    for task, kw, field, text in cases:
        with pytest.raises(InputError) as e:
            make_request(task, "go", size=(64, 48) if task != "ti2v-5B" else (64, 64), any_size=True, **kw)
        assert e.value.field == field and text in e.value.message, (kw, e.value)
    # text-ish values (links, forms, the CLI) parse through the same contract
    with pytest.raises(InputError) as e:
        request_from_values("i2v-A14B", {"overlap": "1.5", "parent": "a"}, image=image)
    assert e.value.field == "overlap"


def test_continuation_size_keeps_the_parent_size_when_accepted() -> None:
    from wan.request import RequestPolicy

    any_size = RequestPolicy(any_size=True)
    assert continuation_size("i2v-A14B", (1280, 720)) == (1280, 720)
    assert continuation_size("ti2v-5B", (1280, 704)) == (1280, 704)
    assert continuation_size("ti2v-5B", (1280, 720)) == (1280, 704)  # not a 5B size: the default area
    from wan.configs import get_spec
    from wan.request import image_output_size

    # ... where a 16:9 frame becomes 1248x704: another size than the parent's (said in the docstring)
    assert image_output_size(get_spec("ti2v-5B"), (1280, 720), (1280, 704)) == (1248, 704)
    assert image_output_size(get_spec("i2v-A14B"), (1280, 720), (1280, 720)) == (1280, 720)
    assert image_output_size(get_spec("i2v-A14B"), (832, 480), (832, 480)) == (832, 480)
    # the official float arithmetic gives 832x464 there (sqrt(399360 * 480/832) = 479.999...); ours is
    # exact and otherwise the same as the official one
    import math

    def official(w: int, h: int, area: int) -> tuple[int, int]:
        aspect = h / w
        return (round(math.sqrt(area / aspect) // 8 // 2 * 2) * 8, round(math.sqrt(area * aspect) // 8 // 2 * 2) * 8)

    assert official(832, 480, 832 * 480) == (832, 464)
    differ = {(w, h, area) for w in range(100, 2000, 37) for h in range(100, 2000, 41) for area in (1280 * 720, 832 * 480)
              if i2v_a14b_output_size(w, h, area, 8, 2) != official(w, h, area)}
    assert differ == {(w, h, 832 * 480) for w, h, _ in differ} and all(w * 480 == h * 832 for w, h, _ in differ)
    # a continuation of an official-size clip keeps its size on both image tasks (no model runs here)
    for task, (w, h) in (("i2v-A14B", (832, 480)), ("i2v-A14B", (1280, 720)), ("i2v-A14B", (480, 832)),
                         ("ti2v-5B", (1280, 704)), ("ti2v-5B", (704, 1280))):
        parent = torch.zeros(3, 2, h, w)
        assert continue_request(task, parent, "on", frame_num=5).output_size == (w, h), (task, w, h)
    assert continuation_size("i2v-A14B", (64, 48), any_size) == (64, 48)
    assert continuation_size("i2v-A14B", (64, 48)) == (1280, 720)


# ------------------------------------------------------------------------------ pipelines
@pytest.fixture(scope="module")
def pipes(tiny_ckpt: Callable[..., Path]) -> dict[str, WanVideoPipeline]:
    return {task: load_pipeline(task, tiny_ckpt(task), device="cpu", dtype=torch.float32, offload=False, any_size=True)
            for task in ("i2v-A14B", "ti2v-5B")}


def _parent(pipe: WanVideoPipeline, tmp_path: Path) -> tuple[torch.Tensor, Path]:
    task = pipe.spec.task
    video = synthetic(9, SIZE[task][1], SIZE[task][0], seed=5, centre=(0.3, 0.0, -0.2), spread=0.6)
    return video, save_video(video, tmp_path / f"parent-{task}.mp4", fps=pipe.spec.sample_fps)


@pytest.mark.parametrize("task", ["i2v-A14B", "ti2v-5B"])
def test_continuation_conditions_on_the_parents_last_decoded_frame(
    pipes: dict[str, WanVideoPipeline], task: str, tmp_path: Path
) -> None:
    pipe = pipes[task]
    _, path = _parent(pipe, tmp_path)
    decoded_last = load_video_frames(path)[:, -1]
    clip = pipe.continue_video(path, "the fox keeps running", frame_num=FRAMES, sampling_steps=STEPS, seed=3)
    run = pipe.last_run
    assert run is not None and run.request.parent == path.name and run.request.overlap == 1
    assert run.request.color_match == DEFAULT_COLOR_MATCH
    assert run.request.output_size == SIZE[task]  # the parent's size: the size policy keeps it
    assert clip.shape == (3, FRAMES, SIZE[task][1], SIZE[task][0])
    cond = run.condition_image
    assert cond is not None and cond.shape == decoded_last.shape
    assert (cond - decoded_last).abs().max().item() < 1e-5
    # colour matching is what the pipeline applied to the decoded frames
    plain = pipe.continue_video(path, "the fox keeps running", frame_num=FRAMES, sampling_steps=STEPS, seed=3,
                                color_match=0.0)
    assert torch.equal(pipe.last_run.condition_image, cond)
    reference = load_parent(path)[:, -4:]
    assert (clip - match_colors(plain, reference, DEFAULT_COLOR_MATCH)).abs().max().item() < 1e-6
    assert (clip - plain).abs().max().item() > 1e-3


def test_continuation_at_another_size_follows_the_i2v_policy(pipes: dict[str, WanVideoPipeline], tmp_path: Path) -> None:
    pipe = pipes["i2v-A14B"]
    parent, _ = _parent(pipe, tmp_path)
    req = continue_request(pipe, parent, "on", size=(96, 64), frame_num=FRAMES, sampling_steps=STEPS, seed=1)
    # size is an area: the parent's 4:3 aspect at 96*64 pixels (official arithmetic), not the parent's 64x48
    assert req.output_size == i2v_a14b_output_size(64, 48, 96 * 64, 8, 2) == (80, 64) and req.parent == "<video>"
    pipe.generate(req)
    img = torch.from_numpy(np.asarray(last_frame(parent), dtype=np.float32) / 255).permute(2, 0, 1) * 2 - 1
    expected = F.interpolate(img[None], size=(64, 80), mode="bicubic")[0]  # the official bicubic stretch
    assert (pipe.last_run.condition_image - expected).abs().max().item() < 1e-5


# ------------------------------------------------------------------------------ command line
def test_cli_continue_from_and_export(tiny_ckpt: Callable[..., Path], tmp_path: Path) -> None:
    ckpt = tiny_ckpt("ti2v-5B")
    parent = tmp_path / "clip1.mp4"
    base = ["--task", "ti2v-5B", "--ckpt_dir", str(ckpt), "--device", "cpu", "--any_size", "--quiet",
            "--frame_num", "9", "--sample_steps", "2"]
    assert cli.main([*base, "--size", "64*64", "--prompt", "a fox", "--save_file", str(parent)]) == 0
    child = tmp_path / "clip2.mp4"
    assert cli.main([*base, "--continue_from", str(parent), "--overlap", "2", "--color_match", "0.8",
                     "--prompt", "the fox runs on", "--save_file", str(child)]) == 0
    settings = read_video_metadata(child)["comment"]
    assert (settings["parent"], settings["overlap"], settings["color_match"]) == ("clip1.mp4", 2, 0.8)
    assert settings["output"] == {"width": 64, "height": 64} and settings["image"] == "<image>"
    assert cli.main([*base, "--continue_from", str(tmp_path / "missing.mp4")]) == 2
    # join: the recorded overlap (2) is dropped from the second clip
    out = tmp_path / "joined.mp4"
    proc = subprocess.run([sys.executable, "-m", "wan.continuation", "export", str(parent), str(child), "-o", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    info = probe_video(out)
    assert info.frames == 9 + 9 - 2 and (info.width, info.height, info.fps) == (64, 64, 24.0)
    meta = read_video_metadata(out)["comment"]
    assert [c["overlap"] for c in meta["clips"]] == [0, 2] and meta["clips"][1]["settings"]["parent"] == "clip1.mp4"
    explicit = export_videos([parent, child, child], [0, 0, 4], tmp_path / "three.mp4")
    assert probe_video(explicit).frames == 9 + 9 + 9 - 4
    bad = subprocess.run([sys.executable, "-m", "wan.continuation", "export", str(parent), str(child), "--overlaps",
                          "1,0", "-o", str(tmp_path / "x.mp4")], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "first clip" in bad.stderr
