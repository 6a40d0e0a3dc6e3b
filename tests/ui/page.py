"""A browser page on the gateway's origin, as the web page's tests drive it: it records
the requests it makes and its console errors; ``UiPage.check`` runs axe-core (npm,
pinned in tests/ui/package.json) on the view and saves a screenshot to docs/screenshots/."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from tests.server import Running

UI = Path(__file__).parent
AXE = UI / "node_modules" / "axe-core" / "axe.min.js"
SCREENSHOTS = UI.parents[1] / "docs" / "screenshots"


@dataclass
class UiPage:
    """A page on the gateway's origin that remembers what it asked for and what it said."""

    page: Any
    origin: str
    requests: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)

    def goto(self, fragment: str = "") -> None:
        self.page.goto(self.origin + "/" + fragment)

    def sign_in(self, key: str) -> None:
        self.goto()
        self.page.get_by_label("API key").fill(key)
        self.page.get_by_role("button", name="Sign in", exact=True).click()
        self.page.get_by_role("button", name="Sign out").wait_for()

    def context_grant_clipboard(self) -> None:
        self.page.context.grant_permissions(
            ["clipboard-read", "clipboard-write"], origin=self.origin
        )

    def row(self, name: str) -> Any:
        return self.page.locator("#listing tbody tr").filter(
            has=self.page.get_by_text(name, exact=True)
        )

    def check(self, view: str, *, shot: bool = True) -> None:
        """axe-core finds no serious or critical violation; a screenshot of the view."""
        # Not page.add_script_tag: the page's CSP refuses an injected <script> (as it
        # should; test_page_defences checks it), and bypassing CSP in every context would
        # hide a violation by the page itself. Evaluating through the DevTools protocol
        # is not subject to the page's CSP.
        if not self.page.evaluate("() => typeof axe !== 'undefined'"):
            self.page.evaluate(AXE.read_text("utf-8") + "\n;undefined")
        result = self.page.evaluate("async () => await axe.run(document)")
        bad = [
            f"{v['id']} ({v['impact']}): {v['help']} — "
            + "; ".join(n["target"][0] for n in v["nodes"][:3])
            for v in result["violations"]
            if v["impact"] in ("serious", "critical")
        ]
        assert not bad, f"accessibility violations on {view}: {bad}"
        if shot:
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            self.page.screenshot(path=str(SCREENSHOTS / f"{view}.png"), full_page=True)

    def expect_http_errors(self, status: int) -> None:
        """The browser logs each failed fetch ("Failed to load resource: ... 404") on its
        own; after a deliberate failure, those lines (and only those) are expected."""
        assert self.console_errors, "the failure expected here did not happen"
        unexpected = [e for e in self.console_errors if f"status of {status}" not in e]
        assert not unexpected, f"console errors: {unexpected}"
        self.console_errors.clear()

    def assert_clean(self, secrets: tuple[str, ...] = ()) -> None:
        """No request left the origin, no console error, no secret in any URL."""
        foreign = [u for u in self.requests if not _same_origin(u, self.origin)]
        assert not foreign, f"requests left the gateway's origin: {foreign}"
        assert not self.console_errors, f"console errors: {self.console_errors}"
        for secret in secrets:
            leaked = [u for u in self.requests if secret in u]
            assert not leaked, "a secret went into a URL"


def _same_origin(url: str, origin: str) -> bool:
    if url.startswith("blob:"):
        url = url[len("blob:") :]
    if url.startswith("data:"):
        return True  # inline data (no request leaves the browser)
    parts, base = urlsplit(url), urlsplit(origin)
    return (parts.scheme, parts.netloc) == (base.scheme, base.netloc)


def open_page(browser: Any, gw: Running, **context: Any) -> tuple[Any, UiPage]:
    ctx = browser.new_context(accept_downloads=True, **context)
    page = ctx.new_page()
    ui = UiPage(page, gw.url)
    page.on("request", lambda r: ui.requests.append(r.url))
    page.on(
        "console",
        lambda m: ui.console_errors.append(m.text) if m.type == "error" else None,
    )
    page.on("pageerror", lambda e: ui.console_errors.append(f"uncaught: {e}"))
    page.set_default_timeout(20_000)
    return ctx, ui
