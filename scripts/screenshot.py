#!/usr/bin/env python
"""Take the README screenshots of the app in demo mode: the desktop page (assets/screenshot.png) and
a phone (390x844, assets/screenshot-phone.png).

    python scripts/screenshot.py [--out assets/screenshot.png] [--phone-out assets/screenshot-phone.png]
                                 [--locale en-US]

Starts ``app.py --demo`` on a free port with a throwaway outputs folder, fills the prompt formula
in Debian's Chromium (Playwright), generates one video and captures the page; on the phone, types a
prompt, taps Generate and captures the screen the user then sees (the result under Generate).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def demo_server() -> Iterator[str]:
    """``app.py --demo`` on a free port with a throwaway outputs folder; yields its URL, stops it after."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}/"
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.Popen(
            [sys.executable, str(ROOT / "app.py"), "--demo", "--port", str(port), "--outputs", tmp],
            cwd=ROOT, start_new_session=True, env={**os.environ, "HF_HUB_OFFLINE": "1"},
        )
        try:
            _wait(url, proc)
            yield url
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)


def _wait(url: str, proc: subprocess.Popen, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"app.py exited with code {proc.returncode}")
        try:
            with urllib.request.urlopen(url + "gradio_api/info", timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    raise SystemExit(f"app.py did not start within {timeout}s")


def capture(url: str, out: Path, locale: str, phone_out: Path | None = None) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = shutil.which("chromium") or "/usr/bin/chromium"
        if not Path(chromium).exists():
            raise SystemExit("Debian's Chromium is needed: apt-get install -y chromium")
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1440, "height": 1080}, locale=locale, device_scale_factor=1)
        page.goto(url)
        tab = page.locator("#tab-t2v")
        tab.locator(".f-subject input").wait_for(timeout=60_000)
        tab.locator(".f-subject input").fill("a red fox")
        tab.locator(".f-subject_desc input, .f-subject_desc textarea").first.fill("with a thick winter coat")
        tab.locator(".f-scene input").fill("a snowy birch forest")
        tab.locator(".f-motion input").fill("trots across the clearing")
        for cls, option in (("g-lighting", "Soft lighting"), ("g-time_of_day", "Dawn time"),
                            ("g-shot_size", "Wide shot")):
            tab.locator(f".{cls} input").first.click()
            page.get_by_role("option", name=option, exact=True).click()
        page.wait_for_timeout(500)
        tab.locator("button.use-prompt").click()
        page.wait_for_timeout(300)
        tab.locator("button.generate").click()
        tab.locator(".result-video video").wait_for(state="attached", timeout=120_000)
        page.wait_for_timeout(1500)
        out.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(out))
        page.close()
        if phone_out is not None:
            capture_phone(browser, url, phone_out, locale)
        browser.close()


def capture_phone(browser, url: str, out: Path, locale: str) -> None:
    page = browser.new_page(viewport={"width": 390, "height": 844}, locale=locale, device_scale_factor=2,
                            is_mobile=True, has_touch=True)
    page.goto(url)
    tab = page.locator("#tab-t2v")
    tab.locator(".prompt textarea").wait_for(timeout=60_000)
    page.wait_for_timeout(800)
    tab.locator(".prompt textarea").fill("A red fox with a thick winter coat trots across a snowy birch forest "
                                         "clearing at dawn, soft lighting, wide shot.")
    tab.locator("button.generate").tap()
    tab.locator(".result-video video").wait_for(state="attached", timeout=120_000)
    page.wait_for_timeout(1500)
    page.evaluate("() => document.querySelector('#tab-t2v .prompt').scrollIntoView({block: 'start'})")
    page.wait_for_timeout(500)
    out.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(out))
    page.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "assets" / "screenshot.png")
    ap.add_argument("--phone-out", type=Path, default=ROOT / "assets" / "screenshot-phone.png",
                    help="the phone screenshot (390x844); 'none' to skip")
    ap.add_argument("--locale", default="en-US")
    args = ap.parse_args()
    with demo_server() as url:
        capture(url, args.out, args.locale, None if str(args.phone_out) == "none" else args.phone_out)
    print(f"wrote {args.out}" + ("" if str(args.phone_out) == "none" else f" and {args.phone_out}"))


if __name__ == "__main__":
    main()
