"""Checks on uploaded conditioning images (I2V / TI2V): readable, not huge, not tiny."""

from __future__ import annotations

from pathlib import Path

from .request import InputError

__all__ = ["MAX_IMAGE_PIXELS", "MAX_IMAGE_SIDE", "MIN_IMAGE_SIDE", "check_image"]

MAX_IMAGE_SIDE = 8192
MAX_IMAGE_PIXELS = 40_000_000  # 40 MP; a 4K frame is 8.3 MP
MIN_IMAGE_SIDE = 32


def check_image(path: str | Path) -> tuple[int, int]:
    """Return ``(width, height)`` of the image at ``path``, or raise ``InputError("image", ...)``.

    Reads only the header for the size check, then decodes the whole file once so a truncated
    or corrupt upload is reported here rather than deep inside the pipeline.
    """
    from PIL import Image, UnidentifiedImageError

    p = Path(path)
    if not p.is_file():
        raise InputError("image", f"the uploaded file {p.name!r} is missing on the server; upload it again")
    try:
        with Image.open(p) as im:
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
