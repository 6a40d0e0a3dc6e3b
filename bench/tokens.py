"""Delegation speed: token exchange, verification, and `exists` with a Bearer token.

    .venv/bin/python bench/tokens.py [--seconds 10]

In-process (one thread, SQLite store): issue (exchange) per second, verify per second for a
hot token (the cache every replica keeps) and for never-seen tokens (full ES256 check).
Over HTTP on one worker (wrk, same run): POST /token exchanges per second, and `exists`
per second with an API key vs with a Bearer token (the token must cost no more than the key).
Targets (issue 3): exchange ≥ 2,000/s, verify ≥ 20,000/s in-process, exists with a token
≥ 3,000 req/s.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlencode

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import fedgate, save, table, wrk

GRANT = "urn:ietf:params:oauth:grant-type:token-exchange"
API_KEY_TYPE = "urn:fedgate:params:oauth:token-type:api-key"


def rate(fn, seconds: float) -> float:  # type: ignore[no-untyped-def]
    n = 0
    end = time.perf_counter() + seconds
    start = time.perf_counter()
    while time.perf_counter() < end:
        for _ in range(50):
            fn()
        n += 50
    return n / (time.perf_counter() - start)


def in_process(seconds: float) -> dict[str, float]:
    import base64
    import os

    from tokens.masterkey import MasterKeys
    from tokens.scopes import parse_scopes
    from tokens.service import TokenService
    from tokens.store import Store

    folder = Path(tempfile.mkdtemp(prefix="bench-tokens-"))
    store = Store.open(f"sqlite:///{folder / 'state.db'}")
    store.upgrade()
    keys = MasterKeys.parse(base64.b64encode(os.urandom(32)).decode())
    svc = TokenService(store, keys, issuer="bench")
    scopes = parse_scopes("storage.read:/local/inputs storage.create:/local/outputs")
    issue = rate(lambda: svc.issue("alice", scopes, execution_id="exec-1"), seconds)
    hot = svc.issue("alice", scopes).access_token
    verify_hot = rate(lambda: svc.verify(hot), seconds)
    fresh = [svc.issue("alice", scopes).access_token for _ in range(5000)]
    it = iter(fresh)
    t0 = time.perf_counter()
    count = 0
    for tok in it:
        svc.verify(tok)
        count += 1
    verify_cold = count / (time.perf_counter() - t0)
    store.close()
    return {"issue_per_s": issue, "verify_hot_per_s": verify_hot, "verify_cold_per_s": verify_cold}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=10)
    args = ap.parse_args()
    results: dict[str, object] = {}
    inproc = in_process(min(args.seconds, 5))
    results["in_process"] = inproc
    rows = [
        ("exchange (issue), in-process", f"{inproc['issue_per_s']:.0f} /s", "target ≥ 2000"),
        ("verify, hot token, in-process", f"{inproc['verify_hot_per_s']:.0f} /s", "target ≥ 20000"),
        (
            "verify, unseen tokens, in-process",
            f"{inproc['verify_cold_per_s']:.0f} /s",
            "full ES256 signature check",
        ),
    ]
    data = Path(tempfile.mkdtemp(prefix="bench-tokens-data-"))
    (data / "f").write_text("x")
    with fedgate({"local": {"type": "posix", "root": str(data)}}) as fg:
        import httpx

        form = {
            "grant_type": GRANT,
            "subject_token": fg.key,
            "subject_token_type": API_KEY_TYPE,
            "scope": "storage.read:/local",
        }
        tok = httpx.post(fg.url + "/token", data=form).json()["access_token"]
        lua = Path(tempfile.mkdtemp()) / "post.lua"
        lua.write_text(
            'wrk.method = "POST"\n'
            f'wrk.body = "{urlencode(form)}"\n'
            'wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"\n'
        )
        import subprocess

        out = subprocess.run(
            ["wrk", "-t2", "-c16", f"-d{args.seconds}s", "-s", str(lua), fg.url + "/token"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        exchange_http = float(out.split("Requests/sec:")[1].split()[0])
        with_key = wrk(
            f"{fg.url}/path/local/f?action=exists", {"apikey": fg.key}, seconds=args.seconds
        )
        with_token = wrk(
            f"{fg.url}/path/local/f?action=exists",
            {"Authorization": f"Bearer {tok}"},
            seconds=args.seconds,
        )
    results.update(exchange_http=exchange_http, exists_key=with_key, exists_token=with_token)
    rows += [
        ("exchange over HTTP (POST /token)", f"{exchange_http:.0f} /s", "one worker"),
        (
            "exists with API key",
            f"{with_key['rps']:.0f} req/s",
            f"non-2xx {with_key['non2xx']:.0f}",
        ),
        (
            "exists with Bearer token",
            f"{with_token['rps']:.0f} req/s",
            f"target ≥ 3000; non-2xx {with_token['non2xx']:.0f}",
        ),
        ("token / key", f"{with_token['rps'] / with_key['rps']:.2f}", ""),
    ]
    print(table("bench/tokens.py", rows))
    save("tokens", results)


if __name__ == "__main__":
    main()
