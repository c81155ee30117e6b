"""The app's views: one class per part of the page, each owning its components and its handlers.

``app.create_demo`` only composes them (``TaskView`` per task tab, ``HistoryView``) and wires the
events; the API endpoints with their documented signatures live in ``endpoints``.
"""

from __future__ import annotations

from .cancel import CancelRegistry
from .common import AppOptions
from .history_view import HistoryView
from .queue_guard import SessionJobCap
from .task_tab import TaskView

__all__ = ["AppOptions", "CancelRegistry", "HistoryView", "SessionJobCap", "TaskView"]
