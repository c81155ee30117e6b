"""generate.py end to end in a subprocess on tiny checkpoints: mp4 frame count, fps, size, metadata."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
from PIL import Image

from wan import video as wan_video

REPO = Path(__file__).resolve().parents[1]


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, str(REPO / "generate.py"), *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip


def test_ti2v_text_to_video(tiny_ckpt: Callable[..., Path], tmp_path: Path) -> None:
    out = tmp_path / "sub" / "fox.mp4"
    proc = run_cli(
        "--task", "ti2v-5B", "--ckpt_dir", str(tiny_ckpt("ti2v-5B")), "--size", "96*64", "--any_size",
        "--frame_num", "9", "--sample_steps", "3", "--sample_guide_scale", "4.5", "--base_seed", "42",
        "--prompt", "a red fox", "--device", "cpu", "--save_file", str(out), cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "saved" in proc.stdout and "seed 42" in proc.stdout
    assert "3/3" in proc.stderr  # the tqdm progress bar ran to the end
    info = wan_video.probe_video(out)
    assert (info.width, info.height, info.frames) == (96, 64, 9)
    assert info.fps == pytest.approx(24.0)  # the 5B model's fps
    settings = wan_video.read_video_metadata(out)["comment"]
    assert settings["app"] == "wan-playground" and settings["source"] == "generate.py"
    assert settings["task"] == "ti2v-5B" and settings["prompt"] == "a red fox" and settings["seed"] == 42
    assert (settings["size"], settings["frame_num"], settings["settings_version"]) == ("96*64", 9, 2)
    assert (settings["sampling_steps"], settings["guide_scale"], settings["shift"]) == (3, {"dense": 4.5}, 5.0)
    assert settings["video"] == {"width": 96, "height": 64, "frames": 9, "fps": 24}


def test_i2v_with_image_and_default_name(tiny_ckpt: Callable[..., Path], tmp_path: Path) -> None:
    image = tmp_path / "in.png"
    Image.fromarray((np.random.default_rng(0).random((48, 80, 3)) * 255).astype(np.uint8)).save(image)
    proc = run_cli(
        "--task", "i2v-A14B", "--ckpt_dir", str(tiny_ckpt("i2v-A14B")), "--size", "80*48", "--any_size",
        "--frame_num", "5", "--sample_steps", "4", "--sample_guide_scale", "2.0,3.0", "--image", str(image),
        "--offload_model", "true", "--t5_cpu", "--device", "cpu", "--quiet", cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    videos = list(tmp_path.glob("i2v-A14B_80x48_*.mp4"))  # official-style automatic name
    assert len(videos) == 1, proc.stdout
    info = wan_video.probe_video(videos[0])
    assert (info.width, info.height, info.frames, info.fps) == (80, 48, 5, 16.0)
    settings = wan_video.read_video_metadata(videos[0])["comment"]
    assert settings["guide_scale"] == {"high_noise": 3.0, "low_noise": 2.0}  # --sample_guide_scale LOW,HIGH
    assert settings["image"] == image.name  # the file's name only: no local paths in a shared mp4
    assert isinstance(settings["seed"], int) and settings["seed"] >= 0  # -1 was resolved and stored


def load_generate_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("generate_cli_under_test", REPO / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--frame_num", "6"], "frame_num: must be an integer 4n+1"),
        (["--size", "1000*1000"], "size: 1000*1000 is not supported by ti2v-5B"),
        (["--sample_steps", "0"], "sampling_steps: must be an integer from 1 to 100"),
        (["--sample_guide_scale", "1,2"], "guide_scale: ti2v-5B has a single model"),
        (["--image", "/no/such.png"], "image: file not found"),
        (["--fps", "abc"], "fps: must be a whole number; got 'abc'"),  # a flag derived from wan.request.FIELD_HELP
        (["--fps", "0"], "fps: must be an integer from 1 to 60"),
    ],
)
def test_bad_arguments_exit_2_before_loading(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    """In-process (fast): the request is checked against the task spec before any weights load, so
    a checkpoint folder that does not exist is never reached."""
    cli = load_generate_module()
    code = cli.main(["--task", "ti2v-5B", "--ckpt_dir", str(tmp_path / "never-read"), "--device", "cpu", *args])
    assert code == 2
    assert message in capsys.readouterr().err
    assert not list(tmp_path.glob("*.mp4"))


def test_argparse_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cli = load_generate_module()
    with pytest.raises(SystemExit) as info:
        cli.main(["--task", "t2v-A14B", "--ckpt_dir", str(tmp_path), "--size", "1280x"])
    assert info.value.code == 2 and "size must be WIDTH*HEIGHT" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["--task", "t2v-A14B", "--ckpt_dir", str(tmp_path), "--sample_guide_scale", "a,b"])
    assert "LOW,HIGH" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["--task", "t2v-A14B", "--ckpt_dir", str(tmp_path), "--offload_model", "maybe"])
    assert "boolean" in capsys.readouterr().err
    assert cli.main(["--task", "t2v-A14B", "--ckpt_dir", str(tmp_path / "missing"), "--device", "cpu"]) == 2
    assert "cannot load t2v-A14B" in capsys.readouterr().err


def test_size_flag_uses_the_pipeline_parser() -> None:
    import argparse

    cli = load_generate_module()
    assert cli.parse_size("1280*720") == (1280, 720) and cli.parse_size(" 832 x 480 ") == (832, 480)
    for bad in ("1280*0", "0*720", "1280x", "big", "1280*720*1"):
        with pytest.raises(argparse.ArgumentTypeError, match="size must be WIDTH\\*HEIGHT with two positive integers"):
            cli.parse_size(bad)


def test_offload_profiles_flag(tiny_ckpt: Callable[..., Path], tmp_path: Path) -> None:
    """--offload block (+ --offload_blocks) runs and names the profile; --offload overrides --offload_model."""
    out = tmp_path / "b.mp4"
    proc = run_cli(
        "--task", "ti2v-5B", "--ckpt_dir", str(tiny_ckpt("ti2v-5B")), "--size", "64*32", "--any_size",
        "--frame_num", "5", "--sample_steps", "2", "--device", "cpu", "--offload", "block", "--offload_blocks", "1",
        "--offload_model", "false", "--save_file", str(out), cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "memory profile: block x1" in proc.stderr and "offload block x1" in proc.stdout
    assert wan_video.probe_video(out).frames == 5


def test_offload_flag_values(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    cli = load_generate_module()
    parser = cli.build_parser()
    base = ["--ckpt_dir", "x"]
    assert parser.parse_args(base).offload is None and parser.parse_args(base).offload_blocks == 2
    assert parser.parse_args([*base, "--offload", "block", "--offload_blocks", "3"]).offload_blocks == 3
    with pytest.raises(SystemExit):
        parser.parse_args([*base, "--offload", "disk"])
    assert "invalid choice" in capsys.readouterr().err
    seen: list[Any] = []

    import wan

    def fake_load(*args: Any, **kwargs: Any) -> Any:
        seen.append((kwargs["offload"], kwargs["offload_blocks"]))
        raise RuntimeError("stop here")

    monkeypatch.setattr(wan, "load_pipeline", fake_load)
    run = ["--task", "ti2v-5B", "--ckpt_dir", str(tmp_path), "--device", "cpu"]
    for extra, want in (([], None), (["--offload_model", "true"], True), (["--offload_model", "false"], False),
                        (["--offload", "none", "--offload_model", "true"], "none"), (["--offload", "block"], "block")):  # fmt: skip
        assert cli.main([*run, *extra]) == 2
        assert seen[-1] == (want, 2)
    assert cli.main([*run, "--offload", "block", "--offload_blocks", "0"]) == 2
    assert "--offload_blocks must be >= 1" in capsys.readouterr().err
