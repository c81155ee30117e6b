"""Regional compile (``load_pipeline(..., compile=...)``, ``wan.compile``): one compiled block graph shared by
every block of both experts, the same numbers as the eager run, and no recompiles per step.

Oracle: the eager pipeline on the same tiny weights (bit-identical: the ``aot_eager`` backend runs the
traced ATen graph without code generation, so every op is the one the eager run executes). Recompiles are
counted twice: by ``BlockCompiler.graphs`` (graphs handed to the backend) and by dynamo's own
``torch._dynamo.utils.counters["stats"]["unique_graphs"]``. The inductor backend (code generation,
minutes per graph on this CPU) is exercised by bench/device_check.sh on a GPU.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from torch._dynamo.utils import counters

from wan.lora import LoraSpec
from wan.pipeline import WanVideoPipeline, load_pipeline
from wan.testing.lora import tiny_lora_state_dict

BACKEND = "aot_eager"
SIZE = (64, 48)
RUN = {"size": SIZE, "frame_num": 5, "sampling_steps": 4, "seed": 11, "shift": 12.0}  # both experts run


@pytest.fixture(scope="module")
def ckpt(tiny_ckpt: Callable[..., Path]) -> Path:
    return tiny_ckpt("t2v-A14B")


@pytest.fixture(scope="module")
def eager(ckpt: Path) -> WanVideoPipeline:
    return load_pipeline("t2v-A14B", ckpt, device="cpu", dtype=torch.float32, any_size=True)


@pytest.fixture(scope="module")
def compiled(ckpt: Path) -> WanVideoPipeline:
    return load_pipeline("t2v-A14B", ckpt, device="cpu", dtype=torch.float32, any_size=True, compile=BACKEND)


def _unique_graphs() -> int:
    return counters["stats"]["unique_graphs"]


def test_one_graph_for_all_blocks_experts_and_steps(eager: WanVideoPipeline, compiled: WanVideoPipeline) -> None:
    reference = eager.generate("a fox in the snow", **RUN)
    assert set(eager.last_run.experts) == {"high_noise", "low_noise"}  # the run switches experts
    before = _unique_graphs()
    video = compiled.generate("a fox in the snow", **RUN)
    run = compiled.last_run
    assert torch.equal(video, reference)
    assert run.experts == eager.last_run.experts
    # 2 experts x 2 blocks x 2 CFG passes x 4 steps = 32 block calls, one graph
    assert run.compile_graphs == 1 and _unique_graphs() - before == 1
    assert run.compile_seconds > 0 and compiled.compiler is not None and compiled.compiler.graphs == 1
    again = compiled.generate("a fox in the snow", **{**RUN, "seed": 12})
    assert compiled.last_run.compile_graphs == 0 and compiled.last_run.compile_seconds == 0.0
    assert _unique_graphs() - before == 1
    assert not torch.equal(again, video)


def test_a_new_size_compiles_once_and_loras_add_two_graphs(
    eager: WanVideoPipeline, compiled: WanVideoPipeline, tmp_path: Path
) -> None:
    compiled.generate("warm", **RUN)  # the 64x48 graph exists (from the test above or now)
    other = {**RUN, "size": (80, 48)}  # 5x3 tokens per latent frame (48x64 would be 3x4: the same block shapes)
    reference = eager.generate("a fox", **other)
    assert torch.equal(compiled.generate("a fox", **other), reference)
    assert compiled.last_run.compile_graphs == 1  # static shapes: one graph per latent grid
    # LoRA forward hooks on every block linear, at changing strengths (phases with lora_scale 1, 0.5, 0.25, 1
    # across the expert switch): two more graphs, not one per block, step or strength (the hook layout, and
    # the hook's first call, which casts its LoRA factors to the input's device/dtype: another branch)
    lora = LoraSpec(tiny_lora_state_dict("t2v-A14B", seed=4), {"high_noise": 1.0, "low_noise": 0.7})
    phases = [{"steps": 1, "expert": "high_noise", "guide_scale": 4.0, "lora_scale": 1.0},
              {"steps": 1, "expert": "high_noise", "guide_scale": 4.0, "lora_scale": 0.5},
              {"steps": 1, "expert": "low_noise", "guide_scale": 3.0, "lora_scale": 0.25},
              {"steps": 1, "expert": "low_noise", "guide_scale": 3.0, "lora_scale": 1.0}]  # fmt: skip
    with_lora = {**RUN, "loras": [lora], "phases": phases}
    before = _unique_graphs()
    reference = eager.generate("a fox", **with_lora)
    video = compiled.generate("a fox", **with_lora)
    assert torch.equal(video, reference)
    assert compiled.last_run.lora_strengths == ((1.0,), (0.5,), (0.175,), (0.7,))
    assert compiled.last_run.compile_graphs == 2 and _unique_graphs() - before == 2
    stronger = [{**p, "lora_scale": p["lora_scale"] * 1.5} for p in phases]
    torch.testing.assert_close(compiled.generate("a fox", **{**with_lora, "phases": stronger}),
                               eager.generate("a fox", **{**with_lora, "phases": stronger}), rtol=0, atol=0)
    assert compiled.last_run.compile_graphs == 0  # new strengths, new hook objects: the same graphs
    # LoRAs removed: the graph without hooks is reused and the result is the plain one again
    plain = compiled.generate("a fox", **RUN)
    assert compiled.last_run.compile_graphs == 0
    assert torch.equal(plain, eager.generate("a fox", **RUN))


def test_expert_offload_reuses_the_graph(ckpt: Path, compiled: WanVideoPipeline) -> None:
    """The expert profile moves each expert's weights on and off the device; the compiled graph takes the
    parameters as inputs, so the switch costs no recompile (a second pipeline: its own compiled code)."""
    pipe = load_pipeline("t2v-A14B", ckpt, device="cpu", dtype=torch.float32, any_size=True, offload="expert",
                         compile="eager")  # fmt: skip  # dynamo's guards without AOT tracing: faster, same counts
    assert pipe.profile == "expert" and pipe.compiler is not compiled.compiler
    video = pipe.generate("a fox in the snow", **RUN)
    assert pipe.last_run.switches == 1 and pipe.last_run.compile_graphs == 1
    pipe.generate("a fox in the snow", **RUN)
    assert pipe.last_run.compile_graphs == 0 and pipe.last_run.loads == 2
    assert torch.equal(video, compiled.generate("a fox in the snow", **RUN))


def test_bad_compile_options_fail_before_loading(tmp_path: Path) -> None:
    missing = tmp_path / "nothing-here"  # no weights: the check must come first
    with pytest.raises(ValueError, match="offload='block'"):
        load_pipeline("t2v-A14B", missing, device="cpu", offload="block", compile=True)
    with pytest.raises(ValueError, match="not a torch.compile backend"):
        load_pipeline("t2v-A14B", missing, device="cpu", compile="no-such-backend")
    with pytest.raises(ValueError, match="must be True, False or a torch.compile backend"):
        load_pipeline("t2v-A14B", missing, device="cpu", compile=3)


def test_cli_compile_and_attention_flags(tiny_ckpt: Callable[..., Path], tmp_path: Path) -> None:
    """``generate.py --compile BACKEND --attention NAME``: the compile time is printed once, the backend is
    in the mp4 settings; a backend this machine cannot run stops with which one and why (exit 2)."""
    import os
    import subprocess
    import sys

    from wan import video as wan_video

    repo = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(repo), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    base = [sys.executable, str(repo / "generate.py"), "--task", "ti2v-5B", "--ckpt_dir", str(tiny_ckpt("ti2v-5B")),
            "--size", "64*32", "--any_size", "--frame_num", "5", "--sample_steps", "2", "--device", "cpu"]  # fmt: skip
    out = tmp_path / "c.mp4"
    proc = subprocess.run([*base, "--compile", "eager", "--attention", "SDPA", "--save_file", str(out)], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=300, check=False)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.count("torch.compile (eager): 1 graph(s) of the DiT block compiled in") == 1
    assert wan_video.read_video_metadata(out)["comment"]["attention"] == "sdpa"
    proc = subprocess.run([*base, "--attention", "sage:1,1", "--sample_steps", "3", "--save_file", str(out)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300, check=False)  # fmt: skip
    assert proc.returncode == 2
    assert "error: attention: attention backend 'sage' cannot be used: it needs CUDA tensors" in proc.stderr
    proc = subprocess.run([*base, "--compile", "--offload", "block"], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=300, check=False)  # fmt: skip
    assert proc.returncode == 2 and "offload='block'" in proc.stderr


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA: inductor code generation for the GPU (CPU runs use aot_eager above)")
def test_inductor_on_cuda_matches_eager_and_compiles_once(ckpt: Path) -> None:
    from wan.modules.attention import unusable_reason

    kw = {"device": "cuda", "dtype": torch.bfloat16, "any_size": True, "offload": "expert"}
    eager_cuda = load_pipeline("t2v-A14B", ckpt, **kw)
    compiled_cuda = load_pipeline("t2v-A14B", ckpt, **kw, compile=True)
    reference = eager_cuda.generate("a fox in the snow", **RUN)
    video = compiled_cuda.generate("a fox in the snow", **RUN)
    rel = float((video - reference).norm() / reference.norm())
    assert rel < 2e-2, rel  # bf16: inductor fuses (and rounds) differently from eager
    assert compiled_cuda.last_run.compile_graphs == 1 and compiled_cuda.last_run.switches == 1
    compiled_cuda.generate("a fox in the snow", **RUN)
    assert compiled_cuda.last_run.compile_graphs == 0
    if unusable_reason("sage", "cuda", torch.bfloat16, 16) is None:  # per-step backends: one graph each
        compiled_cuda.generate("a fox in the snow", **RUN, attention="sage:1,1")
        assert compiled_cuda.last_run.attention[1:3] == ("sage", "sage")
        assert compiled_cuda.last_run.compile_graphs >= 1
        compiled_cuda.generate("a fox in the snow", **RUN, attention="sage:1,1")
        assert compiled_cuda.last_run.compile_graphs == 0
