"""Request latencies of a benchmark: the percentiles its table prints and the distribution the
report draws (bench/report.py plots every ``<measure>_percentiles_ms`` it finds).

    latency = timed(10_000, lambda i: cache.get(...))
    rows.append(("redis latest, 1 key x 50", latency.record(out, "redis_1key"), "p99 < 1 ms"))
    # out: redis_1key_p50_ms, redis_1key_p99_ms, redis_1key_percentiles_ms {"1": .., ..., "99.9": ..}
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

#: The percentiles saved for the distribution plots.
PERCENTILES = (1, 5, 10, 25, 50, 75, 90, 95, 99, 99.9)


@dataclass(frozen=True)
class Latency:
    samples_ms: np.ndarray

    def percentile(self, q: float) -> float:
        return round(float(np.percentile(self.samples_ms, q)), 3)

    @property
    def p50(self) -> float:
        return self.percentile(50)

    @property
    def p99(self) -> float:
        return self.percentile(99)

    def record(self, out: dict[str, Any], prefix: str) -> str:
        """Save p50, p99 and the distribution under ``prefix``; the text for the printed table."""
        out[f"{prefix}_p50_ms"], out[f"{prefix}_p99_ms"] = self.p50, self.p99
        out[f"{prefix}_percentiles_ms"] = {f"{q:g}": self.percentile(q) for q in PERCENTILES}
        return f"p50 {self.p50} ms, p99 {self.p99} ms"


def timed(n: int, call: Callable[[int], object], warmup: int = 200) -> Latency:
    """Call ``call(i)`` ``warmup`` times unmeasured (connections, caches, JIT), then ``n`` times,
    each timed on its own."""
    for i in range(min(warmup, n)):
        call(i)
    samples = np.empty(n, dtype=np.int64)
    for i in range(n):
        start = time.perf_counter_ns()
        call(i)
        samples[i] = time.perf_counter_ns() - start
    return Latency(samples / 1e6)


def timed_side_by_side(n: int, *calls: Callable[[int], object], warmup: int = 200) -> list[Latency]:
    """:func:`timed` of several calls interleaved request by request (``calls[0](i)``,
    ``calls[1](i)``, ..., the first one rotating), so each sees the same machine moment to moment:
    their ratio holds on a noisy machine even where their absolute times drift."""
    for i in range(min(warmup, n)):
        for call in calls:
            call(i)
    samples = np.empty((len(calls), n), dtype=np.int64)
    for i in range(n):
        for k in range(len(calls)):
            which = (i + k) % len(calls)
            start = time.perf_counter_ns()
            calls[which](i)
            samples[which, i] = time.perf_counter_ns() - start
    return [Latency(row / 1e6) for row in samples]
