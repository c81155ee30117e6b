"""wan.loading and wan.testing.synthetic: tiny checkpoints in both layouts load for every task, the loaded
weights are the written ones, and every broken checkpoint raises a CheckpointError naming the file."""

from __future__ import annotations

import json
import os
import shutil
import struct
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from wan import loading
from wan.testing import synthetic
from wan.configs import TASKS, get_spec
from wan.errors import CheckpointError
from wan.modules.model import WanModel, is_float32_parameter
from wan.modules.vae21 import Wan21VAE
from wan.modules.vae22 import Wan22VAE

LAYOUTS = ("official", "diffusers")
ST = "diffusion_pytorch_model.safetensors"


def _expert_dir(root: Path, task: str, expert: str, layout: str) -> Path:
    spec = get_spec(task)
    sub = spec.official_subfolder(expert) if layout == "official" else spec.diffusers_subfolder(expert)
    return root / sub if sub else root


def _assert_same_weights(model: torch.nn.Module, sd: dict[str, torch.Tensor], dtype: torch.dtype | None = None) -> None:
    got = model.state_dict()
    assert set(got) == set(sd)
    for key, value in sd.items():
        want = value.to(dtype) if dtype is not None else value
        assert got[key].dtype == want.dtype, key
        assert torch.equal(got[key], want), key


# ----------------------------------------------------------------------------- writing


@pytest.mark.parametrize("task", TASKS)
def test_official_layout_files(tiny_ckpt, task: str) -> None:
    root = tiny_ckpt(task, "official")
    spec = get_spec(task)
    assert (root / spec.t5_file).is_file() and (root / spec.vae_file).is_file()
    assert {p.name for p in (root / "google" / "umt5-xxl").iterdir()} >= {"spiece.model", "tokenizer.json"}
    dirs = [_expert_dir(root, task, e, "official") for e in spec.experts]
    # the first DiT is sharded (index + 2 shards), the second (A14B low-noise) a single file
    index = json.loads((dirs[0] / (ST + ".index.json")).read_text())
    assert sorted(set(index["weight_map"].values())) == [
        "diffusion_pytorch_model-00001-of-00002.safetensors", "diffusion_pytorch_model-00002-of-00002.safetensors"
    ]
    if spec.moe:
        assert (dirs[1] / ST).is_file() and not (dirs[1] / (ST + ".index.json")).exists()
    config = json.loads((dirs[0] / "config.json").read_text())
    assert config["_class_name"] == "WanModel" and config["model_type"] == spec.dit.model_type
    assert (config["in_dim"], config["out_dim"], config["text_dim"]) == (spec.dit.in_dim, spec.dit.out_dim, 32)
    assert config["dim"] // config["num_heads"] == 16 and config["num_layers"] == 2
    # official key names
    sd = {}
    for shard in set(index["weight_map"].values()):
        sd.update(load_file(dirs[0] / shard))
    assert "blocks.1.self_attn.norm_q.weight" in sd and "head.modulation" in sd and "time_projection.1.weight" in sd
    t5 = torch.load(root / spec.t5_file, weights_only=True)
    assert "token_embedding.weight" in t5 and "blocks.1.ffn.gate.0.weight" in t5
    assert t5["token_embedding.weight"].dtype == torch.bfloat16
    vae = torch.load(root / spec.vae_file, weights_only=True)
    assert "decoder.head.2.weight" in vae and vae["conv2.weight"].shape[0] == spec.z_dim


def test_tiny_weights_non_trivial_and_deterministic() -> None:
    a = synthetic.tiny_weights("t2v-A14B", seed=0)
    b = synthetic.tiny_weights("t2v-A14B", seed=0)
    c = synthetic.tiny_weights("t2v-A14B", seed=1)
    hi, lo = a.experts["high_noise"], a.experts["low_noise"]
    assert all(torch.equal(hi[k], b.experts["high_noise"][k]) for k in hi)
    assert not torch.equal(hi["head.head.weight"], c.experts["high_noise"]["head.head.weight"])
    assert not torch.equal(hi["head.head.weight"], lo["head.head.weight"])  # experts differ
    for key in ("blocks.0.modulation", "head.modulation", "head.head.weight", "blocks.0.norm3.bias"):
        assert hi[key].abs().min() > 0 or hi[key].std() > 0.01, key
    for key in ("blocks.0.self_attn.norm_q.weight", "blocks.0.norm3.weight"):
        assert not torch.allclose(hi[key], torch.ones_like(hi[key])) and (hi[key] - 1).abs().max() < 1, key
    gammas = [v for k, v in a.vae.items() if k.endswith("gamma")]
    assert gammas and all(not torch.allclose(g, torch.ones_like(g)) for g in gammas)
    assert all(torch.isfinite(v).all() for v in hi.values())


def test_write_is_deterministic_and_fast(tmp_path: Path, tiny_ckpt) -> None:
    tiny_ckpt("ti2v-5B")  # warm up imports and the tokenizer trainer
    for task in TASKS:
        start = time.perf_counter()
        synthetic.write_tiny_checkpoint(task, tmp_path / task, seed=0)
        assert time.perf_counter() - start < 2.0, task
    root = tiny_ckpt("t2v-A14B")
    for rel in ("low_noise_model/" + ST, "high_noise_model/" + ST + ".index.json", "google/umt5-xxl/spiece.model"):
        assert (root / rel).read_bytes() == (tmp_path / "t2v-A14B" / rel).read_bytes(), rel


def test_write_rejects_bad_layout(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="layout"):
        synthetic.write_tiny_checkpoint("t2v-A14B", tmp_path, layout="comfy")
    with pytest.raises(ValueError, match="t2v-A14B, i2v-A14B, ti2v-5B"):
        synthetic.write_tiny_checkpoint("t2v-14B", tmp_path)


# ----------------------------------------------------------------------------- loading


def test_synthetic_resnet_names_are_the_loaders_inverse() -> None:
    from wan.modules.conversion import DIFFUSERS_VAE_RESNET_TO_OFFICIAL

    inverse = synthetic._resnet_to_diffusers()
    assert {official: theirs for theirs, official in inverse.items()} == DIFFUSERS_VAE_RESNET_TO_OFFICIAL
    assert inverse["residual.0.gamma"] == "norm1.gamma" and inverse["shortcut.bias"] == "conv_shortcut.bias"


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("task", TASKS)
def test_load_components(tiny_ckpt, task: str, layout: str) -> None:
    root = tiny_ckpt(task, layout)
    assert loading.detect_layout(root) == layout
    comps = loading.load_components(task, root, dtype=torch.float32)
    spec = get_spec(task)
    weights = synthetic.tiny_weights(task, seed=0)
    assert comps.spec == spec and comps.layout == layout and comps.ckpt_dir == root
    assert tuple(comps.experts) == spec.experts
    for name, model in comps.experts.items():
        assert isinstance(model, WanModel) and not model.training
        assert not any(p.requires_grad for p in model.parameters())
        assert model.config == synthetic.tiny_dit_config(task)
        _assert_same_weights(model, weights.experts[name])
    vae_cls = Wan21VAE if spec.vae == "wan2.1" else Wan22VAE
    assert isinstance(comps.vae, vae_cls) and comps.vae.config == weights.vae_config
    _assert_same_weights(comps.vae, weights.vae)
    # text encoder: same weights in both layouts (official keys -> HF keys)
    te = comps.text_encoder
    assert te.dim == 32 and te.dtype == torch.float32
    emb = te.model.shared.weight
    assert torch.equal(emb, weights.t5["token_embedding.weight"].float())
    out = te.encode(["a red fox runs through the snow"])
    assert out[0].shape[1] == 32 and torch.isfinite(out[0]).all()


@pytest.mark.parametrize("task", TASKS)
def test_loaded_models_run(tiny_ckpt, task: str) -> None:
    comps = loading.load_components(task, tiny_ckpt(task), dtype=torch.float32)
    spec = comps.spec
    model = comps.experts[spec.experts[0]]
    z = spec.z_dim
    x = torch.randn(1, z, 2, 4, 4)
    y = torch.randn(1, spec.dit.in_dim - z, 2, 4, 4) if spec.dit.in_dim > z else None
    context = torch.randn(1, 512, 32)
    out = model(x, torch.tensor([900.0]), context, y=y)
    assert out.shape == (1, spec.dit.out_dim, 2, 4, 4) and torch.isfinite(out).all()
    size = 16 * (spec.vae_stride[1] // 8)
    video = torch.rand(1, 3, 5, size, size) * 2 - 1
    latents = comps.vae.encode(video)
    assert latents.shape == (1, z, 2, size // spec.vae_stride[1], size // spec.vae_stride[2])
    assert comps.vae.decode(latents).shape == video.shape


@pytest.mark.parametrize("layout", LAYOUTS)
def test_load_dit_bfloat16(tiny_ckpt, layout: str) -> None:
    folder = _expert_dir(tiny_ckpt("i2v-A14B", layout), "i2v-A14B", "high_noise", layout)
    model = loading.load_dit(folder, dtype=torch.bfloat16)
    weights = synthetic.tiny_weights("i2v-A14B").experts["high_noise"]
    _assert_same_weights(model, weights, dtype=torch.bfloat16)
    for p in model.parameters():  # only the target-dtype tensor is kept, no float32 buffer behind it
        assert p.untyped_storage().nbytes() == p.numel() * 2


def test_load_components_keep_float32(tiny_ckpt) -> None:
    model = loading.load_components("ti2v-5B", tiny_ckpt("ti2v-5B"), dtype="bf16", keep_float32=True).experts["dense"]
    dtypes = {name: p.dtype for name, p in model.named_parameters()}
    assert dtypes["blocks.0.modulation"] == dtypes["time_projection.1.weight"] == torch.float32
    assert dtypes["blocks.0.self_attn.q.weight"] == torch.bfloat16
    assert all((d == torch.float32) == is_float32_parameter(n) for n, d in dtypes.items())


def test_load_dit_builds_on_meta_and_maps_the_file(tiny_ckpt_copy, monkeypatch: pytest.MonkeyPatch) -> None:
    """No random initialisation on a real device, and float32 parameters are views of the mmap."""
    root = tiny_ckpt_copy("t2v-A14B")
    init_devices: list[str] = []
    original = torch.nn.init.kaiming_uniform_

    def spy(tensor: torch.Tensor, *args: object, **kwargs: object) -> torch.Tensor:
        init_devices.append(tensor.device.type)
        return original(tensor, *args, **kwargs)

    monkeypatch.setattr(torch.nn.init, "kaiming_uniform_", spy)
    folder = root / "low_noise_model"
    model = loading.load_dit(folder, dtype=torch.float32)
    assert init_devices and set(init_devices) == {"meta"}

    # overwrite head.head.bias[0] in the file: the loaded parameter sees it (same pages, no copy)
    path = folder / ST
    with open(path, "r+b") as f:
        header_len = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(header_len))
        start = header["head.head.bias"]["data_offsets"][0]
        f.seek(8 + header_len + start)
        f.write(struct.pack("<f", 1234.5))
    assert model.head.head.bias[0].item() == 1234.5


class _ReadCounter:
    """Counts, per file, the reads of the DiT checkpoint files that ``wan.loading`` does: every
    ``open`` of a JSON file (``builtins.open`` and ``io.open``, which ``Path.read_text`` / ``Path.open``
    go through) and every ``safetensors.safe_open`` (one call parses that file's header). Only files
    inside ``folders`` are recorded."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, folders: list[Path]) -> None:
        import builtins
        import io

        import safetensors

        self.folders = [f.resolve() for f in folders]
        self.json: dict[str, int] = {}
        self.safetensors: dict[str, int] = {}
        real_open, real_safe_open = io.open, safetensors.safe_open

        def spy_open(file, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
            if isinstance(file, (str, os.PathLike)) and str(file).endswith(".json"):
                self._record(self.json, file)
            return real_open(file, *args, **kwargs)

        def spy_safe_open(file, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
            self._record(self.safetensors, file)
            return real_safe_open(file, *args, **kwargs)

        monkeypatch.setattr(builtins, "open", spy_open)
        monkeypatch.setattr(io, "open", spy_open)
        monkeypatch.setattr(safetensors, "safe_open", spy_safe_open)

    def _record(self, counts: dict[str, int], file: str | os.PathLike) -> None:
        path = Path(file).resolve()
        if any(path.parent == folder for folder in self.folders):
            rel = f"{path.parent.name}/{path.name}"
            counts[rel] = counts.get(rel, 0) + 1

    def reset(self) -> None:
        self.json.clear()
        self.safetensors.clear()


@pytest.mark.parametrize("layout", LAYOUTS)
def test_load_components_reads_each_dit_file_once(tiny_ckpt, layout: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each expert's folder is inspected once and loaded without inspecting it again.

    "Once" precisely: ``load_components`` opens each expert's ``config.json`` and shard index
    (``.index.json``, the sharded high-noise expert) exactly once, and each of its safetensors files
    with ``safe_open`` exactly twice: once for its header (key names and shapes, checked before
    anything is loaded), once more to map the tensors (the header comes with it). (Before the
    refactor: config.json 2x, index 3x, safetensors 3x.)"""
    task = "t2v-A14B"
    root = tiny_ckpt(task, layout)
    spec = get_spec(task)
    folders = {name: _expert_dir(root, task, name, layout) for name in spec.experts}
    json_files, st_files = {}, {}
    for name, folder in folders.items():
        sharded = (folder / (ST + ".index.json")).is_file()
        assert sharded == (name == "high_noise")  # the tiny writer shards the first expert only
        json_files[name] = [f"{folder.name}/config.json"] + ([f"{folder.name}/{ST}.index.json"] if sharded else [])
        st_files[name] = sorted(f"{folder.name}/{p.name}" for p in folder.glob("*.safetensors"))
        assert len(st_files[name]) == (2 if sharded else 1)
    counter = _ReadCounter(monkeypatch, list(folders.values()))

    comps = loading.load_components(task, root, dtype=torch.float32)
    assert set(comps.experts) == set(spec.experts)
    assert counter.json == {f: 1 for name in spec.experts for f in json_files[name]}
    assert counter.safetensors == {f: 2 for name in spec.experts for f in st_files[name]}

    # load_dit alone: the same, one inspection then the data
    counter.reset()
    loading.load_dit(folders["high_noise"], dtype=torch.float32)
    assert counter.json == dict.fromkeys(json_files["high_noise"], 1)
    assert counter.safetensors == dict.fromkeys(st_files["high_noise"], 2)


def test_files_changed_since_inspection_are_detected(tiny_ckpt_copy, monkeypatch: pytest.MonkeyPatch) -> None:
    """``load_components`` inspects the expert folders first and loads their tensors last (after the
    VAE and text encoder) without inspecting again; a weight file rewritten in between still raises
    a CheckpointError naming the folder and the file."""
    root = tiny_ckpt_copy("t2v-A14B")
    folder = root / "low_noise_model"
    real_load_vae = loading.load_vae

    def load_vae_then_rewrite(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        vae = real_load_vae(*args, **kwargs)
        _rewrite(folder / ST, lambda sd: sd.__setitem__("head.head.bias", torch.zeros(65)))
        return vae

    monkeypatch.setattr(loading, "load_vae", load_vae_then_rewrite)
    with pytest.raises(CheckpointError, match=r"files changed since.*head\.head\.bias: \(65,\) \(expected \(64,\)\)") as info:
        loading.load_components("t2v-A14B", root, dtype=torch.float32)
    assert f"{folder} ({ST})" in str(info.value)


def test_t5_dtype_and_devices(tiny_ckpt) -> None:
    comps = loading.load_components("ti2v-5B", tiny_ckpt("ti2v-5B"), dtype=torch.bfloat16, t5_dtype=torch.float32)
    assert comps.text_encoder.dtype == torch.float32
    assert comps.experts["dense"].patch_embedding.weight.dtype == torch.bfloat16
    assert all(p.dtype == torch.float32 for p in comps.vae.parameters())
    default = loading.load_components("ti2v-5B", tiny_ckpt("ti2v-5B"), dtype=torch.bfloat16)
    assert default.text_encoder.dtype == torch.bfloat16


def test_load_vae_directly(tiny_ckpt) -> None:
    vae = loading.load_vae(tiny_ckpt("ti2v-5B") / "Wan2.2_VAE.pth")
    assert isinstance(vae, Wan22VAE)
    vae_d = loading.load_vae(tiny_ckpt("ti2v-5B", "diffusers") / "vae", kind="wan2.2")
    _assert_same_weights(vae_d, vae.state_dict())
    with pytest.raises(CheckpointError, match=r"Wan2\.2_VAE\.pth: this is a wan2\.2 VAE.*needs a wan2\.1"):
        loading.load_vae(tiny_ckpt("ti2v-5B") / "Wan2.2_VAE.pth", kind="wan2.1")


# ----------------------------------------------------------------------------- layout detection


def test_detect_layout_errors(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="checkpoint folder not found"):
        loading.detect_layout(tmp_path / "nope")
    (tmp_path / "readme.txt").write_text("hi")
    with pytest.raises(CheckpointError, match=r"not a Wan checkpoint folder.*high_noise_model.*model_index\.json"):
        loading.detect_layout(tmp_path)


# ----------------------------------------------------------------------------- broken checkpoints


def _rewrite(path: Path, edit) -> None:
    sd = dict(load_file(path))
    edit(sd)
    save_file(sd, path)


def test_missing_weights_file(tiny_ckpt_copy) -> None:
    root = tiny_ckpt_copy("t2v-A14B")
    (root / "low_noise_model" / ST).unlink()
    with pytest.raises(CheckpointError, match=r"missing low_noise_model/diffusion_pytorch_model\.safetensors"):
        loading.load_components("t2v-A14B", root, dtype=torch.float32)
    with pytest.raises(CheckpointError, match=r"low_noise_model: expected diffusion_pytorch_model\.safetensors"):
        loading.load_dit(root / "low_noise_model", dtype=torch.float32)


def test_missing_shard(tiny_ckpt_copy) -> None:
    root = tiny_ckpt_copy("t2v-A14B")
    (root / "high_noise_model" / "diffusion_pytorch_model-00002-of-00002.safetensors").unlink()
    with pytest.raises(CheckpointError, match=r"high_noise_model/diffusion_pytorch_model-00002-of-00002\.safetensors"):
        loading.load_components("t2v-A14B", root, dtype=torch.float32)
    with pytest.raises(CheckpointError, match=r"index\.json: lists shard\(s\) missing.*00002-of-00002"):
        loading.load_dit(root / "high_noise_model", dtype=torch.float32)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_wrong_shape(tiny_ckpt_copy, layout: str) -> None:
    root = tiny_ckpt_copy("t2v-A14B", layout)
    folder = _expert_dir(root, "t2v-A14B", "low_noise", layout)
    key = "head.head.bias" if layout == "official" else "proj_out.bias"
    _rewrite(folder / ST, lambda sd: sd.__setitem__(key, torch.zeros(65)))
    with pytest.raises(CheckpointError, match=r"shape mismatch.*head\.head\.bias: \(65,\) \(expected \(64,\)\)") as info:
        loading.load_components("t2v-A14B", root, dtype=torch.float32)
    assert str(folder) in str(info.value)


def test_unexpected_and_missing_keys(tiny_ckpt_copy) -> None:
    root = tiny_ckpt_copy("ti2v-5B")
    shard = root / "diffusion_pytorch_model-00002-of-00002.safetensors"
    index_path = root / (ST + ".index.json")

    def edit(sd: dict) -> None:
        sd["blocks.0.extra.weight"] = torch.zeros(3)
        del sd["head.modulation"]

    _rewrite(shard, edit)
    with pytest.raises(CheckpointError) as info:
        loading.load_dit(root, dtype=torch.float32)
    message = str(info.value)
    assert "1 missing key(s): head.modulation" in message and "1 unexpected key(s): blocks.0.extra.weight" in message
    assert str(root) in message and index_path.exists()


def test_diffusers_unknown_key(tiny_ckpt_copy) -> None:
    root = tiny_ckpt_copy("t2v-A14B", "diffusers")
    _rewrite(root / "transformer_2" / ST, lambda sd: sd.__setitem__("blocks.0.attn2.add_k_proj.weight", torch.zeros(2)))
    with pytest.raises(CheckpointError, match=r"transformer_2: not a Diffusers WanTransformer3DModel.*add_k_proj"):
        loading.load_dit(root / "transformer_2", dtype=torch.float32)


def test_diffusers_key_conversion_bug_is_not_reported_as_a_bad_checkpoint(tiny_ckpt, monkeypatch: pytest.MonkeyPatch) -> None:
    """Only the converter's DiTCheckpointError becomes a CheckpointError naming the folder; a bug
    (any other exception) propagates unchanged instead of blaming the user's files."""
    from wan.modules import conversion as conversion_mod

    def broken(sd):  # noqa: ANN001, ANN202
        raise TypeError("a bug in the converter")

    monkeypatch.setattr(conversion_mod, "convert_diffusers_dit_state_dict", broken)
    with pytest.raises(TypeError, match="a bug in the converter"):
        loading.load_dit(tiny_ckpt("ti2v-5B", "diffusers") / "transformer", dtype=torch.float32)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_truncated_safetensors(tiny_ckpt_copy, layout: str) -> None:
    root = tiny_ckpt_copy("t2v-A14B", layout)
    path = _expert_dir(root, "t2v-A14B", "low_noise", layout) / ST
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=rf"{path.name}: cannot read the safetensors file, it is truncated or corrupt") as info:
        loading.load_components("t2v-A14B", root, dtype=torch.float32)
    assert str(path) in str(info.value)


def test_read_state_dict_file(tmp_path: Path) -> None:
    """The one reader of single checkpoint files (VAE and T5 .pth, any .safetensors)."""
    tensors = {"a.weight": torch.arange(6.0).reshape(2, 3), "b": torch.ones(2, dtype=torch.bfloat16)}
    torch.save(tensors, tmp_path / "plain.pth")
    torch.save({"state_dict": tensors}, tmp_path / "nested.pt")
    torch.save(tensors, tmp_path / "legacy.pth", _use_new_zipfile_serialization=False)  # not mmap-able
    save_file(tensors, tmp_path / "w.safetensors")
    for name in ("plain.pth", "nested.pt", "legacy.pth", "w.safetensors"):
        sd = loading.read_state_dict_file(tmp_path / name)
        assert set(sd) == set(tensors) and all(torch.equal(sd[k], v) and sd[k].dtype == v.dtype for k, v in tensors.items()), name
    with pytest.raises(CheckpointError, match=r"absent\.pth: file not found"):
        loading.read_state_dict_file(tmp_path / "absent.pth")
    torch.save([1, 2], tmp_path / "list.pth")
    with pytest.raises(CheckpointError, match=r"list\.pth: expected a flat dict"):
        loading.read_state_dict_file(tmp_path / "list.pth")
    (tmp_path / "bad.safetensors").write_bytes(b"\x00" * 16)
    with pytest.raises(CheckpointError, match=r"bad\.safetensors: cannot read the safetensors file"):
        loading.read_state_dict_file(tmp_path / "bad.safetensors")


def test_read_weight_folder(tmp_path: Path) -> None:
    """Single file, index + shards (a tensor in two shards names both), a lone file with ``any_single``."""
    single, index = "model.safetensors", "model.safetensors.index.json"
    save_file({"x": torch.zeros(2)}, tmp_path / single)
    assert set(loading.read_weight_folder(tmp_path, single, index)) == {"x"}
    sharded = tmp_path / "sharded"
    sharded.mkdir()
    save_file({"x": torch.zeros(2), "y": torch.ones(3)}, sharded / "s1.safetensors")
    save_file({"y": torch.ones(3), "z": torch.ones(1)}, sharded / "s2.safetensors")
    (sharded / index).write_text(json.dumps({"weight_map": {"x": "s1.safetensors", "y": "s1.safetensors", "z": "s2.safetensors"}}))
    with pytest.raises(CheckpointError, match=r"s2\.safetensors: tensor 'y' is also in s1\.safetensors"):
        loading.read_weight_folder(sharded, single, index)
    save_file({"z": torch.ones(1)}, sharded / "s2.safetensors")
    assert set(loading.read_weight_folder(sharded, single, index)) == {"x", "y", "z"}
    lone = tmp_path / "lone"
    lone.mkdir()
    with pytest.raises(CheckpointError, match=r"lone: expected model\.safetensors.*found neither \(no safetensors files\)"):
        loading.read_weight_folder(lone, single, index, any_single=True)
    save_file({"w": torch.zeros(1)}, lone / "other.safetensors")
    with pytest.raises(CheckpointError, match=r"found neither \(only other\.safetensors\)"):
        loading.read_weight_folder(lone, single, index)
    assert set(loading.read_weight_folder(lone, single, index, any_single=True)) == {"w"}


def test_diffusers_vae_tensor_in_two_shards(tiny_ckpt_copy) -> None:
    """The VAE folder reader now detects a tensor duplicated across shards too (it used to keep the last)."""
    root = tiny_ckpt_copy("ti2v-5B", "diffusers")
    vae_dir = root / "vae"
    sd = load_file(vae_dir / ST)
    keys = sorted(sd)
    half = len(keys) // 2
    names = ["diffusion_pytorch_model-00001-of-00002.safetensors", "diffusion_pytorch_model-00002-of-00002.safetensors"]
    save_file({k: sd[k] for k in keys[:half]}, vae_dir / names[0])
    save_file({k: sd[k] for k in keys[half - 1:]}, vae_dir / names[1])  # keys[half - 1] in both
    weight_map = {k: names[0] for k in keys[:half]} | {k: names[1] for k in keys[half:]}
    (vae_dir / (ST + ".index.json")).write_text(json.dumps({"weight_map": weight_map}))
    (vae_dir / ST).unlink()
    with pytest.raises(CheckpointError, match=rf"{names[1]}: tensor '{keys[half - 1]}' is also in {names[0]}"):
        loading.load_vae(vae_dir)


def test_corrupt_vae_pth(tiny_ckpt_copy) -> None:
    root = tiny_ckpt_copy("i2v-A14B")
    data = (root / "Wan2.1_VAE.pth").read_bytes()
    (root / "Wan2.1_VAE.pth").write_bytes(data[: len(data) // 3])
    with pytest.raises(CheckpointError, match=r"Wan2\.1_VAE\.pth: cannot read the file as a torch state dict"):
        loading.load_components("i2v-A14B", root, dtype=torch.float32)
    (root / "Wan2.1_VAE.pth").write_bytes(b"not a zip file at all")
    with pytest.raises(CheckpointError, match=r"Wan2\.1_VAE\.pth"):
        loading.load_vae(root / "Wan2.1_VAE.pth")


def test_corrupt_t5_pth(tiny_ckpt_copy) -> None:
    root = tiny_ckpt_copy("ti2v-5B")
    (root / "models_t5_umt5-xxl-enc-bf16.pth").write_bytes(b"\x00" * 100)
    with pytest.raises(CheckpointError, match=r"models_t5_umt5-xxl-enc-bf16\.pth: cannot read"):
        loading.load_components("ti2v-5B", root, dtype=torch.float32)


def test_wrong_vae_for_task(tiny_ckpt_copy, tiny_ckpt) -> None:
    root = tiny_ckpt_copy("t2v-A14B")
    shutil.copy(tiny_ckpt("ti2v-5B") / "Wan2.2_VAE.pth", root / "Wan2.1_VAE.pth")
    with pytest.raises(CheckpointError, match=r"Wan2\.1_VAE\.pth: this is a wan2\.2 VAE state dict, the task needs a wan2\.1"):
        loading.load_components("t2v-A14B", root, dtype=torch.float32)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_missing_config_json(tiny_ckpt_copy, layout: str) -> None:
    root = tiny_ckpt_copy("i2v-A14B", layout)
    config = _expert_dir(root, "i2v-A14B", "high_noise", layout) / "config.json"
    config.unlink()
    with pytest.raises(CheckpointError, match=r"config\.json"):
        loading.load_components("i2v-A14B", root, dtype=torch.float32)
    with pytest.raises(CheckpointError, match=rf"{config}: file not found"):
        loading.load_dit(config.parent, dtype=torch.float32)


def test_invalid_config_json(tiny_ckpt_copy) -> None:
    root = tiny_ckpt_copy("ti2v-5B")
    (root / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match=r"config\.json: not a valid JSON file"):
        loading.load_dit(root, dtype=torch.float32)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_missing_tokenizer(tiny_ckpt_copy, layout: str) -> None:
    root = tiny_ckpt_copy("t2v-A14B", layout)
    tokenizer = root / ("google/umt5-xxl" if layout == "official" else "tokenizer")
    shutil.rmtree(tokenizer)
    name = "google/umt5-xxl/" if layout == "official" else "tokenizer/"
    with pytest.raises(CheckpointError, match=rf"missing {name}"):
        loading.load_components("t2v-A14B", root, dtype=torch.float32)
    spec = get_spec("t2v-A14B")
    with pytest.raises(CheckpointError, match=rf"{tokenizer}: tokenizer folder missing or empty"):
        loading.load_text_encoder(root, spec, dtype=torch.float32)


def test_wrong_task(tiny_ckpt) -> None:
    with pytest.raises(CheckpointError, match=r"does not belong to task i2v-A14B.*in_dim=16 \(expected 36\)"):
        loading.load_components("i2v-A14B", tiny_ckpt("t2v-A14B"), dtype=torch.float32)
    with pytest.raises(CheckpointError, match=r"incomplete official-layout ti2v-5B checkpoint.*holds a complete t2v-A14B"):
        loading.find_checkpoint("ti2v-5B", tiny_ckpt("t2v-A14B"))
    with pytest.raises(CheckpointError, match=r"high_noise_model/config\.json: this DiT does not belong to task i2v-A14B"):
        loading.find_checkpoint("i2v-A14B", tiny_ckpt("t2v-A14B"))


def test_inconsistent_t5_file(tiny_ckpt_copy) -> None:
    root = tiny_ckpt_copy("ti2v-5B")
    t5 = torch.load(root / "models_t5_umt5-xxl-enc-bf16.pth", weights_only=True)
    t5["token_embedding.weight"] = torch.nn.functional.pad(t5["token_embedding.weight"], (0, 16))
    torch.save(t5, root / "models_t5_umt5-xxl-enc-bf16.pth")
    with pytest.raises(CheckpointError, match=r"models_t5_umt5-xxl-enc-bf16\.pth.*wrong shapes"):
        loading.load_components("ti2v-5B", root, dtype=torch.float32)


def test_text_dim_mismatch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(synthetic, "TINY_T5", synthetic.TinyT5Dims(d_model=48))
    root = synthetic.write_tiny_checkpoint("ti2v-5B", tmp_path / "ckpt")
    with pytest.raises(CheckpointError, match=r"text encoder outputs 48 channels but the DiT expects text_dim=32"):
        loading.load_components("ti2v-5B", root, dtype=torch.float32)


# ----------------------------------------------------------------------------- find_checkpoint


@pytest.mark.parametrize("layout", LAYOUTS)
def test_find_checkpoint_in_ckpt_dir(tiny_ckpt, isolated_env: Path, tmp_path: Path, layout: str) -> None:
    root = tiny_ckpt("i2v-A14B", layout)
    assert loading.find_checkpoint("i2v-A14B", root) == root
    parent = tmp_path / "ckpts"
    parent.mkdir()
    name = "Wan2.2-I2V-A14B" + ("-Diffusers" if layout == "diffusers" else "")
    (parent / name).symlink_to(root, target_is_directory=True)
    assert loading.find_checkpoint("i2v-A14B", parent) == parent / name
    assert loading.find_checkpoint("i2v", str(parent)) == parent / name


def test_find_checkpoint_env(tiny_ckpt, isolated_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert loading.find_checkpoint("ti2v-5B") is None
    monkeypatch.setenv("WAN_CKPT_DIR", str(tiny_ckpt("ti2v-5B")))
    assert loading.find_checkpoint("ti2v-5B") == tiny_ckpt("ti2v-5B")
    parent = tmp_path / "env"
    (parent / "ti2v-5B").mkdir(parents=True)
    shutil.copytree(tiny_ckpt("ti2v-5B"), parent / "ti2v-5B", dirs_exist_ok=True)
    monkeypatch.setenv("WAN_CKPT_DIR", str(parent))
    assert loading.find_checkpoint("ti2v-5B") == parent / "ti2v-5B"
    # an explicit ckpt_dir wins over the environment
    assert loading.find_checkpoint("ti2v-5B", tiny_ckpt("ti2v-5B")) == tiny_ckpt("ti2v-5B")


def _fake_hf_snapshot(hub: Path, repo: str, source: Path, revision: str = "0123abcd") -> Path:
    """Hub cache layout: models--org--name/{blobs/<hash>, snapshots/<rev>/<file> -> blob, refs/main}."""
    repo_dir = hub / ("models--" + repo.replace("/", "--"))
    snapshot = repo_dir / "snapshots" / revision
    blobs = repo_dir / "blobs"
    blobs.mkdir(parents=True, exist_ok=True)
    for i, file in enumerate(sorted(p for p in source.rglob("*") if p.is_file())):
        blob = blobs / f"{revision}{i:04d}"
        shutil.copyfile(file, blob)
        link = snapshot / file.relative_to(source)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    (repo_dir / "refs").mkdir(exist_ok=True)
    (repo_dir / "refs" / "main").write_text(revision)
    return snapshot


@pytest.mark.parametrize("layout", LAYOUTS)
def test_find_checkpoint_hf_cache(tiny_ckpt, isolated_env: Path, layout: str) -> None:
    spec = get_spec("t2v-A14B")
    repo = spec.hf_repo if layout == "official" else spec.hf_diffusers_repo
    snapshot = _fake_hf_snapshot(isolated_env, repo, tiny_ckpt("t2v-A14B", layout))
    assert loading.find_checkpoint("t2v-A14B") == snapshot
    assert loading.find_checkpoint("i2v-A14B") is None
    comps = loading.load_components("t2v-A14B", snapshot, dtype=torch.float32)
    assert comps.layout == layout


def test_find_checkpoint_incomplete_hf_snapshot(tiny_ckpt, isolated_env: Path) -> None:
    snapshot = _fake_hf_snapshot(isolated_env, "Wan-AI/Wan2.2-TI2V-5B", tiny_ckpt("ti2v-5B"))
    (snapshot / "Wan2.2_VAE.pth").unlink()
    (snapshot / "diffusion_pytorch_model-00001-of-00002.safetensors").unlink()
    with pytest.raises(CheckpointError) as info:
        loading.find_checkpoint("ti2v-5B")
    message = str(info.value)
    assert str(snapshot) in message and "Wan2.2_VAE.pth" in message
    assert "diffusion_pytorch_model-00001-of-00002.safetensors" in message
    assert "hf download Wan-AI/Wan2.2-TI2V-5B" in message
    # a complete older snapshot of the same repo is preferred over the incomplete one
    older = _fake_hf_snapshot(isolated_env, "Wan-AI/Wan2.2-TI2V-5B", tiny_ckpt("ti2v-5B"), revision="older")
    (isolated_env / "models--Wan-AI--Wan2.2-TI2V-5B" / "refs" / "main").write_text("0123abcd")
    assert loading.find_checkpoint("ti2v-5B") == older


def test_find_checkpoint_explicit_incomplete_beats_cache(tiny_ckpt, tiny_ckpt_copy, isolated_env: Path) -> None:
    _fake_hf_snapshot(isolated_env, "Wan-AI/Wan2.2-TI2V-5B", tiny_ckpt("ti2v-5B"))
    partial = tiny_ckpt_copy("ti2v-5B")
    (partial / "models_t5_umt5-xxl-enc-bf16.pth").unlink()
    with pytest.raises(CheckpointError, match=r"missing models_t5_umt5-xxl-enc-bf16\.pth"):
        loading.find_checkpoint("ti2v-5B", partial)
    # a ckpt_dir that does not exist is skipped: the Hugging Face cache is searched next
    assert loading.find_checkpoint("ti2v-5B", partial.parent / "does-not-exist") is not None


def test_find_checkpoint_ignores_unrelated_folders(isolated_env: Path, tmp_path: Path) -> None:
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "cat.jpg").write_bytes(b"jpg")
    assert loading.find_checkpoint("t2v-A14B", tmp_path / "photos") is None
    assert loading.find_checkpoint("t2v-A14B", tmp_path / "missing") is None


def test_required_and_missing_files(tiny_ckpt) -> None:
    assert loading.required_files("t2v-A14B") == (
        "high_noise_model/config.json", "low_noise_model/config.json",
        "high_noise_model/" + ST, "low_noise_model/" + ST,
        "models_t5_umt5-xxl-enc-bf16.pth", "Wan2.1_VAE.pth", "google/umt5-xxl/",
    )  # fmt: skip
    assert "transformer_2/" + ST not in loading.required_files("ti2v-5B", "diffusers")
    for task in TASKS:
        for layout in LAYOUTS:
            assert loading.missing_files(task, tiny_ckpt(task, layout), layout) == []  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- download


def test_download_offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "snapshot_download", lambda **kw: pytest.fail("must not try the network"))
    with pytest.raises(CheckpointError) as info:
        loading.download_checkpoint("i2v-A14B", tmp_path / "dl")
    message = str(info.value)
    assert "Wan-AI/Wan2.2-I2V-A14B" in message and "HF_HUB_OFFLINE" in message
    assert f"hf download Wan-AI/Wan2.2-I2V-A14B --local-dir {tmp_path / 'dl'}" in message
    assert "high_noise_model/config.json" in message and "Wan2.1_VAE.pth" in message


def test_download_network_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    import huggingface_hub

    def fail(**kwargs: object) -> str:
        raise ConnectionError("Name or service not known")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fail)
    with pytest.raises(CheckpointError, match=r"downloading Wan-AI/Wan2\.2-TI2V-5B-Diffusers failed \(ConnectionError.*hf download Wan-AI/Wan2\.2-TI2V-5B-Diffusers"):
        loading.download_checkpoint("ti2v-5B", layout="diffusers")


def test_download_success_and_incomplete(monkeypatch: pytest.MonkeyPatch, tiny_ckpt, tiny_ckpt_copy) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    import huggingface_hub

    calls: list[dict] = []
    target = tiny_ckpt("t2v-A14B")

    def fake(**kwargs: object) -> str:
        calls.append(kwargs)
        return str(target)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake)
    assert loading.download_checkpoint("t2v-A14B") == target
    assert calls[0]["repo_id"] == "Wan-AI/Wan2.2-T2V-A14B" and calls[0]["local_dir"] is None
    assert "Wan2.1_VAE.pth" in calls[0]["allow_patterns"]
    partial = tiny_ckpt_copy("t2v-A14B")
    (partial / "Wan2.1_VAE.pth").unlink()
    target = partial
    with pytest.raises(CheckpointError, match=r"download of Wan-AI/Wan2\.2-T2V-A14B is incomplete, missing Wan2\.1_VAE\.pth"):
        loading.download_checkpoint("t2v-A14B")


# ----------------------------------------------------------------------------- Diffusers fidelity


@pytest.mark.parametrize("task", TASKS)
def test_diffusers_pipeline_loads_tiny_checkpoint(tiny_ckpt, task: str) -> None:
    """The Diffusers-layout tiny checkpoint is a valid Diffusers repo: WanPipeline /
    WanImageToVideoPipeline.from_pretrained load it with every tensor equal to the written weights."""
    import diffusers

    from wan.modules.conversion import to_diffusers_dit_state_dict
    from wan.modules.t5 import convert_official_t5_state_dict
    from wan.modules.vae21 import convert_diffusers_vae21_state_dict
    from wan.modules.vae22 import convert_diffusers_vae22_state_dict

    spec = get_spec(task)
    cls = diffusers.WanImageToVideoPipeline if spec.image_input == "required" else diffusers.WanPipeline
    pipe = cls.from_pretrained(str(tiny_ckpt(task, "diffusers")), dtype=torch.float32)
    assert pipe.config.boundary_ratio == spec.boundary
    assert pipe.config.expand_timesteps == (not spec.moe)
    weights = synthetic.tiny_weights(task)
    models = {"high_noise": pipe.transformer, "low_noise": pipe.transformer_2, "dense": pipe.transformer}
    for name in spec.experts:
        want = to_diffusers_dit_state_dict(weights.experts[name])
        got = models[name].state_dict()
        assert set(got) == set(want) and all(torch.equal(got[k], want[k]) for k in want), name
    if not spec.moe:
        assert pipe.transformer_2 is None
    convert = convert_diffusers_vae21_state_dict if spec.vae == "wan2.1" else convert_diffusers_vae22_state_dict
    vae = convert(pipe.vae.state_dict())
    assert set(vae) == set(weights.vae) and all(torch.equal(vae[k], weights.vae[k]) for k in vae)
    te = pipe.text_encoder.state_dict()
    want_te = convert_official_t5_state_dict(weights.t5)
    assert set(te) <= set(want_te) and "shared.weight" in te
    assert all(torch.equal(te[k], want_te[k].float()) for k in te)
    # and it runs: two steps to a decoded video
    size = 32
    kwargs = {"image": __import__("PIL.Image").Image.new("RGB", (size, size))} if spec.image_input == "required" else {}
    out = pipe(prompt="a red fox", height=size, width=size, num_frames=5, num_inference_steps=2, output_type="pt",
               **kwargs).frames  # fmt: skip
    assert out.shape[1] == 5 and torch.isfinite(out).all()
