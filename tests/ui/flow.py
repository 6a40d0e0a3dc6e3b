"""The file tasks every mount type goes through in the browser: browse, make a folder,
upload (bytes checked on the storage itself), download a file and a folder (bytes
checked), delete a file and a folder — by the accessible names the page promises."""

from __future__ import annotations

import io
import os
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.ui.page import UiPage

# How a test reads the storage behind the gateway's back: None when missing.
ReadBackend = Callable[[str], bytes | None]
Exists = Callable[[str], bool]


def confirm_dialog(ui: UiPage, button: str) -> None:
    dialog = ui.page.get_by_role("dialog")
    dialog.get_by_role("button", name=button, exact=True).click()
    dialog.wait_for(state="detached")


def wait_row(ui: UiPage, name: str) -> None:
    ui.page.get_by_role("button", name=f"Delete {name}", exact=True).wait_for()


def wait_no_row(ui: UiPage, name: str) -> None:
    ui.page.get_by_role("button", name=f"Delete {name}", exact=True).wait_for(state="detached")


def make_folder(ui: UiPage, name: str) -> None:
    ui.page.get_by_role("button", name="New folder").click()
    ui.page.get_by_label("Folder name").fill(name)
    confirm_dialog(ui, "Create")
    wait_row(ui, name)


def upload(ui: UiPage, files: list[Path]) -> None:
    ui.page.get_by_label("Upload", exact=True).set_input_files([str(f) for f in files])
    for f in files:
        bar = ui.page.get_by_role("progressbar", name=f"Progress of {f.name}")
        bar.wait_for()
        wait_row(ui, f.name)
        # The bar of a finished upload is full.
        assert bar.evaluate("b => b.value === b.max"), f"progress of {f.name} not complete"
    # The promised names stay unambiguous even loosely matched, progress bars shown.
    assert ui.page.get_by_label("Upload").count() == 1
    assert ui.page.get_by_role("button", name="Upload").count() == 1


def download(ui: UiPage, name: str, tmp: Path) -> tuple[str, bytes]:
    with ui.page.expect_download() as info:
        ui.page.get_by_role("button", name=f"Download {name}", exact=True).click()
    dl = info.value
    target = tmp / f"dl-{os.urandom(4).hex()}"
    dl.save_as(str(target))
    return dl.suggested_filename, target.read_bytes()


def check_file_flow(
    ui: UiPage,
    mount: str,
    tmp: Path,
    read: ReadBackend,
    exists: Exists,
    *,
    screenshots: bool = False,
    size: int = 3 * 1024 * 1024 + 17,
) -> None:
    """Runs on a signed-in page showing the mount list; ``read``/``exists`` take a
    path inside the mount (``folder/file``)."""
    folder = f"ui-{os.urandom(4).hex()}"
    page = ui.page
    page.get_by_role("link", name=mount, exact=True).click()
    page.get_by_role("heading", level=1, name=mount, exact=True).wait_for()

    make_folder(ui, folder)
    assert exists(folder), "the new folder is not on the storage"

    page.get_by_role("link", name=folder + "/", exact=True).click()
    page.get_by_role("heading", level=1, name=folder, exact=True).wait_for()
    crumbs = page.get_by_role("navigation", name="Breadcrumb")
    assert crumbs.get_by_role("link").all_inner_texts() == ["All mounts", mount]

    big = tmp / "scan.bin"
    big.write_bytes(os.urandom(size))
    small = tmp / "notes été.txt"
    small.write_bytes("résultats\n".encode())
    upload(ui, [big, small])
    assert read(f"{folder}/{big.name}") == big.read_bytes()
    assert read(f"{folder}/{small.name}") == small.read_bytes()
    row = ui.row(big.name)
    assert row.locator("td.num").inner_text() == "3.0 MiB"
    if screenshots:
        ui.check("files-folder")

    name, data = download(ui, big.name, tmp)
    assert (name, data) == (big.name, big.read_bytes())
    name, data = download(ui, small.name, tmp)
    assert (name, data) == (small.name, small.read_bytes())

    page.get_by_role("button", name=f"Delete {small.name}", exact=True).click()
    if screenshots:
        ui.check("files-delete-dialog")
    confirm_dialog(ui, "Delete")
    wait_no_row(ui, small.name)
    assert read(f"{folder}/{small.name}") is None

    # Up through the breadcrumb; the folder downloads as a .tar.gz of what it holds.
    crumbs.get_by_role("link", name=mount, exact=True).click()
    page.get_by_role("heading", level=1, name=mount, exact=True).wait_for()
    name, data = download(ui, folder, tmp)
    assert name == folder + ".tar.gz"
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        members = {m.name.rsplit("/", 1)[-1]: m for m in tar.getmembers() if m.isfile()}
        assert list(members) == [big.name]
        got = tar.extractfile(members[big.name])
        assert got is not None and got.read() == big.read_bytes()

    page.get_by_role("button", name=f"Delete {folder}", exact=True).click()
    confirm_dialog(ui, "Delete")
    wait_no_row(ui, folder)
    assert not exists(folder), "the deleted folder is still on the storage"
    assert read(f"{folder}/{big.name}") is None


def listing_names(ui: UiPage) -> list[Any]:
    return [n.strip().rstrip("/") for n in ui.page.locator("#listing td.name").all_inner_texts()]
