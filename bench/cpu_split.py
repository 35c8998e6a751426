"""Where a benchmark's CPU time goes: seconds of CPU per component while a block runs.

    with CpuSplit() as split:
        run_the_job()
    split.seconds  # {"flink_jvm": 61.2, "python": 20.4, "hbase": 9.8, "redis": 2.1, ...}

Components: ``flink_jvm`` (the JVMs this process started: PyFlink's gateway, which runs the local
MiniCluster), ``python_workers`` (Python processes this process started: Flink's Python workers
in process mode), ``python`` (this process: the driver and, in loopback mode, the Python
functions of the job), and each running service of ``featurestore services`` by name (every
component process: HBase master and Thrift server, both HDFS daemons, ...). Measured from the
processes' user + system CPU times (psutil) at the start and end of the block, plus the last
reading of children that ended during it.
"""

from __future__ import annotations

import threading
from types import TracebackType
from typing import Any

import psutil

from featurestore.services import manager


def _cpu(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


class CpuSplit:
    """CPU seconds per component over a ``with`` block (see the module docstring)."""

    def __init__(self, poll_s: float = 1.0) -> None:
        self.seconds: dict[str, float] = {}
        self._poll_s = poll_s
        self._start: dict[int, float] = {}
        self._last: dict[int, tuple[str, float]] = {}  # pid -> (component, last CPU reading)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def _services(self) -> dict[int, str]:
        """The services' processes: found once (a status call health-checks every service)."""
        found: dict[int, str] = {}
        for status in manager.status():
            if status.healthy:
                for pid in manager.service(status.name).pids().values():
                    found[pid] = status.name
        return found

    def _components(self) -> dict[int, str]:
        found = dict(self._service_pids)
        me = psutil.Process()
        found[me.pid] = "python"
        for child in me.children(recursive=True):
            try:
                name = "flink_jvm" if "java" in child.name() else "python_workers"
            except psutil.Error:
                continue
            found[child.pid] = name
        return found

    def _read(self) -> None:
        for pid, component in self._components().items():
            try:
                value = _cpu(psutil.Process(pid))
            except psutil.Error:
                continue
            self._start.setdefault(pid, self._initial.get(pid, 0.0))
            self._last[pid] = (component, value)

    def _watch(self) -> None:
        while not self._stop.wait(self._poll_s):
            self._read()

    def __enter__(self) -> CpuSplit:
        self._service_pids = self._services()
        self._initial: dict[int, float] = {}
        for pid in self._components():
            try:
                self._initial[pid] = _cpu(psutil.Process(pid))
            except psutil.Error:
                continue
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self._stop.set()
        self._thread.join()
        self._read()
        totals: dict[str, float] = {}
        for pid, (component, value) in self._last.items():
            totals[component] = totals.get(component, 0.0) + value - self._start.get(pid, 0.0)
        self.seconds = {k: round(v, 1) for k, v in sorted(totals.items(), key=lambda kv: -kv[1])}

    def as_fields(self, prefix: str = "cpu_s_") -> dict[str, Any]:
        return {prefix + k: v for k, v in self.seconds.items()}
