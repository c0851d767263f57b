"""A real review site and a real browser: ``certgate web`` as a subprocess, Debian's
Chromium driven by Playwright (never a browser download: there is no internet here)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from service_process import ServiceProcess

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update",
                  "--disable-sync"]


class WebProcess(ServiceProcess):
    """``certgate web --listen 127.0.0.1:0``; the port comes from its "listening" line."""

    def __init__(self, env: dict[str, str]) -> None:
        super().__init__(["web", "--listen", "127.0.0.1:0"], env,
                         r"listening on https://127\.0\.0\.1:(\d+)")

    @property
    def port(self) -> int:
        assert self.match is not None
        return int(self.match.group(1))

    @property
    def base(self) -> str:
        return f"https://localhost:{self.port}"


@contextmanager
def chromium() -> Iterator[Any]:
    """A headless Debian Chromium under Playwright (skipped with the reason when absent)."""
    if not shutil.which(CHROMIUM) and not os.path.exists(CHROMIUM):
        if os.environ.get("CI"):
            pytest.fail("Debian's chromium is required in CI (scripts/setup.sh installs it)")
        pytest.skip("Debian's chromium is not installed (scripts/setup.sh installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                             args=CHROMIUM_FLAGS)
        try:
            yield browser
        finally:
            browser.close()
