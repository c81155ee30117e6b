"""wan.modules.t5 (umT5 encoder) and wan.testing.tokenizer against an independently built
transformers UMT5EncoderModel, on a tiny random checkpoint in the official key layout."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import AutoTokenizer, UMT5Config, UMT5EncoderModel

from wan.loading import load_text_encoder_hf, load_text_encoder_official, read_text_encoder_file
from wan.modules.t5 import (
    T5CheckpointError,
    TextEncoder,
    clean_prompt,
    convert_official_t5_state_dict,
    pad_context,
    umt5_config_from_state_dict,
)
from wan.testing.tokenizer import TINY_TOKENIZER_VOCAB_SIZE, TOKENIZER_FILES, write_tiny_umt5_tokenizer

DIM, LAYERS, HEADS, FFN, BUCKETS = 32, 2, 4, 64, 32
TEXT_LEN = 512
T5_FILE = "models_t5_umt5-xxl-enc-bf16.pth"
PROMPTS = [
    "A cinematic shot of a red fox running through a snowy forest at sunrise.",
    "一只红色的狐狸在日出时穿过积雪的森林，电影感镜头。",
    "붉은 여우가 눈 덮인 숲을 달려간다.",
    "",
    "Two cats  in boxing gloves &amp; a dragon,\n slow motion " * 3,
]


def _official_tiny_state_dict(vocab: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random values for every tensor of the official umT5 encoder layout (official-keys_t5.txt)."""
    g = torch.Generator().manual_seed(seed)

    def rand(*shape: int, scale: float = 0.3) -> torch.Tensor:
        return torch.randn(*shape, generator=g) * scale

    sd = {"token_embedding.weight": rand(vocab, DIM, scale=1.0), "norm.weight": 1.0 + rand(DIM, scale=0.1)}
    for i in range(LAYERS):
        p = f"blocks.{i}."
        sd[p + "norm1.weight"] = 1.0 + rand(DIM, scale=0.1)
        for name in "qkvo":
            sd[p + f"attn.{name}.weight"] = rand(DIM, DIM)
        sd[p + "norm2.weight"] = 1.0 + rand(DIM, scale=0.1)
        sd[p + "ffn.gate.0.weight"] = rand(FFN, DIM)
        sd[p + "ffn.fc1.weight"] = rand(FFN, DIM)
        sd[p + "ffn.fc2.weight"] = rand(DIM, FFN)
        sd[p + "pos_embedding.embedding.weight"] = rand(BUCKETS, HEADS, scale=1.0)
    return sd


def _reference_model(official: dict[str, torch.Tensor], vocab: int) -> UMT5EncoderModel:
    """transformers UMT5EncoderModel with a hand-written config and a hand-written key map (eager attention)."""
    config = UMT5Config(
        vocab_size=vocab,
        d_model=DIM,
        d_kv=DIM // HEADS,
        d_ff=FFN,
        num_layers=LAYERS,
        num_heads=HEADS,
        relative_attention_num_buckets=BUCKETS,
        relative_attention_max_distance=128,
        feed_forward_proj="gated-gelu",
        layer_norm_epsilon=1e-6,
        dropout_rate=0.0,
        is_encoder_decoder=False,
        use_cache=False,
    )
    config._attn_implementation = "eager"
    model = UMT5EncoderModel(config)
    mapped = {
        "shared.weight": official["token_embedding.weight"],
        "encoder.embed_tokens.weight": official["token_embedding.weight"],
        "encoder.final_layer_norm.weight": official["norm.weight"],
    }
    for i in range(LAYERS):
        src, dst = f"blocks.{i}.", f"encoder.block.{i}."
        mapped[dst + "layer.0.layer_norm.weight"] = official[src + "norm1.weight"]
        for name in "qkvo":
            mapped[dst + f"layer.0.SelfAttention.{name}.weight"] = official[src + f"attn.{name}.weight"]
        mapped[dst + "layer.0.SelfAttention.relative_attention_bias.weight"] = official[
            src + "pos_embedding.embedding.weight"
        ]
        mapped[dst + "layer.1.layer_norm.weight"] = official[src + "norm2.weight"]
        mapped[dst + "layer.1.DenseReluDense.wi_0.weight"] = official[src + "ffn.gate.0.weight"]
        mapped[dst + "layer.1.DenseReluDense.wi_1.weight"] = official[src + "ffn.fc1.weight"]
        mapped[dst + "layer.1.DenseReluDense.wo.weight"] = official[src + "ffn.fc2.weight"]
    model.load_state_dict(mapped, strict=True)
    return model.eval()


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_umt5_tokenizer(tmp_path_factory.mktemp("ckpt") / "google" / "umt5-xxl")


@pytest.fixture(scope="module")
def tokenizer(tokenizer_dir: Path):
    return AutoTokenizer.from_pretrained(str(tokenizer_dir))


@pytest.fixture(scope="module")
def official_sd(tokenizer) -> dict[str, torch.Tensor]:
    return _official_tiny_state_dict(len(tokenizer))


@pytest.fixture(scope="module")
def official_file(tmp_path_factory: pytest.TempPathFactory, official_sd) -> Path:
    path = tmp_path_factory.mktemp("t5") / T5_FILE
    torch.save(official_sd, path)
    return path


@pytest.fixture(scope="module")
def reference(official_sd, tokenizer) -> UMT5EncoderModel:
    return _reference_model(official_sd, len(tokenizer))


@pytest.fixture(scope="module")
def encoder(official_file: Path, tokenizer_dir: Path) -> TextEncoder:
    return load_text_encoder_official(official_file, tokenizer_dir, dtype=torch.float32, device="cpu")


def _reference_encode(reference: UMT5EncoderModel, tokenizer, prompts: list[str]):
    batch = tokenizer(
        [clean_prompt(p) for p in prompts],
        padding="max_length",
        truncation=True,
        max_length=TEXT_LEN,
        add_special_tokens=True,
        return_tensors="pt",
    )
    with torch.no_grad():
        out = reference(input_ids=batch.input_ids, attention_mask=batch.attention_mask).last_hidden_state
    return out, batch.input_ids, batch.attention_mask


# ----------------------------------------------------------------------------- tiny tokenizer


def test_tiny_tokenizer_layout_and_specials(tokenizer_dir: Path, tokenizer) -> None:
    assert sorted(p.name for p in tokenizer_dir.iterdir()) == sorted(TOKENIZER_FILES)
    assert len(tokenizer) == TINY_TOKENIZER_VOCAB_SIZE
    assert (tokenizer.pad_token_id, tokenizer.eos_token_id, tokenizer.unk_token_id) == (0, 1, 2)
    assert json.loads((tokenizer_dir / "tokenizer_config.json").read_text())["tokenizer_class"] == "T5Tokenizer"
    ids = tokenizer("A cat.").input_ids
    assert ids[-1] == 1 and 2 not in ids  # "</s>" appended, nothing unknown


def test_tiny_tokenizer_is_deterministic_and_rewritten(tmp_path: Path, tokenizer_dir: Path) -> None:
    out = write_tiny_umt5_tokenizer(tmp_path / "tok")
    for name in TOKENIZER_FILES:
        assert (out / name).read_bytes() == (tokenizer_dir / name).read_bytes(), name
    (out / "tokenizer.json").write_text("{}")  # a stale/corrupt file is replaced, not reused
    write_tiny_umt5_tokenizer(out)
    assert (out / "tokenizer.json").read_bytes() == (tokenizer_dir / "tokenizer.json").read_bytes()
    with pytest.raises(ValueError, match="vocab_size must be an int in"):
        write_tiny_umt5_tokenizer(tmp_path / "bad", vocab_size=100)


def test_chinese_and_korean_prompts_tokenize(tokenizer) -> None:
    for prompt in ("一只红色的狐狸在森林中，电影感镜头。", "고양이가 무대에서 싸운다"):
        ids = tokenizer(prompt).input_ids
        assert len(ids) > 3 and ids[-1] == 1
        assert 2 not in ids, tokenizer.convert_ids_to_tokens(ids)


# ----------------------------------------------------------------------------- conversion


def test_config_inference(official_sd, tokenizer) -> None:
    config = umt5_config_from_state_dict(official_sd)
    assert (config.vocab_size, config.d_model, config.d_kv, config.d_ff) == (len(tokenizer), DIM, DIM // HEADS, FFN)
    assert (config.num_layers, config.num_heads, config.relative_attention_num_buckets) == (LAYERS, HEADS, BUCKETS)
    assert config.relative_attention_max_distance == 128 and config.layer_norm_epsilon == 1e-6
    assert config.feed_forward_proj == "gated-gelu" and config.dense_act_fn == "gelu_new" and config.is_gated_act
    # The HF layout gives the same architecture.
    hf_config = umt5_config_from_state_dict(convert_official_t5_state_dict(official_sd))
    assert hf_config.to_dict() == config.to_dict()


def test_key_conversion_is_complete(official_sd) -> None:
    hf = convert_official_t5_state_dict(official_sd)
    assert hf["shared.weight"] is official_sd["token_embedding.weight"]
    assert hf["encoder.embed_tokens.weight"] is official_sd["token_embedding.weight"]
    assert hf["encoder.block.1.layer.1.DenseReluDense.wi_0.weight"] is official_sd["blocks.1.ffn.gate.0.weight"]
    assert hf["encoder.block.1.layer.1.DenseReluDense.wi_1.weight"] is official_sd["blocks.1.ffn.fc1.weight"]
    assert hf["encoder.block.1.layer.1.DenseReluDense.wo.weight"] is official_sd["blocks.1.ffn.fc2.weight"]
    with torch.device("meta"):
        expected = set(UMT5EncoderModel(umt5_config_from_state_dict(official_sd)).state_dict())
    assert set(hf) == expected
    with pytest.raises(T5CheckpointError, match=r"not official umT5 encoder keys: blocks\.0\.attn\.bias"):
        convert_official_t5_state_dict({**official_sd, "blocks.0.attn.bias": torch.zeros(1)})


# ----------------------------------------------------------------------------- numerics


def test_matches_transformers_reference_fp32(encoder: TextEncoder, reference, tokenizer) -> None:
    assert encoder.dim == DIM and encoder.dtype == torch.float32 and encoder.device.type == "cpu"
    assert all(p.device.type == "cpu" for p in encoder.model.parameters())  # nothing left on meta
    assert encoder.model.shared.weight is encoder.model.encoder.embed_tokens.weight

    embs = encoder.encode(PROMPTS)
    ref, ids, mask = _reference_encode(reference, tokenizer, PROMPTS)
    assert ids.shape == (len(PROMPTS), TEXT_LEN)
    lengths = mask.sum(dim=1).tolist()
    max_diff = 0.0
    for i, (emb, n) in enumerate(zip(embs, lengths)):
        assert emb.shape == (n, DIM), (i, emb.shape, n)
        assert ids[i, n - 1].item() == tokenizer.eos_token_id  # the trimmed length counts EOS
        assert bool((ids[i, n:] == tokenizer.pad_token_id).all())
        max_diff = max(max_diff, (emb - ref[i, :n]).abs().max().item())
    assert lengths[3] == 1  # empty prompt -> just "</s>"
    assert max_diff <= 1e-5, max_diff


def test_batch_independent_and_cleaned(encoder: TextEncoder) -> None:
    single = encoder.encode([PROMPTS[0]])[0]
    batched = encoder.encode(PROMPTS)[0]
    torch.testing.assert_close(single, batched, rtol=0, atol=1e-6)
    messy = encoder.encode(["  A cinematic shot of a red fox\n\trunning through a snowy forest at sunrise.  "])[0]
    clean = encoder.encode(["A cinematic shot of a red fox running through a snowy forest at sunrise."])[0]
    assert torch.equal(messy, clean)


def test_pad_context(encoder: TextEncoder) -> None:
    embs = encoder.encode(PROMPTS[:3])
    ctx = pad_context(embs, TEXT_LEN)
    assert ctx.shape == (3, TEXT_LEN, DIM) and ctx.dtype == embs[0].dtype
    for i, e in enumerate(embs):
        assert torch.equal(ctx[i, : e.shape[0]], e)
        assert bool((ctx[i, e.shape[0] :] == 0).all())
    with pytest.raises(ValueError, match="exceed text_len=4"):
        pad_context(embs, 4)
    with pytest.raises(ValueError, match="at least one"):
        pad_context([], TEXT_LEN)


def test_long_prompt_truncated_to_text_len(encoder: TextEncoder) -> None:
    long_prompt = "red fox snowy forest sunrise " * 300
    (emb,) = encoder.encode([long_prompt])
    assert emb.shape == (TEXT_LEN, DIM)
    ids, mask = encoder.tokenize([long_prompt])
    assert ids[0, -1].item() == 1 and int(mask.sum()) == TEXT_LEN


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("  a   cat \n\t runs  ", "a cat runs"),
        ("Tom &amp;amp; Jerry", "Tom & Jerry"),  # html.unescape twice
        ("&lt;b&gt;bold&lt;/b&gt;", "<b>bold</b>"),
        ("cafÃ© au lait", "café au lait"),  # ftfy repairs mojibake
        ("\u3000全角空格\u3000 中文 ", "全角空格 中文"),
        ("", ""),
    ],
)
def test_clean_prompt(raw: str, expected: str) -> None:
    assert clean_prompt(raw) == expected


def test_encode_input_validation(encoder: TextEncoder) -> None:
    with pytest.raises(TypeError, match="prompts must be a list of str"):
        encoder.encode("a single string")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="at least one prompt"):
        encoder.encode([])
    with pytest.raises(TypeError, match="prompt must be a str"):
        encoder.encode([123])  # type: ignore[list-item]


def test_bf16_load(official_file: Path, tokenizer_dir: Path, reference, tokenizer) -> None:
    enc = load_text_encoder_official(official_file, tokenizer_dir, dtype=torch.bfloat16, device="cpu")
    assert all(p.dtype == torch.bfloat16 for p in enc.model.parameters())
    (emb,) = enc.encode([PROMPTS[0]])
    ref, _, mask = _reference_encode(reference, tokenizer, [PROMPTS[0]])
    n = int(mask.sum())
    assert emb.dtype == torch.bfloat16 and emb.shape == (n, DIM)
    rel = (emb.float() - ref[0, :n]).norm() / ref[0, :n].norm()
    assert rel.item() < 0.05


def test_from_state_dict_builds_without_files(official_sd, tokenizer, encoder: TextEncoder) -> None:
    """t5.py takes a state dict (wan.loading reads the files): official and HF-layout dicts build the
    same encoder as the file loader; errors name the given source."""
    expected = encoder.encode(PROMPTS[:2])
    hf_sd = convert_official_t5_state_dict(official_sd)
    for sd, layout in ((official_sd, "official"), (hf_sd, "hf")):
        enc = TextEncoder.from_state_dict(sd, tokenizer, key_layout=layout, dtype=torch.float32)
        for got, want in zip(enc.encode(PROMPTS[:2]), expected):
            assert torch.equal(got, want)
    with pytest.raises(T5CheckpointError, match=r"^in-memory: .*not official umT5 encoder keys"):
        TextEncoder.from_state_dict(hf_sd, tokenizer, key_layout="official", source="in-memory")


# ----------------------------------------------------------------------------- HF / Diffusers layout


@pytest.mark.parametrize("sharded", [False, True])
def test_load_hf_layout_folder(tmp_path: Path, reference, tokenizer_dir: Path, tokenizer, sharded: bool) -> None:
    folder = tmp_path / "text_encoder"
    reference.save_pretrained(folder, max_shard_size="40KB" if sharded else "10GB")
    assert (folder / "config.json").is_file()
    assert (folder / "model.safetensors.index.json").is_file() == sharded
    enc = load_text_encoder_hf(folder, tokenizer_dir, dtype=torch.float32, device="cpu")
    embs = enc.encode(PROMPTS[:2])
    ref, _, mask = _reference_encode(reference, tokenizer, PROMPTS[:2])
    for i, e in enumerate(embs):
        n = int(mask[i].sum())
        assert (e - ref[i, :n]).abs().max().item() <= 1e-5


def test_hf_layout_errors(tmp_path: Path, reference, tokenizer_dir: Path) -> None:
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_text_encoder_hf(tmp_path / "nowhere", tokenizer_dir, dtype=torch.float32)
    folder = tmp_path / "text_encoder"
    reference.save_pretrained(folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "model_type": "t5"}))
    with pytest.raises(T5CheckpointError, match=r"config\.json.*model_type must be 'umt5'"):
        load_text_encoder_hf(folder, tokenizer_dir, dtype=torch.float32)
    (folder / "config.json").write_text(json.dumps({**config, "num_layers": 3}))
    with pytest.raises(T5CheckpointError, match=r"text_encoder.*missing keys \['encoder\.block\.2\."):
        load_text_encoder_hf(folder, tokenizer_dir, dtype=torch.float32)
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "model.safetensors").write_bytes(b"\x00" * 16)
    with pytest.raises(T5CheckpointError, match=r"model\.safetensors: cannot read"):
        load_text_encoder_hf(folder, tokenizer_dir, dtype=torch.float32)
    (folder / "model.safetensors").unlink()
    with pytest.raises(T5CheckpointError, match="no safetensors files"):
        load_text_encoder_hf(folder, tokenizer_dir, dtype=torch.float32)


def test_hf_layout_tensor_in_two_shards_is_rejected(tmp_path: Path, reference, tokenizer_dir: Path) -> None:
    """The HF folder is read by wan.loading's shared reader: a tensor stored in two shards is an error
    naming both files (before, the second shard silently overwrote the first)."""
    from safetensors.torch import load_file, save_file

    from wan.errors import CheckpointError

    folder = tmp_path / "text_encoder"
    reference.save_pretrained(folder, max_shard_size="40KB")
    weight_map = json.loads((folder / "model.safetensors.index.json").read_text())["weight_map"]
    first, second = sorted(set(weight_map.values()))[:2]
    first_sd = load_file(folder / first)
    key = sorted(first_sd)[0]
    second_sd = dict(load_file(folder / second))
    save_file({**second_sd, key: first_sd[key]}, folder / second)
    with pytest.raises(CheckpointError) as info:
        load_text_encoder_hf(folder, tokenizer_dir, dtype=torch.float32)
    assert isinstance(info.value, T5CheckpointError)
    message = str(info.value)
    assert first in message and second in message and repr(key) in message


# ----------------------------------------------------------------------------- checkpoint errors


def test_missing_key_names_file_and_key(tmp_path: Path, official_sd, tokenizer_dir: Path) -> None:
    sd = dict(official_sd)
    del sd["blocks.1.ffn.fc2.weight"]
    path = tmp_path / T5_FILE
    torch.save(sd, path)
    expected = r"models_t5_umt5-xxl-enc-bf16\.pth.*missing keys \['blocks\.1\.ffn\.fc2\.weight'\]"
    with pytest.raises(T5CheckpointError, match=expected):
        load_text_encoder_official(path, tokenizer_dir, dtype=torch.float32)


def test_unexpected_key_and_wrong_shape(tmp_path: Path, official_sd, tokenizer_dir: Path) -> None:
    path = tmp_path / T5_FILE
    torch.save({**official_sd, "blocks.0.attn.extra.weight": torch.zeros(2)}, path)
    with pytest.raises(T5CheckpointError, match=r"\.pth.*blocks\.0\.attn\.extra\.weight"):
        load_text_encoder_official(path, tokenizer_dir, dtype=torch.float32)
    torch.save({**official_sd, "blocks.1.attn.q.weight": torch.zeros(DIM, DIM + 1)}, path)
    with pytest.raises(T5CheckpointError, match=r"\.pth.*wrong shapes \['blocks\.1\.attn\.q\.weight: \(32, 33\)"):
        load_text_encoder_official(path, tokenizer_dir, dtype=torch.float32)
    sd = dict(official_sd)
    del sd["token_embedding.weight"]
    torch.save(sd, path)
    with pytest.raises(T5CheckpointError, match=r"\.pth: missing key .token_embedding\.weight."):
        load_text_encoder_official(path, tokenizer_dir, dtype=torch.float32)


def test_corrupt_and_missing_files(tmp_path: Path, tokenizer_dir: Path, official_file: Path) -> None:
    bad = tmp_path / T5_FILE
    bad.write_bytes(b"this is not a torch archive")
    with pytest.raises(T5CheckpointError, match=r"models_t5_umt5-xxl-enc-bf16\.pth: cannot read"):
        load_text_encoder_official(bad, tokenizer_dir, dtype=torch.float32)
    with pytest.raises(FileNotFoundError, match="text encoder checkpoint not found"):
        load_text_encoder_official(tmp_path / "absent.pth", tokenizer_dir, dtype=torch.float32)
    with pytest.raises(FileNotFoundError, match="tokenizer folder not found"):
        load_text_encoder_official(official_file, tmp_path / "google" / "umt5-xxl", dtype=torch.float32)


def test_missing_files_are_checkpoint_errors_naming_the_path(tmp_path: Path, tokenizer_dir: Path, official_file: Path) -> None:
    from wan.errors import CheckpointError

    cases = [
        (lambda: load_text_encoder_official(tmp_path / "absent.pth", tokenizer_dir), tmp_path / "absent.pth", "umT5 encoder weights"),
        (lambda: load_text_encoder_official(official_file, tmp_path / "tok"), tmp_path / "tok", "tokenizer files"),
        (lambda: load_text_encoder_hf(tmp_path / "te", tokenizer_dir), tmp_path / "te" / "config.json", "config.json and model.safetensors"),
    ]
    for load, path, expected in cases:
        with pytest.raises(T5CheckpointError) as info:
            load()
        assert isinstance(info.value, CheckpointError) and isinstance(info.value, FileNotFoundError)
        assert str(info.value).startswith(f"{path}: ") and expected in str(info.value)


def test_pth_reader_retries_without_mmap_only_for_mmap_errors(
    tmp_path: Path, official_sd, monkeypatch: pytest.MonkeyPatch
) -> None:
    legacy = tmp_path / "legacy.pth"
    torch.save(official_sd, legacy, _use_new_zipfile_serialization=False)  # cannot be memory-mapped
    loaded = read_text_encoder_file(legacy)
    assert set(loaded) == set(official_sd) and torch.equal(loaded["norm.weight"], official_sd["norm.weight"])

    calls: list[bool] = []
    real_load = torch.load

    def failing_load(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        calls.append(bool(kwargs.get("mmap")))
        if kwargs.get("mmap"):
            raise RuntimeError("PytorchStreamReader failed reading zip archive: failed finding central directory")
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", failing_load)
    with pytest.raises(T5CheckpointError, match=r"legacy\.pth: cannot read.*central directory"):
        read_text_encoder_file(legacy)
    assert calls == [True]  # not retried: the error has nothing to do with mmap


def test_tied_embedding_is_cast_once(official_sd) -> None:
    """The embedding appears under two HF names but is one tensor: a dtype change makes one copy."""
    from torch.overrides import TorchFunctionMode

    from wan.modules import t5 as t5_mod

    bf16 = {k: v.to(torch.bfloat16) for k, v in official_sd.items()}
    embedding = bf16["token_embedding.weight"]
    hf_sd = convert_official_t5_state_dict(bf16)
    casts: list[int] = []

    class CountCasts(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204
            if func is torch.Tensor.to and args and args[0] is embedding:
                casts.append(1)
            return func(*args, **(kwargs or {}))

    with CountCasts():
        model = t5_mod._build_encoder(
            umt5_config_from_state_dict(bf16), hf_sd, torch.float32, torch.device("cpu"), "mem", official_names=True
        )
    assert len(casts) == 1
    assert model.shared.weight is model.encoder.embed_tokens.weight and model.shared.weight.dtype == torch.float32
    assert torch.equal(model.shared.weight, embedding.float())


def test_tokenizer_vocab_larger_than_model_is_rejected(tmp_path: Path, tokenizer_dir: Path) -> None:
    sd = _official_tiny_state_dict(vocab=100)
    path = tmp_path / T5_FILE
    torch.save(sd, path)
    with pytest.raises(ValueError, match="vocab_size is 100"):
        load_text_encoder_official(path, tokenizer_dir, dtype=torch.float32)


# ------------------------------------------------------------------ ready fp8 umT5 files (LightX2V, ComfyUI)
FP8_PROMPTS = ["a red fox trots across a snowy clearing at dawn", "一只狐狸在雪地里奔跑", "여우가 눈밭을 달린다"]


def _dequantised_reference(task: str, layout: str, tokenizer) -> tuple[dict[str, torch.Tensor], TextEncoder]:
    """The tiny fp8 file's tensors dequantised by hand (float32 ``q * scale``) and an encoder built from
    them: what loading the file must give exactly."""
    from wan.testing.synthetic import fp8_t5_state_dict, tiny_weights

    sd = fp8_t5_state_dict(tiny_weights(task).t5, layout=layout)
    suffix = ".weight_scale" if layout == "lightx2v" else ".scale_weight"
    plain: dict[str, torch.Tensor] = {}
    for key, value in sd.items():
        if key.endswith(suffix) or key == "scaled_fp8":
            continue
        scale = sd.get(key[: -len(".weight")] + suffix)
        plain[key] = value.to(torch.float32) * scale if scale is not None else value
    key_layout = "official" if layout == "lightx2v" else "hf"
    ref = TextEncoder.from_state_dict(plain, tokenizer, key_layout=key_layout, dtype=torch.float32)
    return plain, ref


@pytest.mark.parametrize("layout", ["lightx2v", "comfyui"])
def test_fp8_t5_file_loads_to_the_dequantised_tensors(tmp_path: Path, tokenizer_dir: Path, tokenizer, layout) -> None:
    """LightX2V ``models_t5_umt5-xxl-enc-fp8.pth`` (official keys, float8 + per-channel ``weight_scale``)
    and ComfyUI ``umt5_xxl_fp8_e4m3fn_scaled.safetensors`` (HF keys, per-tensor ``scale_weight``, the
    ``scaled_fp8`` marker) load to exactly the dequantised weights: same encodings, bit for bit."""
    from wan.loading import load_text_encoder_file
    from wan.testing.synthetic import write_fp8_t5_file

    name = "models_t5_umt5-xxl-enc-fp8.pth" if layout == "lightx2v" else "umt5_xxl_fp8_e4m3fn_scaled.safetensors"
    path = write_fp8_t5_file("ti2v-5B", tmp_path / name, layout=layout)
    stored = read_text_encoder_file(path)
    if layout == "lightx2v":  # the file really is in the published layout
        assert stored["blocks.0.attn.q.weight"].dtype == torch.float8_e4m3fn
        assert stored["blocks.0.ffn.gate.0.weight_scale"].shape == (stored["blocks.0.ffn.gate.0.weight"].shape[0], 1)
        assert stored["blocks.0.norm1.weight"].dtype == torch.bfloat16 and "token_embedding.weight" in stored
    else:
        assert stored["encoder.block.1.layer.1.DenseReluDense.wo.weight"].dtype == torch.float8_e4m3fn
        assert stored["encoder.block.1.layer.1.DenseReluDense.wo.scale_weight"].shape == ()
        assert "scaled_fp8" in stored and "shared.weight" in stored
    plain, ref = _dequantised_reference("ti2v-5B", layout, tokenizer)
    enc = load_text_encoder_file(path, tokenizer_dir, dtype=torch.float32)
    got_sd = enc.model.state_dict()
    want_sd = ref.model.state_dict()
    assert set(got_sd) == set(want_sd) and all(torch.equal(got_sd[k], want_sd[k]) for k in want_sd)
    for got, want in zip(enc.encode(FP8_PROMPTS), ref.encode(FP8_PROMPTS), strict=True):
        assert torch.equal(got, want)
    # and it is fp8: the encodings move away from the bf16 original's (a little)
    from wan.testing.synthetic import tiny_weights

    orig = TextEncoder.from_state_dict(tiny_weights("ti2v-5B").t5, tokenizer, key_layout="official", dtype=torch.float32)
    a, b = enc.encode(FP8_PROMPTS[:1])[0], orig.encode(FP8_PROMPTS[:1])[0]
    rel = ((a - b).norm() / b.norm()).item()
    assert 0 < rel < 0.1, rel


def test_fp8_t5_file_found_in_the_checkpoint_or_given(tmp_path: Path, tokenizer) -> None:
    """An official folder without the bf16 ``.pth`` but with LightX2V's fp8 one is complete and loads
    it; ``t5_file=`` picks a file elsewhere; ``t5_quantize="fp8"`` quantises it again (FP8Linear)."""
    from wan.loading import load_components, missing_files
    from wan.quant import FP8Linear
    from wan.testing.synthetic import write_fp8_t5_file, write_tiny_checkpoint

    ckpt = write_tiny_checkpoint("ti2v-5B", tmp_path / "ckpt")
    (ckpt / "models_t5_umt5-xxl-enc-bf16.pth").unlink()
    assert missing_files("ti2v-5B", ckpt) == ["models_t5_umt5-xxl-enc-bf16.pth"]
    write_fp8_t5_file("ti2v-5B", ckpt / "models_t5_umt5-xxl-enc-fp8.pth", layout="lightx2v")
    assert missing_files("ti2v-5B", ckpt) == []
    _, ref = _dequantised_reference("ti2v-5B", "lightx2v", tokenizer)
    want = ref.encode(FP8_PROMPTS)
    comps = load_components("ti2v-5B", ckpt, dtype=torch.float32)
    for got, w in zip(comps.text_encoder.encode(FP8_PROMPTS), want, strict=True):
        assert torch.equal(got, w)

    other = write_fp8_t5_file("ti2v-5B", tmp_path / "elsewhere" / "umt5_xxl_fp8_e4m3fn_scaled.safetensors",
                              layout="comfyui")
    (ckpt / "models_t5_umt5-xxl-enc-fp8.pth").unlink()  # only the given file remains
    comps = load_components("ti2v-5B", ckpt, dtype=torch.float32, t5_file=other, t5_quantize="fp8")
    # t5_quantize on a fp8 file: its float8 weights and scales as stored (no second rounding)
    stored = read_text_encoder_file(other)
    checked = [(n, m) for n, m in comps.text_encoder.model.named_modules()
               if n.endswith(("SelfAttention.q", "DenseReluDense.wo"))]
    assert len(checked) == 4  # 2 layers x (q, wo)
    for name, module in checked:
        assert isinstance(module, FP8Linear), name
        assert torch.equal(module.weight.view(torch.uint8), stored[f"{name}.weight"].view(torch.uint8)), name
        assert torch.equal(module.weight_scale, stored[f"{name}.scale_weight"]), name
    _, ref_c = _dequantised_reference("ti2v-5B", "comfyui", tokenizer)
    for got, w in zip(comps.text_encoder.encode(FP8_PROMPTS), ref_c.encode(FP8_PROMPTS), strict=True):
        torch.testing.assert_close(got, w, rtol=1e-5, atol=1e-5)
    # and a bf16 folder file + t5_quantize quantises every linear as before
    bf16 = write_tiny_checkpoint("ti2v-5B", tmp_path / "bf16")
    q = load_components("ti2v-5B", bf16, dtype=torch.float32, t5_quantize="fp8").text_encoder.model
    assert isinstance(q.encoder.block[1].layer[1].DenseReluDense.wi_0, FP8Linear)


def test_fp8_t5_file_without_a_scale_names_the_file(tmp_path: Path, tokenizer_dir: Path) -> None:
    from wan.errors import T5CheckpointError
    from wan.loading import load_text_encoder_file
    from wan.testing.synthetic import fp8_t5_state_dict, tiny_weights

    sd = fp8_t5_state_dict(tiny_weights("ti2v-5B").t5, layout="lightx2v")
    del sd["blocks.1.attn.k.weight_scale"]
    path = tmp_path / "models_t5_umt5-xxl-enc-fp8.pth"
    torch.save(sd, path)
    with pytest.raises(T5CheckpointError, match=r"models_t5_umt5-xxl-enc-fp8\.pth: 1 float8 tensor\(s\) without a "
                                                r"scale: .*blocks\.1\.attn\.k\.weight"):
        load_text_encoder_file(path, tokenizer_dir, dtype=torch.float32)


def test_generate_cli_t5_file(tmp_path: Path) -> None:
    """``generate.py --t5_file`` runs with a LightX2V fp8 umT5 file; a missing one is a clear error."""
    from test_generate_cli import run_cli

    from wan.testing.synthetic import write_fp8_t5_file, write_tiny_checkpoint

    ckpt = write_tiny_checkpoint("ti2v-5B", tmp_path / "ckpt")
    t5 = write_fp8_t5_file("ti2v-5B", tmp_path / "t5" / "models_t5_umt5-xxl-enc-fp8.pth")
    common = ("--task", "ti2v-5B", "--ckpt_dir", str(ckpt), "--size", "64*32", "--any_size", "--frame_num", "5",
              "--sample_steps", "2", "--device", "cpu", "--prompt", "a red fox")
    out = tmp_path / "fox.mp4"
    proc = run_cli(*common, "--t5_file", str(t5), "--save_file", str(out), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert out.is_file() and "saved" in proc.stdout
    missing = tmp_path / "nope.pth"
    proc = run_cli(*common, "--t5_file", str(missing), cwd=tmp_path)
    assert proc.returncode == 2
    assert f"{missing}: text encoder file (t5_file) not found" in proc.stderr, proc.stderr
