"""Start, stop and check the local services: `up`, `down`, `status`, `require`, `flink_jars`.

`up` is idempotent: a service that already answers its health check is left alone (and reported
as not started by this call). Services start in parallel, each with its own timeout; when one does
not come up, everything this call started is stopped again and ServiceStartError names the service
and shows the end of its log.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from featurestore.errors import ConfigError, FeatureStoreError, ServiceStartError, ServiceUnavailableError
from featurestore.services import maven
from featurestore.services.base import Service
from featurestore.services.flink import FlinkClusterService
from featurestore.services.hbase import HBaseService
from featurestore.services.hbase_cluster import HBaseClusterService
from featurestore.services.hdfs import HdfsService
from featurestore.services.kafka import KafkaService
from featurestore.services.process import Layout, rss_bytes, stop_pid_file, wait_healthy
from featurestore.services.redis import RedisService
from featurestore.services.report import Report, ServiceResult, ServiceStatus, format_report, format_status

__all__ = [
    "OPTIONAL_SERVICE_NAMES",
    "SERVICE_NAMES",
    "Report",
    "ServiceResult",
    "ServiceStatus",
    "down",
    "flink_jars",
    "format_report",
    "format_status",
    "require",
    "service",
    "status",
    "up",
]

_FACTORIES: dict[str, Callable[[Layout], Service]] = {
    "redis": RedisService,
    "hbase": HBaseService,
    "hdfs": HdfsService,
    "kafka": KafkaService,
}
SERVICE_NAMES: tuple[str, ...] = tuple(_FACTORIES)
# Started only when named (`featurestore services up flink-cluster`); `down` stops them too.
_OPTIONAL: dict[str, Callable[[Layout], Service]] = {
    "flink-cluster": FlinkClusterService,
    "hbase-cluster": HBaseClusterService,
}
OPTIONAL_SERVICE_NAMES: tuple[str, ...] = tuple(_OPTIONAL)
FLINK_CONNECTORS_POM = "flink-connectors"
FLINK_PARQUET_POM = "flink-parquet"

ServiceRef = str | Service


def service(name: str, layout: Layout | None = None) -> Service:
    """The service called `name` (one of SERVICE_NAMES or OPTIONAL_SERVICE_NAMES)."""
    factory = _FACTORIES.get(name) or _OPTIONAL.get(name)
    if factory is None:
        known = ", ".join((*SERVICE_NAMES, *OPTIONAL_SERVICE_NAMES))
        raise ConfigError(f"unknown service {name!r}", hint=f"choose from {known}")
    return factory(layout or Layout.default())


def _select(names: Sequence[ServiceRef] | None) -> list[Service]:
    layout = Layout.default()
    refs: Sequence[ServiceRef] = SERVICE_NAMES if names is None else names
    return [ref if isinstance(ref, Service) else service(ref, layout) for ref in refs]


def _healthy(svc: Service) -> str | None:
    """None when healthy, else why not."""
    try:
        svc.check()
        return None
    except Exception as exc:  # a failed protocol round trip of any kind means unhealthy
        return f"{type(exc).__name__}: {exc}".strip()


def _result(svc: Service, *, started: bool, seconds: float, resolve: float) -> ServiceResult:
    pids = svc.pids()
    return ServiceResult(
        name=svc.name,
        address=svc.address,
        healthy=True,
        pid=next(iter(pids.values()), None),
        started=started,
        seconds_to_healthy=seconds,
        resolve_seconds=resolve,
        rss_bytes=rss_bytes(list(pids.values())),
        pid_files=tuple(str(svc.pid_file(c)) for c in svc.components),
    )


def _stop(svc: Service) -> bool:
    stopped = False
    for component in reversed(svc.components):
        stopped |= stop_pid_file(svc.pid_file(component))
    return stopped


def _up_one(svc: Service, timeout: float | None) -> ServiceResult:
    limit = timeout or svc.timeout_s
    if _healthy(svc) is None:
        return _result(svc, started=False, seconds=0.0, resolve=0.0)
    resolve = svc.prepare()
    live = svc.pids()
    if live and len(live) == len(svc.components):
        # Ours, running but not healthy yet (another `up` may be starting it): wait, do not relaunch.
        seconds = wait_healthy(svc.name, svc.check, procs=[], timeout=limit, logs=svc.logs())
        return _result(svc, started=False, seconds=seconds, resolve=resolve)
    if live:  # a component died: restart the whole service
        _stop(svc)
    busy = svc.busy_ports()
    if busy:
        raise ServiceStartError(
            svc.name,
            f"port(s) {', '.join(map(str, busy))} on 127.0.0.1 are taken by a process that is not a healthy "
            f"{svc.name} started here; stop it or change featurestore/services/ports.py",
        )
    procs = svc.launch()
    try:
        seconds = wait_healthy(svc.name, svc.check, procs=procs, timeout=limit, logs=svc.logs())
    except BaseException:
        _stop(svc)
        raise
    return _result(svc, started=True, seconds=seconds, resolve=resolve)


def up(names: Sequence[ServiceRef] | None = None, *, timeout: float | None = None) -> Report:
    """Install on first use and start the services (all by default), in parallel, until healthy.

    Raises ServiceStartError naming the first service that did not come up (with its log tail);
    everything this call started is stopped again in that case.
    """
    begin = time.monotonic()
    services = _select(names)
    extra: dict[str, float] = {}
    with ThreadPoolExecutor(max_workers=len(services) + 1, thread_name_prefix="services-up") as pool:
        futures = [pool.submit(_up_one, svc, timeout) for svc in services]
        flink = pool.submit(maven.resolve, FLINK_CONNECTORS_POM, services[0].layout) if names is None else None
        results: list[ServiceResult] = []
        errors: list[BaseException] = []
        for future in futures:
            try:
                results.append(future.result())
            except BaseException as exc:
                errors.append(exc)
        if flink is not None:
            try:
                extra[FLINK_CONNECTORS_POM] = flink.result().seconds
            except FeatureStoreError as exc:
                errors.append(exc)
    if errors:
        started = {r.name for r in results if r.started}
        for svc in services:
            if svc.name in started:
                _stop(svc)
        raise errors[0]
    resolve = max([r.resolve_seconds for r in results] + list(extra.values()), default=0.0)
    return Report(tuple(results), resolve, time.monotonic() - begin, extra)


def _all_pid_files(layout: Layout) -> list[Path]:
    return sorted(layout.services_dir.glob("*/run/*.pid"))


def down(only_started_by: Report | None = None) -> list[str]:
    """Stop what `up` started (every pid file under .services/), or only what `only_started_by` started.

    Each process group gets SIGTERM, then SIGKILL after a grace period. Returns the pid files
    whose process was stopped.
    """
    if only_started_by is None:
        pid_files = _all_pid_files(Layout.default())
    else:
        pid_files = [Path(p) for r in only_started_by.services if r.started for p in r.pid_files]
    by_service: dict[Path, list[Path]] = {}
    for pid_file in pid_files:
        by_service.setdefault(pid_file.parent, []).append(pid_file)

    def stop_service(files: list[Path]) -> list[str]:
        # Newest pid file first: the reverse of start order (thrift before master, datanode before namenode).
        ordered = sorted(files, key=lambda f: f.stat().st_mtime if f.exists() else 0.0, reverse=True)
        return [str(f) for f in ordered if stop_pid_file(f)]

    if not by_service:
        return []
    with ThreadPoolExecutor(max_workers=len(by_service), thread_name_prefix="services-down") as pool:
        stopped = [s for group in pool.map(stop_service, by_service.values()) for s in group]
    return stopped


def _status_one(svc: Service) -> ServiceStatus:
    reason = _healthy(svc)
    pids = svc.pids()
    return ServiceStatus(
        name=svc.name,
        address=svc.address,
        healthy=reason is None,
        pid=next(iter(pids.values()), None),
        reason=reason or "",
        rss_bytes=rss_bytes(list(pids.values())),
    )


def status(names: Sequence[ServiceRef] | None = None) -> list[ServiceStatus]:
    """Every service (or the named ones) with a real protocol health check, checked in parallel.

    Optional services are included when they were started here (they have pid files)."""
    services = _select(names)
    if names is None:
        layout = services[0].layout
        optional = [factory(layout) for factory in _OPTIONAL.values()]
        services += [svc for svc in optional if any(svc.pid_file(c).exists() for c in svc.components)]
    with ThreadPoolExecutor(max_workers=len(services), thread_name_prefix="services-status") as pool:
        return list(pool.map(_status_one, services))


def require(name: ServiceRef) -> str:
    """The service's address when it is healthy, else ServiceUnavailableError naming it."""
    svc = _select([name])[0]
    reason = _healthy(svc)
    if reason is not None:
        raise ServiceUnavailableError(
            svc.name, svc.address, reason, hint=f"start it with `featurestore services up {svc.name}`"
        )
    return svc.address


def flink_jars() -> list[str]:
    """file:// URLs of the Flink jars every job of the project may need, for PyFlink's
    `pipeline.jars`: the SQL connectors (Kafka, Avro) and the `hdfs-replay` history source."""
    from featurestore.services.replay_jar import replay_jar_url

    jars = maven.resolve(FLINK_CONNECTORS_POM, Layout.default()).jars
    return [*(Path(j).as_uri() for j in jars if Path(j).name.startswith("flink-")), replay_jar_url()]


def hadoop_jars() -> list[str]:
    """Hadoop's client jars (the HDFS service's Maven resolution) as a deployment's ``hadoop
    classpath`` gives them, for a Flink classpath (the flink-cluster service's too)."""
    from featurestore.services.flink import without_hadoop_logging

    return without_hadoop_logging(maven.resolve("hadoop", Layout.default(), service="hdfs").jars)


def parquet_jars() -> list[str]:
    """file:// URLs of Flink's Parquet format and its Parquet dependencies (its SQL bundle is not
    on Maven Central for Flink 2): with :func:`flink_jars`, what a job reading and writing Parquet
    needs besides Hadoop, which Parquet is built on."""
    return [Path(j).as_uri() for j in maven.resolve(FLINK_PARQUET_POM, Layout.default()).jars]
