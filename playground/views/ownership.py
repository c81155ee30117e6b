"""Who made a result, for a public server's History: each browser keeps a random token (in
``gr.BrowserState``); its hash is the owner id stored with the result. Results stay reachable by
permalink for everyone; only the History list is filtered.

The history store records the owner (``commit(..., owner=)``) and lists by it (``list(owner=)``).
"""

from __future__ import annotations

import hashlib
import re
import secrets
from typing import Any

__all__ = ["new_token", "owner_id"]

_TOKEN = re.compile(r"^[A-Za-z0-9_-]{32,128}$")


def new_token() -> str:
    return secrets.token_urlsafe(32)


def owner_id(token: Any) -> str | None:
    """The owner id of a browser token; None for anything that is not a token this app made."""
    if not isinstance(token, str) or not _TOKEN.fullmatch(token):
        return None
    return hashlib.sha256(f"wan-playground-owner:{token}".encode()).hexdigest()[:32]
