"""featurestore.yaml profiles and the precedence: arguments > environment > file > built-in."""

from __future__ import annotations

from pathlib import Path

import pytest

from featurestore.config import load_config
from featurestore.errors import ConfigError
from featurestore.services import ports


def write(repo: Path, text: str) -> Path:
    (repo / "featurestore.yaml").write_text(text)
    return repo


def test_local_profile_is_the_default_and_needs_no_servers(tmp_path: Path) -> None:
    config = load_config(tmp_path, environ={})
    assert config.versioned_store == f"embedded://{tmp_path}/.featurestore/versions"
    assert config.online_cache == "memory://"
    assert config.kafka is None
    assert config.offline_log.warehouse == f"{tmp_path}/.featurestore/warehouse"


def test_cluster_profile_points_at_the_local_services(tmp_path: Path) -> None:
    config = load_config(tmp_path, profile="cluster", environ={})
    assert config.versioned_store == ports.HBASE_URI
    assert config.online_cache == ports.REDIS_URI
    assert config.kafka is not None and config.kafka.bootstrap_servers == ports.KAFKA_BOOTSTRAP


def test_precedence_arguments_over_environment_over_file(tmp_path: Path) -> None:
    write(tmp_path, "profiles:\n  local:\n    online_cache: redis://file:1/0\n    flink: {parallelism: 2}\n")
    assert load_config(tmp_path, environ={}).online_cache == "redis://file:1/0"
    env = {"FEATURESTORE_ONLINE_CACHE": "redis://env:2/0", "FEATURESTORE_FLINK__PARALLELISM": "3"}
    from_env = load_config(tmp_path, environ=env)
    assert from_env.online_cache == "redis://env:2/0"
    assert from_env.flink.parallelism == 3
    explicit = load_config(tmp_path, environ=env, overrides={"online_cache": "redis://arg:3/0"})
    assert explicit.online_cache == "redis://arg:3/0"
    assert load_config(tmp_path, environ={"FEATURESTORE_PROFILE": "cluster"}).kafka is not None


def test_unknown_field_names_the_field_and_file(tmp_path: Path) -> None:
    write(tmp_path, "profiles:\n  local:\n    versioned_stor: embedded://x\n")
    with pytest.raises(ConfigError, match="versioned_stor") as info:
        load_config(tmp_path, environ={})
    assert "featurestore.yaml" in str(info.value)


@pytest.mark.parametrize(
    ("text", "match"),
    [("profiles: [1, 2\n", "not valid YAML"), ("- a\n", "mapping"), ("profile: nope\n", "unknown profile")],
)
def test_bad_files_are_config_errors(tmp_path: Path, text: str, match: str) -> None:
    write(tmp_path, text)
    with pytest.raises(ConfigError, match=match):
        load_config(tmp_path, environ={})


def test_wrong_type_in_environment_is_reported(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"flink\.parallelism"):
        load_config(tmp_path, environ={"FEATURESTORE_FLINK__PARALLELISM": "many"})


def test_other_featurestore_variables_are_not_config_fields(tmp_path: Path) -> None:
    env = {"FEATURESTORE_KEEP_SERVICES": "1", "FEATURESTORE_ROOT": "/x", "FEATURESTORE_ONLINE_CACHE": "redis://e:1/0"}
    assert load_config(tmp_path, environ=env).online_cache == "redis://e:1/0"
