"""What `up` and `status` return, and their readable tables (pure: no process, no socket)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class ServiceResult:
    """One service after `up`: where it is, whether this call started it and how long it took."""

    name: str
    address: str
    healthy: bool
    pid: int | None
    started: bool
    seconds_to_healthy: float
    resolve_seconds: float = 0.0
    rss_bytes: int = 0
    pid_files: tuple[str, ...] = ()


@dataclass(frozen=True)
class Report:
    """The result of one `up` call."""

    services: tuple[ServiceResult, ...]
    resolve_seconds: float
    total_seconds: float
    extra_resolutions: dict[str, float] = field(default_factory=dict)

    @property
    def started(self) -> list[str]:
        return [s.name for s in self.services if s.started]

    def get(self, name: str) -> ServiceResult:
        for result in self.services:
            if result.name == name:
                return result
        raise KeyError(name)


@dataclass(frozen=True)
class ServiceStatus:
    """One service as `status` sees it now."""

    name: str
    address: str
    healthy: bool
    pid: int | None
    reason: str = ""
    rss_bytes: int = 0


def _mib(n: int) -> str:
    return f"{n / 2**20:.0f} MiB" if n else "-"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in [header, *rows]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def format_report(report: Report) -> str:
    """A table of every service (address, health, pid, started by this call, seconds, RSS) and timings."""
    rows = [
        [
            r.name,
            r.address,
            "yes" if r.healthy else "NO",
            str(r.pid) if r.pid else "-",
            "started" if r.started else "already up",
            f"{r.seconds_to_healthy:.1f}" if r.started else "-",
            f"{r.resolve_seconds:.1f}",
            _mib(r.rss_bytes),
        ]
        for r in report.services
    ]
    header = ["service", "address", "healthy", "pid", "this call", "s to healthy", "s resolve", "rss"]
    extra = "".join(f", {name} {secs:.1f}s" for name, secs in report.extra_resolutions.items())
    footer = f"downloads/resolution: {report.resolve_seconds:.1f}s{extra}; total: {report.total_seconds:.1f}s"
    return _table(header, rows) + "\n" + footer


def format_status(statuses: Sequence[ServiceStatus]) -> str:
    rows = [
        [s.name, s.address, "yes" if s.healthy else "NO", str(s.pid) if s.pid else "-", _mib(s.rss_bytes), s.reason]
        for s in statuses
    ]
    return _table(["service", "address", "healthy", "pid", "rss", "reason"], rows)
