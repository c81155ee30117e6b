"""``torchrun --nproc_per_node 2 generate.py ... --ulysses_size 2`` on CPU (gloo): one mp4, written by
rank 0, whose frames equal a plain single-process run's; a world that does not match the flags is a
clear error before any weights load."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import torch

from wan import video as wan_video

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cli_args(ckpt: Path, out: Path, *extra: str) -> list[str]:
    return [str(REPO / "generate.py"), "--task", "t2v-A14B", "--ckpt_dir", str(ckpt), "--size", "80*48",
            "--any_size", "--frame_num", "9", "--sample_steps", "3", "--sample_shift", "1.0", "--base_seed", "5",
            "--prompt", "a red fox", "--device", "cpu", "--save_file", str(out), *extra]  # fmt: skip


def run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=cwd, env=ENV, capture_output=True, text=True, timeout=300, check=False)


def torchrun(nproc: int) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc),
            "--master_addr", "127.0.0.1", "--master_port", str(free_port())]  # fmt: skip


def test_torchrun_ulysses2_writes_one_mp4_equal_to_single_process(tiny_ckpt, tmp_path):
    ckpt = tiny_ckpt("t2v-A14B")
    single_dir, multi_dir = tmp_path / "single", tmp_path / "multi"
    single_dir.mkdir()
    multi_dir.mkdir()
    single = run([sys.executable, *cli_args(ckpt, single_dir / "out.mp4", "--quiet")], single_dir)
    assert single.returncode == 0, single.stderr
    multi = run([*torchrun(2), *cli_args(ckpt, multi_dir / "out.mp4", "--ulysses_size", "2")], multi_dir)
    assert multi.returncode == 0, multi.stdout[-2000:] + multi.stderr[-4000:]
    assert sorted(p.name for p in multi_dir.iterdir()) == ["out.mp4"]  # rank 1 wrote nothing
    assert multi.stdout.count("saved ") == 1 and "2 ranks: ulysses 2" in multi.stderr
    ref = wan_video.load_video_frames(single_dir / "out.mp4")
    got = wan_video.load_video_frames(multi_dir / "out.mp4")
    assert got.shape == ref.shape == (3, 9, 48, 80)
    assert torch.equal(got, ref)
    settings = wan_video.read_video_metadata(multi_dir / "out.mp4")["comment"]
    assert settings["seed"] == 5 and settings["frame_num"] == 9


def test_torchrun_world_that_does_not_match_the_flags_is_a_clear_error(tiny_ckpt, tmp_path):
    proc = run([*torchrun(2), *cli_args(tiny_ckpt("t2v-A14B"), tmp_path / "x.mp4", "--cfg_parallel",
                                        "--ulysses_size", "2")], tmp_path)  # fmt: skip
    assert proc.returncode != 0
    assert "2 processes were launched but cfg 2 x ulysses 2 needs 4" in proc.stderr
    assert not (tmp_path / "x.mp4").exists()
