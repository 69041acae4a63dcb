"""Draw the README's picture of the board, ``docs/board.png``, from a real ``lifecycle demo``.

The script starts ``lifecycle demo`` as ``make demo`` does (same defaults: 180 features, the
first 150 simulated days backfilled, the last 30 live at a day per second) on a free loopback
port with a database in a temporary folder, waits until the demo has played ``--live``
seconds, and photographs the board in Debian's headless Chromium driven by Playwright (the
dev extra). Every card, count and badge in the picture is what the engine served.

Usage (from the repository root)::

    python docs/board_picture.py                        # writes docs/board.png (1440 x 900)
    python docs/board_picture.py --width 1920 --height 1080 --out /tmp/board.png

With ``--detail PNG`` it also photographs the dialog of a blocked card
(``docs/board-detail.png`` in the README): its risks, its launch forecast ("no launch date
while blocked; once unblocked, ...") and its timeline.

Exits 1 with a message on stderr when Chromium or Playwright is missing or the demo fails.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "docs" / "board.png"
CHROMIUM = "/usr/bin/chromium"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait_for(proc: subprocess.Popen[str], text: str, seconds: float) -> None:
    """Read the demo's output until a line holds ``text``; fail after ``seconds``."""
    assert proc.stdout is not None
    deadline = time.monotonic() + seconds
    for line in proc.stdout:
        if text in line:
            return
        if time.monotonic() > deadline:
            break
    raise SystemExit(f"board_picture: the demo did not print {text!r} in {seconds:g} s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT, help="the PNG to write")
    parser.add_argument("--width", type=int, default=1440)
    parser.add_argument("--height", type=int, default=900)
    parser.add_argument(
        "--live", type=float, default=8.0, help="seconds of the live demo before the picture"
    )
    parser.add_argument(
        "--detail", type=Path, help="also the dialog of a blocked card, as this PNG"
    )
    args = parser.parse_args(argv)
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        print("board_picture: needs Playwright (pip install -e '.[dev]')", file=sys.stderr)
        return 1
    if not Path(CHROMIUM).exists():
        print(f"board_picture: no Chromium at {CHROMIUM} (apt install chromium)", file=sys.stderr)
        return 1
    port = _free_port()
    with tempfile.TemporaryDirectory() as tmp:
        env = {k: v for k, v in os.environ.items() if not k.startswith("LIFECYCLE_")}
        env.update(
            LIFECYCLE_HTTP_HOST="127.0.0.1",
            LIFECYCLE_HTTP_PORT=str(port),
            LIFECYCLE_DB=str(Path(tmp) / "demo.db"),
            PYTHONPATH=str(REPO),
            PYTHONUNBUFFERED="1",
        )
        demo = subprocess.Popen(
            [sys.executable, "-m", "engine.cli.main", "demo"],
            env=env,
            cwd=tmp,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        try:
            _wait_for(demo, "clock runs with the replay", 60)
            time.sleep(args.live)
            with sync_playwright() as pw:
                browser = pw.chromium.launch(
                    executable_path=CHROMIUM, args=["--headless", "--no-sandbox", "--disable-gpu"]
                )
                page = browser.new_page(
                    viewport={"width": args.width, "height": args.height},
                    reduced_motion="reduce",  # no flash on the cards that just moved
                )
                page.goto(f"http://127.0.0.1:{port}/")
                page.wait_for_function("window.boardStats.firstRenderMs !== null")
                args.out.parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(args.out))
                if args.detail is not None:
                    _photograph_detail(page, args.detail)
                browser.close()
        finally:
            demo.send_signal(signal.SIGINT)
            demo.wait(timeout=30)
    print(f"wrote {args.out} ({args.width} x {args.height}) from lifecycle demo")
    if args.detail is not None:
        print(f"wrote {args.detail} (a blocked card's dialog)")
    return 0


def _photograph_detail(page: Any, out: Path) -> None:
    """Open a blocked card and photograph its dialog once its forecast is in.

    A card blocked within its stage's SLA comes first (one risk, not two, to read). The demo
    plays live meanwhile: a card unblocked between the click and the photograph is closed
    and the next one tried.
    """
    for selector in [
        ".card:has(.b-blocked):not(:has(.b-sla_breached)) .card-btn",
        ".card:has(.b-blocked) .card-btn",
    ]:
        cards = page.locator(selector)
        for i in range(min(cards.count(), 5)):
            cards.nth(i).click()
            page.wait_for_selector("dialog#detail .facts")
            page.wait_for_selector("dialog#detail .timeline li")
            if "while blocked" in page.locator("dialog#detail .facts").inner_text():
                page.locator("dialog#detail").screenshot(path=str(out))
                return
            page.keyboard.press("Escape")
    raise SystemExit("board_picture: no blocked card on the board to open")


if __name__ == "__main__":
    sys.exit(main())
