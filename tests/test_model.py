"""Wan DiT (``wan.modules.model``) and attention dispatch (``wan.modules.attention``).

Tiny random DiTs (every parameter randomised, norms and modulation included) are loaded into
diffusers' ``WanTransformer3DModel`` through our key converter and run on identical inputs (odd
latent grids, batch 2, per-token timesteps for ti2v with the first latent frame at t = 0 as in
diffusers' ``expand_timesteps``). The official code embeds the timestep sinusoid in float64 and
diffusers in float32, so the oracle's ``timesteps_proj`` is swapped for a float64 one (written
here); the unpatched oracle is compared too, with a looser bound.

The full-size layouts (t2v/i2v-A14B, ti2v-5B) built on the meta device are checked key by key and
shape by shape against ``tests/data/official-keys_dit.txt`` (dumped from the official code).
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from diffusers import WanTransformer3DModel
from torch import Tensor, nn

from wan.modules import attention as attention_mod
from wan.modules import model as model_mod
from wan.modules.attention import AttentionBackendError, attention, select_backend
from wan.modules.conversion import DiTCheckpointError, convert_diffusers_dit_state_dict, to_diffusers_dit_state_dict
from wan.modules.layers import TimestepRuns
from wan.modules.model import DiTConfig, WanModel, is_float32_parameter

REPO = Path(__file__).resolve().parents[1]
OFFICIAL_KEYS_FILE = REPO / "tests" / "data" / "official-keys_dit.txt"
TOL = 1e-4  # vs diffusers with the float64 sinusoid (the official precision)
TOL_F32_SINUSOID = 1e-3  # vs stock diffusers (float32 sinusoid, ~3e-5 error at t ~ 1000)
TEXT_LEN = 512

def _config(kind: str, dim: int, ffn: int, heads: int, layers: int, io: tuple[int, int], **kw: int) -> DiTConfig:
    return DiTConfig(
        model_type=kind, dim=dim, ffn_dim=ffn, num_heads=heads, num_layers=layers, in_dim=io[0], out_dim=io[1], **kw
    )


# head_dim 16 everywhere; text_dim 32; text_len stays the official 512
TINY: dict[str, DiTConfig] = {
    "t2v": _config("t2v", 64, 128, 4, 2, (16, 16), text_dim=32),
    "i2v": _config("i2v", 48, 96, 3, 2, (36, 16), text_dim=32),
    "ti2v": _config("ti2v", 32, 64, 2, 2, (48, 48), text_dim=32),
}

FULL_SIZE: dict[str, DiTConfig] = {
    "t2v-A14B": _config("t2v", 5120, 13824, 40, 40, (16, 16)),
    "i2v-A14B": _config("i2v", 5120, 13824, 40, 40, (36, 16)),
    "ti2v-5B": _config("ti2v", 3072, 14336, 24, 30, (48, 48)),
}


# ---------------------------------------------------------------------------------------------------
# helpers


def randomize_(model: nn.Module, seed: int) -> nn.Module:
    """Seeded random values of a sane scale for every parameter (norm weights around 1)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=g)
            if re.search(r"norm(_q|_k|3)\.weight$", name):
                p.copy_(1.0 + 0.3 * noise)
            elif name.endswith("modulation"):
                p.copy_(0.3 * noise)
            elif p.ndim == 1:
                p.copy_(0.1 * noise)
            else:
                p.copy_(noise / p[0].numel() ** 0.5)
    return model


def tiny_model(kind: str, seed: int = 0) -> WanModel:
    return randomize_(WanModel(TINY[kind]), seed).eval()


class Float64Sinusoid(nn.Module):
    """Drop-in for diffusers' ``Timesteps`` with the official float64 ``[cos, sin]`` sinusoid."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim

    def forward(self, t: Tensor) -> Tensor:
        half = self.dim // 2
        freqs = 10000.0 ** (-torch.arange(half, dtype=torch.float64) / half)
        args = t.double()[:, None] * freqs[None, :]
        return torch.cat([args.cos(), args.sin()], dim=1).float()


def diffusers_oracle(model: WanModel, *, float64_sinusoid: bool) -> WanTransformer3DModel:
    ref = WanTransformer3DModel(**model.config.to_diffusers_config()).eval()
    ref.load_state_dict(to_diffusers_dit_state_dict(model.state_dict()), strict=True)
    if float64_sinusoid:
        ref.condition_embedder.timesteps_proj = Float64Sinusoid(model.config.freq_dim)
    return ref


def make_inputs(cfg: DiTConfig, batch: int, grid: tuple[int, int, int], seed: int) -> dict[str, Tensor | None]:
    """x, y, t, context for a latent grid (F, H, W); ti2v gets per-token t with frame 0 at t = 0."""
    g = torch.Generator().manual_seed(seed)
    f, h, w = grid
    x = torch.randn(batch, cfg.out_dim, f, h, w, generator=g)
    y = torch.randn(batch, cfg.in_dim - cfg.out_dim, f, h, w, generator=g) if cfg.model_type == "i2v" else None
    context = torch.zeros(batch, cfg.text_len, cfg.text_dim)
    for b in range(batch):  # trimmed "T5" output of a different length per sample, zero-padded
        n = 7 + 5 * b
        context[b, :n] = torch.randn(n, cfg.text_dim, generator=g)
    t_scalar = torch.tensor([999.0, 437.0, 12.0, 700.0][:batch])
    if cfg.model_type == "ti2v":
        mask = torch.ones(batch, f, h // 2, w // 2)
        mask[:, 0] = 0.0  # first latent frame is the conditioning image (diffusers expand_timesteps)
        t = (mask * t_scalar[:, None, None, None]).flatten(1)  # [B, L]
    else:
        t = t_scalar
    return {"x": x, "y": y, "t": t, "context": context}


def run_ours(model: WanModel, inputs: dict[str, Tensor | None]) -> Tensor:
    with torch.no_grad():
        return model(inputs["x"], inputs["t"], inputs["context"], inputs["y"])


def run_oracle(ref: WanTransformer3DModel, inputs: dict[str, Tensor | None]) -> Tensor:
    x = inputs["x"] if inputs["y"] is None else torch.cat([inputs["x"], inputs["y"]], dim=1)
    with torch.no_grad():
        return ref(x, inputs["t"], inputs["context"], return_dict=False)[0]


def parse_official_keys(path: Path) -> dict[str, tuple[dict[str, tuple[int, ...]], int, float]]:
    """Per model section: {key: shape} (blocks expanded), tensor count, billions of params."""
    template: dict[str, tuple[int, ...]] = {}
    headers: dict[str, str] = {}
    section = ""
    for line in path.read_text().splitlines():
        if line.startswith("### "):
            section, _, rest = line[4:].partition(": ")
            headers[section] = rest
        elif "\t" in line and section == "t2v-A14B":
            key, shape = line.split("\t")
            template[key] = tuple(int(s) for s in re.findall(r"\d+", shape))
    out = {}
    for section, header in headers.items():
        count = int(re.search(r"(\d+) tensors", header).group(1))  # type: ignore[union-attr]
        billions = float(re.search(r"([\d.]+) B params", header).group(1))  # type: ignore[union-attr]
        overrides = {
            name: tuple(int(s) for s in re.findall(r"\d+", shape))
            for name, shape in re.findall(r"(patch_embedding|head\.head) (\([\d, ]+\))", header)
        }
        dim = overrides.get("patch_embedding", template["patch_embedding.weight"])[0]
        ffn = {5120: 13824, 3072: 14336}[dim]
        value_map = {5120: dim, 13824: ffn, 30720: 6 * dim}
        shapes: dict[str, tuple[int, ...]] = {}
        num_layers = (count - 15) // 27
        for key, shape in template.items():
            if key == "patch_embedding.weight" and "patch_embedding" in overrides:
                new_shape = overrides["patch_embedding"]
            elif key == "head.head.weight" and "head.head" in overrides:
                new_shape = overrides["head.head"]
            elif key == "head.head.bias" and "head.head" in overrides:
                new_shape = overrides["head.head"][:1]
            else:
                new_shape = tuple(value_map.get(s, s) for s in shape)
            keys = [key.replace("{i}", str(i)) for i in range(num_layers)] if "{i}" in key else [key]
            shapes.update({k: new_shape for k in keys})
        out[section] = (shapes, count, billions)
    return out


@pytest.fixture
def no_backend_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv(attention_mod.ENV_VAR, raising=False)
    yield


# ---------------------------------------------------------------------------------------------------
# parity with diffusers


@pytest.mark.parametrize(
    ("kind", "grid"),
    [("t2v", (3, 6, 10)), ("t2v", (1, 2, 2)), ("i2v", (3, 6, 10)), ("ti2v", (3, 6, 10)), ("ti2v", (2, 4, 8))],
)
def test_matches_diffusers(kind: str, grid: tuple[int, int, int], no_backend_env: None) -> None:
    model = tiny_model(kind, seed=1)
    inputs = make_inputs(model.config, batch=2, grid=grid, seed=2)
    ours = run_ours(model, inputs)
    assert ours.dtype == torch.float32
    assert ours.shape == (2, model.config.out_dim, *grid)

    ref = run_oracle(diffusers_oracle(model, float64_sinusoid=True), inputs)
    diff = (ours - ref).abs().max().item()
    ref_f32 = run_oracle(diffusers_oracle(model, float64_sinusoid=False), inputs)
    diff_f32 = (ours - ref_f32).abs().max().item()
    print(f"[dit parity] {kind} grid={grid}: max|diff| {diff:.3g} (float64 sinusoid), "
          f"{diff_f32:.3g} (stock diffusers), max|out| {ref.abs().max().item():.3g}")  # fmt: skip
    assert diff <= TOL
    assert diff_f32 <= TOL_F32_SINUSOID


def test_integer_timesteps_match_float(no_backend_env: None) -> None:
    model = tiny_model("t2v")
    inputs = make_inputs(model.config, batch=2, grid=(2, 4, 4), seed=3)
    as_int = dict(inputs, t=torch.tensor([999, 437], dtype=torch.int64))
    assert torch.equal(run_ours(model, inputs), run_ours(model, as_int))


@pytest.mark.parametrize("kind", ["t2v", "i2v", "ti2v"])
def test_batch_of_two_equals_two_single_runs(kind: str, no_backend_env: None) -> None:
    model = tiny_model(kind, seed=4)
    inputs = make_inputs(model.config, batch=2, grid=(3, 6, 10), seed=5)
    both = run_ours(model, inputs)
    for b in range(2):
        single = {k: None if v is None else v[b : b + 1] for k, v in inputs.items()}
        torch.testing.assert_close(run_ours(model, single), both[b : b + 1], rtol=0, atol=1e-5)


@pytest.mark.parametrize("kind", ["t2v", "i2v", "ti2v"])
def test_cached_context_gives_the_same_output(kind: str, no_backend_env: None) -> None:
    """encode_context once, reuse for several steps: identical to embedding the text every call."""
    model = tiny_model(kind, seed=6)
    inputs = make_inputs(model.config, batch=2, grid=(3, 6, 10), seed=7)
    with torch.no_grad():
        cache = model.encode_context(inputs["context"])
        assert len(cache.kv) == model.config.num_layers
        for t_scale in (1.0, 0.5):  # two "steps" reuse the same cache
            t = inputs["t"] * t_scale
            plain = model(inputs["x"], t, inputs["context"], inputs["y"])
            cached = model(inputs["x"], t, cache, inputs["y"])
            torch.testing.assert_close(cached, plain, rtol=0, atol=1e-6)


def test_cached_context_errors(no_backend_env: None) -> None:
    model, other = tiny_model("t2v", seed=1), tiny_model("t2v", seed=2)
    inputs = make_inputs(model.config, batch=2, grid=(1, 2, 2), seed=3)
    with torch.no_grad():
        cache = model.encode_context(inputs["context"])
        with pytest.raises(ValueError, match="another model"):
            other(inputs["x"], inputs["t"], cache)
        with pytest.raises(ValueError, match="batch of 2"):
            model(inputs["x"][:1], inputs["t"][:1], cache)
        with pytest.raises(ValueError, match="text_len"):
            model.encode_context(inputs["context"][:, :10])


def test_timestep_broadcast_forms(no_backend_env: None) -> None:
    """t as [B], [1], a scalar and per-token [B, L] with constant values all agree."""
    model = tiny_model("ti2v", seed=6)
    inputs = make_inputs(model.config, batch=2, grid=(2, 4, 4), seed=7)
    per_sample = run_ours(model, dict(inputs, t=torch.tensor([500.0, 500.0])))
    for t in (torch.tensor([500.0]), torch.tensor(500.0), torch.full((2, 8), 500.0), torch.full((1, 8), 500.0)):
        torch.testing.assert_close(run_ours(model, dict(inputs, t=t)), per_sample, rtol=0, atol=1e-5)


def run_gather_path(model: WanModel, inputs: dict[str, Tensor | None], monkeypatch: pytest.MonkeyPatch) -> Tensor:
    with monkeypatch.context() as m:
        m.setattr(model_mod, "MAX_TIMESTEP_RUNS", 0)
        return run_ours(model, inputs)


@pytest.mark.parametrize("grid", [(3, 6, 10), (2, 4, 8)])
@pytest.mark.parametrize("batch", [1, 2])
@pytest.mark.parametrize("grad", [False, True])
def test_per_token_timestep_runs_equal_gather_path(
    grid: tuple[int, int, int], batch: int, grad: bool, no_backend_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ti2v per-token t (frame 0 at t = 0): the run-length path is bit-identical to the gather path."""
    model = tiny_model("ti2v", seed=8)
    inputs = make_inputs(model.config, batch=batch, grid=grid, seed=9)
    seq_len = inputs["t"].shape[1]  # type: ignore[union-attr]
    frame = seq_len // grid[0]
    _, layout = model._timestep_groups(inputs["t"], batch, seq_len, torch.device("cpu"))
    assert isinstance(layout, TimestepRuns)
    assert layout.bounds == ((0, frame), (frame, seq_len))
    assert layout.index.shape == (batch, 2)

    reference = run_gather_path(model, inputs, monkeypatch)
    if grad:  # autograd on: the out-of-place (torch.cat) variant
        with torch.enable_grad():
            runs = model(inputs["x"].requires_grad_(), inputs["t"], inputs["context"])
        runs.square().mean().backward()
        assert inputs["x"].grad is not None and inputs["x"].grad.isfinite().all()  # type: ignore[union-attr]
        runs = runs.detach()
    else:
        runs = run_ours(model, inputs)
    assert torch.equal(runs, reference)


def test_per_token_timestep_runs_bf16_and_inference_mode(no_backend_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """bf16 weights (the gated add allocates a float32 output) and inference_mode: still identical."""
    model = tiny_model("ti2v", seed=10)
    for name, p in model.named_parameters():
        if not is_float32_parameter(name):
            p.data = p.data.bfloat16()
    inputs = make_inputs(model.config, batch=2, grid=(3, 6, 10), seed=11)
    reference = run_gather_path(model, inputs, monkeypatch)
    with torch.inference_mode():
        runs = model(inputs["x"], inputs["t"], inputs["context"])
    assert runs.dtype == torch.float32
    assert torch.equal(runs, reference)


def test_per_token_timestep_runs_union_and_limit(no_backend_env: None) -> None:
    """Runs split wherever any sample changes; too many runs fall back to the gather index."""
    model = tiny_model("ti2v", seed=12)
    t = torch.tensor([[0.0, 0.0, 5.0, 5.0, 5.0, 5.0], [0.0, 0.0, 0.0, 0.0, 7.0, 7.0]])
    values, layout = model._timestep_groups(t, 2, 6, torch.device("cpu"))
    assert torch.equal(values, torch.tensor([0.0, 5.0, 7.0]))
    assert isinstance(layout, TimestepRuns)
    assert layout.bounds == ((0, 2), (2, 4), (4, 6))
    assert layout.index.tolist() == [[0, 1, 1], [0, 0, 2]]
    many = torch.arange(model_mod.MAX_TIMESTEP_RUNS + 1.0).repeat_interleave(2)[None]
    _, layout = model._timestep_groups(many, 1, many.shape[1], torch.device("cpu"))
    assert isinstance(layout, Tensor) and layout.shape == many.shape


def test_uneven_per_token_runs_match_gather_path(no_backend_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """Samples with different run boundaries (union of runs), B = 2."""
    model = tiny_model("ti2v", seed=13)
    inputs = make_inputs(model.config, batch=2, grid=(3, 6, 10), seed=14)
    t = inputs["t"].clone()  # type: ignore[union-attr]
    t[1, : 2 * t.shape[1] // 3] = 0.0  # sample 1: the first two frames at t = 0
    inputs["t"] = t
    assert torch.equal(run_ours(model, inputs), run_gather_path(model, inputs, monkeypatch))


def test_non_contiguous_per_token_timesteps_fall_back(no_backend_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """Scattered per-token t (a random permutation) takes the gather path and matches diffusers."""
    model = tiny_model("ti2v", seed=15)
    inputs = make_inputs(model.config, batch=2, grid=(2, 4, 8), seed=16)
    t = inputs["t"]
    g = torch.Generator().manual_seed(17)
    inputs["t"] = t[:, torch.randperm(t.shape[1], generator=g)]  # type: ignore[index]
    _, layout = model._timestep_groups(inputs["t"], 2, t.shape[1], torch.device("cpu"))  # type: ignore[union-attr]
    assert isinstance(layout, Tensor)
    ours = run_ours(model, inputs)
    assert torch.equal(ours, run_gather_path(model, inputs, monkeypatch))
    ref = run_oracle(diffusers_oracle(model, float64_sinusoid=True), inputs)
    assert (ours - ref).abs().max().item() <= TOL


# ---------------------------------------------------------------------------------------------------
# layout, meta construction, converters


@pytest.mark.parametrize("task", list(FULL_SIZE))
def test_full_size_state_dict_equals_official(task: str) -> None:
    expected, count, billions = parse_official_keys(OFFICIAL_KEYS_FILE)[task]
    with torch.device("meta"):
        model = WanModel(FULL_SIZE[task])
    got = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert sorted(set(got) ^ set(expected)) == []
    assert {k: s for k, s in got.items() if expected[k] != s} == {}
    assert len(got) == count
    assert round(sum(p.numel() for p in model.parameters()) / 1e9, 4) == billions
    assert list(model.buffers()) == []


def test_meta_construction_then_assign_load_runs(no_backend_env: None) -> None:
    source = tiny_model("i2v", seed=8)
    with torch.device("meta"):
        model = WanModel(source.config)
    assert all(p.is_meta for p in model.parameters())
    model.load_state_dict(source.state_dict(), strict=True, assign=True)
    inputs = make_inputs(source.config, batch=1, grid=(2, 4, 6), seed=9)
    assert torch.equal(run_ours(model.eval(), inputs), run_ours(source, inputs))


def test_rope_table_is_cached_per_grid_and_bounded(no_backend_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """The RoPE table is built once per (grid, device) and reused; the cache is small, outside the
    state dict, and a cached table gives the same output as a fresh one."""
    source = tiny_model("t2v", seed=3)
    with torch.device("meta"):
        model = WanModel(source.config)
    keys = list(model.state_dict())
    model.load_state_dict(source.state_dict(), strict=True, assign=True)
    model.eval()
    built: list[tuple[int, int, int]] = []
    original = model_mod.rope_frequencies

    def counting(grid: tuple[int, int, int], head_dim: int, device: torch.device | str) -> Tensor:
        built.append(tuple(grid))
        return original(grid, head_dim, device)

    monkeypatch.setattr(model_mod, "rope_frequencies", counting)
    inputs = make_inputs(model.config, batch=1, grid=(2, 4, 6), seed=4)
    first = run_ours(model, inputs)
    second = run_ours(model, inputs)  # e.g. the unconditional pass of the same step
    assert built == [(2, 2, 3)] and torch.equal(first, second)
    torch.testing.assert_close(model.rope_table((2, 2, 3), torch.device("cpu")), original((2, 2, 3), 16, "cpu"), rtol=0, atol=0)
    fresh = WanModel(source.config)
    fresh.load_state_dict(source.state_dict())
    assert torch.equal(run_ours(fresh.eval(), inputs), first)
    for grid in [(1, 2, 2), (3, 2, 2), (1, 4, 4), (2, 2, 3)]:
        model.rope_table(grid, torch.device("cpu"))
    assert len(model._rope_cache) <= model_mod.ROPE_CACHE_SIZE
    assert list(model.state_dict()) == keys and list(model.buffers()) == []


def test_diffusers_key_round_trip() -> None:
    sd = tiny_model("ti2v").state_dict()
    theirs = to_diffusers_dit_state_dict(sd)
    assert set(theirs) == set(WanTransformer3DModel(**TINY["ti2v"].to_diffusers_config()).state_dict())
    back = convert_diffusers_dit_state_dict(theirs)
    assert list(back) == list(sd)
    assert all(back[k] is sd[k] for k in sd)


def test_converter_rejects_unknown_keys() -> None:
    sd = tiny_model("t2v").state_dict()
    with pytest.raises(DiTCheckpointError, match="already be converted"):
        convert_diffusers_dit_state_dict(sd)  # official keys given to the Diffusers converter
    theirs = to_diffusers_dit_state_dict(sd)
    theirs["blocks.0.attn2.add_k_proj.weight"] = torch.zeros(1)
    with pytest.raises(DiTCheckpointError, match=r"1 keys .*add_k_proj.*Wan 2\.1 image"):
        convert_diffusers_dit_state_dict(theirs)
    with pytest.raises(DiTCheckpointError, match="bogus"):
        to_diffusers_dit_state_dict({"bogus.weight": torch.zeros(1)})


def test_float32_parameter_names() -> None:
    names = set(tiny_model("t2v").state_dict())
    fp32 = {n for n in names if is_float32_parameter(n)}
    assert "blocks.1.modulation" in fp32 and "head.modulation" in fp32 and "time_projection.1.weight" in fp32
    assert "blocks.0.self_attn.q.weight" not in fp32 and "text_embedding.0.weight" not in fp32


def test_bfloat16_weights_run_and_return_float32(no_backend_env: None) -> None:
    model = tiny_model("ti2v", seed=10)
    inputs = make_inputs(model.config, batch=2, grid=(2, 4, 4), seed=11)
    full = run_ours(model, inputs)
    mixed = tiny_model("ti2v", seed=10)
    with torch.no_grad():
        for name, p in mixed.named_parameters():
            if not is_float32_parameter(name):
                p.data = p.data.to(torch.bfloat16)
    for half in (tiny_model("ti2v", seed=10).to(torch.bfloat16), mixed):
        out = run_ours(half, inputs)
        assert out.dtype == torch.float32
        rel = ((out - full).norm() / full.norm()).item()
        assert rel < 5e-2, rel


# ---------------------------------------------------------------------------------------------------
# config


def test_config_json_round_trip() -> None:
    official_5b = {
        "_class_name": "WanModel", "_diffusers_version": "0.33.0", "dim": 3072, "eps": 1e-06,
        "ffn_dim": 14336, "freq_dim": 256, "in_dim": 48, "model_type": "ti2v", "num_heads": 24,
        "num_layers": 30, "out_dim": 48, "text_len": 512,
    }  # fmt: skip
    cfg = DiTConfig.from_config_json(official_5b)
    assert cfg == FULL_SIZE["ti2v-5B"]
    assert cfg.to_config_json() == official_5b
    assert cfg.head_dim == 128
    tiny = DiTConfig.from_config_json(TINY["t2v"].to_config_json())
    assert tiny == TINY["t2v"] and tiny.to_config_json()["text_dim"] == 32
    assert DiTConfig.from_config_json(official_5b, text_dim=32).text_dim == 32
    assert DiTConfig.from_diffusers_config(FULL_SIZE["i2v-A14B"].to_diffusers_config()) == FULL_SIZE["i2v-A14B"]


def test_config_errors() -> None:
    with pytest.raises(ValueError, match="missing"):
        DiTConfig.from_config_json({"dim": 64, "model_type": "t2v"})
    with pytest.raises(ValueError, match="model_type"):
        DiTConfig(model_type="s2v", dim=64, ffn_dim=64, num_heads=4, num_layers=1, in_dim=16, out_dim=16)
    with pytest.raises(ValueError, match="divisible by num_heads"):
        DiTConfig(model_type="t2v", dim=64, ffn_dim=64, num_heads=5, num_layers=1, in_dim=16, out_dim=16)
    with pytest.raises(TypeError, match="unknown overrides"):
        DiTConfig.from_config_json(TINY["t2v"].to_config_json(), nonsense=1)
    with pytest.raises(ValueError, match="infer the Wan model type"):
        DiTConfig.from_diffusers_config(dict(TINY["t2v"].to_diffusers_config(), in_channels=20))


def test_forward_input_errors(no_backend_env: None) -> None:
    model = tiny_model("i2v")
    inputs = make_inputs(model.config, batch=1, grid=(2, 4, 4), seed=12)
    with pytest.raises(ValueError, match="36 input channels"):
        model(inputs["x"], inputs["t"], inputs["context"])  # y forgotten
    with pytest.raises(ValueError, match="text_len=512"):
        model(inputs["x"], inputs["t"], inputs["context"][:, :100], inputs["y"])
    with pytest.raises(ValueError, match="not divisible"):
        model(inputs["x"][..., :3], inputs["t"], inputs["context"], inputs["y"][..., :3])
    with pytest.raises(ValueError, match="per-token timesteps"):
        model(inputs["x"], torch.zeros(1, 5), inputs["context"], inputs["y"])


# ---------------------------------------------------------------------------------------------------
# attention


def reference_attention(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    scores = torch.einsum("bqhd,bkhd->bhqk", q.double(), k.double()) / q.shape[-1] ** 0.5
    return torch.einsum("bhqk,bkhd->bqhd", scores.softmax(-1), v.double()).to(q.dtype)


def test_attention_sdpa_on_cpu(no_backend_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    g = torch.Generator().manual_seed(13)
    q, k, v = (torch.randn(2, n, 3, 16, generator=g) for n in (7, 11, 11))
    assert select_backend(q) == "sdpa"
    out = attention(q, k, v)
    assert out.shape == (2, 7, 3, 16)
    torch.testing.assert_close(out, reference_attention(q, k, v), rtol=1e-5, atol=1e-5)
    for value in ("sdpa", "torch", "AUTO", ""):
        monkeypatch.setenv(attention_mod.ENV_VAR, value)
        assert select_backend(q) == "sdpa"


@pytest.mark.parametrize("forced", ["flash_attn_3", "fa2"])
def test_forced_flash_backend_on_cpu_raises(forced: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(attention_mod.ENV_VAR, forced)
    q = torch.randn(1, 4, 2, 16, dtype=torch.bfloat16)
    with pytest.raises(AttentionBackendError, match=r"cannot be used: it needs CUDA tensors"):
        attention(q, q, q)


def test_forced_backend_not_installed_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(attention_mod.ENV_VAR, "flash_attn_2")
    monkeypatch.setattr(attention_mod, "_flash_unusable_reason", lambda name, q: None)
    monkeypatch.setattr(attention_mod, "_import_flash", lambda name: None)
    with pytest.raises(AttentionBackendError, match="'flash_attn' is not installed"):
        select_backend(torch.randn(1, 4, 2, 16))


def test_unknown_backend_and_bad_shapes(monkeypatch: pytest.MonkeyPatch) -> None:
    q = torch.randn(1, 4, 2, 16)
    monkeypatch.setenv(attention_mod.ENV_VAR, "xformers")
    with pytest.raises(ValueError, match="not a known attention backend.*sdpa"):
        attention(q, q, q)
    monkeypatch.delenv(attention_mod.ENV_VAR)
    with pytest.raises(ValueError, match=r"\[B, L, heads, head_dim\]"):
        attention(q[0], q[0], q[0])
    with pytest.raises(ValueError, match="must agree"):
        attention(q, q[..., :8], q[..., :8])


def test_flash_import_is_cached_and_broken_installs_warn(monkeypatch: pytest.MonkeyPatch) -> None:
    """Not installed -> None silently; installed but failing (undefined symbol, missing extension)
    -> one warning naming the module and the error; either way the import is tried only once."""
    calls: list[str] = []

    def fake_import(module: str) -> Any:
        calls.append(module)
        if module == "flash_attn_interface":
            raise ModuleNotFoundError(f"No module named {module!r}", name=module)
        raise ImportError("flash_attn_2_cuda.so: undefined symbol: _ZN3c104cuda9SetDevice")

    monkeypatch.setattr(attention_mod.importlib, "import_module", fake_import)
    attention_mod._import_flash.cache_clear()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # a missing library must not warn
            assert attention_mod._import_flash("flash_attn_3") is None
            assert attention_mod._import_flash("flash_attn_3") is None
        with pytest.warns(RuntimeWarning, match=r"'flash_attn' is installed but cannot be imported.*undefined symbol"):
            assert attention_mod._import_flash("flash_attn_2") is None
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # cached: no second import, no second warning
            assert attention_mod._import_flash("flash_attn_2") is None
        assert calls == ["flash_attn_interface", "flash_attn"]

        def missing_extension(module: str) -> Any:
            raise ModuleNotFoundError("No module named 'flash_attn_2_cuda'", name="flash_attn_2_cuda")

        monkeypatch.setattr(attention_mod.importlib, "import_module", missing_extension)
        attention_mod._import_flash.cache_clear()
        with pytest.warns(RuntimeWarning, match="flash_attn_2_cuda"):
            assert attention_mod._import_flash("flash_attn_2") is None
    finally:
        attention_mod._import_flash.cache_clear()
