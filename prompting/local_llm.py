"""Prompt extension with a local transformers causal LM (Qwen2.5-Instruct family or any chat model).

Nothing heavy is imported until the first ``extend()``: torch and transformers are imported there,
and the model is loaded once (thread-safe) and kept. A load failure, a missing chat template or a
generation that hits the time limit gives the usual fallback result, never an exception.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

from .extension import (
    DEFAULT_MAX_INPUT_CHARS,
    BackendTimeout,
    BackendUnavailable,
    ExtensionRequest,
    LLMExtender,
)

__all__ = ["DEFAULT_LOCAL_MODEL", "LOCAL_MODELS", "LocalLLMExtender", "resolve_local_model"]

DEFAULT_LOCAL_MODEL = "Qwen/Qwen2.5-3B-Instruct"
#: Short names accepted for ``model=`` (case-insensitive; "_" and "-" are the same; "-instruct" optional).
LOCAL_MODELS: dict[str, str] = {
    "qwen2.5-0.5b": "Qwen/Qwen2.5-0.5B-Instruct",
    "qwen2.5-1.5b": "Qwen/Qwen2.5-1.5B-Instruct",
    "qwen2.5-3b": "Qwen/Qwen2.5-3B-Instruct",
    "qwen2.5-7b": "Qwen/Qwen2.5-7B-Instruct",
    "qwen2.5-14b": "Qwen/Qwen2.5-14B-Instruct",
}
_DTYPES = ("auto", "float32", "float16", "bfloat16")


def resolve_local_model(model: str) -> str:
    """A short name from :data:`LOCAL_MODELS` to its hub id; paths and other ids pass through."""
    key = model.strip().lower().replace("_", "-")
    key = key.removesuffix("-instruct")
    return LOCAL_MODELS.get(key, model)


class LocalLLMExtender(LLMExtender):
    """Extension with a local chat LM. ``model`` is a directory, a hub id or a short name.

    ``temperature=0`` decodes greedily (deterministic). ``timeout`` bounds generation time (the first
    call also loads the model, which is not counted). ``offload=True`` keeps the model on the CPU and
    moves it to ``device`` only while generating, leaving GPU memory to the video model.
    """

    name = "local"

    def __init__(
        self,
        *,
        model: str | None = None,
        device: str | None = None,
        dtype: str = "auto",
        max_new_tokens: int = 512,
        temperature: float = 0.7,
        top_p: float = 0.9,
        timeout: float = 120.0,
        offload: bool = False,
        trust_remote_code: bool = False,
        seed: int | None = None,
        max_chars: int | None = None,
        min_chars: int | None = None,
        max_input_chars: int = DEFAULT_MAX_INPUT_CHARS,
    ) -> None:
        super().__init__(max_chars=max_chars, min_chars=min_chars, max_input_chars=max_input_chars)
        if dtype not in _DTYPES:
            raise ValueError(f"dtype must be one of {', '.join(_DTYPES)}; got {dtype!r}")
        if max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be at least 1; got {max_new_tokens}")
        if timeout <= 0:
            raise ValueError(f"timeout must be positive seconds; got {timeout}")
        if temperature < 0:
            raise ValueError(f"temperature must be 0 (greedy) or more; got {temperature}")
        model = model or os.environ.get("WAN_PROMPT_LOCAL_MODEL") or DEFAULT_LOCAL_MODEL
        self.model_id = resolve_local_model(model)
        self.device = device
        self.dtype = dtype
        self.max_new_tokens = max_new_tokens
        self.temperature = temperature
        self.top_p = top_p
        self.timeout = float(timeout)
        self.offload = offload
        self.trust_remote_code = trust_remote_code
        self.seed = seed
        self._lock = threading.Lock()
        self._loaded: tuple[Any, Any, str] | None = None  # tokenizer, model, device

    def __repr__(self) -> str:
        return f"LocalLLMExtender(model={self.model_id!r}, loaded={self._loaded is not None})"

    @property
    def loaded(self) -> bool:
        return self._loaded is not None

    def _load(self) -> tuple[Any, Any, str]:
        if self._loaded is not None:
            return self._loaded
        try:
            import torch
            from transformers import AutoModelForCausalLM, AutoTokenizer
        except ImportError as e:
            raise BackendUnavailable(f"the local backend needs torch and transformers: {e}") from None
        device = self.device or ("cuda" if torch.cuda.is_available() else "cpu")
        if self.dtype == "auto":
            dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
        else:
            dtype = getattr(torch, self.dtype)
        try:
            tokenizer = AutoTokenizer.from_pretrained(self.model_id, trust_remote_code=self.trust_remote_code)
            model = AutoModelForCausalLM.from_pretrained(
                self.model_id, dtype=dtype, trust_remote_code=self.trust_remote_code
            )
        except Exception as e:  # noqa: BLE001 - OSError, ValueError, HF hub errors...
            raise BackendUnavailable(f"cannot load the local model {self.model_id!r}: {type(e).__name__}: {e}") from None
        if not getattr(tokenizer, "chat_template", None):
            raise BackendUnavailable(f"the tokenizer of {self.model_id!r} has no chat template; use an Instruct model")
        model.eval()
        if not self.offload:
            model.to(device)
        self._loaded = (tokenizer, model, device)
        return self._loaded

    def _complete(self, request: ExtensionRequest) -> str:
        with self._lock:
            tokenizer, model, device = self._load()
            import torch

            text = tokenizer.apply_chat_template(
                [dict(m) for m in request.messages], tokenize=False, add_generation_prompt=True,
                enable_thinking=False,  # Qwen3-style templates: no reasoning block; others ignore it
            )
            inputs = tokenizer(text, return_tensors="pt", add_special_tokens=False)
            pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
            kwargs: dict[str, Any] = {
                "max_new_tokens": self.max_new_tokens,
                "max_time": self.timeout,
                "pad_token_id": pad_id,
            }
            if self.temperature > 0:
                kwargs.update(do_sample=True, temperature=self.temperature, top_p=self.top_p)
                if self.seed is not None:
                    torch.manual_seed(self.seed)
            else:
                kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
            if self.offload:
                model.to(device)
            try:
                inputs = inputs.to(device)
                start = time.monotonic()
                with torch.inference_mode():
                    output = model.generate(**inputs, **kwargs)
                elapsed = time.monotonic() - start
            finally:
                if self.offload:
                    model.to("cpu")
            new_tokens = output[0, inputs["input_ids"].shape[1]:]
            if elapsed >= self.timeout and len(new_tokens) < self.max_new_tokens:
                raise BackendTimeout(f"generation stopped at the {self.timeout:g} s time limit")
            return tokenizer.decode(new_tokens, skip_special_tokens=True)
