"""Open a results page in headless Chromium and report whether its charts drew without script errors.

The page (``fmnist.reproduce.page``) records JavaScript errors and, once loaded, stamps on
``<body>`` how many plotly charts it holds (``data-charts``) and how many drew an SVG
(``data-charts-drawn``); ``chromium --dump-dom`` returns the DOM after the scripts ran.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from fmnist.errors import FmnistError

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "chrome")


@dataclass
class RenderResult:
    charts: int
    drawn: int
    errors: str
    screenshot: Path | None

    @property
    def ok(self) -> bool:
        return self.charts > 0 and self.drawn == self.charts and not self.errors


def find_browser() -> str | None:
    return next((path for name in BROWSERS if (path := shutil.which(name))), None)


def _flags(browser: str) -> list[str]:
    return [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            "--hide-scrollbars", "--virtual-time-budget=15000", "--run-all-compositor-stages-before-draw"]


def render(page: str | Path, screenshot: str | Path | None = None, timeout: float = 120.0) -> RenderResult:
    """Load ``page`` in headless Chromium; count drawn charts, collect script errors, optionally screenshot."""
    browser = find_browser()
    if browser is None:
        raise FmnistError("no Chromium found (install Debian's `chromium` package) to check the HTML page.")
    page = Path(page).resolve()
    if not page.is_file():
        raise FmnistError(f"{page} does not exist; write it with python -m fmnist.reproduce first.")
    try:
        dom = subprocess.run([*_flags(browser), "--dump-dom", page.as_uri()], capture_output=True, text=True,
                             timeout=timeout, check=False).stdout
        shot = None
        if screenshot is not None:
            shot = Path(screenshot).resolve()
            subprocess.run([*_flags(browser), f"--screenshot={shot}", "--window-size=1280,2400", page.as_uri()],
                           capture_output=True, timeout=timeout, check=False)
            shot = shot if shot.is_file() else None
    except subprocess.TimeoutExpired:
        raise FmnistError(f"Chromium did not finish rendering {page} within {timeout:.0f} s.") from None
    body = re.search(r"<body([^>]*)>", dom)
    attrs = body.group(1) if body else ""
    charts = re.search(r'data-charts="(\d+)"', attrs)
    drawn = re.search(r'data-charts-drawn="(\d+)"', attrs)
    errors = re.search(r'<pre id="js-errors">(.*?)</pre>', dom, re.S)
    if charts is None:  # the page's own script never finished: report that as the error
        return RenderResult(0, 0, "page script did not run (no data-charts on <body>)", shot)
    return RenderResult(int(charts.group(1)), int(drawn.group(1)) if drawn else 0,
                        errors.group(1).strip() if errors else "", shot)
