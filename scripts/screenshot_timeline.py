#!/usr/bin/env python
"""Take the README screenshot of the Timeline tab in demo mode (assets/screenshot-timeline.png, 1280 wide).

    python scripts/screenshot_timeline.py [--out assets/screenshot-timeline.png] [--locale en-US]

Starts ``app.py --demo`` on a free port with a throwaway outputs folder and, in Debian's Chromium
(Playwright), makes a clip from an image with the generate box, extends it twice, exports the timeline
and captures the page (the demo's tiny random weights: the clips are noise).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from screenshot import CHROMIUM_ARGS, ROOT, demo_server  # noqa: E402

SAMPLE = ROOT / "assets" / "samples" / "sunset_lake.png"
PROMPTS = ("a sailboat drifts across the lake at sunset", "the sun sinks behind the mountains",
           "stars come out over the still water")


def capture(url: str, out: Path, locale: str) -> None:
    import shutil

    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(chromium).exists():
        raise SystemExit("Debian's Chromium is needed: apt-get install -y chromium")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 1000}, locale=locale, device_scale_factor=1)
        page.goto(url)
        page.locator("#tabs [role=tab]").nth(3).click()  # Timeline (the fourth tab, in any language)
        tab = page.locator("#tab-timeline")
        tab.locator("#timeline-box textarea").wait_for(timeout=60_000)
        summary = tab.locator("#timeline-summary")

        def wait_clips(n: int) -> None:
            page.wait_for_function("([el, n]) => (el.innerText.match(/(\\d+) clips/) || [])[1] == n",
                                   arg=[summary.element_handle(), n], timeout=180_000)

        tab.locator("#timeline-box input[type=file]").set_input_files(str(SAMPLE))
        tab.locator("#timeline-box textarea").fill(PROMPTS[0])
        page.wait_for_timeout(800)
        tab.locator("#timeline-box button").last.click()
        wait_clips(1)
        for n, prompt in enumerate(PROMPTS[1:], start=2):
            tab.locator("#timeline-extend-prompt textarea").fill(prompt)
            tab.locator("#timeline-extend-btn").click()
            wait_clips(n)
        title = tab.locator("#timeline-title input, #timeline-title textarea").first
        title.fill("Sunset on the lake")
        title.press("Enter")
        page.wait_for_function("el => el.innerText.startsWith('Sunset on the lake')", arg=summary.element_handle(),
                               timeout=15_000)
        tab.locator("#timeline-export").click()
        tab.locator("#timeline-download").wait_for(state="visible", timeout=120_000)
        tab.locator("#timeline-clips .thumbnail-item").nth(1).click()  # a clip selected, its details shown
        page.wait_for_timeout(1500)
        out.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(out), full_page=True)
        browser.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "assets" / "screenshot-timeline.png")
    ap.add_argument("--locale", default="en-US")
    args = ap.parse_args()
    with demo_server() as url:
        capture(url, args.out, args.locale)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
