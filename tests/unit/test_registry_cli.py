"""The plan / apply / registry commands, run with click's CliRunner."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from registry import RepoValidationError
from sdk.cli.registry import apply, plan, registry_group

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "ctr"


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "ctr"
    shutil.copytree(EXAMPLE, root, ignore=shutil.ignore_patterns(".featurestore"))
    return root


def _run(command: object, *args: str) -> str:
    # wide enough that rich does not wrap table cells mid-phrase
    result = CliRunner(env={"COLUMNS": "200"}).invoke(command, list(args), catch_exceptions=False)  # type: ignore[arg-type]
    assert result.exit_code == 0, result.output
    return result.output


def test_plan_apply_log_show_rollback(repo: Path) -> None:
    out = _run(plan, "--repo", str(repo))
    assert "user_click_features" in out and "10 added" in out
    assert "created version 1" in _run(apply, "--repo", str(repo))
    assert "No changes. Version 1" in _run(apply, "--repo", str(repo))
    assert "No changes. Project 'ctr' is at version 1" in _run(plan, "--repo", str(repo))

    text = (repo / "user_features.yaml").read_text().replace("ttl: 30d", "ttl: 7d", 1)
    (repo / "user_features.yaml").write_text(text)
    assert "reads change, no rewrite" in _run(plan, "--repo", str(repo))
    assert "created version 2" in _run(apply, "--repo", str(repo))

    log = _run(registry_group, "log", "--repo", str(repo))
    assert "│ 1 " in log and "│ 2 " in log
    assert "ttl: 7d" in _run(registry_group, "show", "--repo", str(repo))
    assert "ttl: 30d" in _run(registry_group, "show", "1", "--repo", str(repo))
    assert "rolled back to 1: version 3" in _run(registry_group, "rollback", "1", "--repo", str(repo))
    assert "rollback to 1" in _run(registry_group, "log", "--repo", str(repo))


def test_a_bad_repo_is_a_validation_error_and_writes_nothing(repo: Path) -> None:
    (repo / "bad.yaml").write_text("kind: Entity\nname: shop\njoin_keys: [{name: shop_id, dtype: float}]\n")
    result = CliRunner().invoke(apply, ["--repo", str(repo)])
    assert isinstance(result.exception, RepoValidationError)
    assert str(result.exception).startswith("bad.yaml:3: Entity shop: join_keys[0].dtype:")
    assert "no registry version yet" in _run(registry_group, "log", "--repo", str(repo))
