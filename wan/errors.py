"""Exception types shared across the ``wan`` package (no imports, so any module may use them)."""

from __future__ import annotations

__all__ = ["CheckpointError", "T5CheckpointError", "T5FileNotFoundError"]


class CheckpointError(RuntimeError):
    """A checkpoint file or folder is missing, incomplete, corrupt or does not match the task.

    The message always names the file or folder and says what was expected there.
    """


class T5CheckpointError(CheckpointError):
    """A text-encoder checkpoint is missing, malformed or inconsistent; the message names the file.

    Raised by ``wan.modules.t5`` (key conversion, architecture, key/shape checks) and by
    ``wan.loading`` (reading the weights, ``config.json`` and the tokenizer)."""


class T5FileNotFoundError(T5CheckpointError, FileNotFoundError):
    """A text-encoder file or folder does not exist (a ``T5CheckpointError`` and a ``FileNotFoundError``)."""
