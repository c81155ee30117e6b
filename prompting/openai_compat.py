"""Prompt extension through any OpenAI-compatible chat endpoint (stdlib HTTP only).

Works with OpenAI, Ollama (``http://127.0.0.1:11434/v1``), vLLM, the llama.cpp server and DashScope's
compatible mode (``https://dashscope.aliyuncs.com/compatible-mode/v1``; international:
``https://dashscope-intl.aliyuncs.com/compatible-mode/v1``). ``base_url`` is the API root that ends in
``/v1``, as for the OpenAI SDK; ``/chat/completions`` is appended.

Configuration, options first, then the environment:

* base URL: ``base_url=``, ``WAN_PROMPT_API_BASE``; else DashScope's when the key came from
  ``DASHSCOPE_API_KEY``, OpenAI's when it came from ``OPENAI_API_KEY``, else local Ollama;
* key: ``api_key=``, ``WAN_PROMPT_API_KEY``, ``OPENAI_API_KEY``, ``DASHSCOPE_API_KEY`` (none is fine for
  local servers);
* model: ``model=``, ``WAN_PROMPT_MODEL``; DashScope defaults to ``qwen-plus``; otherwise required.
"""

from __future__ import annotations

import json
import os
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from typing import Any

from .extension import (
    DEFAULT_MAX_INPUT_CHARS,
    BackendConnectionError,
    BackendHTTPError,
    BackendRefusal,
    BackendTimeout,
    ExtensionRequest,
    LLMExtender,
    MalformedResponse,
)

__all__ = ["DASHSCOPE_BASE_URL", "OLLAMA_BASE_URL", "OPENAI_BASE_URL", "OpenAICompatibleExtender"]

OPENAI_BASE_URL = "https://api.openai.com/v1"
DASHSCOPE_BASE_URL = "https://dashscope.aliyuncs.com/compatible-mode/v1"
OLLAMA_BASE_URL = "http://127.0.0.1:11434/v1"
_MAX_RESPONSE_BYTES = 4 << 20
_RETRY_STATUS = frozenset({429, 500, 502, 503, 504})


def _snippet(data: bytes | str, limit: int = 200) -> str:
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "…"


class OpenAICompatibleExtender(LLMExtender):
    """Chat-completions client; see the module docstring for configuration."""

    name = "openai"

    def __init__(
        self,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        model: str | None = None,
        timeout: float = 60.0,
        temperature: float = 0.7,
        max_tokens: int = 512,
        retries: int = 1,
        seed: int | None = None,
        max_chars: int | None = None,
        min_chars: int | None = None,
        max_input_chars: int = DEFAULT_MAX_INPUT_CHARS,
        env: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(max_chars=max_chars, min_chars=min_chars, max_input_chars=max_input_chars)
        env = os.environ if env is None else env
        if timeout <= 0:
            raise ValueError(f"timeout must be positive seconds; got {timeout}")
        if retries < 0:
            raise ValueError(f"retries must be 0 or more; got {retries}")
        if max_tokens < 1:
            raise ValueError(f"max_tokens must be at least 1; got {max_tokens}")

        key_source = None
        if api_key is None:
            for var in ("WAN_PROMPT_API_KEY", "OPENAI_API_KEY", "DASHSCOPE_API_KEY"):
                if env.get(var):
                    api_key, key_source = env[var], var
                    break
        base = base_url or env.get("WAN_PROMPT_API_BASE") or {
            "DASHSCOPE_API_KEY": DASHSCOPE_BASE_URL,
            "OPENAI_API_KEY": OPENAI_BASE_URL,
        }.get(key_source or "", OLLAMA_BASE_URL)
        parsed = urllib.parse.urlparse(base)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ValueError(f"base_url must be an http(s) URL such as {OLLAMA_BASE_URL!r}; got {base!r}")
        base = base.rstrip("/")
        self.url = base if base.endswith("/chat/completions") else base + "/chat/completions"
        model = model or env.get("WAN_PROMPT_MODEL") or ("qwen-plus" if "dashscope" in parsed.netloc else None)
        if not model:
            raise ValueError(
                "model is required for the openai extender: pass model=... or set WAN_PROMPT_MODEL "
                "(e.g. 'qwen2.5:7b-instruct' for Ollama, 'qwen-plus' for DashScope)"
            )
        self.model = model
        self._api_key = api_key or None
        self.timeout = float(timeout)
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.retries = retries
        self.seed = seed

    def __repr__(self) -> str:  # never shows the key
        return f"OpenAICompatibleExtender(url={self.url!r}, model={self.model!r}, key={'set' if self._api_key else 'none'})"

    def _complete(self, request: ExtensionRequest) -> str:
        body: dict[str, Any] = {
            "model": self.model,
            "messages": [dict(m) for m in request.messages],
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
            "stream": False,
        }
        if self.seed is not None:
            body["seed"] = self.seed
        headers = {
            "Content-Type": "application/json",
            "Accept": "application/json",
            "User-Agent": "wan-playground-prompting/1",
        }
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        data = json.dumps(body, ensure_ascii=False).encode("utf-8")
        payload = self._post(data, headers)
        return self._content(payload)

    def _post(self, data: bytes, headers: dict[str, str]) -> bytes:
        for attempt in range(self.retries + 1):
            req = urllib.request.Request(self.url, data=data, headers=headers, method="POST")
            try:
                with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                    return resp.read(_MAX_RESPONSE_BYTES)
            except urllib.error.HTTPError as e:
                detail = _snippet(e.read(2000) if e.fp is not None else b"")
                if e.code in _RETRY_STATUS and attempt < self.retries:
                    time.sleep(min(0.5 * 2**attempt, 4.0))
                    continue
                raise BackendHTTPError(f"HTTP {e.code} from {self.url}: {detail or e.reason}") from None
            except (TimeoutError, socket.timeout):
                raise BackendTimeout(f"no answer from {self.url} within {self.timeout:g} s") from None
            except urllib.error.URLError as e:
                if isinstance(e.reason, (TimeoutError, socket.timeout)):
                    raise BackendTimeout(f"no answer from {self.url} within {self.timeout:g} s") from None
                raise BackendConnectionError(f"cannot reach {self.url}: {e.reason}") from None
            except (ConnectionError, OSError) as e:
                raise BackendConnectionError(f"connection to {self.url} failed: {e}") from None
        raise AssertionError("unreachable")  # the loop returns or raises

    def _content(self, payload: bytes) -> str:
        try:
            doc = json.loads(payload.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise MalformedResponse(f"the response is not JSON: {_snippet(payload)!r}") from None
        if not isinstance(doc, dict):
            raise MalformedResponse(f"the response is not a JSON object: {_snippet(payload)!r}")
        if doc.get("error"):
            err = doc["error"]
            message = err.get("message") if isinstance(err, dict) else err
            raise BackendHTTPError(f"the server reported an error: {_snippet(str(message))}")
        try:
            message = doc["choices"][0]["message"]
        except (KeyError, IndexError, TypeError):
            raise MalformedResponse("the response has no choices[0].message") from None
        if not isinstance(message, dict):
            raise MalformedResponse("choices[0].message is not an object")
        content = message.get("content")
        if isinstance(content, list):  # content parts
            content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
        if content is None and message.get("refusal"):
            raise BackendRefusal(f"the model declined: {_snippet(str(message['refusal']), 120)!r}")
        if content is None:
            return ""
        if not isinstance(content, str):
            raise MalformedResponse(f"choices[0].message.content is {type(content).__name__}, not text")
        return content
