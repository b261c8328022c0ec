"""Open a local page in headless Chromium with the network off, and report what it did: the DOM
once its scripts ran, its console messages, and the JSON that the plots page's recorder keeps on
<html data-vega-embed> (see build.py); optionally a screenshot of the whole page.

    python tools/plots_page/headless.py dvc_plots/index.html --screenshot docs/dvc_plots.png

tests/test_plots_page.py opens `dvc plots show`'s page with it; the README's screenshot was taken
with the command above.
"""
from __future__ import annotations

import argparse
import html
import json
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

# Debian's package is `chromium` (apt-get install chromium); the other names are other builds'.
NAMES = ("chromium", "chromium-browser", "google-chrome")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars"]
# No network: every request goes through a proxy on the discard port, where nothing listens,
# loopback included ("<-loopback>" removes Chromium's implicit bypass), and no host name resolves.
# file:// pages and the files beside them still load.
NETWORK_OFF = ["--proxy-server=127.0.0.1:9", "--proxy-bypass-list=<-loopback>",
               "--host-resolver-rules=MAP * ~NOTFOUND"]
# How `--enable-logging=stderr` prints a console message (any level: log, warn and error alike).
CONSOLE = re.compile(r':CONSOLE[:(]\d+\)?\] "(.*)", source: ')
RECORD = re.compile(r'<html[^>]* data-vega-embed="([^"]*)"')


def find_chromium() -> str | None:
    return next((path for path in map(shutil.which, NAMES) if path), None)


@dataclass
class Page:
    dom: str             # the serialized DOM once the page settled
    console: list[str]   # every console message, in order
    record: dict | None  # the recorder's JSON (None: the page has no recorder, or it never ran)


def chromium_run(chromium: str, url: str, extra: list[str], timeout: float) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        return subprocess.run([chromium, *FLAGS, *NETWORK_OFF, f"--user-data-dir={profile}", *extra, url],
                              capture_output=True, text=True, timeout=timeout, check=True)


def open_page(page: Path, chromium: str, screenshot: Path | None = None, width: int = 1400,
              height: int | None = None, budget_ms: int = 20000, timeout: float = 120) -> Page:
    """Load ``page``, let its scripts run for ``budget_ms`` of virtual time, dump the DOM; then,
    if asked, load it again in a ``width`` x ``height`` window (default: as tall as the page) and
    save a PNG screenshot."""
    url = Path(page).resolve().as_uri()
    settle = f"--virtual-time-budget={budget_ms}"
    window = f"--window-size={width},1000"  # the layout (plots per row), and so the page's height, follow the width
    result = chromium_run(chromium, url, [settle, window, "--enable-logging=stderr", "--v=0", "--dump-dom"], timeout)
    console = [m.group(1) for m in map(CONSOLE.search, result.stderr.splitlines()) if m]
    found = RECORD.search(result.stdout)
    record = json.loads(html.unescape(found.group(1))) if found else None
    if screenshot is not None:
        height = height or (int(record["height"]) if record else 2000)
        Path(screenshot).parent.mkdir(parents=True, exist_ok=True)
        chromium_run(chromium, url, [settle, f"--window-size={width},{height}",
                                     f"--screenshot={Path(screenshot).resolve()}"], timeout)
    return Page(dom=result.stdout, console=console, record=record)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("page", type=Path, help="an HTML file, e.g. dvc_plots/index.html")
    parser.add_argument("--screenshot", type=Path, help="write a PNG of the whole page here")
    parser.add_argument("--width", type=int, default=1400, help="window width in pixels")
    parser.add_argument("--height", type=int, help="screenshot height in pixels (default: the whole page)")
    args = parser.parse_args()
    chromium = find_chromium()
    if not chromium:
        sys.exit("error: no Chromium found (on Debian: apt-get install chromium)")
    page = open_page(args.page, chromium, args.screenshot, args.width, args.height)
    views = (page.record or {}).get("views", [])
    print(f"{sum(v['status'] == 'ok' for v in views)} of {len(views)} Vega views drawn; "
          f"versions {(page.record or {}).get('versions')}")
    for view in views:
        if view["status"] != "ok":
            print(f"  {view['id']}: {view['status']} {view.get('error', '')}")
    for message in page.console:
        print(f"console: {message}")
    if args.screenshot:
        print(f"wrote {args.screenshot}")


if __name__ == "__main__":
    main()
