"""Run compiled plans on Flink (the local MiniCluster, or what ``execution`` options point at).

One job per call: every group of every plan is an INSERT of one statement set, so sources are
read once per declaration and the job ends when bounded sources end (files, or Kafka with
``bounded=True``). Flink writes the versions as JSON files (:class:`registry.compiler.FileSink`);
they are read back with pyarrow, one Arrow table per window group in the storage layout
(:meth:`featurestore.schema.TableSchema.arrow_schema` restricted to the group's columns).
``collect()`` is not used: it hands rows to Python at a few hundred per second.

PyFlink is imported here, inside the functions, never when the package is imported.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.json as pajson
from featurestore.errors import NotInstalledError
from registry.compiler import Binding, CompiledPlan, FileSink, GroupPlan, compile_table
from registry.models import Definitions


@dataclass(frozen=True)
class RunResult:
    """The versions of each plan's groups (``versions[table][group]``) and the job's wall time."""

    versions: dict[str, dict[str, pa.Table]]
    seconds: float


# PyFlink's switch between Python workers in this process ("loopback") and on the TaskManagers.
WORKER_MODE = "_python_worker_execution_mode"
# The project's Python packages, shipped with every job to a remote cluster (``python.files``).
PACKAGES = ("featurestore", "ingestion", "registry", "backfill", "sdk")
_PROJECT_ROOT = Path(__file__).resolve().parents[1]


def shipped_code() -> str:
    """A directory holding a copy of the project's Python packages, for ``python.files``: the
    Python workers of a remote cluster import the job's functions from it, so they run exactly the
    client's code (the Python interpreter and third-party packages are ``flink.python_executable``
    on the cluster's machines). One copy per content, reused across jobs; the Java module
    (backfill/java) is not copied: its jar travels in ``pipeline.jars``."""
    files = sorted(
        path
        for package in PACKAGES
        for path in (_PROJECT_ROOT / package).rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and "java" not in path.relative_to(_PROJECT_ROOT).parts
    )
    digest = hashlib.sha256()
    for path in files:
        digest.update(str(path.relative_to(_PROJECT_ROOT)).encode())
        digest.update(path.read_bytes())
    target = Path(tempfile.gettempdir()) / f"featurestore-code-{digest.hexdigest()[:16]}"
    if not target.exists():
        staging = Path(tempfile.mkdtemp(prefix=f"{target.name}.", dir=target.parent))
        for path in files:
            copy = staging / path.relative_to(_PROJECT_ROOT)
            copy.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, copy)
        try:
            staging.rename(target)
        except OSError:  # another job made the same copy first
            shutil.rmtree(staging, ignore_errors=True)
    return str(target)


def remote_jars() -> list[str]:
    """What a job on a remote cluster needs beyond the connectors: Flink's Python runtime (the
    client adds it to local jobs itself; a cluster started from the distribution lacks it)."""
    from featurestore.services.flink import flink_python_jar

    return [flink_python_jar().as_uri()]


def hadoop_on_gateway() -> bool:
    """Whether PyFlink's gateway JVM (which runs local jobs) has Hadoop on its classpath, as
    Flink needs to reach ``hdfs://``: yes when it starts after this call (``HADOOP_CLASSPATH`` is
    set to Hadoop's jars first, as a Flink deployment sets it from ``hadoop classpath``), or when
    ``HADOOP_CLASSPATH`` was set when it started. The gateway starts once per process; jobs that
    only read local files do not need Hadoop there."""
    import pyflink.java_gateway as gateway

    if gateway._gateway is None and "HADOOP_CLASSPATH" not in os.environ:
        from featurestore.services.manager import hadoop_jars

        os.environ["HADOOP_CLASSPATH"] = ":".join(hadoop_jars())
    return "HADOOP_CLASSPATH" in os.environ


def table_environment(jars: Sequence[str] | None, parallelism: int, options: Mapping[str, str]) -> Any:
    """A streaming TableEnvironment with the connector jars, UTC, and ``options`` on top; a job
    for a remote cluster (``execution.target: remote``) also ships Flink's Python runtime and the
    project's Python code (:func:`shipped_code`)."""
    try:
        from pyflink.common import Configuration
        from pyflink.table import EnvironmentSettings, TableEnvironment
    except ImportError as exc:  # pragma: no cover - apache-flink is a pinned dependency
        raise NotInstalledError("running a plan needs PyFlink", hint="pip install apache-flink==2.2.1") from exc
    if jars is None:
        from featurestore.services import manager

        jars = manager.flink_jars()
    settings = {
        "parallelism.default": str(parallelism),
        "table.local-time-zone": "UTC",
        # Chained operators hand rows on without a copy each. Safe here (Flink 2.2.1): the operators
        # that keep rows (window state, the OVER and join buffers) read them from a keyed exchange,
        # which deserializes a new row per record, and the Python operators copy what they buffer
        "pipeline.object-reuse": "true",
        **options,
    }
    if options.get("execution.target") == "remote":
        jars = [*jars, *remote_jars()]
        settings["python.files"] = shipped_code()
    settings["pipeline.jars"] = ";".join(jars)
    configuration = Configuration()
    for key, value in settings.items():
        configuration.set_string(key, value)
    environment = EnvironmentSettings.new_instance().in_streaming_mode().with_configuration(configuration).build()
    if settings.get("execution.target") != "remote":
        return TableEnvironment.create(environment)
    # PyFlink decides when the environment is created whether to run the Python workers inside
    # this process (loopback), and it asks the gateway's execution environment, which says
    # "local" whatever the job's target; the workers of a remote job belong on the TaskManagers.
    previous = os.environ.get(WORKER_MODE)
    os.environ[WORKER_MODE] = "process"
    try:
        return TableEnvironment.create(environment)
    finally:
        if previous is None:
            del os.environ[WORKER_MODE]
        else:
            os.environ[WORKER_MODE] = previous


def execute_inserts(env: Any, inserts: Sequence[str]) -> Any:
    """Submit ``inserts`` as one job in ONE gateway call (``EXECUTE STATEMENT SET``), returning
    Flink's TableResult; see :func:`plan_and_submit`."""
    body = ";\n".join(inserts)
    return plan_and_submit(env, f"EXECUTE STATEMENT SET\nBEGIN\n{body};\nEND")


#: How often a statement is planned again after Calcite found no metadata provider on its thread.
_PLAN_ATTEMPTS = 3


def plan_and_submit(env: Any, statement: str) -> Any:
    """``env.execute_sql(statement)`` for a statement Flink must plan (INSERT, statement set).

    Calcite keeps its metadata provider in a thread-local (``RelMetadataQueryBase.THREAD_PROVIDERS``)
    that Flink sets on the JVM thread that created the TableEnvironment. py4j serves each call on
    the JVM thread of whichever pooled connection the call takes, so a statement may be planned on
    a thread that never had the provider, and planning fails with ``NullPointerException:
    metadataHandlerProvider`` (FLINK-23020; Flink's own SQL gateway sets the provider before each
    statement for the same reason). So: set it, then plan, in two calls from this Python thread,
    which py4j serves on the same connection unless another thread used the gateway in between;
    in that rare case planning fails before any job is submitted, and is tried again."""
    from py4j.protocol import Py4JJavaError

    for attempt in range(1, _PLAN_ATTEMPTS + 1):
        _calcite_provider_on_this_thread(env)
        try:
            return env.execute_sql(statement)
        except Py4JJavaError as exc:
            if attempt == _PLAN_ATTEMPTS or "metadataHandlerProvider" not in str(exc.java_exception):
                raise
    raise AssertionError("unreachable")  # pragma: no cover


def _calcite_provider_on_this_thread(env: Any) -> None:
    """Set Calcite's thread-local metadata provider, as the planner's class loader sees it, on the
    JVM thread serving this call (the planner lives in its own class loader: reflection)."""
    from pyflink.java_gateway import get_gateway

    gateway = get_gateway()
    loader = env._j_tenv.getPlanner().getClass().getClassLoader()

    def load(name: str) -> Any:
        return gateway.jvm.java.lang.Class.forName(name, True, loader)

    no_types = gateway.new_array(gateway.jvm.java.lang.Class, 0)
    no_args = gateway.new_array(gateway.jvm.java.lang.Object, 0)
    flink = load("org.apache.flink.table.planner.plan.metadata.FlinkDefaultRelMetadataProvider")
    provider = flink.getMethod("INSTANCE", no_types).invoke(None, no_args)
    janino = load("org.apache.calcite.rel.metadata.JaninoRelMetadataProvider")
    of_types = gateway.new_array(gateway.jvm.java.lang.Class, 1)
    of_types[0] = load("org.apache.calcite.rel.metadata.RelMetadataProvider")
    of_args = gateway.new_array(gateway.jvm.java.lang.Object, 1)
    of_args[0] = provider
    wrapped = janino.getMethod("of", of_types).invoke(None, of_args)
    thread_providers = load("org.apache.calcite.rel.metadata.RelMetadataQueryBase").getField("THREAD_PROVIDERS")
    thread_providers.get(None).set(wrapped)


def read_group(group: GroupPlan) -> pa.Table:
    """The versions Flink wrote for one group, as an Arrow table of the group's storage schema."""
    if group.sink_directory is None:
        raise ValueError(f"group {group.name} has no sink")
    directory = Path(group.sink_directory.removeprefix("file://"))
    files = sorted(p for p in directory.rglob("*") if p.is_file() and not p.name.startswith((".", "_")))
    nullable = pa.schema([f.with_nullable(True) for f in group.arrow_schema])
    options = pajson.ParseOptions(explicit_schema=nullable, unexpected_field_behavior="error")
    tables = [pajson.read_json(p, parse_options=options) for p in files if p.stat().st_size > 0]
    if not tables:
        return group.arrow_schema.empty_table()
    return pa.concat_tables(tables).select(group.arrow_schema.names).cast(group.arrow_schema)


def run_plans(
    plans: Sequence[CompiledPlan],
    *,
    jars: Sequence[str] | None = None,
    parallelism: int = 1,
    options: Mapping[str, str] | None = None,
) -> RunResult:
    """Execute ``plans`` as one Flink job and wait for it to end (bounded sources only).

    ``jars``: file:// URLs for ``pipeline.jars`` (default: the Kafka and Avro connectors from
    :func:`featurestore.services.manager.flink_jars`). ``options``: more Flink configuration.
    """
    env = table_environment(jars, parallelism, options or {})
    inserts: list[str] = []
    for plan in plans:
        for ddl in plan.statements():
            env.execute_sql(ddl)
        inserts += plan.inserts()
    started = time.perf_counter()
    execute_inserts(env, inserts).wait()
    seconds = time.perf_counter() - started
    versions = {plan.table: {g.name: read_group(g) for g in plan.groups} for plan in plans}
    return RunResult(versions, seconds)


def run_tables(
    definitions: Definitions,
    tables: Sequence[str],
    binding: Binding,
    *,
    history_root: str | None = None,
    kafka_bootstrap: str | None = None,
    work_dir: str | os.PathLike[str] | None = None,
    jars: Sequence[str] | None = None,
    parallelism: int = 1,
    options: Mapping[str, str] | None = None,
    watermark_on_event: bool = False,
) -> RunResult:
    """Compile ``tables`` for ``binding`` (Kafka bounded at the offsets latest at start) with a
    JSON sink under ``work_dir`` (default: a fresh temporary directory) and run them as one job."""
    root = Path(work_dir) if work_dir is not None else Path(tempfile.mkdtemp(prefix="featurestore-flink-"))
    sink = FileSink(str(root.resolve()))
    plans = [
        compile_table(
            definitions,
            name,
            binding,
            history_root=history_root,
            kafka_bootstrap=kafka_bootstrap,
            sink=sink,
            bounded=True,
            watermark_on_event=watermark_on_event,
        )
        for name in tables
    ]
    return run_plans(plans, jars=jars, parallelism=parallelism, options=options)
