"""Exception types shared across the ``wan`` package (no imports, so any module may use them).

* ``CheckpointError``: a checkpoint file or folder is wrong; the message names it.
* ``InputError``: a generation setting is invalid; ``field`` names the setting (the request field,
  e.g. ``"sampling_steps"``) and ``message`` says what is allowed. The app, the CLI and scripts all
  catch this one type. ``GenerationError`` is its older name (the same class).
* ``GenerationCancelled``: a run was stopped on request (callback returned False, Cancel button).
"""

from __future__ import annotations

__all__ = ["CheckpointError", "GenerationCancelled", "GenerationError", "InputError", "T5CheckpointError", "T5FileNotFoundError"]


class CheckpointError(RuntimeError):
    """A checkpoint file or folder is missing, incomplete, corrupt or does not match the task.

    The message always names the file or folder and says what was expected there.
    """


class InputError(ValueError):
    """A generation input is invalid. ``field`` names it; ``message`` says what is allowed.

    ``str(error)`` is ``"<field>: <message>"``.
    """

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}")

    def __reduce__(self) -> tuple[type, tuple[str, str]]:  # picklable across processes
        return (type(self), (self.field, self.message))


GenerationError = InputError  # the name used before the request contract; same class


class GenerationCancelled(Exception):
    """The run was stopped on request (the callback returned False or raised this); no video was produced."""


class T5CheckpointError(CheckpointError):
    """A text-encoder checkpoint is missing, malformed or inconsistent; the message names the file.

    Raised by ``wan.modules.t5`` (key conversion, architecture, key/shape checks) and by
    ``wan.loading`` (reading the weights, ``config.json`` and the tokenizer)."""


class T5FileNotFoundError(T5CheckpointError, FileNotFoundError):
    """A text-encoder file or folder does not exist (a ``T5CheckpointError`` and a ``FileNotFoundError``)."""
