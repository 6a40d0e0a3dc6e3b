"""The web page in a real Chromium on a gateway with a POSIX mount: sign in (API key and
password), browse, move files, large folders, tokens, activity, keyboard, phone width,
and the page's own defences (CSP, framing, where the key is kept)."""

from __future__ import annotations

import contextlib
import http.server
import os
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.config import MountConfig
from tests.server import Running, local_settings, running
from tests.ui.flow import check_file_flow, confirm_dialog, listing_names, make_folder, wait_row
from tests.ui.page import UiPage

PASSWORD = "correct horse battery staple"


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    tmp = tmp_path_factory.mktemp("ui-posix")
    data = tmp / "data"
    data.mkdir()
    mounts = (MountConfig(name="local", type="posix", options={"root": str(data)}),)
    with running(local_settings(tmp, mounts=mounts)) as r:
        r.gateway.users.add_user("bob", password=PASSWORD)
        yield r


def _read(gw: Running) -> Any:
    def read(inner: str) -> bytes | None:
        p = gw.data / inner
        return p.read_bytes() if p.is_file() else None

    return read


def test_files_on_posix(gw: Running, make_page: Any, tmp_path: Path) -> None:
    ui: UiPage = make_page(gw)
    ui.goto()
    ui.page.get_by_label("API key").wait_for()
    ui.check("sign-in")
    ui.sign_in(gw.key)
    ui.page.get_by_role("link", name="local", exact=True).wait_for()
    ui.check("files-mounts")
    check_file_flow(
        ui, "local", tmp_path, _read(gw), lambda p: (gw.data / p).is_dir(), screenshots=True
    )
    ui.assert_clean(secrets=(gw.key,))


def test_sign_in_keeps_the_key_in_this_tab_only(gw: Running, make_page: Any) -> None:
    ui: UiPage = make_page(gw)
    ui.goto()
    ui.page.get_by_label("API key").fill("fgk_not-a-key")
    ui.page.get_by_role("button", name="Sign in", exact=True).click()
    # The gateway's own words (CARMIN errorMessage), not a blank page.
    ui.page.get_by_role("alert").filter(has_text="invalid API key").wait_for()
    ui.expect_http_errors(401)

    ui.page.get_by_label("API key").fill(gw.key)
    ui.page.get_by_role("button", name="Sign in", exact=True).click()
    ui.page.get_by_role("button", name="Sign out").wait_for()
    stored = ui.page.evaluate(
        """() => [Object.keys(sessionStorage).map(k => sessionStorage.getItem(k)).sort(),
                  localStorage.length, document.cookie]"""
    )
    assert stored == [["admin", gw.key], 0, ""]
    ui.page.get_by_text("Signed in as admin").wait_for()
    ui.page.reload()  # the same tab keeps the key
    ui.page.get_by_role("button", name="Sign out").wait_for()

    other = ui.page.context.new_page()  # another tab does not have it
    other.goto(gw.url + "/")
    other.get_by_label("API key").wait_for()
    other.close()

    ui.page.get_by_role("button", name="Sign out").click()
    ui.page.get_by_label("API key").wait_for()
    assert ui.page.evaluate("() => sessionStorage.length") == 0
    ui.assert_clean(secrets=(gw.key,))


def test_sign_in_with_user_name_and_password(gw: Running, make_page: Any) -> None:
    ui: UiPage = make_page(gw)
    ui.goto()
    ui.page.get_by_label("User name").fill("bob")
    ui.page.get_by_label("Password").fill("wrong")
    ui.page.get_by_role("button", name="Sign in", exact=True).click()
    ui.page.get_by_role("alert").filter(has_text="invalid username or password").wait_for()
    ui.expect_http_errors(401)
    ui.page.get_by_label("Password").fill(PASSWORD)
    ui.page.get_by_role("button", name="Sign in", exact=True).click()
    ui.page.get_by_text("Signed in as bob").wait_for()
    key = ui.page.evaluate("() => sessionStorage.getItem('fedgate.apikey')")
    # What /authenticate handed out is a working key of bob's.
    r = httpx.get(gw.api + "/user/externalKeys", headers={"apikey": key})
    assert r.status_code == 200, r.text
    ui.page.get_by_role("link", name="local", exact=True).wait_for()
    ui.assert_clean(secrets=(key, PASSWORD))


def test_errors_in_words(gw: Running, make_page: Any) -> None:
    ui: UiPage = make_page(gw)
    ui.sign_in(gw.key)
    expected = httpx.get(
        gw.api + "/path/local/no-such-folder", params={"action": "list"}, headers={"apikey": gw.key}
    ).json()["errorMessage"]
    ui.page.goto(gw.url + "/#/files/local/no-such-folder")
    alert = ui.page.get_by_role("alert")
    alert.filter(has_text=expected).wait_for()
    ui.page.get_by_text("This folder could not be listed.").wait_for()
    ui.expect_http_errors(404)
    ui.check("files-error", shot=False)

    # A folder that already exists: the 409 arrives in words too.
    ui.page.goto(gw.url + "/#/files/local")
    ui.page.get_by_role("heading", level=1, name="local", exact=True).wait_for()
    (gw.data / "taken").mkdir(exist_ok=True)
    ui.page.get_by_role("button", name="New folder").click()
    ui.page.get_by_label("Folder name").fill("taken")
    confirm_dialog(ui, "Create")
    ui.page.get_by_role("alert").filter(has_text="exists").wait_for()
    ui.expect_http_errors(409)
    ui.assert_clean(secrets=(gw.key,))


def test_drag_and_drop_upload(gw: Running, make_page: Any) -> None:
    (gw.data / "dropped").mkdir(exist_ok=True)
    ui: UiPage = make_page(gw)
    ui.sign_in(gw.key)
    ui.page.goto(gw.url + "/#/files/local/dropped")
    ui.page.get_by_role("heading", level=1, name="dropped").wait_for()
    payload = os.urandom(200_000)
    transfer = ui.page.evaluate_handle(
        """bytes => {
            const dt = new DataTransfer();
            dt.items.add(new File([new Uint8Array(bytes)], "dropped.bin"));
            return dt;
        }""",
        list(payload),
    )
    ui.page.locator("#listing").dispatch_event("drop", {"dataTransfer": transfer})
    wait_row(ui, "dropped.bin")
    assert (gw.data / "dropped" / "dropped.bin").read_bytes() == payload
    ui.assert_clean(secrets=(gw.key,))


def test_large_folder_is_paged_and_sortable(gw: Running, make_page: Any) -> None:
    big = gw.data / "many"
    big.mkdir(exist_ok=True)
    for i in range(450):
        (big / f"f{i:03d}.dat").write_bytes(b"x" * i)
    ui: UiPage = make_page(gw)
    ui.sign_in(gw.key)
    ui.page.goto(gw.url + "/#/files/local/many")
    ui.page.get_by_text("450 items").wait_for()
    assert ui.page.locator("#listing tbody tr").count() == 200
    ui.page.get_by_role("button", name="Show more (250 not shown)").click()
    ui.page.get_by_role("button", name="Show more (50 not shown)").wait_for()
    assert ui.page.locator("#listing tbody tr").count() == 400

    ui.page.get_by_role("button", name="Size").click()
    header = ui.page.get_by_role("columnheader", name="Size")
    assert header.get_attribute("aria-sort") == "ascending"
    assert listing_names(ui)[:2] == ["f000.dat", "f001.dat"]
    ui.page.get_by_role("button", name="Size").click()
    assert header.get_attribute("aria-sort") == "descending"
    assert listing_names(ui)[:2] == ["f449.dat", "f448.dat"]
    ui.page.get_by_role("button", name="Name").click()
    assert listing_names(ui)[:2] == ["f000.dat", "f001.dat"]
    ui.check("files-large-folder", shot=False)
    ui.assert_clean(secrets=(gw.key,))


def test_tokens_create_list_revoke(gw: Running, make_page: Any) -> None:
    (gw.data / "study" / "inputs").mkdir(parents=True, exist_ok=True)
    (gw.data / "study" / "inputs" / "t1.nii").write_bytes(b"image")
    ui: UiPage = make_page(gw)
    ui.sign_in(gw.key)
    ui.page.goto(gw.url + "/#/files/local/study")
    ui.page.get_by_role("heading", level=1, name="study").wait_for()
    ui.page.get_by_role("link", name="Tokens").click()
    page = ui.page
    # The folder being browsed is where the scopes apply.
    assert page.get_by_label("Folder").input_value() == "/local/study"
    page.get_by_label("Execution id").fill("exec-ui-1")
    page.get_by_label("Lifetime (minutes)").fill("30")
    page.get_by_role("checkbox", name="create").check()
    page.get_by_role("button", name="Create token").click()
    shown = page.get_by_label("New token")
    shown.wait_for()
    token = shown.input_value()
    ui.context_grant_clipboard()
    page.get_by_role("button", name="Copy", exact=True).click()
    page.get_by_role("status").filter(has_text="Token copied.").wait_for()
    assert page.evaluate("() => navigator.clipboard.readText()") == token
    page.get_by_role("button", name="Revoke execution exec-ui-1").wait_for()
    ui.check("tokens")

    bearer = {"Authorization": f"Bearer {token}"}
    api = gw.api + "/path/local/study"
    assert httpx.get(api + "/inputs", params={"action": "list"}, headers=bearer).status_code == 200
    put = httpx.put(api + "/out.txt", content=b"result", headers=bearer)
    assert put.status_code == 201, put.text
    # create is not modify, and nothing outside the folder
    assert httpx.delete(api + "/out.txt", headers=bearer).status_code == 403
    other = httpx.get(gw.api + "/path/local", params={"action": "list"}, headers=bearer)
    assert other.status_code == 403

    page.get_by_role("button", name="Revoke execution exec-ui-1").click()
    page.get_by_role("status").filter(has_text="1 token revoked.").wait_for()
    page.get_by_text("No live token.").wait_for()
    refused = httpx.get(api, params={"action": "list"}, headers=bearer)
    assert refused.status_code == 401 and "revoked" in refused.json()["errorMessage"]

    # Revoking by the token itself, pasted in.
    page.get_by_label("Execution id").fill("exec-ui-2")
    page.get_by_role("button", name="Create token").click()
    page.get_by_role("button", name="Revoke execution exec-ui-2").wait_for()
    second = page.get_by_label("New token").input_value()
    assert second != token
    page.get_by_label("Token to revoke").fill(second)
    page.get_by_role("button", name="Revoke token", exact=True).click()
    page.get_by_text("No live token.").wait_for()
    gone = httpx.get(api, params={"action": "list"}, headers={"Authorization": f"Bearer {second}"})
    assert gone.status_code == 401
    ui.assert_clean(secrets=(gw.key, token, second))


def test_activity_shows_the_users_events(gw: Running, make_page: Any) -> None:
    ui: UiPage = make_page(gw)
    ui.sign_in(gw.key)
    ui.page.get_by_role("link", name="local", exact=True).click()
    ui.page.get_by_role("heading", level=1, name="local", exact=True).wait_for()
    make_folder(ui, "audited")
    ui.page.get_by_role("link", name="Activity").click()
    table = ui.page.get_by_role("table")
    table.wait_for()
    row = table.locator("tr").filter(has_text="/local/audited").first
    row.wait_for()
    cells = row.locator("td").all_inner_texts()
    assert cells[1:6] == ["access", "ok", "local", "/local/audited", "mkdir"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d", cells[0]), cells[0]
    ui.check("activity")
    ui.assert_clean(secrets=(gw.key,))


def test_promised_names_match_one_control(gw: Running, make_page: Any) -> None:
    """Checks written against the names the page promises find one control each, even
    with Playwright's default substring matching."""
    ui: UiPage = make_page(gw)
    ui.goto()
    page = ui.page
    page.get_by_label("API key").wait_for()
    assert page.get_by_label("API key").count() == 1
    assert page.get_by_role("button", name="Sign in").count() == 1
    # Nothing of a signed-in page shows before signing in.
    assert page.get_by_role("button", name="Sign out").count() == 0
    assert page.get_by_role("navigation", name="Sections").count() == 0
    ui.sign_in(gw.key)
    assert page.get_by_role("button", name="Sign out").count() == 1
    page.get_by_role("link", name="local", exact=True).click()
    page.get_by_role("heading", level=1, name="local", exact=True).wait_for()
    assert page.get_by_label("Upload").count() == 1
    assert page.get_by_role("button", name="Upload").count() == 1
    page.get_by_role("button", name="New folder").click()
    assert page.get_by_label("Folder name").count() == 1
    assert page.get_by_role("button", name="Create").count() == 1
    ui.check("files-new-folder-dialog", shot=False)
    page.get_by_role("button", name="Cancel").click()
    page.get_by_role("dialog").wait_for(state="detached")
    ui.assert_clean(secrets=(gw.key,))


def test_keyboard_only(gw: Running, make_page: Any) -> None:
    ui: UiPage = make_page(gw)
    ui.goto()
    page = ui.page
    page.get_by_label("API key").wait_for()
    # The key field has the focus on arrival; Enter submits.
    page.keyboard.type(gw.key)
    page.keyboard.press("Enter")
    page.get_by_role("button", name="Sign out").wait_for()
    page.get_by_role("link", name="local", exact=True).focus()
    page.keyboard.press("Enter")
    page.get_by_role("heading", level=1, name="local", exact=True).wait_for()
    page.get_by_role("button", name="New folder").focus()
    page.keyboard.press("Enter")
    page.get_by_label("Folder name").wait_for()
    page.keyboard.press("Escape")  # Escape cancels the dialog and creates nothing
    page.get_by_role("dialog").wait_for(state="detached")
    page.get_by_role("button", name="New folder").focus()
    page.keyboard.press("Enter")
    page.keyboard.type("typed")
    page.keyboard.press("Enter")
    wait_row(ui, "typed")
    assert (gw.data / "typed").is_dir()
    page.get_by_role("button", name="Delete typed", exact=True).focus()
    page.keyboard.press("Enter")
    # The dialog opens on its confirm button, so Enter confirms.
    page.keyboard.press("Enter")
    page.get_by_role("button", name="Delete typed", exact=True).wait_for(state="detached")
    assert not (gw.data / "typed").exists()
    ui.assert_clean(secrets=(gw.key,))


def test_phone_width(gw: Running, make_page: Any) -> None:
    (gw.data / "phone").mkdir(exist_ok=True)
    (gw.data / "phone" / "a rather long file name for a small screen.csv").write_bytes(b"1,2\n")
    ui: UiPage = make_page(gw, viewport={"width": 375, "height": 740}, is_mobile=True)
    ui.sign_in(gw.key)
    ui.page.goto(gw.url + "/#/files/local/phone")
    wait_row(ui, "a rather long file name for a small screen.csv")
    # Nothing wider than the screen: no sideways scrolling of the page.
    assert ui.page.evaluate("() => document.documentElement.scrollWidth") <= 375
    ui.check("files-phone")
    ui.assert_clean(secrets=(gw.key,))


def test_page_defences(gw: Running, make_page: Any) -> None:
    r = httpx.get(gw.url + "/")
    assert r.status_code == 200
    csp = r.headers["content-security-policy"]
    for directive in ("script-src 'self'", "frame-ancestors 'none'", "connect-src 'self'"):
        assert directive in csp
    assert "unsafe-inline" not in csp
    assert r.headers["x-frame-options"] == "DENY"
    assert "<script>" not in r.text  # every script has a src
    for asset in ("app.js", "app.css", "icon.svg"):
        got = httpx.get(f"{gw.url}/ui/{asset}")
        assert got.status_code == 200 and got.headers["content-security-policy"] == csp
    missing = httpx.get(gw.url + "/ui/nothing.js")
    assert missing.status_code == 404 and missing.json()["errorCode"] == 40403

    ui: UiPage = make_page(gw)
    ui.sign_in(gw.key)
    # An injected inline script does not run.
    ran = ui.page.evaluate(
        """() => { const s = document.createElement('script');
                   s.textContent = 'window.injected = 1'; document.body.append(s);
                   return window.injected === 1; }"""
    )
    assert ran is False
    assert any("Content Security Policy" in e for e in ui.console_errors)

    # Another site (another origin: another port) cannot frame the page (click-jacking).
    with _framer_site(f'<iframe src="{gw.url}/" width="600" height="400"></iframe>') as evil:
        framer: UiPage = make_page(gw)
        framer.page.goto(evil, wait_until="load")
        framed = [f for f in framer.page.frames if f != framer.page.main_frame]
        assert len(framed) == 1
        assert framed[0].locator("#main").count() == 0, "the page rendered inside a frame"
        assert any("frame-ancestors" in e for e in framer.console_errors)


@contextlib.contextmanager
def _framer_site(html: str) -> Iterator[str]:
    body = html.encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
