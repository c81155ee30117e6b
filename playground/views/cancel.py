"""Cancel flags of running generations, keyed by (session, task)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["CancelRegistry"]


class CancelRegistry:
    """Thread-safe map ``(session, task) -> threading.Event`` of the generations in progress.

    The generate handler registers its flag for the duration of a run; the Cancel button sets it;
    the engine checks it between steps. A newer run of the same session and task replaces the
    entry, and an older run never removes a newer run's flag.
    """

    def __init__(self) -> None:
        self._flags: dict[tuple[str, str], threading.Event] = {}
        self._lock = threading.Lock()

    @contextmanager
    def register(self, session: str, task: str) -> Iterator[threading.Event]:
        key = (session, task)
        flag = threading.Event()
        with self._lock:
            self._flags[key] = flag
        try:
            yield flag
        finally:
            with self._lock:
                if self._flags.get(key) is flag:
                    del self._flags[key]

    def cancel(self, session: str, task: str) -> bool:
        """Set the flag of the run of ``(session, task)``; False when none is running."""
        with self._lock:
            flag = self._flags.get((session, task))
        if flag is None:
            return False
        flag.set()
        return True

    def __len__(self) -> int:
        with self._lock:
            return len(self._flags)
