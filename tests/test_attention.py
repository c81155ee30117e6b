"""Attention backends: selection by name (request / environment), agreement with SDPA, and the
request's ``attention`` setting through the pipeline.

Oracle. Every backend is compared with PyTorch SDPA computed in float32 on the same (rounded) inputs:
exact backends (flash_attn_2/3) within ``FLASH_TOLERANCE`` (bf16 output rounding), SageAttention (int8
q/k) within ``SAGE_TOLERANCE`` (cosine similarity and relative L2 error). Those run on CUDA only and
skip on the CPU, where SDPA itself is checked against a float64 softmax reference.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from torch import Tensor

import wan.modules.attention as attention_mod
from wan.errors import InputError
from wan.modules.attention import (
    BACKENDS,
    CHOICES,
    FLASH_TOLERANCE,
    SAGE_TOLERANCE,
    AttentionBackendError,
    attention,
    resolve_backend,
    unusable_reason,
)
from wan.modules.model import WanModel
from wan.request import FIELD_HELP, make_request, request_from_values
from wan.testing.synthetic import tiny_weights

CUDA = torch.cuda.is_available()


@pytest.fixture
def no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(attention_mod.ENV_VAR, raising=False)


def reference(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    scores = torch.einsum("bqhd,bkhd->bhqk", q.double(), k.double()) / q.shape[-1] ** 0.5
    return torch.einsum("bhqk,bkhd->bqhd", scores.softmax(-1), v.double())


def qkv(lq: int, lk: int, *, heads: int = 4, head_dim: int = 16, dtype: torch.dtype = torch.float32,
        device: str = "cpu", seed: int = 0) -> tuple[Tensor, Tensor, Tensor]:  # fmt: skip
    g = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(2, n, heads, head_dim, generator=g) for n in (lq, lk, lk))
    return q.to(device, dtype), k.to(device, dtype), v.to(device, dtype)


# ------------------------------------------------------------------------------------- selection


def test_sdpa_by_name_matches_reference_on_cpu(no_env: None) -> None:
    q, k, v = qkv(9, 13)
    for name in (None, "sdpa"):
        out = attention(q, k, v, name)
        assert out.shape == q.shape and out.dtype == q.dtype
        torch.testing.assert_close(out.double(), reference(q, k, v), rtol=1e-5, atol=1e-5)
    assert resolve_backend("auto", "cpu", torch.float32, 16) == "sdpa"
    assert resolve_backend("torch", "cpu", torch.bfloat16, 16) == "sdpa"


@pytest.mark.parametrize("name", ["sage", "flash_attn_2", "flash_attn_3", "fa2"])
def test_named_backend_on_cpu_says_why(name: str, no_env: None) -> None:
    with pytest.raises(AttentionBackendError, match=r"cannot be used: it needs CUDA tensors, got device cpu.*'auto' or 'sdpa'"):
        resolve_backend(name, "cpu", torch.bfloat16, 128)
    assert "needs CUDA" in (unusable_reason(name, "cpu", torch.bfloat16, 128) or "")


def test_not_installed_names_the_package(no_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(attention_mod, "_flash_unusable_reason", lambda name, q: None)
    monkeypatch.setattr(attention_mod, "_import_flash", lambda name: None)
    with pytest.raises(AttentionBackendError, match=r"'sageattention' is not installed \(pip install sageattention\)"):
        resolve_backend("sage", "cpu", torch.bfloat16, 128)


def test_environment_and_full_precision(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(attention_mod.ENV_VAR, "sage")
    with pytest.raises(AttentionBackendError, match=f"{attention_mod.ENV_VAR}=sage cannot be used"):
        resolve_backend("auto", "cpu", torch.bfloat16, 128)
    # full-precision steps of a sage run never use sage, even when the environment forces it
    assert resolve_backend("auto", "cpu", torch.bfloat16, 128, full_precision=True) == "sdpa"
    # a name given by the caller wins over the environment
    assert resolve_backend("sdpa", "cpu", torch.bfloat16, 128) == "sdpa"
    monkeypatch.setenv(attention_mod.ENV_VAR, "xformers")
    with pytest.raises(ValueError, match="not a known attention backend"):
        resolve_backend(None, "cpu", torch.float32, 16)
    with pytest.raises(ValueError, match="not a known attention backend.*sage"):
        resolve_backend("xformers", "cpu", torch.float32, 16)


def test_model_threads_the_backend(no_env: None) -> None:
    w = tiny_weights("ti2v-5B")
    model = WanModel(w.dit_config)
    model.load_state_dict(w.experts["dense"])
    cfg = w.dit_config
    g = torch.Generator().manual_seed(1)
    x = torch.randn(1, cfg.in_dim, 2, 4, 4, generator=g)
    ctx = torch.randn(1, cfg.text_len, cfg.text_dim, generator=g)
    t = torch.tensor([500])
    with torch.no_grad():
        auto = model(x, t, ctx)
        named = model(x, t, ctx, attention="sdpa")
        assert torch.equal(auto, named)
        with pytest.raises(AttentionBackendError, match="'sage' cannot be used: it needs CUDA"):
            model(x, t, ctx, attention="sage")


# ------------------------------------------------------------------------------- agreement (CUDA)


def _cosine_and_rel_l2(out: Tensor, ref: Tensor) -> tuple[float, float]:
    a, b = out.double().flatten(), ref.double().flatten()
    return float(a @ b / (a.norm() * b.norm())), float((a - b).norm() / b.norm())


@pytest.mark.skipif(not CUDA, reason="flash-attn and SageAttention run on CUDA only; the CPU path is SDPA (tested above)")
@pytest.mark.parametrize("name", [b for b in BACKENDS if b != "sdpa"])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize(("lq", "lk"), [(1560, 1560), (1560, 512)])  # self- and cross-attention (text_len 512)
def test_backend_agrees_with_sdpa(name: str, dtype: torch.dtype, lq: int, lk: int, no_env: None) -> None:
    reason = unusable_reason(name, "cuda", dtype, 128)
    if reason is not None:
        pytest.skip(f"{name} is not usable on this machine: {reason}")
    q, k, v = qkv(lq, lk, heads=8, head_dim=128, dtype=dtype, device="cuda")
    ref = attention(q.float(), k.float(), v.float(), "sdpa")
    out = attention(q, k, v, resolve_backend(name, "cuda", dtype, 128))
    assert out.shape == q.shape and out.dtype == dtype
    if name == "sage":
        cosine, rel = _cosine_and_rel_l2(out, ref)
        assert cosine >= SAGE_TOLERANCE["min_cosine"] and rel <= SAGE_TOLERANCE["max_rel_l2"], (cosine, rel)
    else:
        torch.testing.assert_close(out.float(), ref, **FLASH_TOLERANCE)


@pytest.mark.skipif(not CUDA, reason="needs CUDA: the automatic choice on a GPU")
def test_auto_on_cuda_is_exact_and_never_sage(no_env: None) -> None:
    name = resolve_backend("auto", "cuda", torch.bfloat16, 128)
    assert name in ("flash_attn_3", "flash_attn_2", "sdpa")
    assert resolve_backend("auto", "cuda", torch.float32, 128) == "sdpa"  # flash needs half precision


# --------------------------------------------------------------------------------- request field


def test_request_field_parses_checks_and_round_trips() -> None:
    for name in CHOICES:
        assert name in FIELD_HELP["attention"]
    assert make_request("t2v-A14B", "a fox").attention == "auto"
    cases = {"SDPA": "sdpa", "fa3": "flash_attn_3", "sage:1,1": "sage:1,1", "sage:2": "sage:2,2", "sage:0,0": "sage"}
    for given, canonical in cases.items():
        req = make_request("t2v-A14B", "a fox", attention=given)
        assert req.attention == canonical
        assert request_from_values("t2v-A14B", req.to_settings()).attention == canonical
    for bad, match in [("xformers", "must be one of auto"), ("flash_attn_2:1,1", "only sage"), (3, "must be one of"),
                       ("sage:1,1,1", "must be one of"), ("sage:500,1", "at most 100")]:  # fmt: skip
        with pytest.raises(InputError, match=match) as exc:
            make_request("t2v-A14B", "a fox", attention=bad)
        assert exc.value.field == "attention"
    req = make_request("t2v-A14B", "a fox", attention="sage:1,2", sampling_steps=6)
    assert [req.step_attention(i) for i in range(6)] == ["auto", "sage", "sage", "sage", "auto", "auto"]
    assert req.with_changes(seed=3).attention == "sage:1,2"


@pytest.fixture(scope="module")
def pipe(tiny_ckpt: Callable[..., Path]):  # type: ignore[no-untyped-def]
    from wan.pipeline import load_pipeline

    return load_pipeline("ti2v-5B", tiny_ckpt("ti2v-5B"), device="cpu", dtype=torch.float32, any_size=True)


def test_pipeline_names_the_backend_and_why_before_any_model_work(pipe, no_env: None) -> None:  # type: ignore[no-untyped-def]
    for name in ("sage", "sage:1,1", "flash_attn_2"):
        with pytest.raises(InputError, match=r"needs CUDA.*runs on cpu") as exc:
            pipe.plan("a fox", size=(64, 64), frame_num=1, sampling_steps=3, attention=name)
        assert exc.value.field == "attention" and name.split(":")[0] in str(exc.value)
    request = make_request("ti2v-5B", "a fox", size=(64, 64), frame_num=1, sampling_steps=2, attention="sage", any_size=True)
    pipe.last_run = None
    with pytest.raises(InputError, match="'sage' cannot be used"):
        pipe.generate(request)
    assert pipe.last_run is None  # nothing ran


def test_pipeline_records_the_backend_of_each_step(pipe, no_env: None, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    """``sage:1,1``: the first and last steps run the full-precision backend, the others sage. SageAttention
    cannot run on this CPU, so an SDPA kernel stands in for it under the name ``sage`` (it records its calls)."""
    video = pipe.generate("a fox", size=(64, 64), frame_num=1, sampling_steps=4, seed=5, attention="sdpa")
    assert pipe.last_run.attention == ("sdpa",) * 4
    calls: list[int] = []

    def stand_in(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        calls.append(q.shape[1])
        return attention(q, k, v, "sdpa")

    monkeypatch.setattr(attention_mod, "_flash_unusable_reason", lambda name, q: None)
    monkeypatch.setitem(attention_mod._KERNELS, "sage", stand_in)
    monkeypatch.setattr(attention_mod, "_import_flash", lambda name: object())
    same = pipe.generate("a fox", size=(64, 64), frame_num=1, sampling_steps=4, seed=5, attention="sage:1,1")
    assert pipe.last_run.attention == ("sdpa", "sage", "sage", "sdpa")
    layers = len(next(iter(pipe.experts.experts.values())).blocks)
    assert len(calls) == 2 * 2 * 2 * layers  # 2 sage steps x 2 CFG passes x (self + cross) x blocks
    assert torch.equal(video, same)  # the stand-in computes the same attention


def test_app_surfaces_the_setting_and_its_errors_in_the_users_language() -> None:
    """The Attention control's value reaches the request through the generate endpoints and share links, and
    an attention error reads in the user's language (translated label and rule, the exact detail after)."""
    import inspect

    from playground.request import error_text
    from playground.share import PARAMS
    from playground.views.endpoints import FORM_FIELDS, _form, _t2v, _ti2v
    from playground.views.task_tab import ATTENTION_CHOICES

    assert "attention" in PARAMS and "attention" in FORM_FIELDS
    for choice in ATTENTION_CHOICES:  # every value the dropdown offers is a valid request value
        assert make_request("t2v-A14B", "a fox", attention=choice).attention == choice

    async def run(*a, **k):  # type: ignore[no-untyped-def]  # pragma: no cover - only signatures are read
        return None

    for fn in (_t2v(run), _ti2v(run)):
        assert inspect.signature(fn).parameters["attention"].default is None
    assert _form({"prompt": "p", "attention": "sage:1,1", "request": object()}) == {"prompt": "p", "attention": "sage:1,1"}
    detail = "attention backend 'sage' cannot be used: it needs CUDA tensors, got device cpu"
    error = InputError("attention", detail)
    assert error_text(error, "en") == f"Attention: {detail}"
    for lang, label in (("ko", "어텐션"), ("zh", "注意力")):
        text = error_text(error, lang)
        assert text.startswith(f"{label}: ") and text.endswith(f"({detail})") and "auto" in text
