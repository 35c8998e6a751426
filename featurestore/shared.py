"""Objects shared by everything in this process that uses the same key: opened by the first
user, closed by the last.

Two resources need this: an LMDB environment (py-lmdb must not open one directory twice in a
process) and the offline log's staged appender of a table (the sink functions of a table's
window groups share one, so the table gets one commit per interval, not one per group).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class Shared(Generic[K, V]):
    """``acquire(key, opener)`` returns the open object of ``key`` (``opener()`` when none is),
    ``release(key)`` gives it back; the last release closes it with ``close``. Opening and
    closing happen under the registry's lock, so a key is never open twice at once."""

    def __init__(self, close: Callable[[V], None]) -> None:
        self._close = close
        self._lock = threading.Lock()
        self._open: dict[K, tuple[V, int]] = {}

    def acquire(self, key: K, opener: Callable[[], V]) -> V:
        with self._lock:
            value, count = self._open[key] if key in self._open else (opener(), 0)
            self._open[key] = (value, count + 1)
            return value

    def release(self, key: K) -> None:
        with self._lock:
            value, count = self._open[key]
            if count > 1:
                self._open[key] = (value, count - 1)
                return
            del self._open[key]
            self._close(value)

    def users(self, key: K) -> int:
        """How many users hold ``key`` now (0: not open)."""
        with self._lock:
            return self._open[key][1] if key in self._open else 0
