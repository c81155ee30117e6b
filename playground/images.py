"""Checks on uploaded conditioning images (I2V / TI2V): readable, not huge, not tiny.

Memory: the file size is checked before the file is opened, the pixel count from the header
before anything is decoded, and at most ``MAX_CONCURRENT_DECODES`` full decodes run at once in this
process (further checks wait), so a burst of uploads cannot decode them all at the same time.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from .request import InputError

__all__ = [
    "MAX_CONCURRENT_DECODES",
    "MAX_IMAGE_BYTES",
    "MAX_IMAGE_PIXELS",
    "MAX_IMAGE_SIDE",
    "MIN_IMAGE_SIDE",
    "check_image",
    "discard_upload",
]

MAX_IMAGE_SIDE = 8192
MAX_IMAGE_PIXELS = 40_000_000  # 40 MP; a 4K frame is 8.3 MP
MIN_IMAGE_SIDE = 32
MAX_IMAGE_BYTES = 25 * 1024 * 1024  # app.py's max_file_size="25mb" (gradio counts in MiB)
MAX_CONCURRENT_DECODES = 2

_DECODE_SLOTS = threading.BoundedSemaphore(MAX_CONCURRENT_DECODES)

log = logging.getLogger(__name__)


def check_image(path: str | Path) -> tuple[int, int]:
    """Return ``(width, height)`` of the image at ``path``, or raise ``InputError("image", ...)``.

    Checks the file size first, then reads only the header for the size checks, then decodes
    the whole file once (under ``_DECODE_SLOTS``) so a truncated or corrupt upload is reported
    here rather than deep inside the pipeline.
    """
    from PIL import Image, UnidentifiedImageError

    p = Path(path)
    try:
        st = p.stat()
    except OSError:
        st = None
    if st is None or not p.is_file():
        raise InputError("image", f"the uploaded file {p.name!r} is missing on the server; upload it again")
    if st.st_size > MAX_IMAGE_BYTES:
        raise InputError(
            "image",
            f"{p.name!r} is {st.st_size / 2**20:.1f} MB; the limit is {MAX_IMAGE_BYTES // 2**20} MB. "
            "Downscale or compress it first",
        )
    if st.st_size == 0:
        raise InputError("image", f"{p.name!r} is empty (0 bytes); upload it again")
    try:
        with Image.open(p) as im:  # reads the header only
            width, height = im.size
            fmt = im.format
            if width > MAX_IMAGE_SIDE or height > MAX_IMAGE_SIDE or width * height > MAX_IMAGE_PIXELS:
                raise InputError(
                    "image",
                    f"{width}×{height} ({width * height / 1e6:.0f} MP) is too large; the limit is "
                    f"{MAX_IMAGE_SIDE} px per side and {MAX_IMAGE_PIXELS // 1_000_000} MP. Downscale it first",
                )
            if min(width, height) < MIN_IMAGE_SIDE:
                raise InputError("image", f"{width}×{height} is too small; each side needs at least {MIN_IMAGE_SIDE} px")
            with _DECODE_SLOTS:
                im.load()
    except InputError:
        raise
    except Image.DecompressionBombError as e:
        raise InputError("image", f"is too large to decode safely ({e}); downscale it first") from None
    except UnidentifiedImageError:
        raise InputError(
            "image", f"{p.name!r} is not an image (PNG, JPEG, WebP, BMP or GIF are accepted)"
        ) from None
    except (OSError, SyntaxError, ValueError) as e:
        detail = str(e).replace(str(p), p.name)  # no server paths in user-facing text
        raise InputError("image", f"{p.name!r} is damaged or truncated and cannot be decoded: {detail}") from None
    if fmt is None:
        raise InputError("image", f"{p.name!r} has no recognisable image format")
    return width, height


def discard_upload(path: str | Path, upload_root: str | Path) -> bool:
    """Delete an uploaded temp file once it has been used; ``True`` if it was deleted.

    Only a regular file that lies under ``upload_root`` after resolving all links is deleted:
    ``..`` traversal, a path outside the root, the root itself, a folder, or a symlink (even one
    inside the root; its target is never touched) is refused with ``False`` and a log line, as is a
    file that is already gone. The file's folder is removed too when that leaves it empty (Gradio
    keeps each upload in a folder of its own), but never the root itself. Never raises ``OSError``.
    """
    try:
        root = Path(upload_root).resolve(strict=True)
        given = Path(path)
        if given.is_symlink():
            log.warning("discard_upload: %s is a symlink; not deleted", given)
            return False
        target = given.resolve(strict=True)
    except (OSError, RuntimeError):  # missing, or a link loop
        return False
    if target == root or not target.is_relative_to(root):
        log.warning("discard_upload: %s is not under the upload folder %s; not deleted", target, root)
        return False
    if target.is_symlink() or not target.is_file():
        return False
    try:
        target.unlink()
    except OSError as e:
        if not isinstance(e, FileNotFoundError):
            log.warning("discard_upload: cannot delete %s: %s", target, e)
        return False
    if target.parent != root:
        try:
            target.parent.rmdir()  # only succeeds when empty
        except OSError:
            pass
    return True
