"""Text from users (link parameters, stored settings, mp4 metadata, request values) on its way to
the page: ``md`` for ``gr.Markdown`` values, ``toast`` for ``gr.Error`` / ``gr.Warning`` / ``gr.Info``.

Both neutralise HTML (``<`` ``>`` ``&`` become entities, so no element from a URL is ever built);
``md`` also escapes Markdown syntax, so link or image syntax (``[x](http://...)``, ``![](...)``)
shows as text. Every place that puts user-controlled text into Markdown or a toast uses one of them.
"""

from __future__ import annotations

import html
import re

__all__ = ["code", "md", "toast"]

# Markdown punctuation that can start a link, an image, emphasis, code, a heading, a list or a table;
# ":" too, so "http://..." never becomes an autolink (inside one, backslash escapes would show)
_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|~>:])")


def toast(text: object) -> str:
    """``text`` for a toast (rendered as HTML by the browser): no tags, no entities resolved."""
    return html.escape(str(text), quote=False)


def md(text: object) -> str:
    """``text`` for a Markdown component: shown literally, whatever it holds."""
    escaped = html.escape(str(text), quote=False)  # before the backslashes: "&" must stay an entity
    return _MD_SPECIAL.sub(r"\\\1", escaped).replace("\n", "  \n")


def code(text: object) -> str:
    """``text`` as a Markdown code span (shown literally; backticks and line breaks are dropped)."""
    cleaned = re.sub(r"[`\r\n]+", " ", str(text)).strip()
    return f"`{cleaned}`" if cleaned else ""
