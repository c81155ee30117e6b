"""Shared fixtures: tiny random Wan checkpoints in the official and Diffusers layouts.

``tiny_ckpt(task, layout="official", seed=0) -> Path`` writes each checkpoint once per test session
(read-only by convention: never modify it). ``tiny_ckpt_copy(task, layout="official")`` gives a
private copy under the test's ``tmp_path`` for tests that break files on purpose.
``isolated_env`` clears ``WAN_CKPT_DIR`` and points the Hugging Face cache at an empty folder.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

TinyCkpt = Callable[..., Path]


@pytest.fixture(scope="session")
def tiny_ckpt(tmp_path_factory: pytest.TempPathFactory) -> TinyCkpt:
    """Factory ``(task, layout="official", seed=0) -> Path``; each checkpoint is written once per session."""
    from wan.testing import synthetic

    cache: dict[tuple[str, str, int], Path] = {}
    root = tmp_path_factory.mktemp("tiny_ckpts")

    def get(task: str, layout: str = "official", seed: int = 0) -> Path:
        key = (task, layout, seed)
        if key not in cache:
            cache[key] = synthetic.write_tiny_checkpoint(task, root / f"{task}-{layout}-{seed}", seed=seed, layout=layout)
        return cache[key]

    return get


@pytest.fixture
def tiny_ckpt_copy(tiny_ckpt: TinyCkpt, tmp_path: Path) -> TinyCkpt:
    """Factory ``(task, layout="official") -> Path``: a private, writable copy of the session checkpoint."""

    def copy(task: str, layout: str = "official", seed: int = 0) -> Path:
        dest = tmp_path / f"copy-{task}-{layout}-{seed}"
        shutil.copytree(tiny_ckpt(task, layout, seed), dest)
        return dest

    return copy


@pytest.fixture
def isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No WAN_CKPT_DIR, no offline flag, an empty Hugging Face cache; returns the cache folder."""
    hub = tmp_path / "hf-hub"
    hub.mkdir()
    for var in ("WAN_CKPT_DIR", "HF_HUB_OFFLINE", "HUGGINGFACE_HUB_CACHE", "HF_HOME", "XDG_CACHE_HOME"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_HUB_CACHE", str(hub))
    return hub
