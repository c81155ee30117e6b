"""Multi-process runs (real torchrun, real gloo ranks on the CPU, tiny random float32 weights) against
the single-process pipeline: Ulysses 2, CFG-parallel, FSDP2 of DiT + umT5, and combined layouts, for
all four task modes, with token counts that need padding.

Every mode's latent grid has an odd token count (45 for the A14B tasks at 80x48, 9 frames; 9 for
TI2V-5B at 96x32), so a 2-way split pads one token; TI2V-5B with an image has per-token timesteps
(frame 0 at t=0) whose two runs straddle the rank boundary. One torchrun launch runs all the 2-rank
cases (``tests/dist_worker.py``), one more the 4-rank ``cfg 2 x ulysses 2`` cases.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
WORKER = ROOT / "tests" / "dist_worker.py"
TOL = 1e-5
TASKS = ("t2v-A14B", "i2v-A14B", "ti2v-5B")

# The four task modes. shift 1.0 with 3 steps: step 1 on the high-noise expert, steps 2-3 on the
# low-noise one (the MoE switch happens inside every A14B run).
MODES: dict[str, dict[str, Any]] = {
    "t2v": {"task": "t2v-A14B", "settings": {"size": [80, 48], "shift": 1.0}},
    "i2v": {"task": "i2v-A14B", "settings": {"size": [80, 48], "shift": 1.0}, "image": (48, 80)},
    "ti2v_text": {"task": "ti2v-5B", "settings": {"size": [96, 32]}},
    "ti2v_image": {"task": "ti2v-5B", "settings": {"size": [96, 32]}, "image": (32, 96)},
}
# guidance 1 (e.g. Lightning): CFG-parallel ranks both run the conditional pass, no exchange
EXTRA_MODES: dict[str, dict[str, Any]] = {
    "t2v_cfg1": {"task": "t2v-A14B", "settings": {"size": [80, 48], "shift": 1.0, "guide_scale": 1.0}},
}
COMMON = {"prompt": "a red fox runs through snow", "frame_num": 9, "sampling_steps": 3, "seed": 11}
LAYOUTS: dict[str, dict[str, Any]] = {
    "ulysses2": {"ulysses_size": 2},
    "cfg2": {"cfg_parallel": True},
    "fsdp": {"ulysses_size": 2, "dit_fsdp": True, "t5_fsdp": True},
    "cfg2_fsdp": {"cfg_parallel": True, "dit_fsdp": True, "t5_fsdp": True},
}
# 4 ranks: cfg 2 x ulysses 2 (+ FSDP over all 4)
COMBINED = {"cfg2_ulysses2_fsdp": {"ulysses_size": 2, "cfg_parallel": True, "dit_fsdp": True, "t5_fsdp": True}}
# single cases (mode, layout, load options): the memory profiles keep working per rank (each rank
# swaps its own experts); CFG-parallel with guidance 1
PROFILES = {"ulysses2_expert": ("t2v", {"ulysses_size": 2}, {"offload": "expert"}),
            "cfg2_block": ("i2v", {"cfg_parallel": True}, {"offload": "block"}),
            "cfg2_guidance1": ("t2v_cfg1", {"cfg_parallel": True}, {})}  # fmt: skip
# bf16 DiT with float32-kept parameters (the GPU layout): FSDP units of mixed dtypes
BF16 = {"fsdp_bf16": ("ti2v_image", {"ulysses_size": 2, "dit_fsdp": True, "t5_fsdp": True}, {"dtype": "bfloat16"})}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    return env


def torchrun(nproc: int, args: list[str], *, timeout: float = 240) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc),
           "--master_addr", "127.0.0.1", "--master_port", str(free_port()), *args]  # fmt: skip
    return subprocess.run(cmd, cwd=ROOT, env=child_env(), capture_output=True, text=True, timeout=timeout)


def mode_settings(mode: str, images: dict[str, str]) -> dict[str, Any]:
    cfg = {**MODES, **EXTRA_MODES}[mode]
    settings = {**COMMON, **cfg["settings"]}
    if "image" in cfg:
        settings["image"] = images[mode]
    return settings


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    from PIL import Image

    folder = tmp_path_factory.mktemp("dist_images")
    out = {}
    for i, (mode, cfg) in enumerate(MODES.items()):
        if "image" in cfg:
            pixels = np.random.default_rng(i).integers(0, 256, (*cfg["image"], 3), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / f"{mode}.png")
            out[mode] = str(folder / f"{mode}.png")
    return out


def run_plan(tmp: Path, tiny_ckpt: Any, nproc: int, cases: list[dict], model_cases: list[dict] = ()) -> Path:
    out = tmp / "out"
    out.mkdir()
    plan = {"out": str(out), "ckpt": {t: str(tiny_ckpt(t)) for t in TASKS}, "cases": cases,
            "model_cases": list(model_cases)}  # fmt: skip
    (tmp / "plan.json").write_text(json.dumps(plan))
    proc = torchrun(nproc, [str(WORKER), str(tmp / "plan.json")])
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    return out


@pytest.fixture(scope="module")
def two_rank_outputs(tmp_path_factory, tiny_ckpt, images) -> Path:
    cases = [{"name": f"{mode}-{layout}", "task": MODES[mode]["task"], "parallel": parallel,
              "settings": mode_settings(mode, images)}
             for layout, parallel in LAYOUTS.items() for mode in MODES]  # fmt: skip
    cases += [{"name": name, "task": {**MODES, **EXTRA_MODES}[mode]["task"], "parallel": parallel, "load": load,
               "settings": mode_settings(mode, images)}
              for name, (mode, parallel, load) in {**PROFILES, **BF16}.items()]  # fmt: skip
    cases.append({"name": "cancel", "task": "t2v-A14B", "parallel": {"ulysses_size": 2}, "cancel_at": 2,
                  "settings": mode_settings("t2v", images)})  # fmt: skip
    model_cases = [{"name": f"model-runs{n}", "task": "ti2v-5B", "folder": ".", "shape": [48, 3, 2, 6], "max_runs": n}
                   for n in (8, 0)]  # fmt: skip
    return run_plan(tmp_path_factory.mktemp("dist2"), tiny_ckpt, 2, cases, model_cases)


@pytest.fixture(scope="module")
def four_rank_outputs(tmp_path_factory, tiny_ckpt, images) -> Path:
    cases = [{"name": f"{mode}-{layout}", "task": MODES[mode]["task"], "parallel": parallel,
              "settings": mode_settings(mode, images)}
             for layout, parallel in COMBINED.items() for mode in MODES]  # fmt: skip
    return run_plan(tmp_path_factory.mktemp("dist4"), tiny_ckpt, 4, cases)


@pytest.fixture(scope="module")
def reference(tiny_ckpt, images):
    """The single-process video of each mode (cached)."""
    import wan

    pipes: dict[str, Any] = {}
    videos: dict[str, torch.Tensor] = {}

    def get(mode: str, dtype: str = "float32") -> torch.Tensor:
        if (mode, dtype) not in videos:
            task = {**MODES, **EXTRA_MODES}[mode]["task"]
            if (task, dtype) not in pipes:
                pipes[task, dtype] = wan.load_pipeline(task, tiny_ckpt(task), device="cpu", dtype=dtype,
                                                       offload="none", any_size=True)  # fmt: skip
            pipe = pipes[task, dtype]
            videos[mode, dtype] = pipe.generate(pipe.plan(**mode_settings(mode, images)))
        return videos[mode, dtype]

    return get


def assert_close(got: torch.Tensor, ref: torch.Tensor) -> None:
    assert got.shape == ref.shape and got.dtype == ref.dtype
    diff = (got - ref).abs().max().item()
    assert diff <= TOL, f"max |parallel - single| = {diff:.3g} > {TOL}"


TWO_RANK_CASES = [(mode, f"{mode}-{layout}") for layout in LAYOUTS for mode in MODES]
TWO_RANK_CASES += [(mode, name) for name, (mode, _, _) in PROFILES.items()]


@pytest.mark.parametrize(("mode", "name"), TWO_RANK_CASES, ids=[name for _, name in TWO_RANK_CASES])
def test_two_ranks_equal_single_process(two_rank_outputs, reference, mode, name):
    assert_close(torch.load(two_rank_outputs / f"{name}.pt"), reference(mode))


def test_fsdp_of_a_bf16_dit_with_float32_kept_parameters(two_rank_outputs, reference):
    mode, _, _ = BF16["fsdp_bf16"]
    assert_close(torch.load(two_rank_outputs / "fsdp_bf16.pt"), reference(mode, "bfloat16"))


@pytest.mark.parametrize("mode", list(MODES))
def test_cfg2_x_ulysses2_fsdp_on_four_ranks_equals_single_process(four_rank_outputs, reference, mode):
    assert_close(torch.load(four_rank_outputs / f"{mode}-cfg2_ulysses2_fsdp.pt"), reference(mode))


def test_rank0_cancel_stops_every_rank(two_rank_outputs):
    for rank in (0, 1):  # both ranks ran steps 1 and 2 and then raised GenerationCancelled
        assert json.loads((two_rank_outputs / f"cancel.rank{rank}").read_text()) == [1, 2]


@pytest.mark.parametrize("max_runs", [8, 0])
def test_model_forward_per_token_timesteps_split(two_rank_outputs, tiny_ckpt, max_runs, monkeypatch):
    """WanModel.forward, 9 tokens over 2 ranks, per-token t (3 tokens at 0): run-length and gather paths."""
    import wan.modules.model as model_mod
    from wan.loading import load_dit

    model = load_dit(tiny_ckpt("ti2v-5B"), dtype=torch.float32)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 48, 3, 2, 6, generator=g)
    ctx = torch.randn(1, model.config.text_len, model.config.text_dim, generator=g)
    t = torch.full((1, 9), 700.0)
    t[:, :3] = 0.0
    monkeypatch.setattr(model_mod, "MAX_TIMESTEP_RUNS", max_runs)
    with torch.no_grad():
        ref = model(x, t, ctx)
    assert_close(torch.load(two_rank_outputs / f"model-runs{max_runs}.pt"), ref)


# ----------------------------------------------------------------------------- clear errors


def test_heads_that_do_not_divide_are_a_clear_error():
    from wan.distributed import ParallelConfigError, SequenceParallel, check_heads
    from wan.modules.model import DiTConfig, WanModel

    with pytest.raises(ParallelConfigError, match=r"ulysses_size 3 does not divide the 40 attention heads.*\[1, 2, 4, 5, 8, 10\]"):
        check_heads(40, 3, "t2v-A14B")
    with pytest.raises(ParallelConfigError, match=r"ulysses_size 5 does not divide the 24 .*\[1, 2, 3, 4, 6, 8, 12\]"):
        check_heads(24, 5, "ti2v-5B")
    check_heads(40, 8)
    check_heads(24, 6)
    # the model refuses a Ulysses group its heads cannot be split over (1 head of 16, 2 ranks)
    cfg = DiTConfig(model_type="t2v", dim=16, ffn_dim=32, num_heads=1, num_layers=1, in_dim=16, out_dim=16, text_dim=16)
    with pytest.raises(ParallelConfigError, match="does not divide the 1 attention heads"):
        WanModel(cfg).set_sequence_parallel(SequenceParallel(None, 2, 0))


def test_world_and_config_errors(monkeypatch):
    from wan.distributed import ParallelConfig, ParallelConfigError, init_parallel

    with pytest.raises(ParallelConfigError, match=r"2 processes were launched but cfg 2 x .*needs 4.*--nproc_per_node 4"):
        ParallelConfig(ulysses_size=2, cfg_parallel=True).check_world(2)
    with pytest.raises(ParallelConfigError, match="ulysses_size must be an integer >= 1"):
        ParallelConfig(ulysses_size=0)
    with pytest.raises(ParallelConfigError, match="even number of processes"):
        ParallelConfig.for_world(3, cfg_parallel=True)
    assert ParallelConfig.for_world(8, cfg_parallel=True).describe() == "cfg 2 x ulysses 4"
    for var in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(ParallelConfigError, match="start it with torchrun --nproc_per_node 2"):
        init_parallel(ParallelConfig(ulysses_size=2), "cpu")


def test_fsdp_refuses_offload_and_fp8(tiny_ckpt):
    import wan
    from wan.distributed import ParallelConfig, ParallelConfigError

    with pytest.raises(ParallelConfigError, match="fp8"):
        wan.load_pipeline("ti2v-5B", tiny_ckpt("ti2v-5B"), device="cpu", quantize="fp8",
                          parallel=ParallelConfig(dit_fsdp=True))  # fmt: skip
    with pytest.raises(ParallelConfigError, match="t5_fsdp"):
        wan.load_pipeline("ti2v-5B", tiny_ckpt("ti2v-5B"), device="cpu", t5_cpu=True,
                          parallel=ParallelConfig(t5_fsdp=True))  # fmt: skip
