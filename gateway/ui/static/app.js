// fedgate's web page: a client of the gateway's public API (CARMIN /path, /user/externalKeys,
// /token, /audit). Plain modern JavaScript, no framework, no external resource.
//
// Credentials: the API key lives in sessionStorage (this tab only) and travels in the
// `apikey` header, never in a URL or a cookie; downloads are fetch() + Blob for that reason.
"use strict";

(() => {
  const KEY_SLOT = "fedgate.apikey";
  const USER_SLOT = "fedgate.user";
  const PAGE_ROWS = 200; // rows rendered at a time in a listing ("Show more" adds more)
  const prefix = document.querySelector('meta[name="fedgate-api-prefix"]').content;
  const main = document.getElementById("main");
  const errorBox = document.getElementById("error");
  const statusBox = document.getElementById("status");

  // --- small helpers ------------------------------------------------------------------

  /** A relative URL for an API path ("/path/x"): works wherever the page is served. */
  function api(path) {
    return (prefix + path).replace(/^\//, "");
  }

  /** The API URL of a platform path such as "/local/a b/c.txt" (each segment escaped). */
  function pathUrl(platformPath, query) {
    const segments = platformPath.split("/").filter(Boolean).map(encodeURIComponent);
    return api("/path/" + segments.join("/")) + (query ? "?" + query : "");
  }

  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
      else if (k === "class") el.className = v;
      else if (k === "text") el.textContent = v;
      else el.setAttribute(k, v === true ? "" : v);
    }
    for (const c of children.flat()) {
      if (c === null || c === undefined || c === false) continue;
      el.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return el;
  }

  let fieldSeq = 0;
  /** A labelled field: the label's text is the control's accessible name. */
  function field(label, control, hint) {
    control.id = control.id || `f${++fieldSeq}`;
    const parts = [h("label", { for: control.id }, label)];
    if (hint) {
      const hid = control.id + "-hint";
      control.setAttribute("aria-describedby", hid);
      parts.push(h("span", { class: "hint", id: hid }, hint));
    }
    return h("div", { class: "field" }, ...parts, control);
  }

  /** A table's wrapper scrolls sideways on a narrow screen: keyboard users reach it
   * (arrow keys scroll it) and screen readers hear its name. */
  function scroller(name) {
    return { role: "region", "aria-label": name, tabindex: "0" };
  }

  function humanSize(n) {
    if (n === undefined || n === null) return "";
    const units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let i = 0;
    let v = n;
    while (v >= 1024 && i < units.length - 1) {
      v /= 1024;
      i++;
    }
    return i === 0 ? `${n} B` : `${v < 10 ? v.toFixed(1) : Math.round(v)} ${units[i]}`;
  }

  /** "2026-12-03 08:25" in local time, from epoch seconds or an ISO 8601 string. */
  function when(time) {
    if (!time) return "";
    const d = typeof time === "number" ? new Date(time * 1000) : new Date(time);
    if (Number.isNaN(d.getTime())) return String(time);
    const p = (x) => String(x).padStart(2, "0");
    return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}`;
  }

  function baseName(platformPath) {
    const parts = platformPath.split("/").filter(Boolean);
    return parts[parts.length - 1] || "/";
  }

  function showError(message) {
    errorBox.textContent = message;
    errorBox.hidden = false;
  }

  function clearMessages() {
    errorBox.hidden = true;
    errorBox.textContent = "";
    statusBox.textContent = "";
  }

  function say(message) {
    statusBox.textContent = message;
  }

  /** The words of a CARMIN error body (and its code), or a sentence from the status. */
  async function errorOf(response) {
    try {
      const body = JSON.parse(await response.text());
      if (body && typeof body.errorMessage === "string") return [body.errorMessage, body.errorCode];
      if (body && typeof body.error_description === "string") return [body.error_description, 0];
    } catch (_) {
      /* not JSON: fall through */
    }
    const text = `The gateway answered ${response.status} ${response.statusText || ""}`.trim();
    return [text + ".", 0];
  }

  class ApiError extends Error {
    constructor(message, status) {
      super(message);
      this.status = status;
    }
  }

  // --- the session --------------------------------------------------------------------

  const session = {
    get key() {
      return sessionStorage.getItem(KEY_SLOT);
    },
    get user() {
      return sessionStorage.getItem(USER_SLOT) || "";
    },
    set(key, user) {
      sessionStorage.setItem(KEY_SLOT, key);
      sessionStorage.setItem(USER_SLOT, user || "");
    },
    clear() {
      sessionStorage.removeItem(KEY_SLOT);
      sessionStorage.removeItem(USER_SLOT);
    },
  };

  /** fetch() an API path with the key in its header; throws ApiError with the CARMIN message. */
  async function call(url, options = {}) {
    const headers = new Headers(options.headers || {});
    if (session.key && !options.anonymous) headers.set("apikey", session.key);
    let response;
    try {
      response = await fetch(url, { ...options, headers, credentials: "omit", cache: "no-store" });
    } catch (e) {
      throw new ApiError("The gateway cannot be reached: " + e.message, 0);
    }
    if (!response.ok) {
      const [message, code] = await errorOf(response);
      if (code === 40101 && !options.anonymous) {
        // The key expired or was deleted (not a storage refusing its stored
        // credential, also a 401): back to the sign-in form, with the reason.
        session.clear();
        render();
      }
      throw new ApiError(message, response.status);
    }
    return response;
  }

  async function callJson(url, options) {
    const response = await call(url, options);
    return response.status === 204 ? null : response.json();
  }

  function jsonBody(method, data) {
    return { method, headers: { "Content-Type": "application/json" }, body: JSON.stringify(data) };
  }

  /** Run an action, showing its error in words; returns undefined on failure. */
  async function attempt(fn) {
    try {
      return await fn();
    } catch (e) {
      showError(e instanceof ApiError ? e.message : String(e && e.message ? e.message : e));
      return undefined;
    }
  }

  // --- dialogs (in-page, not window.confirm: styled, accessible, testable) ---------------

  function dialog(title, body, confirmLabel, { danger = false } = {}) {
    return new Promise((resolve) => {
      const titleId = `d${++fieldSeq}`;
      const form = h("form", { method: "dialog" });
      const ok = h("button", { type: "submit", class: danger ? "danger primary" : "primary", value: "ok" }, confirmLabel);
      const cancel = h("button", { type: "button" }, "Cancel");
      const dlg = h(
        "dialog",
        { "aria-labelledby": titleId },
        h("h2", { id: titleId }, title),
        form,
      );
      form.append(...[].concat(body), h("div", { class: "dialog-buttons" }, cancel, ok));
      let result = false;
      form.addEventListener("submit", (ev) => {
        ev.preventDefault();
        if (!form.reportValidity()) return;
        result = true;
        dlg.close();
      });
      cancel.addEventListener("click", () => dlg.close());
      dlg.addEventListener("close", () => {
        dlg.remove();
        resolve(result ? form : null);
      });
      document.body.append(dlg);
      dlg.showModal();
      const first = form.querySelector("input, select, textarea");
      (first || ok).focus();
    });
  }

  // --- sign in ------------------------------------------------------------------------

  function renderSignIn(reason) {
    document.getElementById("nav").hidden = true;
    document.getElementById("who").hidden = true;
    const key = h("input", { type: "password", name: "apikey", autocomplete: "off", spellcheck: "false" });
    const user = h("input", { type: "text", name: "username", autocomplete: "username" });
    const pass = h("input", { type: "password", name: "password", autocomplete: "current-password" });
    const form = h(
      "form",
      { class: "card signin", novalidate: true },
      h("h1", {}, "Sign in to fedgate"),
      field("API key", key, "Your gateway API key (kept in this tab only)."),
      h(
        "fieldset",
        {},
        h("legend", {}, "Or with a user name and password"),
        field("User name", user),
        field("Password", pass),
      ),
      h("button", { type: "submit", class: "primary" }, "Sign in"),
    );
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      clearMessages();
      await attempt(async () => {
        let apikey = key.value.trim();
        let name = "";
        if (!apikey) {
          if (!user.value || !pass.value) {
            throw new ApiError("Give your API key, or a user name and a password.", 400);
          }
          const got = await callJson(api("/authenticate"), {
            ...jsonBody("POST", { username: user.value, password: pass.value }),
            anonymous: true,
          });
          apikey = got.httpHeaderValue;
          name = user.value;
        }
        // The VIP client's check: PUT /platform answers 40101 to a bad key.
        await call(api("/platform"), { method: "PUT", headers: { apikey }, anonymous: true });
        session.set(apikey, name);
        if (!name) session.set(apikey, await whoAmI());
        key.value = pass.value = "";
        if (!location.hash || location.hash === "#") location.hash = "#/files/"; // renders
        else render();
      });
    });
    main.replaceChildren(form);
    if (reason) showError(reason);
    key.focus();
  }

  /** The user an API key belongs to, as /explain names it (on the first visible mount);
   * "" when there is no mount to ask about. */
  async function whoAmI() {
    try {
      const mounts = await callJson(pathUrl("/", "action=list"));
      if (!mounts.length) return "";
      const answer = await callJson(api("/explain"), jsonBody("POST", { path: mounts[0].platformPath, operation: "read" }));
      return typeof answer.user === "string" ? answer.user : "";
    } catch (_) {
      return "";
    }
  }

  document.getElementById("sign-out").addEventListener("click", () => {
    session.clear();
    clearMessages();
    say("Signed out.");
    render();
  });

  // --- files --------------------------------------------------------------------------

  const listing = { path: "/", entries: [], sortKey: "name", sortAsc: true, shown: PAGE_ROWS };

  // Names sort the human way ("file2" before "file10") through one collator; past
  // COLLATE_MAX entries in plain code-point order, 5x faster: a 100,000-entry folder
  // sorted in 4.3 s with the collator on a loaded 2-core machine, 0.8 s without.
  const collator = new Intl.Collator(undefined, { numeric: true });
  const COLLATE_MAX = 5000;
  const plainOrder = (a, b) => (a < b ? -1 : a > b ? 1 : 0);
  let nameOrder = collator.compare;

  function compare(a, b) {
    const k = listing.sortKey;
    let r = 0;
    if (a.isDirectory !== b.isDirectory && k === "name") r = a.isDirectory ? -1 : 1;
    else if (k === "size") r = (a.size ?? -1) - (b.size ?? -1);
    else if (k === "mtime") r = (a.lastModificationDate || 0) - (b.lastModificationDate || 0);
    if (r === 0) r = nameOrder(a._name, b._name);
    return listing.sortAsc ? r : -r;
  }

  function breadcrumb(path) {
    const parts = path.split("/").filter(Boolean);
    const items = [h("li", {}, parts.length ? h("a", { href: "#/files/" }, "All mounts") : h("span", { "aria-current": "page" }, "All mounts"))];
    parts.forEach((part, i) => {
      const target = "/" + parts.slice(0, i + 1).join("/");
      const last = i === parts.length - 1;
      items.push(h("li", {}, last ? h("span", { "aria-current": "page" }, part) : h("a", { href: filesHash(target) }, part)));
    });
    return h("nav", { class: "crumbs", "aria-label": "Breadcrumb" }, h("ol", {}, items));
  }

  function filesHash(path) {
    return "#/files/" + path.split("/").filter(Boolean).map(encodeURIComponent).join("/");
  }

  async function renderFiles(path) {
    listing.path = path;
    listing.shown = PAGE_ROWS;
    const atRoot = path === "/";
    const heading = h("h1", {}, atRoot ? "Files" : baseName(path));
    const tableArea = h("div", { class: "table-wrap drop", id: "listing", ...scroller("Folder contents") }, h("p", {}, "Loading…"));
    // Named so that no other label contains "Upload": get_by_label("Upload") and the
    // like find the file field alone.
    const uploads = h("ul", { class: "uploads", "aria-label": "Transfers" });
    const toolbar = h("div", { class: "toolbar" });
    if (!atRoot) {
      const input = h("input", { type: "file", multiple: true, id: "upload-input" });
      input.addEventListener("change", () => {
        uploadAll([...input.files], uploads);
        input.value = "";
      });
      toolbar.append(
        h("label", { for: "upload-input" }, "Upload"),
        input,
        h("button", { type: "button", onclick: () => newFolder() }, "New folder"),
        h("button", { type: "button", onclick: () => download(path, true) }, "Download this folder"),
      );
      tableArea.addEventListener("dragover", (ev) => {
        ev.preventDefault();
        tableArea.classList.add("over");
      });
      tableArea.addEventListener("dragleave", () => tableArea.classList.remove("over"));
      tableArea.addEventListener("drop", (ev) => {
        ev.preventDefault();
        tableArea.classList.remove("over");
        uploadAll([...ev.dataTransfer.files], uploads);
      });
    }
    const hint = atRoot ? null : h("p", { class: "hint" }, "Or drop files on the listing.");
    main.replaceChildren(breadcrumb(path), heading, toolbar, hint || "", uploads, tableArea);
    await loadListing(tableArea);
  }

  async function loadListing(area) {
    area = area || document.getElementById("listing");
    const path = listing.path;
    const entries = await attempt(() => callJson(pathUrl(path, "action=list")));
    if (listing.path !== path || !area.isConnected) return; // the user went elsewhere meanwhile
    if (entries === undefined) {
      area.replaceChildren(h("p", { class: "empty" }, "This folder could not be listed."));
      return;
    }
    for (const e of entries) e._name = baseName(e.platformPath);
    nameOrder = entries.length > COLLATE_MAX ? plainOrder : collator.compare;
    listing.entries = entries;
    drawTable(area);
  }

  function drawTable(area) {
    area = area || document.getElementById("listing");
    const atRoot = listing.path === "/";
    const entries = [...listing.entries].sort(compare);
    const header = (label, key, cls) => {
      const active = listing.sortKey === key;
      const sort = active ? (listing.sortAsc ? "ascending" : "descending") : "none";
      const arrow = active ? (listing.sortAsc ? " ▲" : " ▼") : "";
      const btn = h("button", { type: "button" }, label, h("span", { "aria-hidden": "true" }, arrow));
      btn.addEventListener("click", () => {
        listing.sortAsc = active ? !listing.sortAsc : true;
        listing.sortKey = key;
        drawTable();
        document.querySelector(`th[data-key="${key}"] button`)?.focus();
      });
      return h("th", { scope: "col", "aria-sort": sort, "data-key": key, class: cls }, btn);
    };
    const tbody = h("tbody");
    const table = h(
      "table",
      {},
      h("caption", {}, atRoot ? "Mounts" : `${entries.length} item${entries.length === 1 ? "" : "s"}`),
      h(
        "thead",
        {},
        h("tr", {}, header("Name", "name"), header("Size", "size", "num"), header("Modified", "mtime", "when"), h("th", { scope: "col", class: "actions" }, h("span", { class: "hint" }, "Actions"))),
      ),
      tbody,
    );
    const more = h("div");
    const addRows = () => {
      // Rows go in PAGE_ROWS at a time, so a folder of 100,000 entries renders at once
      // and stays responsive; "Show more" appends the next slice.
      const start = tbody.rows.length;
      const end = Math.min(entries.length, listing.shown);
      const frag = document.createDocumentFragment();
      for (let i = start; i < end; i++) frag.append(row(entries[i], atRoot));
      tbody.append(frag);
      more.replaceChildren();
      if (end < entries.length) {
        more.append(
          h("button", {
            type: "button",
            onclick: () => {
              listing.shown += PAGE_ROWS;
              addRows();
              tbody.rows[start + PAGE_ROWS]?.querySelector("a, button")?.focus();
            },
          }, `Show more (${entries.length - end} not shown)`),
        );
      }
    };
    if (!entries.length) {
      area.replaceChildren(h("p", { class: "empty" }, atRoot ? "No mount is visible to you." : "This folder is empty."));
      return;
    }
    area.replaceChildren(table, more);
    addRows();
  }

  function row(entry, atRoot) {
    const name = entry._name;
    const link = entry.isDirectory
      ? h("a", { href: filesHash(entry.platformPath) }, name + (atRoot ? "" : "/"))
      : h("span", {}, name);
    const actions = h("td", { class: "actions" });
    if (!atRoot) {
      actions.append(
        h("button", { type: "button", "aria-label": `Download ${name}`, onclick: () => download(entry.platformPath, entry.isDirectory) }, "Download"),
        h("button", { type: "button", class: "danger", "aria-label": `Delete ${name}`, onclick: () => remove(entry) }, "Delete"),
      );
    }
    return h(
      "tr",
      {},
      h("td", { class: "name" }, link),
      h("td", { class: "num" }, entry.isDirectory ? "" : humanSize(entry.size)),
      h("td", { class: "when" }, atRoot ? "" : when(entry.lastModificationDate)),
      actions,
    );
  }

  async function newFolder() {
    clearMessages();
    const input = h("input", { type: "text", name: "folder", required: true, autocomplete: "off", maxlength: "255" });
    const form = await dialog("New folder", [field("Folder name", input)], "Create");
    if (!form) return;
    const name = input.value.trim();
    const target = listing.path.replace(/\/$/, "") + "/" + name;
    if (!name || name.includes("/")) {
      showError("A folder name cannot be empty or contain '/'.");
      return;
    }
    const ok = await attempt(() => call(pathUrl(target), { method: "PUT" }));
    if (ok) {
      say(`Folder ${name} created.`);
      await loadListing();
    }
  }

  async function remove(entry) {
    clearMessages();
    const name = entry._name;
    const what = entry.isDirectory ? "the folder" : "the file";
    const text = h("p", {}, `Delete ${what} “${name}”${entry.isDirectory ? " and everything in it" : ""}? This cannot be undone.`);
    const form = await dialog(`Delete ${name}?`, [text], "Delete", { danger: true });
    if (!form) return;
    const ok = await attempt(() => call(pathUrl(entry.platformPath), { method: "DELETE" }));
    if (ok) {
      say(`${name} deleted.`);
      await loadListing();
    }
  }

  /** Download with the key in a header (never in a URL): fetch, then a Blob saved by an
   * <a download>. Chromium keeps large Blobs on disk, not in the page's memory. */
  async function download(platformPath, isDirectory) {
    clearMessages();
    const name = baseName(platformPath) + (isDirectory ? ".tar.gz" : "");
    say(`Downloading ${name}…`);
    const response = await attempt(() =>
      call(pathUrl(platformPath, "action=content"), { headers: { "X-Fedgate-Redirect": "never" } }),
    );
    if (!response) {
      say("");
      return;
    }
    const blob = await attempt(() => response.blob());
    if (!blob) return;
    const url = URL.createObjectURL(blob);
    const a = h("a", { href: url, download: name, hidden: true });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60_000);
    say(`${name} downloaded (${humanSize(blob.size)}).`);
  }

  function uploadAll(files, list) {
    clearMessages();
    const folder = listing.path;
    let pending = files.length;
    for (const file of files) {
      upload(file, folder, list).finally(() => {
        if (--pending === 0 && listing.path === folder) loadListing();
      });
    }
  }

  /** One raw PUT per file, the File object as the body: the browser streams it from
   * disk (no base64, no copy in memory), and XMLHttpRequest reports upload progress. */
  function upload(file, folder, list) {
    const bar = h("progress", { max: String(file.size || 1), value: "0", "aria-label": `Progress of ${file.name}` });
    const state = h("span", { class: "hint" }, "starting");
    list.append(h("li", {}, h("span", { class: "mono" }, file.name), state, bar));
    return new Promise((resolve) => {
      const xhr = new XMLHttpRequest();
      xhr.open("PUT", pathUrl(folder.replace(/\/$/, "") + "/" + file.name));
      xhr.setRequestHeader("apikey", session.key || "");
      xhr.setRequestHeader("Content-Type", "application/octet-stream");
      xhr.upload.addEventListener("progress", (ev) => {
        if (!ev.lengthComputable) return;
        bar.value = ev.loaded;
        state.textContent = `${humanSize(ev.loaded)} of ${humanSize(ev.total)}`;
      });
      xhr.addEventListener("load", () => {
        if (xhr.status >= 200 && xhr.status < 300) {
          bar.value = file.size || 1;
          state.textContent = `done, ${humanSize(file.size)}`;
        } else {
          let message = `failed (${xhr.status})`;
          try {
            message = JSON.parse(xhr.responseText).errorMessage || message;
          } catch (_) {
            /* keep the status */
          }
          state.textContent = "failed";
          showError(`${file.name}: ${message}`);
        }
        resolve();
      });
      xhr.addEventListener("error", () => {
        state.textContent = "failed";
        showError(`${file.name}: the upload was interrupted.`);
        resolve();
      });
      xhr.send(file);
    });
  }

  // --- storage keys -------------------------------------------------------------------

  const KINDS = {
    apikey: { label: "API key (Girder)", fields: [["apiKey", "Storage API key", "password"]] },
    access_secret: {
      label: "Access and secret key (S3)",
      fields: [["accessKey", "Access key", "text"], ["secretKey", "Secret key", "password"]],
    },
    user_password: {
      label: "User and password (iRODS)",
      fields: [["user", "Storage user", "text"], ["password", "Storage password", "password"]],
    },
    bearer: { label: "Bearer token", fields: [["token", "Storage token", "password"]] },
  };

  async function renderKeys() {
    const tableArea = h("div", { class: "table-wrap", ...scroller("Stored keys") }, h("p", {}, "Loading…"));
    const formArea = h("div");
    main.replaceChildren(
      h("h1", {}, "Storage keys"),
      h("p", { class: "hint" }, "Credentials the gateway stores, encrypted, to reach a storage on your behalf. Their secrets are never shown again."),
      tableArea,
      formArea,
    );
    const [keys, mounts] = await Promise.all([
      attempt(() => callJson(api("/user/externalKeys"))),
      attempt(() => callJson(api("/externalPlatforms"))),
    ]);
    if (keys === undefined) {
      tableArea.replaceChildren(h("p", { class: "empty" }, "The stored keys could not be read."));
    } else if (!keys.length) {
      tableArea.replaceChildren(h("p", { class: "empty" }, "No key stored yet."));
    } else {
      tableArea.replaceChildren(
        h(
          "table",
          {},
          h("caption", {}, "Stored keys"),
          h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Mount"), h("th", { scope: "col" }, "Kind"), h("th", { scope: "col", class: "when" }, "Updated"), h("th", { scope: "col", class: "actions" }, h("span", { class: "hint" }, "Actions")))),
          h(
            "tbody",
            {},
            keys.map((k) =>
              h(
                "tr",
                {},
                h("td", {}, k.storageIdentifier),
                h("td", {}, KINDS[k.kind]?.label || k.kind),
                h("td", { class: "when" }, when(k.updated)),
                h("td", { class: "actions" }, h("button", { type: "button", class: "danger", "aria-label": `Delete key for ${k.storageIdentifier}`, onclick: () => deleteKey(k.storageIdentifier) }, "Delete")),
              ),
            ),
          ),
        ),
      );
    }
    formArea.replaceChildren(keyForm(mounts || []));
  }

  function keyForm(mounts) {
    const usable = mounts.filter((m) => m.credentialSource !== "none" && m.credentialSource !== "service");
    const mount = h("select", { name: "mount", required: true }, usable.map((m) => h("option", { value: m.identifier }, `${m.identifier} (${m.type})`)));
    const kind = h("select", { name: "kind" }, Object.entries(KINDS).map(([k, v]) => h("option", { value: k }, v.label)));
    const secrets = h("div");
    const drawFields = () => {
      secrets.replaceChildren(
        ...KINDS[kind.value].fields.map(([name, label, type]) => field(label, h("input", { type, name, required: true, autocomplete: "off", spellcheck: "false" }))),
      );
    };
    const suggestKind = () => {
      const type = usable.find((m) => m.identifier === mount.value)?.type;
      kind.value = { s3: "access_secret", girder: "apikey", irods: "user_password", gfal: "bearer" }[type] || kind.value;
      drawFields();
    };
    mount.addEventListener("change", suggestKind);
    kind.addEventListener("change", drawFields);
    const form = h(
      "form",
      { class: "card" },
      h("h2", {}, "Add a storage key"),
      usable.length ? "" : h("p", { class: "empty" }, "No mount takes a personal key."),
      h("div", { class: "row" }, field("Mount", mount), field("Kind", kind)),
      secrets,
      h("button", { type: "submit", class: "primary", disabled: !usable.length }, "Save key"),
    );
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      clearMessages();
      const credential = { kind: kind.value };
      for (const input of secrets.querySelectorAll("input")) credential[input.name] = input.value;
      const ok = await attempt(() => callJson(api("/user/externalKeys"), jsonBody("PUT", { storageIdentifier: mount.value, credential })));
      if (ok) {
        say(`Key for ${mount.value} saved.`);
        await renderKeys();
      }
    });
    if (usable.length) suggestKind();
    return form;
  }

  async function deleteKey(storageId) {
    clearMessages();
    const text = h("p", {}, `Delete the key stored for ${storageId}? Tokens that rely on it are revoked.`);
    const form = await dialog(`Delete key for ${storageId}?`, [text], "Delete", { danger: true });
    if (!form) return;
    const ok = await attempt(() => call(api("/user/externalKeys/" + encodeURIComponent(storageId)), { method: "DELETE" }));
    if (ok) {
      say(`Key for ${storageId} deleted.`);
      await renderKeys();
    }
  }

  // --- tokens -------------------------------------------------------------------------

  async function renderTokens() {
    const folder = listing.path === "/" ? "" : listing.path;
    const exec = h("input", { type: "text", name: "execution_id", required: true, maxlength: "200", pattern: "[!-~]{1,200}", autocomplete: "off" });
    const lifetime = h("input", { type: "number", name: "lifetime", min: "1", value: "20", required: true });
    const where = h("input", { type: "text", name: "path", required: true, value: folder, placeholder: "/mount/folder", autocomplete: "off" });
    const boxes = ["read", "create", "modify"].map((s) => h("input", { type: "checkbox", name: "scope", value: s, id: `scope-${s}`, checked: s === "read" }));
    const scopes = h(
      "fieldset",
      { class: "scopes" },
      h("legend", {}, "Scopes on that folder"),
      boxes.map((b) => h("span", {}, b, " ", h("label", { for: b.id }, b.value))),
    );
    const out = h("div", { "aria-live": "polite" });
    const create = h(
      "form",
      { class: "card" },
      h("h2", {}, "Create a token for an execution"),
      h("div", { class: "row" }, field("Execution id", exec), field("Lifetime (minutes)", lifetime)),
      field("Folder", where, "The scopes below apply to this folder and everything in it."),
      scopes,
      h("p", {}, h("button", { type: "submit", class: "primary" }, "Create token")),
      out,
    );
    create.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      clearMessages();
      const chosen = boxes.filter((b) => b.checked).map((b) => b.value);
      const path = "/" + where.value.trim().replace(/^\/+|\/+$/g, "");
      if (!chosen.length) return showError("Pick at least one scope.");
      if (!create.reportValidity()) return;
      const body = new URLSearchParams({
        grant_type: "urn:ietf:params:oauth:grant-type:token-exchange",
        subject_token: session.key,
        subject_token_type: "urn:fedgate:params:oauth:token-type:api-key",
        scope: chosen.map((s) => `storage.${s}:${path}`).join(" "),
        execution_id: exec.value.trim(),
        lifetime: String(Math.round(Number(lifetime.value) * 60)),
      });
      const issued = await attempt(() => callJson(api("/token"), { method: "POST", body, anonymous: true }));
      if (!issued) return;
      const shown = h("textarea", { class: "token-out", readonly: true, rows: "4", id: "new-token" }, issued.access_token);
      const copy = h("button", { type: "button" }, "Copy");
      copy.addEventListener("click", async () => {
        try {
          await navigator.clipboard.writeText(issued.access_token);
        } catch (_) {
          shown.select(); // no clipboard permission: select it for Ctrl+C
          document.execCommand("copy");
        }
        say("Token copied.");
      });
      out.replaceChildren(
        h("h3", {}, "Your new token"),
        h("p", { class: "hint" }, `Shown once: copy it now. Expires in ${Math.round(issued.expires_in / 60)} min; scope ${issued.scope}.`),
        field("New token", shown),
        copy,
      );
      copy.focus();
      await drawLive(liveArea);
    });

    const revToken = h("input", { type: "password", name: "token", autocomplete: "off" });
    const revokeToken = h("form", { class: "row" }, field("Token to revoke", revToken), h("div", { class: "field" }, h("button", { type: "submit", class: "danger" }, "Revoke token")));
    revokeToken.addEventListener("submit", (ev) => {
      ev.preventDefault();
      if (revToken.value.trim()) revoke({ token: revToken.value.trim() }).then(() => (revToken.value = ""));
    });
    const revExec = h("input", { type: "text", name: "execution", autocomplete: "off" });
    const revokeExec = h("form", { class: "row" }, field("Execution to revoke", revExec), h("div", { class: "field" }, h("button", { type: "submit", class: "danger" }, "Revoke execution")));
    revokeExec.addEventListener("submit", (ev) => {
      ev.preventDefault();
      if (revExec.value.trim()) revoke({ execution_id: revExec.value.trim() }).then(() => (revExec.value = ""));
    });
    const liveArea = h("div", { class: "table-wrap", ...scroller("Live tokens") });
    main.replaceChildren(
      h("h1", {}, "Tokens"),
      create,
      h("h2", {}, "Live tokens"),
      liveArea,
      h("div", { class: "card" }, h("h2", {}, "Revoke"), revokeToken, revokeExec),
    );
    await drawLive(liveArea);
  }

  async function revoke(what) {
    clearMessages();
    const got = await attempt(() => callJson(api("/token/revoke"), jsonBody("POST", what)));
    if (got) {
      say(`${got.revoked} token${got.revoked === 1 ? "" : "s"} revoked.`);
      const area = document.getElementById("live-tokens")?.parentElement;
      if (area) await drawLive(area);
    }
  }

  async function drawLive(area) {
    const live = await attempt(() => callJson(api("/token")));
    if (!area.isConnected) return;
    if (live === undefined) {
      area.replaceChildren(h("p", { class: "empty", id: "live-tokens" }, "The live tokens could not be listed."));
      return;
    }
    if (!live.length) {
      area.replaceChildren(h("p", { class: "empty", id: "live-tokens" }, "No live token."));
      return;
    }
    area.replaceChildren(
      h(
        "table",
        { id: "live-tokens" },
        h("caption", {}, "Tokens that can still be used"),
        h("thead", {}, h("tr", {}, ["Execution", "Scope", "Expires", "Token id"].map((t) => h("th", { scope: "col" }, t)), h("th", { scope: "col", class: "actions" }, h("span", { class: "hint" }, "Actions")))),
        h(
          "tbody",
          {},
          live.map((t) =>
            h(
              "tr",
              {},
              h("td", {}, t.executionId || "—"),
              h("td", { class: "mono" }, t.scope),
              h("td", { class: "when" }, when(t.expiresAt)),
              h("td", { class: "mono" }, t.jti.slice(0, 8) + "…"),
              h(
                "td",
                { class: "actions" },
                h("button", { type: "button", class: "danger", "aria-label": `Revoke token ${t.jti.slice(0, 8)}`, onclick: () => revoke({ jti: t.jti }) }, "Revoke"),
                t.executionId ? h("button", { type: "button", class: "danger", "aria-label": `Revoke execution ${t.executionId}`, onclick: () => revoke({ execution_id: t.executionId }) }, "Revoke execution") : "",
              ),
            ),
          ),
        ),
      ),
    );
  }

  // --- audit --------------------------------------------------------------------------

  async function renderAudit() {
    const area = h("div", { class: "table-wrap", ...scroller("Events") }, h("p", {}, "Loading…"));
    main.replaceChildren(
      h("h1", {}, "Activity"),
      h("p", {}, h("button", { type: "button", onclick: () => renderAudit() }, "Refresh")),
      area,
    );
    const events = await attempt(() => callJson(api("/audit?limit=200")));
    if (!area.isConnected) return;
    if (!events || !events.length) {
      area.replaceChildren(h("p", { class: "empty" }, events ? "No event recorded yet." : "The activity could not be read."));
      return;
    }
    const cols = [
      ["Time", (e) => when(Date.parse(e.time) / 1000), "when"], // ISO 8601 from /audit
      ["Event", (e) => e.event],
      ["Result", (e) => e.result],
      ["Mount", (e) => e.mount || ""],
      ["Path", (e) => e.path || "", "mono"],
      ["Operation", (e) => e.operation || ""],
      ["Reason", (e) => e.reason || ""],
      ["Execution", (e) => e.execution_id || ""],
      ["Detail", (e) => [e.detail, e.reason].filter(Boolean).join("; ")],
    ];
    area.replaceChildren(
      h(
        "table",
        {},
        h("caption", {}, `Your last ${events.length} events, newest first`),
        h("thead", {}, h("tr", {}, cols.map(([t, , c]) => h("th", { scope: "col", class: c }, t)))),
        h("tbody", {}, events.map((e) => h("tr", {}, cols.map(([, f, c]) => h("td", { class: c }, f(e)))))),
      ),
    );
  }

  // --- routing ------------------------------------------------------------------------

  function currentRoute() {
    const hash = decodeURI(location.hash.replace(/^#/, "")) || "/files/";
    if (hash.startsWith("/files")) {
      const raw = location.hash.replace(/^#\/files\/?/, "");
      const path = "/" + raw.split("/").filter(Boolean).map(decodeURIComponent).join("/");
      return { view: "files", path };
    }
    const view = hash.replace(/^\//, "");
    return { view: ["keys", "tokens", "audit"].includes(view) ? view : "files", path: "/" };
  }

  let lastView = null;
  async function render() {
    if (!session.key) {
      lastView = null;
      renderSignIn();
      return;
    }
    document.getElementById("nav").hidden = false;
    document.getElementById("who").hidden = false;
    document.getElementById("who-name").textContent = session.user ? `Signed in as ${session.user}` : "Signed in";
    const route = currentRoute();
    for (const a of document.querySelectorAll("#nav a")) {
      if (a.dataset.view === route.view) a.setAttribute("aria-current", "page");
      else a.removeAttribute("aria-current");
    }
    const titles = { files: "Files", keys: "Storage keys", tokens: "Tokens", audit: "Activity" };
    document.title = `${titles[route.view]} — fedgate`;
    if (lastView !== null) main.focus({ preventScroll: true }); // tell screen readers the view changed
    lastView = route.view;
    if (route.view === "files") await renderFiles(route.path);
    else if (route.view === "keys") await renderKeys();
    else if (route.view === "tokens") await renderTokens();
    else await renderAudit();
  }

  window.addEventListener("hashchange", () => {
    clearMessages();
    render();
  });
  render();
})();
