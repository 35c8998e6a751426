"""`featurestore ingest` says what is missing instead of failing inside Flink."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from featurestore.errors import NotFoundError, ValidationError
from sdk.cli import main

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "ctr"


def test_ingest_needs_an_applied_registry_and_a_kafka_profile(tmp_path: Path) -> None:
    repo = tmp_path / "ctr"
    shutil.copytree(EXAMPLE, repo)
    runner = CliRunner()
    first = runner.invoke(main, ["ingest", "--repo", str(repo), "--profile", "local"])
    assert first.exit_code == 1 and "no version yet" in first.output
    assert runner.invoke(main, ["apply", "--repo", str(repo)]).exit_code == 0
    second = runner.invoke(main, ["ingest", "--repo", str(repo), "--profile", "local"])
    assert second.exit_code == 1 and "no kafka section" in second.output


def test_ingest_rejects_unknown_tables_and_tables_without_a_stream_binding() -> None:
    from ingestion.job import streamable_tables
    from registry.repo import load_repo
    from registry.validate import build

    definitions = load_repo(EXAMPLE)
    assert streamable_tables(definitions) == [t.name for t in definitions.feature_tables]
    with pytest.raises(NotFoundError, match="no_such_table"):
        streamable_tables(definitions, ["no_such_table"])
    batch_only = build(
        [o.model_copy(update={"stream": None}) if o.name == "clicks" else o for o in definitions.objects()],
        project=definitions.project,
    )
    with pytest.raises(ValidationError, match="no stream binding"):
        streamable_tables(batch_only, ["user_click_features"])
    assert "user_click_features" not in streamable_tables(batch_only)
