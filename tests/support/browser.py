"""Headless Chromium for tests that look at the receiver's page: Debian's `chromium` driven by
Playwright, which is told where it is (no browser is downloaded). Without either, a test skips
when run by hand and fails under CI=true; screenshots go where the test run keeps them."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from playwright.sync_api import Browser

from tests.support.paths import ROOT


def missing(reason: str) -> None:
    """Skip by hand, fail under CI=true: CI must never pass by skipping the browser."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: a missing browser is a failure)")
    pytest.skip(reason)


def chromium_path() -> str:
    found = os.environ.get("DP_CHROMIUM") or shutil.which("chromium")
    if not found:
        missing(
            "Chromium is not installed: apt-get install -y --no-install-recommends "
            "chromium chromium-driver (or set DP_CHROMIUM)"
        )
    assert found is not None
    return found


@contextmanager
def chromium() -> Iterator[Browser]:
    """A headless Chromium, closed (with its driver) when the block ends."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing("Playwright is not installed: pip install -e '.[dev]'")
        raise
    path = chromium_path()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=path, headless=True)
        try:
            yield browser
        finally:
            browser.close()


def artifacts() -> Path:
    """Where a test run keeps what it shows (screenshots): $DP_ARTIFACTS, else .artifacts/."""
    folder = Path(os.environ.get("DP_ARTIFACTS") or ROOT / ".artifacts")
    folder.mkdir(parents=True, exist_ok=True)
    return folder
