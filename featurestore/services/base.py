"""The one small interface every local service implements."""

from __future__ import annotations

import subprocess
from abc import ABC, abstractmethod
from pathlib import Path

from featurestore.services.ports import HOST
from featurestore.services.process import Layout, log_tail, port_open, read_pid


class Service(ABC):
    """A local service: one or more processes (`components`), each with a pid file and a log.

    Subclasses say how to install/prepare (`prepare`), how to start (`launch`) and how to check
    health with the service's own protocol (`check`, which raises when unhealthy).
    """

    name: str = ""
    components: tuple[str, ...] = ()
    timeout_s: float = 120.0

    def __init__(self, layout: Layout) -> None:
        self.layout = layout

    @property
    @abstractmethod
    def address(self) -> str:
        """How a client reaches it (host:port or a URI)."""

    @property
    @abstractmethod
    def ports(self) -> tuple[int, ...]:
        """Every loopback port it listens on."""

    def prepare(self) -> float:
        """Install or resolve what is needed; returns the seconds spent (0 when nothing to do)."""
        return 0.0

    @abstractmethod
    def launch(self) -> list[subprocess.Popen[bytes]]:
        """Write config and start every component (through `process.spawn`)."""

    @abstractmethod
    def check(self) -> None:
        """A real protocol round trip; raises (any exception) when the service is not healthy."""

    @property
    def dir(self) -> Path:
        return self.layout.service_dir(self.name)

    def pid_file(self, component: str) -> Path:
        return self.dir / "run" / f"{component}.pid"

    def log_file(self, component: str) -> Path:
        return self.dir / "logs" / f"{component}.log"

    def logs(self) -> list[Path]:
        return [self.log_file(c) for c in self.components]

    def pids(self) -> dict[str, int]:
        """Live pids of the components started by us (pid files), by component."""
        found = {c: read_pid(self.pid_file(c)) for c in self.components}
        return {c: pid for c, pid in found.items() if pid is not None}

    def busy_ports(self) -> list[int]:
        return [p for p in self.ports if port_open(HOST, p, timeout=0.2)]

    def log_tail(self, lines: int = 30) -> str:
        return log_tail(self.logs(), lines)
