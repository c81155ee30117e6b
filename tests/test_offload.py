"""Memory profiles (wan.offload): none / expert / block on the CPU.

``block`` runs the same code on a CPU device as on CUDA (real cpu -> cpu copies, synchronous), so the
residency ledger, the window of resident blocks, the LoRA interplay and cancel are all checked here;
the CUDA-only parts (pinned memory, the side stream) have a skip-marked test.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from wan.errors import GenerationCancelled
from wan.loading import load_components
from wan.modules.model import WanModel
from wan.offload import (
    BlockOffloader,
    ExpertOffloader,
    ModuleShuttle,
    module_bytes,
    resolve_profile,
)
from wan.pipeline import WanVideoPipeline, load_pipeline
from wan.request import LoraSpec
from wan.testing import synthetic
from wan.testing.lora import write_tiny_lora

TinyCkpt = Callable[..., Path]
LAYERS = 6  # more blocks than the tiny checkpoints' 2, so a window of N blocks is a real bound
KW: dict[str, Any] = {"size": (64, 32), "frame_num": 5, "sampling_steps": 4, "seed": 3}


def _dit_config(task: str) -> Any:
    return dataclasses.replace(synthetic.tiny_dit_config(task), num_layers=LAYERS)


def _random_dit(task: str, seed: int) -> WanModel:
    cfg = _dit_config(task)
    model = WanModel(cfg)
    sd = synthetic._random_state_dict(synthetic._module_shapes(WanModel, cfg), seed, "dit-offload")
    model.load_state_dict(sd, strict=True)
    return model.eval().requires_grad_(False)


def make_pipe(tiny_ckpt: TinyCkpt, task: str, profile: Any, blocks: int = 2) -> WanVideoPipeline:
    """A CPU pipeline of ``task`` with a 6-layer random DiT per expert (same weights for every profile)."""
    comps = load_components(task, tiny_ckpt(task), dtype=torch.float32)
    for i, name in enumerate(comps.spec.experts):
        comps.experts[name] = _random_dit(task, seed=i)
    return WanVideoPipeline(comps, device="cpu", offload=profile, any_size=True, offload_blocks=blocks)


def _copies_on_device(off: BlockOffloader) -> dict[tuple[str, int], bool]:
    """Which blocks hold a compute copy, read from the tensors (not the bookkeeping): a block's
    parameters point to its host tensors unless it is loaded."""
    out = {}
    for (name, index), unit in off._units.items():
        if index is None:
            continue
        hosts = unit.hosts if unit.hosts else [t.data for t in unit.tensors]
        out[(name, index)] = bool(unit.hosts) and all(
            t.data.data_ptr() != h.data_ptr() for t, h in zip(unit.tensors, hosts, strict=True)
        )
    return out


# ------------------------------------------------------------------------------------ API


def test_profile_names_and_old_booleans(tiny_ckpt: TinyCkpt) -> None:
    assert resolve_profile(None, "cpu") == "none" and resolve_profile(None, "cuda") == "expert"
    assert resolve_profile(True, "cpu") == "expert" and resolve_profile(False, "cuda") == "none"
    for name in ("none", "expert", "block"):
        assert resolve_profile(name, "cpu") == name and resolve_profile(name.upper(), "cpu") == name
    assert resolve_profile("true", "cpu") == "expert" and resolve_profile("off", "cpu") == "none"
    for bad in ("blocks", "", 2, 1.0):
        with pytest.raises(ValueError, match="offload must be one of"):
            resolve_profile(bad, "cpu")  # type: ignore[arg-type]
    ckpt = tiny_ckpt("ti2v-5B")
    pipe = load_pipeline("ti2v-5B", ckpt, device="cpu", offload="block", offload_blocks=1)
    assert (pipe.profile, pipe.offload, pipe.offload_blocks) == ("block", True, 1)
    assert isinstance(pipe.experts, BlockOffloader) and pipe.experts.window == 1
    for value, profile in ((True, "expert"), (False, "none"), (None, "none")):
        p = load_pipeline("ti2v-5B", ckpt, device="cpu", offload=value)
        assert p.profile == profile and p.offload == (profile != "none")
        assert isinstance(p.experts, ExpertOffloader)
    for bad_blocks in (0, -1, True, 1.5):
        with pytest.raises(ValueError, match="offload_blocks must be an integer >= 1"):
            load_pipeline("ti2v-5B", ckpt, device="cpu", offload="block", offload_blocks=bad_blocks)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="offload must be one of"):
        load_pipeline("ti2v-5B", ckpt, device="cpu", offload="disk")
    from wan.pipeline import ExpertOffloader as Reexported  # compatibility: still importable from wan.pipeline

    assert Reexported is ExpertOffloader


# --------------------------------------------------------------------- ledger + bit-identity


@pytest.mark.parametrize("task", ["t2v-A14B", "ti2v-5B"])
def test_block_matches_none_and_ledger_bounds(tiny_ckpt: TinyCkpt, task: str) -> None:
    """block (N = 1, 2, 3) gives bit-identical videos to none; the ledger maximum is everything for none,
    one expert for expert, and at most N blocks + one expert's non-block parameters for block — and the
    window seen from the tensors at every block entry agrees with the bookkeeping."""
    ref = make_pipe(tiny_ckpt, task, "none")
    want = ref.generate("a fox", **KW)
    total = sum(module_bytes(m) for m in ref.experts.experts.values())
    assert ref.last_run is not None and ref.last_run.profile == "none"
    assert ref.last_run.resident_peak_bytes == total == ref.experts.ledger.now  # everything, always

    expert = make_pipe(tiny_ckpt, task, "expert")
    assert torch.equal(expert.generate("a fox", **KW), want)
    one_expert = max(module_bytes(m) for m in expert.experts.experts.values())
    assert expert.last_run is not None and expert.last_run.profile == "expert"
    assert expert.last_run.resident_peak_bytes == one_expert
    assert one_expert < total or len(expert.experts.experts) == 1
    assert expert.experts.ledger.now == 0

    for n in (1, 2, 3):
        pipe = make_pipe(tiny_ckpt, task, "block", blocks=n)
        off = pipe.experts
        assert isinstance(off, BlockOffloader)
        seen: list[int] = []

        def check(module: Any, args: Any, output: Any, _off: BlockOffloader = off, _n: int = n) -> None:
            copies = _copies_on_device(_off)
            resident = [k for k, v in copies.items() if v]
            assert sorted(resident) == sorted(_off.resident_blocks)  # tensors agree with the bookkeeping
            assert len(resident) <= _n and {k[0] for k in resident} <= set(_off.resident)
            seen.append(len(resident))

        handles = [
            block.register_forward_hook(check) for m in off.experts.values() for block in m.blocks
        ]  # after the offloader's pre-hooks: sees the window while the block runs
        got = pipe.generate("a fox", **KW)
        for h in handles:
            h.remove()
        assert torch.equal(got, want), f"block N={n} differs from none"
        run = pipe.last_run
        assert run is not None and run.profile == "block" and run.completed
        nonblock = max(off.nonblock_bytes(e) for e in off.experts)
        block = max(max(off.block_bytes(e)) for e in off.experts)
        assert run.resident_peak_bytes <= nonblock + n * block == off.bound()
        assert run.resident_peak_bytes == off.bound()  # the window does fill (6 blocks > N)
        assert run.resident_peak_bytes < one_expert
        assert max(seen) == n and len(seen) == LAYERS * 2 * len(run.experts)  # cond + uncond per step
        assert off.ledger.now == 0 and off.resident_blocks == () and off.resident == ()  # released
        assert off.block_loads >= LAYERS * 2 * len(run.experts)
        if len(off.experts) > 1:
            assert (run.loads, run.switches) == (2, 1)


def test_block_streams_encode_context_and_vae(tiny_ckpt: TinyCkpt) -> None:
    """The cached cross-attention k/v (encode_context) is built block by block through the same window;
    the VAE is on the device only while decoding (ModuleShuttle); encode_text releases the encoder."""
    pipe = make_pipe(tiny_ckpt, "ti2v-5B", "block", blocks=2)
    off = pipe.experts
    assert isinstance(off, BlockOffloader)
    model = off.experts["dense"]
    context = torch.zeros(1, model.config.text_len, model.config.text_dim)
    off.activate("dense")
    cache = model.encode_context(context)
    assert len(cache.kv) == LAYERS and len(off.resident_blocks) <= 2
    off.release()
    assert off.ledger.now == 0
    assert not pipe.vae_shuttle.resident and not pipe.vae_shuttle.on_device_now
    during: list[bool] = []
    pipe.generate("a fox", **KW, decode_callback=lambda k, n: during.append(pipe.vae_shuttle.on_device_now))
    assert during and all(during) and not pipe.vae_shuttle.on_device_now


def test_module_shuttle_restores_host_tensors() -> None:
    layer = torch.nn.Linear(4, 3)
    shuttle = ModuleShuttle(layer, "cpu", resident=False)
    host = layer.weight.data  # (the host tensor; pinned only on CUDA)
    with shuttle.on_device():
        assert layer.weight.data.data_ptr() != host.data_ptr()  # a compute copy
        with shuttle.on_device():  # re-entrant
            pass
        assert shuttle.on_device_now
    assert layer.weight.data.data_ptr() == host.data_ptr() and not shuttle.on_device_now


# -------------------------------------------------------------------------------------- LoRA


def test_lora_with_block_matches_none(tiny_ckpt: TinyCkpt, tmp_path: Path) -> None:
    """A LoRA with hooked linears AND tensor swaps on block parameters (diff_b, norm deltas) and on
    non-block ones (head.diff) gives bit-identical videos with block and none; afterwards the weights
    are exactly the loaded ones (nothing left patched, nothing left on the device)."""
    task = "t2v-A14B"
    path = write_tiny_lora(tmp_path / "l.safetensors", _dit_config(task), diff_b=True, norm_diff=True, head_diff=True)
    loras = [LoraSpec(str(path), 1.0)]
    ref = make_pipe(tiny_ckpt, task, "none")
    want = ref.generate("a fox", **KW, loras=loras)
    assert not torch.equal(want, ref.generate("a fox", **KW))  # the LoRA does something
    pipe = make_pipe(tiny_ckpt, task, "block", blocks=2)
    before = {n: {k: v.clone() for k, v in m.state_dict().items()} for n, m in pipe.experts.experts.items()}
    for _ in range(2):  # twice: the second run starts from restored weights
        assert torch.equal(pipe.generate("a fox", **KW, loras=loras), want)
        assert pipe.experts.ledger.now == 0
        for n, m in pipe.experts.experts.items():
            after = m.state_dict()
            assert all(torch.equal(after[k], v) for k, v in before[n].items())
    assert torch.equal(pipe.generate("a fox", **KW), ref.generate("a fox", **KW))  # and without it again


# ------------------------------------------------------------------------------------ cancel


@pytest.mark.parametrize("profile", ["expert", "block"])
def test_cancel_leaves_nothing_resident(tiny_ckpt: TinyCkpt, profile: str) -> None:
    pipe = make_pipe(tiny_ckpt, "t2v-A14B", profile)

    def stop(step: int, total: int, expert: str, latents: torch.Tensor) -> bool:
        assert pipe.experts.ledger.now > 0
        return step < 2

    with pytest.raises(GenerationCancelled):
        pipe.generate("a fox", **KW, callback=stop)
    assert pipe.last_run is not None and not pipe.last_run.completed
    assert pipe.last_run.profile == profile and pipe.last_run.resident_peak_bytes > 0
    assert pipe.experts.ledger.now == 0 and pipe.experts.resident == ()
    if isinstance(pipe.experts, BlockOffloader):
        assert pipe.experts.resident_blocks == () and not any(_copies_on_device(pipe.experts).values())
    # cancelling mid-block (an exception inside a forward) also releases everything
    off = pipe.experts
    model = next(iter(off.experts.values()))
    boom = model.blocks[3].register_forward_pre_hook(lambda *a: (_ for _ in ()).throw(GenerationCancelled("stop")))
    with pytest.raises(GenerationCancelled):
        pipe.generate("a fox", **KW)
    boom.remove()
    assert off.ledger.now == 0 and off.resident == ()


# -------------------------------------------------------------------------------------- CUDA


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA: pinned host copies and the copy stream")
def test_block_on_cuda_pins_and_matches(tiny_ckpt: TinyCkpt) -> None:
    comps = load_components("ti2v-5B", tiny_ckpt("ti2v-5B"), dtype=torch.float32)
    comps.experts["dense"] = _random_dit("ti2v-5B", seed=0)
    ref_comps = load_components("ti2v-5B", tiny_ckpt("ti2v-5B"), dtype=torch.float32)
    ref_comps.experts["dense"] = _random_dit("ti2v-5B", seed=0)
    pipe = WanVideoPipeline(comps, device="cuda", offload="block", any_size=True)
    ref = WanVideoPipeline(ref_comps, device="cuda", offload="none", any_size=True)
    off = pipe.experts
    assert isinstance(off, BlockOffloader)
    assert all(t.data.is_pinned() for u in off._units.values() for t in u.tensors)
    assert all(t.is_pinned() for t in pipe.vae.parameters())
    assert torch.equal(pipe.generate("a fox", **KW), ref.generate("a fox", **KW))
    assert pipe.last_run is not None and pipe.last_run.resident_peak_bytes <= off.bound()
    assert all(t.data.is_pinned() for u in off._units.values() for t in u.tensors)  # masters intact


def test_block_profile_tiles_the_vae_by_default(tiny_ckpt) -> None:
    """The low-memory profile decodes in tiles unless asked not to; the others do not tile."""
    import torch

    from wan.pipeline import load_pipeline

    ckpt = tiny_ckpt("ti2v-5B")
    assert load_pipeline("ti2v-5B", ckpt, device="cpu", dtype=torch.float32, offload="block").vae.tiling is not None
    assert load_pipeline("ti2v-5B", ckpt, device="cpu", dtype=torch.float32, offload="none").vae.tiling is None
    off = load_pipeline("ti2v-5B", ckpt, device="cpu", dtype=torch.float32, offload="block", vae_tiling=False)
    assert off.vae.tiling is None
    tiled = load_pipeline("ti2v-5B", ckpt, device="cpu", dtype=torch.float32, vae_tiling=True, any_size=True)
    video = tiled.generate("a fox", size=(64, 64), frame_num=5, sampling_steps=2, seed=0)
    assert video.shape == (3, 5, 64, 64)
