"""fp8 weights (wan.quant): FP8Linear numerics, quantise-on-load, scaled-fp8 files (ComfyUI/Kijai and
LightX2V layouts), the umT5 encoder, LoRAs on fp8 bases and a tiny pipeline run (video vs the float32 pipeline: rel L2 ≈ 3.2e-2).

Measured on the tiny random checkpoints (CPU): the fp8 DiT output vs the float32 DiT has relative L2
≈ 1.7e-2 (bf16 compute ≈ 1.8e-2; plain bf16 weights ≈ 4.6e-3), bounded here by 5e-2; the fp8 umT5
encoding vs its float32 encoding ≈ 6.4e-2 (its weights' own fp8 error is ≈ 2.3 % rel L2; two random
layers amplify it), bounded by 1e-1.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from wan.configs import get_spec
from wan.errors import CheckpointError
from wan.loading import load_components, load_dit, load_text_encoder
from wan.lora import apply_loras, load_lora, remove_loras
from wan.quant import (
    FP8_DTYPE,
    FP8Linear,
    check_quantize,
    is_dit_quantizable,
    parameter_bytes,
    quantize_dit,
    quantize_text_encoder,
    quantize_weight,
    to_scaled_fp8_state_dict,
)
from wan.testing import synthetic
from wan.testing.lora import tiny_lora_state_dict

DIT_BOUND = 5e-2
T5_BOUND = 1e-1


def rel_l2(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.float() - b.float()).norm() / b.float().norm()).item()


def bits(t: torch.Tensor) -> torch.Tensor:
    return t.view(torch.uint8) if t.dtype.itemsize == 1 else t


def dit_inputs(model: nn.Module, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    cfg = model.config
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(1, cfg.in_dim, 2, 4, 4, generator=g)
    ctx = torch.randn(1, cfg.text_len, cfg.text_dim, generator=g)
    return x, torch.tensor([600.0]), ctx


def dequantised_copy(fp8_model: nn.Module, dtype: torch.dtype = torch.float32) -> nn.Module:
    """The same model with every FP8Linear replaced by an nn.Linear holding its dequantised weight."""
    import copy

    out = copy.deepcopy(fp8_model)
    for name, module in list(out.named_modules()):
        if isinstance(module, FP8Linear):
            lin = nn.Linear(module.in_features, module.out_features, bias=module.bias is not None)
            lin.weight = nn.Parameter(module.dequantized_weight(torch.float32).to(dtype), requires_grad=False)
            if module.bias is not None:
                lin.bias = nn.Parameter(module.bias.detach().clone(), requires_grad=False)
            parent, _, child = name.rpartition(".")
            setattr(out.get_submodule(parent), child, lin)
    return out


# ----------------------------------------------------------------------------- tensor math / layer


@pytest.mark.parametrize("per_channel", [True, False])
def test_quantize_weight_round_to_nearest(per_channel: bool) -> None:
    g = torch.Generator().manual_seed(0)
    w = torch.randn(48, 32, generator=g) * torch.logspace(-3, 1, 48)[:, None]
    w[5] = 0.0
    q, scale = quantize_weight(w, per_channel=per_channel)
    assert q.dtype == FP8_DTYPE and scale.dtype == torch.float32
    assert scale.shape == ((48, 1) if per_channel else ())
    amax = w.abs().amax(dim=1, keepdim=True) if per_channel else w.abs().amax()
    expected_scale = torch.where(amax > 0, amax / 448.0, torch.ones_like(amax))
    assert torch.equal(scale, expected_scale)
    deq = q.float() * scale
    # e4m3: 3 mantissa bits -> half-ulp 2^-4 relative; subnormal step 2^-9 (x scale)
    assert bool(((deq - w).abs() <= w.abs() * 2**-4 + scale * 2**-10 + 1e-30).all())
    assert bool((q.float() * scale)[5].eq(0).all())
    # round-to-nearest: the stored value is the nearest float8 of w / scale
    assert torch.equal(bits(q), bits((w / scale).to(FP8_DTYPE)))


def test_fp8_linear_forward_equals_dequantised_linear() -> None:
    torch.manual_seed(0)
    lin = nn.Linear(32, 48)
    layer = FP8Linear.from_linear(lin)
    assert isinstance(layer, nn.Linear) and layer.weight.dtype == FP8_DTYPE and layer.weight.element_size() == 1
    x = torch.randn(3, 5, 32)
    ref = torch.nn.functional.linear(x, layer.weight.float() * layer.weight_scale, lin.bias)
    assert torch.equal(layer(x), ref)
    assert rel_l2(layer(x), lin(x)) < DIT_BOUND
    layer.use_scaled_mm = True  # CPU: ignored, same dequantise path
    assert torch.equal(layer(x), ref)
    with pytest.raises(TypeError, match="compute_dtype"):
        layer(x.to(FP8_DTYPE))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_scaled_mm_close_to_dequant_on_cuda() -> None:
    torch.manual_seed(0)
    lin = nn.Linear(256, 512).cuda().to(torch.bfloat16)
    x = torch.randn(64, 256, device="cuda", dtype=torch.bfloat16)
    for per_channel in (True, False):
        layer = FP8Linear.from_linear(lin, per_channel=per_channel)
        ref = layer(x)
        layer.use_scaled_mm = True
        assert rel_l2(layer(x), ref) < 5e-2


def test_check_quantize() -> None:
    assert check_quantize(None) is None and check_quantize("none") is None and check_quantize("FP8") == "fp8"
    with pytest.raises(ValueError, match="quantize"):
        check_quantize("int4")


# ----------------------------------------------------------------------------- DiT


def test_fp8_dit_close_to_full_precision(tiny_ckpt) -> None:
    root = tiny_ckpt("ti2v-5B")
    ref = load_dit(root, dtype="float32")
    fp8 = load_dit(root, dtype="float32", quantize="fp8")
    names = {n for n, m in fp8.named_modules() if isinstance(m, FP8Linear)}
    assert names == {n for n, _ in ref.named_modules() if is_dit_quantizable(n)}
    assert len(names) == 2 * 10  # 2 blocks x (4 self + 4 cross + 2 ffn)
    for name in names:  # 1 byte per weight element; everything else untouched
        layer = fp8.get_submodule(name)
        assert layer.weight.dtype == FP8_DTYPE and layer.weight.element_size() == 1
        assert layer.weight_scale.shape == (layer.out_features, 1)
    for key, value in fp8.state_dict().items():
        if not key.endswith((".weight_scale",)) and key.rsplit(".", 1)[0] not in names:
            assert torch.equal(value, ref.state_dict()[key]), key
    x, t, ctx = dit_inputs(ref)
    expected = ref(x, t, ctx)
    err = rel_l2(fp8(x, t, ctx), expected)
    err_bf16 = rel_l2(load_dit(root, dtype="bfloat16", quantize="fp8")(x, t, ctx), expected)
    print(f"fp8 DiT vs fp32: rel L2 {err:.3e} (fp32 compute), {err_bf16:.3e} (bf16 compute)")
    assert 0 < err < DIT_BOUND and 0 < err_bf16 < DIT_BOUND
    # the dequantised model gives the same numbers (the forward is F.linear on w * scale; each layer is
    # bit-identical, the whole forward agrees to float32 rounding)
    assert rel_l2(dequantised_copy(fp8)(x, t, ctx), fp8(x, t, ctx)) < 1e-6
    # quantising in memory == quantising on load, and the report counts the bytes
    report = quantize_dit(ref)
    assert report.layers == 20 and report.bytes_after == parameter_bytes(ref)
    weight_elems = sum(fp8.get_submodule(n).weight.numel() for n in names)
    assert report.bytes_saved == 3 * weight_elems - 4 * sum(fp8.get_submodule(n).out_features for n in names)
    for key, value in fp8.state_dict().items():
        assert torch.equal(bits(value), bits(ref.state_dict()[key])), key


# ----------------------------------------------------------------------------- scaled-fp8 files


def check_loads_exactly(model: nn.Module, path: Path, *, per_channel: bool, also: tuple[str, ...] = ()) -> None:
    raw = load_file(str(path))
    prefix = "model.diffusion_model." if any(k.startswith("model.diffusion_model.") for k in raw) else ""
    suffix = ".scale_weight" if per_channel is False else ".weight_scale"
    fp8_modules = [k[len(prefix):-len(suffix)] for k in raw if k.endswith(suffix)]
    assert len(fp8_modules) == 20 + len(also)
    for module in fp8_modules:
        stored, scale = raw[f"{prefix}{module}.weight"], raw[f"{prefix}{module}{suffix}"]
        expected = stored.float() * scale
        layer = model.get_submodule(module)
        if module in also:  # a layer kept in precision: dequantised on load (float32: exact)
            assert type(layer) is nn.Linear and torch.equal(layer.weight, expected)
            continue
        assert isinstance(layer, FP8Linear) and layer.per_channel is per_channel
        assert torch.equal(bits(layer.weight), bits(stored))  # exactly the stored float8 tensor
        assert torch.equal(layer.weight.to(torch.float32) * layer.weight_scale, expected)
    for key, value in model.state_dict().items():
        module = key.rsplit(".", 1)[0]
        if module not in fp8_modules:
            assert torch.equal(value, raw[prefix + key].to(value.dtype)), key


@pytest.mark.parametrize("layout", ["comfyui", "lightx2v"])
def test_scaled_fp8_file_loads_exactly(tiny_ckpt, tmp_path: Path, layout: str) -> None:
    root = tiny_ckpt("ti2v-5B")
    also = ("text_embedding.0",) if layout == "comfyui" else ()
    path = synthetic.write_scaled_fp8_file("ti2v-5B", tmp_path / f"{layout}.safetensors", layout=layout, also=also)
    raw = load_file(str(path))
    assert ("scaled_fp8" in {k.rsplit(".", 1)[-1] for k in raw}) == (layout == "comfyui")
    for quantize in (None, "fp8"):  # stored fp8 is kept as is either way
        model = load_dit(root, dtype="float32", weights_file=path, quantize=quantize)
        check_loads_exactly(model, path, per_channel=layout == "lightx2v", also=also)
    x, t, ctx = dit_inputs(model)
    assert rel_l2(model(x, t, ctx), load_dit(root, dtype="float32")(x, t, ctx)) < DIT_BOUND


def test_scaled_fp8_file_in_the_expert_folder_and_dit_files(tiny_ckpt_copy, tmp_path: Path) -> None:
    """Two ways to point at a scaled-fp8 file: as the folder's diffusion_pytorch_model.safetensors, or
    dit_files= (the folder then needs only config.json)."""
    root = tiny_ckpt_copy("t2v-A14B")
    high, low = root / "high_noise_model", root / "low_noise_model"
    comfy = synthetic.write_scaled_fp8_file("t2v-A14B", tmp_path / "high.safetensors", expert="high_noise")
    light = synthetic.write_scaled_fp8_file("t2v-A14B", tmp_path / "low.safetensors", expert="low_noise",
                                            layout="lightx2v")  # fmt: skip
    for f in high.glob("diffusion_pytorch_model*"):  # only config.json stays
        f.unlink()
    with pytest.raises(CheckpointError, match="missing"):
        load_components("t2v-A14B", root, dtype="float32")
    comps = load_components("t2v-A14B", root, dtype="float32", dit_files={"high_noise": comfy})
    check_loads_exactly(comps.experts["high_noise"], comfy, per_channel=False)
    assert not any(isinstance(m, FP8Linear) for m in comps.experts["low_noise"].modules())
    (low / "diffusion_pytorch_model.safetensors").unlink()
    shutil.copy(light, low / "diffusion_pytorch_model.safetensors")
    comps = load_components("t2v-A14B", root, dtype="bfloat16", dit_files={"high_noise": comfy})
    check_loads_exactly(comps.experts["low_noise"], light, per_channel=True)
    assert comps.experts["low_noise"].get_submodule("blocks.0.ffn.0").compute_dtype == torch.bfloat16
    with pytest.raises(ValueError, match="two experts"):
        load_components("t2v-A14B", root, dtype="float32", dit_files=comfy)
    with pytest.raises(ValueError, match="unknown expert"):
        load_components("t2v-A14B", root, dtype="float32", dit_files={"dense": comfy})


def test_quantised_state_dict_round_trips_through_both_layouts(tiny_ckpt, tmp_path: Path) -> None:
    root = tiny_ckpt("ti2v-5B")
    for per_channel, layout in ((True, "lightx2v"), (False, "comfyui")):
        model = load_dit(root, dtype="float32")
        quantize_dit(model, per_channel=per_channel)
        path = tmp_path / f"{layout}.safetensors"
        save_file(to_scaled_fp8_state_dict(model, layout=layout), str(path))
        again = load_dit(root, dtype="float32", weights_file=path)
        for key, value in model.state_dict().items():
            assert torch.equal(bits(value), bits(again.state_dict()[key])), key


def test_fp8_without_scales_is_a_clear_error(tiny_ckpt, tmp_path: Path) -> None:
    root = tiny_ckpt("ti2v-5B")
    good = synthetic.write_scaled_fp8_file("ti2v-5B", tmp_path / "good.safetensors", layout="lightx2v")
    raw = load_file(str(good))
    bad = tmp_path / "no_scales_fp8.safetensors"
    save_file({k: v for k, v in raw.items() if not k.endswith(".weight_scale")}, str(bad))
    with pytest.raises(CheckpointError, match=r"no_scales_fp8\.safetensors.*float8 tensor\(s\) without a scale"):
        load_dit(root, dtype="float32", weights_file=bad)
    wrong = tmp_path / "wrong_scale.safetensors"
    save_file({**raw, "blocks.0.ffn.0.weight_scale": torch.ones(3, 1)}, str(wrong))
    with pytest.raises(CheckpointError, match=r"wrong_scale\.safetensors.*blocks\.0\.ffn\.0"):
        load_dit(root, dtype="float32", weights_file=wrong)
    with pytest.raises(CheckpointError, match="not found"):
        load_dit(root, dtype="float32", weights_file=tmp_path / "absent.safetensors")


# ----------------------------------------------------------------------------- umT5


def test_t5_fp8_encoding_stays_close(tiny_ckpt) -> None:
    root = tiny_ckpt("ti2v-5B")
    spec = get_spec("ti2v-5B")
    prompts = ["a red fox runs through fresh snow", "静かな湖"]
    enc = load_text_encoder(root, spec, dtype="float32")
    ref = enc.encode(prompts)
    report = quantize_text_encoder(enc)
    assert report.layers == 2 * 7 and report.bytes_saved > 0
    assert enc.dtype == torch.float32  # the embedding keeps its dtype
    out = enc.encode(prompts)
    errs = [rel_l2(o, r) for o, r in zip(out, ref, strict=True)]
    print(f"fp8 umT5 vs fp32: rel L2 {max(errs):.3e}")
    assert all(0 < e < T5_BOUND for e in errs)
    comps = load_components("ti2v-5B", root, dtype="float32", t5_quantize="fp8")
    q = comps.text_encoder.model.get_submodule("encoder.block.0.layer.1.DenseReluDense.wo")
    assert isinstance(q, FP8Linear)
    assert all(torch.equal(a, b) for a, b in zip(comps.text_encoder.encode(prompts), out, strict=True))


# ----------------------------------------------------------------------------- LoRA on fp8 bases


@pytest.mark.parametrize("merge", [False, True])
def test_lora_on_fp8_base(tiny_ckpt, merge: bool) -> None:
    root = tiny_ckpt("ti2v-5B")
    fp8 = load_dit(root, dtype="float32", quantize="fp8")
    deq = dequantised_copy(fp8)
    lora = load_lora(tiny_lora_state_dict("ti2v-5B", diff_b=True, head_diff=True, extra_modules=True), name="t.safetensors")
    before = {k: bits(v).clone() for k, v in fp8.state_dict().items()}
    ptrs = {n: m.weight.data_ptr() for n, m in fp8.named_modules() if isinstance(m, FP8Linear)}
    x, t, ctx = dit_inputs(fp8)
    base = fp8(x, t, ctx)
    assert apply_loras(fp8, [(lora, 0.8)], merge=merge)
    apply_loras(deq, [(lora, 0.8)], merge=merge)
    for name, ptr in ptrs.items():  # the float8 weights are never swapped
        layer = fp8.get_submodule(name)
        assert layer.weight.data_ptr() == ptr and layer.weight.dtype == FP8_DTYPE
    with_lora = fp8(x, t, ctx)
    assert rel_l2(with_lora, base) > 1e-3  # the LoRA does something
    assert rel_l2(with_lora, deq(x, t, ctx)) < 1e-5  # = the dequantised base with the same LoRA
    assert remove_loras(fp8)
    for key, value in fp8.state_dict().items():
        assert torch.equal(bits(value), before[key]), key
    assert torch.equal(fp8(x, t, ctx), base)


# ----------------------------------------------------------------------------- pipeline


def test_pipeline_runs_with_fp8(tiny_ckpt) -> None:
    from wan.pipeline import load_pipeline

    root = tiny_ckpt("ti2v-5B")
    kwargs = {"size": (96, 64), "frame_num": 5, "sampling_steps": 3, "seed": 3}
    pipe = load_pipeline("ti2v-5B", root, device="cpu", dtype=torch.float32, quantize="fp8", t5_quantize="fp8",
                         any_size=True)  # fmt: skip
    model = next(iter(pipe.experts.experts.values()))
    assert sum(isinstance(m, FP8Linear) for m in model.modules()) == 20
    video = pipe.generate("a red fox", **kwargs)
    ref = load_pipeline("ti2v-5B", root, device="cpu", dtype=torch.float32, any_size=True).generate("a red fox", **kwargs)
    assert video.shape == ref.shape and bool(torch.isfinite(video).all())
    print(f"fp8 pipeline video vs fp32: rel L2 {rel_l2(video, ref):.3e}")
