"""A periodic background task that can be stopped, and that never fails silently."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PeriodicStats:
    runs: int
    errors: int
    last_error: str | None
    last_run_s: float | None  # duration of the last run


class Periodic:
    """Run ``fn`` now and then every ``every_s`` seconds on a daemon thread until :meth:`stop`.

    An exception in ``fn`` is logged and counted (:meth:`stats`), and the schedule goes on.
    """

    def __init__(self, fn: Callable[[], object], every_s: float, *, name: str = "periodic") -> None:
        if every_s <= 0:
            raise ValueError("every_s must be positive")
        self._fn = fn
        self.every_s = every_s
        self.name = name
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._runs = 0
        self._errors = 0
        self._last_error: str | None = None
        self._last_run_s: float | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> Periodic:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
            self._thread.start()
        return self

    def run_once(self) -> None:
        start = time.perf_counter()
        try:
            self._fn()
        except Exception as exc:  # counted and logged; the schedule continues
            log.warning("%s failed: %s", self.name, exc)
            with self._lock:
                self._errors += 1
                self._last_error = f"{type(exc).__name__}: {exc}"
        finally:
            with self._lock:
                self._runs += 1
                self._last_run_s = time.perf_counter() - start

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.run_once()
            self._stop.wait(self.every_s)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)

    def stats(self) -> PeriodicStats:
        with self._lock:
            return PeriodicStats(self._runs, self._errors, self._last_error, self._last_run_s)

    def __enter__(self) -> Periodic:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
