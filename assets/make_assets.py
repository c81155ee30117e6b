"""Draws the app's favicon and sample input images with PIL (run once; the PNGs are committed).

    python assets/make_assets.py
"""

from __future__ import annotations

import math
from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter

HERE = Path(__file__).resolve().parent


def favicon(path: Path) -> None:
    size = 64
    im = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    d = ImageDraw.Draw(im)
    d.rounded_rectangle((2, 2, size - 3, size - 3), radius=14, fill=(30, 27, 75, 255))
    # a "W" drawn as a wave
    pts = [(10, 18), (21, 48), (32, 26), (43, 48), (54, 18)]
    d.line(pts, fill=(167, 139, 250, 255), width=6, joint="curve")
    im.save(path)


def sunset_lake(path: Path, w: int = 832, h: int = 480) -> None:
    im = Image.new("RGB", (w, h))
    px = im.load()
    horizon = int(h * 0.58)
    for y in range(h):
        for x in range(w):
            if y < horizon:
                t = y / horizon
                px[x, y] = (int(40 + 215 * t), int(30 + 110 * t), int(90 + 20 * (1 - t)))
            else:
                t = (y - horizon) / (h - horizon)
                ripple = 12 * math.sin(x / 9.0 + y / 3.0)
                px[x, y] = (int(200 - 150 * t + ripple), int(110 - 70 * t + ripple / 2), int(90 + 40 * t))
    d = ImageDraw.Draw(im)
    cx, cy, r = int(w * 0.56), horizon - 95, 46
    d.ellipse((cx - r, cy - r, cx + r, cy + r), fill=(255, 214, 120))
    # mountains
    d.polygon([(0, horizon), (180, horizon - 120), (330, horizon - 40), (470, horizon - 150), (640, horizon - 30),
               (w, horizon - 90), (w, horizon)], fill=(44, 32, 70))
    # a small boat
    bx, by = int(w * 0.3), horizon + 60
    d.polygon([(bx - 40, by), (bx + 40, by), (bx + 28, by + 14), (bx - 28, by + 14)], fill=(25, 20, 30))
    d.line([(bx, by), (bx, by - 55)], fill=(25, 20, 30), width=3)
    d.polygon([(bx + 2, by - 52), (bx + 30, by - 8), (bx + 2, by - 8)], fill=(240, 230, 210))
    im.filter(ImageFilter.GaussianBlur(0.6)).save(path)


def cat_portrait(path: Path, w: int = 480, h: int = 832) -> None:
    im = Image.new("RGB", (w, h), (24, 38, 64))
    d = ImageDraw.Draw(im)
    for i in range(0, h, 4):  # soft vertical gradient
        c = int(24 + 40 * i / h)
        d.line([(0, i), (w, i)], fill=(c, c + 14, c + 40))
    cx, cy = w // 2, int(h * 0.55)
    d.ellipse((cx - 150, cy - 40, cx + 150, cy + 260), fill=(230, 140, 60))       # body
    d.ellipse((cx - 110, cy - 220, cx + 110, cy - 10), fill=(240, 150, 70))       # head
    d.polygon([(cx - 100, cy - 170), (cx - 70, cy - 270), (cx - 30, cy - 200)], fill=(240, 150, 70))
    d.polygon([(cx + 100, cy - 170), (cx + 70, cy - 270), (cx + 30, cy - 200)], fill=(240, 150, 70))
    for ex in (cx - 45, cx + 45):
        d.ellipse((ex - 18, cy - 140, ex + 18, cy - 100), fill=(250, 250, 240))
        d.ellipse((ex - 7, cy - 132, ex + 7, cy - 106), fill=(20, 20, 20))
    d.polygon([(cx - 12, cy - 80), (cx + 12, cy - 80), (cx, cy - 66)], fill=(220, 90, 110))
    im.filter(ImageFilter.GaussianBlur(0.8)).save(path)


if __name__ == "__main__":
    (HERE / "samples").mkdir(exist_ok=True)
    favicon(HERE / "favicon.png")
    sunset_lake(HERE / "samples" / "sunset_lake.png")
    cat_portrait(HERE / "samples" / "cat_portrait.png")
    print("wrote", *sorted(p.relative_to(HERE) for p in HERE.rglob("*.png")))
