"""A real headless Chromium (Debian's ``chromium``) driven by Playwright, on a real
gateway. Every page the tests open records the requests it makes and its console
errors; ``UiPage.check`` runs axe-core (npm, pinned in tests/ui/package.json) on the
view and saves a screenshot to docs/screenshots/."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright import sync_api as playwright_sync

from tests.server import Running
from tests.ui.page import AXE, UiPage, open_page

CHROMIUM = os.environ.get("FEDGATE_CHROMIUM", "/usr/bin/chromium")
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    assert Path(CHROMIUM).exists(), f"{CHROMIUM} missing: run scripts/install-system-deps.sh"
    assert AXE.exists(), f"{AXE} missing: run `make ui-test-deps` (npm ci in tests/ui)"
    with playwright_sync.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture
def make_page(browser: Any) -> Iterator[Any]:
    """``make_page(gw, **context_options)`` → a UiPage; contexts closed at the end."""
    contexts: list[Any] = []

    def make(gw: Running, **context: Any) -> UiPage:
        ctx, ui = open_page(browser, gw, **context)
        contexts.append(ctx)
        return ui

    yield make
    for ctx in contexts:
        ctx.close()
