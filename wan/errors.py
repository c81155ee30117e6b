"""Exception types shared across the ``wan`` package (no imports, so any module may use them)."""

from __future__ import annotations

__all__ = ["CheckpointError"]


class CheckpointError(RuntimeError):
    """A checkpoint file or folder is missing, incomplete, corrupt or does not match the task.

    The message always names the file or folder and says what was expected there.
    """
