"""What ``fedgate serve`` checks and logs once, before its workers start.

* Every mount's adapter is built: a value the adapter refuses (a part size under S3's
  minimum, a Girder root of the wrong shape) is a configuration error and stops the start.
* Every mount is checked (``adapter.check()``) in parallel, each bounded by
  ``readyz_timeout``: one log line per mount says ``ok`` or why it is unavailable. A
  backend that is down does not stop the start: the other mounts serve, its requests get
  503 and ``/readyz`` reports it until it is back.
* Environment variables named ``FEDGATE_*`` that fedgate does not read are named in one
  warning line, with a close match (``FEDGATE_PROT``: did you mean ``FEDGATE_PORT``?).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass

from adapters.base import Adapter
from adapters.registry import BackendLoadError, create_adapter
from gateway.config import ConfigError, Settings, unknown_environment

log = logging.getLogger("fedgate.start")


@dataclass(frozen=True)
class MountState:
    name: str
    type: str
    ok: bool
    reason: str = ""  # why it is not ok (no secret: adapters/base.py's error contract)


def describe_error(exc: BaseException) -> str:
    """``Type: first line of the message``, at most 200 characters of it."""
    text = str(exc).splitlines()[0][:200] if str(exc) else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def check_mounts(settings: Settings, where: str, timeout: float) -> list[MountState]:
    """Build and check every mount; ConfigError for a value an adapter refuses."""
    adapters: dict[str, Adapter] = {}
    failed: dict[str, str] = {}
    for m in settings.mounts:
        try:
            adapters[m.name] = create_adapter(m.type, m.options)
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"{where}: [mounts.{m.name}]: {describe_error(exc)}") from None
        except BackendLoadError as exc:
            failed[m.name] = str(exc)
        except Exception as exc:  # e.g. an OSError building a posix mount
            failed[m.name] = describe_error(exc)

    done: dict[str, str | None] = {}

    def check(name: str, adapter: Adapter) -> None:
        try:
            adapter.check()
            done[name] = None
        except Exception as exc:
            done[name] = describe_error(exc)
        finally:
            adapter.close()

    threads = [
        threading.Thread(target=check, args=(name, a), name=f"check-{name}", daemon=True)
        for name, a in adapters.items()
    ]
    for t in threads:
        t.start()
    deadline = time.monotonic() + timeout
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    states = []
    for m in settings.mounts:
        if m.name in failed:
            reason: str | None = failed[m.name]
        elif m.name in done:
            reason = done[m.name]
        else:  # still hanging: its daemon thread is left behind
            reason = f"no answer within {timeout:g} s"
        states.append(MountState(m.name, m.type, reason is None, reason or ""))
    return states


def log_start(settings: Settings, where: str, env: Mapping[str, str]) -> list[MountState]:
    """The start-up lines: unknown FEDGATE_* variables, then one line per mount."""
    unknown = unknown_environment(env)
    if unknown:
        log.warning(
            "unknown environment variables, ignored: %s",
            "; ".join(unknown),
            extra={"variables": [u.split(" ", 1)[0] for u in unknown]},
        )
    states = check_mounts(settings, where, settings.readyz_timeout)
    for s in states:
        if s.ok:
            log.info("mount %s (%s): ok", s.name, s.type, extra={"mount": s.name, "state": "ok"})
        else:
            log.warning(
                "mount %s (%s): unavailable: %s",
                s.name,
                s.type,
                s.reason,
                extra={"mount": s.name, "state": "unavailable", "reason": s.reason},
            )
    return states
