"""Configuration: `featurestore.yaml` profiles, validated once, with one precedence order.

Precedence, highest first: explicit arguments > ``FEATURESTORE_*`` environment > the file >
built-in profile defaults. Nested fields use ``__`` in the environment, e.g.
``FEATURESTORE_OFFLINE_LOG__WAREHOUSE=hdfs://127.0.0.1:8020/warehouse``.

Two profiles are built in:

* ``local`` (the default): embedded versioned store, in-process online cache, local disk as
  HDFS, Flink MiniCluster. No servers.
* ``cluster``: HBase Thrift, Redis, HDFS, Kafka on loopback (``featurestore services up``), Flink
  MiniCluster unless ``flink.mode`` is ``remote``.

Relative paths in URIs (``embedded://.featurestore/versions``) are resolved against the repo.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field
from pydantic import ValidationError as PydanticValidationError

from featurestore.errors import ConfigError
from featurestore.services import ports

CONFIG_FILE = "featurestore.yaml"
ENV_PREFIX = "FEATURESTORE_"
STATE_DIR = ".featurestore"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class OfflineLogConfig(_Strict):
    catalog_uri: str = Field(description="SQLAlchemy URL of the Iceberg SQL catalog")
    warehouse: str = Field(description="warehouse root: a local path, file:// or hdfs:// URI")
    namespace: str = "features"


class KafkaConfig(_Strict):
    bootstrap_servers: str = ports.KAFKA_BOOTSTRAP
    samples_topic_prefix: str = Field("samples.", description="sample table S is produced to <prefix>S")


class FlinkConfig(_Strict):
    mode: Literal["local", "remote"] = "local"
    address: str | None = Field(None, description="host:port of a remote JobManager's REST endpoint")
    parallelism: int = Field(1, ge=1)
    checkpoint_dir: str = f"{STATE_DIR}/checkpoints"
    checkpoint_interval: str = "10s"
    state_backend: Literal["rocksdb", "hashmap"] = Field(
        "rocksdb", description="rocksdb: state beyond memory (30-day windows); hashmap: faster, in heap"
    )
    managed_memory: str | None = Field(
        "1g",
        pattern=r"^[0-9]+ *(?i:[kmgt]b?|bytes?)?$",
        description="memory Flink manages per TaskManager when the job runs on the local MiniCluster: "
        "RocksDB's block cache and write buffers, and the Python workers (none: Flink's local default, "
        "128 MB, shared by every operator; a remote cluster sizes its own TaskManagers)",
    )
    python_executable: str | None = Field(None, description="Python for Flink's Python workers")
    arrow_batch_size: int = Field(10_000, ge=1)
    bundle_size: int = Field(100_000, ge=1)
    bundle_time: str = Field(
        "1s",
        description="the longest a row waits in a Python bundle before the sinks write it: lower it for "
        "freshness (docs/cluster.md, Tuning for freshness), at the cost of smaller, more frequent writes",
    )
    restart_attempts: int = Field(
        5, ge=0, description="restarts from the last checkpoint before a failing job gives up (a store down)"
    )
    restart_delay: str = Field("10s", description="the wait before each restart")
    options: dict[str, str | int | float | bool] = Field(
        default_factory=dict,
        description="more Flink configuration for every job, applied last, e.g. for freshness "
        "{'execution.buffer-timeout.interval': '10 ms', 'pipeline.auto-watermark-interval': '50 ms'}",
    )


class ProfileConfig(_Strict):
    registry: str = Field(description="SQLAlchemy URL of the registry database")
    versioned_store: str = Field(description="embedded://PATH or hbase://HOST:PORT")
    online_cache: str = Field(description="memory:// or redis://HOST:PORT/DB")
    offline_log: OfflineLogConfig
    history: str = Field(description="root of the sources' batch bindings: a path, file:// or hdfs:// URI")
    kafka: KafkaConfig | None = None
    flink: FlinkConfig = Field(default_factory=FlinkConfig)


class RepoConfig(_Strict):
    project: str = "default"
    profile: str = "local"
    profiles: dict[str, dict[str, Any]] = Field(default_factory=dict)


BUILTIN_PROFILES: dict[str, dict[str, Any]] = {
    "local": {
        "registry": f"sqlite:///{STATE_DIR}/registry.db",
        "versioned_store": f"embedded://{STATE_DIR}/versions",
        "online_cache": "memory://",
        "offline_log": {"catalog_uri": f"sqlite:///{STATE_DIR}/catalog.db", "warehouse": f"{STATE_DIR}/warehouse"},
        "history": f"{STATE_DIR}/history",
        # One machine, state that fits in the heap: the hashmap backend (the cluster profile keeps
        # RocksDB for 30-day windows over many keys). The demo's backfill with samples: 192 s on
        # RocksDB, 132 s on the heap (2 cores).
        "flink": {"checkpoint_dir": f"{STATE_DIR}/checkpoints", "state_backend": "hashmap"},
    },
    "cluster": {
        "registry": f"sqlite:///{STATE_DIR}/registry.db",
        "versioned_store": ports.HBASE_URI,
        "online_cache": ports.REDIS_URI,
        "offline_log": {
            "catalog_uri": f"sqlite:///{STATE_DIR}/catalog.db",
            "warehouse": f"{ports.HDFS_URI}/featurestore/warehouse",
        },
        "history": f"{ports.HDFS_URI}/featurestore/history",
        "kafka": {"bootstrap_servers": ports.KAFKA_BOOTSTRAP},
        "flink": {"checkpoint_dir": f"{STATE_DIR}/checkpoints"},
    },
}


def _deep_merge(base: Mapping[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in top.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _env_overrides(environ: Mapping[str, str]) -> dict[str, Any]:
    """``FEATURESTORE_A__B=v`` -> ``{"a": {"b": "v"}}`` for the profile's fields; other
    ``FEATURESTORE_*`` variables (PROFILE, REPO, KEEP_SERVICES, ROOT, ...) are not config fields."""
    overrides: dict[str, Any] = {}
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX):
            continue
        path = name[len(ENV_PREFIX) :].lower().split("__")
        if path[0] not in ProfileConfig.model_fields:
            continue
        node = overrides
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = value
    return overrides


def _resolve_paths(raw: dict[str, Any], root: Path) -> dict[str, Any]:
    """Make relative local paths absolute against the repo root."""

    def local(value: str) -> str:
        return value if "://" in value or Path(value).is_absolute() else str(root / value)

    def sqlite(url: str) -> str:
        """``sqlite:///relative.db`` is relative to the repo; ``sqlite:////abs.db`` stays."""
        if url.startswith("sqlite:///") and not url.startswith("sqlite:////"):
            return "sqlite:///" + local(url[len("sqlite:///") :])
        return url

    out = dict(raw)
    for key in ("versioned_store", "online_cache", "history", "registry"):
        value = out.get(key)
        if not isinstance(value, str):
            continue
        if value.startswith("embedded://"):
            out[key] = "embedded://" + local(value[len("embedded://") :])
        elif value.startswith("sqlite:"):
            out[key] = sqlite(value)
        elif key == "history":
            out[key] = local(value)
    log = dict(out.get("offline_log") or {})
    if isinstance(log.get("warehouse"), str):
        log["warehouse"] = local(log["warehouse"])
    catalog = log.get("catalog_uri")
    if isinstance(catalog, str):
        log["catalog_uri"] = sqlite(catalog)
    out["offline_log"] = log
    flink = dict(out.get("flink") or {})
    if isinstance(flink.get("checkpoint_dir"), str):
        flink["checkpoint_dir"] = local(flink["checkpoint_dir"])
    out["flink"] = flink
    return out


def load_config(
    repo: str | Path | None = None,
    *,
    profile: str | None = None,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> ProfileConfig:
    """Load the active profile of the repo at ``repo`` (default: ``FEATURESTORE_REPO`` or cwd)."""
    env = os.environ if environ is None else environ
    root = Path(repo if repo is not None else env.get(f"{ENV_PREFIX}REPO", ".")).resolve()
    file_path = root / CONFIG_FILE
    repo_config = RepoConfig()
    if file_path.exists():
        try:
            raw_file = yaml.safe_load(file_path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{file_path}: not valid YAML: {exc}") from exc
        if not isinstance(raw_file, dict):
            raise ConfigError(f"{file_path}: expected a mapping at the top level")
        try:
            repo_config = RepoConfig.model_validate(raw_file)
        except PydanticValidationError as exc:
            raise ConfigError(f"{file_path}: {_explain(exc)}") from None
    name = profile or env.get(f"{ENV_PREFIX}PROFILE") or repo_config.profile
    known = set(BUILTIN_PROFILES) | set(repo_config.profiles)
    if name not in known:
        raise ConfigError(f"unknown profile {name!r}; known profiles: {', '.join(sorted(known))}")
    raw = _deep_merge(BUILTIN_PROFILES.get(name, {}), repo_config.profiles.get(name, {}))
    raw = _deep_merge(raw, _env_overrides(env))
    raw = _deep_merge(raw, overrides or {})
    try:
        return ProfileConfig.model_validate(_resolve_paths(raw, root))
    except PydanticValidationError as exc:
        source = file_path if file_path.exists() else "built-in defaults"
        raise ConfigError(f"profile {name!r} ({source}): {_explain(exc)}") from None


def _explain(exc: PydanticValidationError) -> str:
    parts = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error["loc"]) or "(top level)"
        parts.append(f"{where}: {error['msg']}")
    return "; ".join(parts)


def scratch_cluster_config(work_dir: str | Path, run: str, *, flink: Mapping[str, Any] | None = None) -> ProfileConfig:
    """The cluster profile for a test or benchmark run: HBase tables and Redis keys under the
    prefix ``run`` (so runs never see each other's data), the offline log's catalog and
    warehouse and Flink's checkpoints under ``work_dir``; ``flink`` options on top."""
    work = Path(work_dir)
    return load_config(
        work,
        profile="cluster",
        overrides={
            "versioned_store": f"{ports.HBASE_URI}?prefix={run}",
            "online_cache": f"{ports.REDIS_URI}?prefix={run}",
            "offline_log": {"catalog_uri": f"sqlite:///{work}/catalog.db", "warehouse": str(work / "wh")},
            "flink": {"checkpoint_dir": str(work / "checkpoints"), **(flink or {})},
        },
        environ={},
    )
