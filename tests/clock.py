"""An injected clock for code that reads ``time.time()`` and ``time.monotonic()`` through
its module's ``time`` name (tokens/*, gateway/*): tests move time instead of sleeping.

    clock = FakeClock()
    clock.install(monkeypatch, tokens.service, tokens.revocation)
    clock.advance(61)

Anything else the module takes from ``time`` (``sleep``, ``perf_counter``, ...) passes
through to the real module, except ``sleep``, which advances the clock.
"""

from __future__ import annotations

import time
from types import ModuleType
from typing import Any

import pytest


class FakeClock:
    def __init__(self, wall: float | None = None, mono: float | None = None) -> None:
        # Start where the real clocks are (wall time to the second, so sums stay exact):
        # rows written before the clock was installed (signing keys, users) still make sense.
        self.wall = float(int(time.time())) if wall is None else wall
        self.mono = time.monotonic() if mono is None else mono

    def time(self) -> float:
        return self.wall

    def time_ns(self) -> int:
        return int(self.wall * 1e9)

    def monotonic(self) -> float:
        return self.mono

    def sleep(self, seconds: float) -> None:
        self.advance(seconds)

    def advance(self, seconds: float) -> None:
        self.wall += seconds
        self.mono += seconds

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)

    def install(self, monkeypatch: pytest.MonkeyPatch, *modules: ModuleType) -> FakeClock:
        for module in modules:
            assert getattr(module, "time", None) is time, f"{module.__name__} has no 'time'"
            monkeypatch.setattr(module, "time", self)
        return self
