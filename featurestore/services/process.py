"""Spawning, pid files, stopping and health waits, shared by every local service.

Every process is started in a session (process group) of its own with its output appended to a log
file, so it survives the command that started it and can be stopped as a whole group. A pid file
holds the pid and the process start time: a pid reused by an unrelated process is never signalled.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil

from featurestore.environment import child_environment
from featurestore.errors import ServiceStartError

# Popen objects of processes this interpreter started: reaped on stop so none lingers as a zombie.
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}
_CHILDREN_LOCK = threading.Lock()


@dataclass(frozen=True)
class Layout:
    """Where state and downloads live: `<root>/.services/` and `<root>/.cache/` (both git-ignored)."""

    root: Path

    @classmethod
    def default(cls) -> Layout:
        """The repository root (or FEATURESTORE_ROOT when set)."""
        env = os.environ.get("FEATURESTORE_ROOT")
        return cls(Path(env).resolve() if env else Path(__file__).resolve().parents[2])

    @property
    def services_dir(self) -> Path:
        return self.root / ".services"

    @property
    def cache_dir(self) -> Path:
        return self.root / ".cache"

    def service_dir(self, name: str) -> Path:
        return self.services_dir / name


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    """True when something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def log_tail(paths: Sequence[Path], lines: int = 30) -> str:
    """The last `lines` lines of each existing log, each headed by its file name."""
    parts: list[str] = []
    for path in paths:
        if not path.exists():
            continue
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 64 * 1024))
            text = fh.read().decode("utf-8", errors="replace")
        tail = "\n".join(text.splitlines()[-lines:])
        parts.append(f"[{path.name}]\n{tail}" if len(paths) > 1 else tail)
    return "\n".join(parts)


def spawn(
    argv: Sequence[str],
    *,
    log_path: Path,
    pid_path: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> subprocess.Popen[bytes]:
    """Start `argv` in a new session with output appended to `log_path`; write `pid_path`."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    pid_path.parent.mkdir(parents=True, exist_ok=True)
    full_env = child_environment(**(env or {}))  # not os.environ: what local jobs left in it
    with log_path.open("ab") as log:
        log.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} starting: {argv[0]} ... {argv[-1]}\n".encode())
        log.flush()
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=str(cwd) if cwd else None,
            env=full_env,
            start_new_session=True,
        )
    with _CHILDREN_LOCK:
        _CHILDREN[proc.pid] = proc
    pid_path.write_text(f"{proc.pid} {psutil.Process(proc.pid).create_time()}\n")
    return proc


def run_once(argv: Sequence[str], *, log_path: Path, timeout: float, what: str, service: str) -> None:
    """Run a setup command (format a NameNode, a Kafka log dir) to completion, logging its output."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        try:
            proc = subprocess.run(
                list(argv), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, timeout=timeout, check=False
            )
        except subprocess.TimeoutExpired:
            raise ServiceStartError(service, f"{what} took more than {timeout:.0f}s", log_tail([log_path])) from None
    if proc.returncode != 0:
        raise ServiceStartError(service, f"{what} failed with exit code {proc.returncode}", log_tail([log_path]))


def read_pid(pid_path: Path) -> int | None:
    """The pid in `pid_path` if that very process (same start time) still runs, else None."""
    try:
        pid_text, created_text = pid_path.read_text().split()
        pid, created = int(pid_text), float(created_text)
        proc = psutil.Process(pid)
        if abs(proc.create_time() - created) > 0.01 or proc.status() == psutil.STATUS_ZOMBIE:
            return None
        return pid
    except (OSError, ValueError, psutil.Error):
        return None


def _reap(pid: int) -> None:
    with _CHILDREN_LOCK:
        proc = _CHILDREN.get(pid)
    if proc is not None and proc.poll() is not None:
        with _CHILDREN_LOCK:
            _CHILDREN.pop(pid, None)


def _gone(proc: psutil.Process) -> bool:
    _reap(proc.pid)
    try:
        return not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def stop_pid_file(pid_path: Path, *, grace: float = 20.0) -> bool:
    """SIGTERM the process group of the pid in `pid_path`, wait up to `grace` s, then SIGKILL.

    Returns True when a live process was stopped. The pid file is removed either way.
    """
    pid = read_pid(pid_path)
    pid_path.unlink(missing_ok=True)
    if pid is None:
        return False
    try:
        leader = psutil.Process(pid)
        procs = [leader, *leader.children(recursive=True)]
    except psutil.NoSuchProcess:
        return False
    _signal_group(pid, procs, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and not all(_gone(p) for p in procs):
        time.sleep(0.2)
    if not all(_gone(p) for p in procs):
        _signal_group(pid, procs, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not all(_gone(p) for p in procs):
            time.sleep(0.1)
    return True


def _signal_group(pgid: int, procs: Sequence[psutil.Process], sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)
    for proc in procs:  # children that left the group
        with contextlib.suppress(psutil.Error):
            proc.send_signal(sig)


def kill_hard(pid: int) -> None:
    """SIGKILL one process group at once (tests use it to simulate a crash)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    proc = psutil.Process(pid) if psutil.pid_exists(pid) else None
    while proc is not None and time.monotonic() < deadline and not _gone(proc):
        time.sleep(0.05)


def rss_bytes(pids: Sequence[int]) -> int:
    """Resident memory of the given processes and all their descendants."""
    total = 0
    for pid in pids:
        try:
            proc = psutil.Process(pid)
            for p in [proc, *proc.children(recursive=True)]:
                with contextlib.suppress(psutil.Error):
                    total += p.memory_info().rss
        except psutil.Error:
            continue
    return total


def wait_healthy(
    service: str,
    check: Callable[[], None],
    *,
    procs: Sequence[subprocess.Popen[bytes]],
    timeout: float,
    logs: Sequence[Path],
    interval: float = 0.1,
    max_interval: float = 1.0,
) -> float:
    """Poll `check` until it passes; returns the seconds it took.

    Fails fast with ServiceStartError (and the log tail) when one of `procs` exits, and after
    `timeout` seconds with the last health-check error.
    """
    start = time.monotonic()
    last = "no health check ran"
    while True:
        try:
            check()
            return time.monotonic() - start
        except Exception as exc:  # any failure of a health check means "not yet"
            last = f"{type(exc).__name__}: {exc}"
        for proc in procs:
            code = proc.poll()
            if code is not None:
                raise ServiceStartError(service, f"process {proc.pid} exited with code {code}", log_tail(logs))
        if time.monotonic() - start > timeout:
            raise ServiceStartError(service, f"not healthy after {timeout:.0f}s (last check: {last})", log_tail(logs))
        time.sleep(interval)
        interval = min(interval * 1.5, max_interval)
