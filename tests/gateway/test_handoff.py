"""The one bounded hand-off of the data path (gateway/datapath/handoff.py) on its own:
items in order then the thread's error, a stop that lets a blocked thread go, and a
failed write that neither loses the error nor leaves the producing thread blocked."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Iterator

import pytest

from gateway.datapath.handoff import Handoff


def _thread(target: Callable[..., object], *args: object) -> threading.Thread:
    thread = threading.Thread(target=target, args=args, daemon=True)
    thread.start()
    return thread


def test_items_come_in_order_then_the_producers_error() -> None:
    def chunks() -> Iterator[bytes]:
        yield b"a"
        yield b"b"
        raise OSError("backend gone")

    handoff: Handoff[bytes] = Handoff(1)
    feeder = _thread(handoff.feed, chunks())
    got = []
    with pytest.raises(OSError, match="backend gone"):
        for item in handoff.items():
            got.append(item)
    assert got == [b"a", b"b"]
    feeder.join(10)
    assert not feeder.is_alive()


def test_a_stop_lets_a_feeder_blocked_on_a_full_queue_go() -> None:
    handoff: Handoff[bytes] = Handoff(1)
    pulled: list[int] = []
    second = threading.Event()

    def endless() -> Iterator[bytes]:
        for n in itertools.count():
            pulled.append(n)
            if n == 1:
                second.set()  # the first is queued: this one waits for room
            yield b"x"

    feeder = _thread(handoff.feed, endless())
    assert second.wait(10)
    handoff.stop()
    feeder.join(10)
    assert not feeder.is_alive()
    assert pulled == [0, 1]  # nothing more pulled from the backend after the stop


def test_a_failed_write_is_kept_and_later_items_are_taken_and_dropped() -> None:
    written: list[bytes] = []

    def write(block: bytes) -> None:
        if block == b"2":
            raise OSError("disk full")
        written.append(block)

    handoff: Handoff[bytes] = Handoff(1)
    drainer = _thread(handoff.drain, write, True)
    for block in (b"1", b"2", b"3", b"4", b"5"):
        handoff.put(block)  # never blocks for ever: the drainer keeps taking
    handoff.put(None)
    drainer.join(10)
    assert not drainer.is_alive()
    assert written == [b"1"]
    assert isinstance(handoff.error, OSError)


def test_a_drain_that_does_not_keep_taking_returns_at_the_failure() -> None:
    handoff: Handoff[bytes] = Handoff(4)

    def write(block: bytes) -> None:
        raise OSError("refused")

    for block in (b"1", b"2", b"3"):
        handoff.put(block)
    drainer = _thread(handoff.drain, write, False)
    drainer.join(10)
    assert not drainer.is_alive()
    assert isinstance(handoff.error, OSError)
    assert not handoff.empty()  # the rest was left, for the event loop side to drop
