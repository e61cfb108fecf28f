"""Headless Chromium (Debian's package) driven by Playwright, with what a visitor would notice
recorded: console errors, failed requests and HTTP errors."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.support.paths import PROJECT

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARTIFACTS = PROJECT / "test-artifacts"
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 900}

requires_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not installed (scripts/setup-system installs it)"
)


@dataclass
class Problems:
    console_errors: list[str] = field(default_factory=list)
    failed_requests: list[str] = field(default_factory=list)
    http_errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)

    def assert_none(self) -> None:
        assert self.console_errors == []
        assert self.failed_requests == []
        assert self.http_errors == []


@contextmanager
def browser_page(
    viewport: dict[str, int] = DESKTOP, javascript: bool = True
) -> Iterator[tuple[object, Problems]]:
    from playwright.sync_api import sync_playwright

    problems = Problems()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            context = browser.new_context(viewport=viewport, java_script_enabled=javascript)
            page = context.new_page()
            page.on(
                "console", lambda m: problems.console_errors.append(m.text) if m.type == "error" else None
            )
            page.on("pageerror", lambda e: problems.console_errors.append(str(e)))
            page.on("requestfailed", lambda r: problems.failed_requests.append(f"{r.url}: {r.failure}"))
            page.on("request", lambda r: problems.requests.append(r.url))
            page.on(
                "response",
                lambda r: problems.http_errors.append(f"{r.status} {r.url}") if r.status >= 400 else None,
            )
            yield page, problems
        finally:
            browser.close()


def screenshot(page, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
