"""plan / apply / log / get / rollback on the example repo, and what a plan says about stored data."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from featurestore.errors import NotFoundError, ValidationError
from featurestore.schema import Field
from featurestore.types import ValueType
from registry import Registry, load_repo
from registry.plan import BACKFILL, NO_REWRITE, UNREACHABLE

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "ctr"


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "ctr"
    shutil.copytree(EXAMPLE, root, ignore=shutil.ignore_patterns(".featurestore"))
    return root


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new, 1))


def test_plan_then_apply_then_unchanged(repo: Path) -> None:
    registry = Registry.for_repo(repo)
    assert registry.url.endswith(".featurestore/registry.db")
    plan = registry.plan(repo)
    assert plan.current_version is None and not plan.unchanged
    assert {c.action for c in plan.changes} == {"added"}
    assert len(plan.by_action("added")) == 10
    assert set(plan.needs_backfill) == {
        "user_click_features", "user_impression_features", "item_click_features", "item_impression_features"
    }
    assert registry.log() == []

    first = registry.apply(repo)
    assert first.created and first.id == 1 and len(first.content_hash) == 64
    assert first.definitions == load_repo(repo)

    again = registry.apply(repo)
    assert not again.created and again.id == 1
    assert registry.plan(repo).unchanged
    assert "no changes" in registry.plan(repo).summary()
    assert [v.id for v in registry.log()] == [1]


def test_plan_explains_what_a_change_means_for_stored_data(repo: Path) -> None:
    registry = Registry.for_repo(repo)
    registry.apply(repo)
    features = repo / "user_features.yaml"
    _edit(features, "user_clicks_30d, agg: count, window: 30d}", "user_clicks_30d, agg: count, window: 14d}")
    _edit(features, "  - {name: last_click_category, column: category}\n", "")
    _edit(features, "ttl: 30d", "ttl: 7d")
    _edit(features, "  - {name: user_clicks_1d, agg: count, window: 1d}\n",
          "  - {name: user_clicks_1d, agg: count, window: 1d}\n  - {name: user_clicks_3d, agg: count, window: 3d}\n")
    _edit(repo / "samples.yaml", "  - user_click_features:last_click_category\n", "")

    plan = registry.plan(repo)
    changed = {c.name: c for c in plan.by_action("changed")}
    assert set(changed) == {"user_click_features", "ctr_deepfm_v1"}
    details = "\n".join(changed["user_click_features"].details)
    assert f"window of user_clicks_30d changed 30d -> 14d: {BACKFILL}" in details
    assert f"feature last_click_category removed: {UNREACHABLE}" in details
    assert f"ttl 30d -> 7d: {NO_REWRITE}" in details
    assert f"feature user_clicks_3d added: {BACKFILL} of 3d" in details
    assert changed["user_click_features"].needs_backfill and changed["user_click_features"].breaking
    assert not changed["ctr_deepfm_v1"].needs_backfill

    second = registry.apply(repo)
    assert second.id == 2 and any("user_clicks_30d" in line for line in second.changes)


def test_metadata_only_and_source_changes(repo: Path) -> None:
    registry = Registry.for_repo(repo)
    registry.apply(repo)
    _edit(repo / "user_features.yaml", "owner: ranking-team", "owner: growth-team")
    _edit(
        repo / "sources.yaml",
        "allowed_lateness: 5m\nstream: {topic: ctr.clicks",
        "allowed_lateness: 10m\nstream: {topic: ctr.clicks",
    )
    plan = registry.plan(repo)
    changes = {c.name: c for c in plan.changes}
    assert changes["user_click_features"].details == ("owner changed: metadata only",)
    assert not changes["user_click_features"].needs_backfill
    assert "allowed lateness 5m -> 10m" in changes["clicks"].details[0]


def test_rollback_makes_a_new_version_equal_to_an_old_one(repo: Path) -> None:
    registry = Registry.for_repo(repo)
    v1 = registry.apply(repo)
    _edit(repo / "user_features.yaml", "ttl: 30d", "ttl: 7d")
    v2 = registry.apply(repo)
    assert v2.id == 2 and v2.content_hash != v1.content_hash

    v3 = registry.rollback(1)
    assert v3.created and v3.id == 3 and v3.rollback_of == 1
    assert v3.content_hash == v1.content_hash and v3.definitions == v1.definitions
    assert registry.get().id == 3 and registry.get(2).definitions == v2.definitions
    assert [(v.id, v.rollback_of) for v in registry.log()] == [(1, None), (2, None), (3, 1)]
    assert not registry.rollback(1).created  # already equal: nothing written
    assert registry.plan(repo).current_version == 3 and not registry.plan(repo).unchanged


def test_get_and_rollback_of_unknown_versions(repo: Path) -> None:
    registry = Registry.for_repo(repo)
    with pytest.raises(NotFoundError, match="no version yet"):
        registry.get()
    registry.apply(repo)
    with pytest.raises(NotFoundError, match="no version 7"):
        registry.rollback(7)
    assert [v.id for v in registry.log()] == [1]


def test_apply_python_definitions_and_project_guard(repo: Path, tmp_path: Path) -> None:
    definitions = load_repo(repo)
    registry = Registry(f"sqlite:///{tmp_path / 'other.db'}", project="ctr")
    assert registry.apply(definitions).id == 1
    assert registry.apply(definitions).created is False
    with pytest.raises(ValidationError, match="project 'ctr' cannot go to the registry of 'ads'"):
        Registry(f"sqlite:///{tmp_path / 'other.db'}", project="ads").apply(definitions)


def test_projects_share_a_database_without_mixing(repo: Path, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    definitions = load_repo(repo)
    Registry(url, project="ctr").apply(definitions)
    assert Registry(url, project="other").log() == []
    assert [v.id for v in Registry(url, project="ctr").log()] == [1]


def test_storage_view_of_a_feature_table() -> None:
    definitions = load_repo(EXAMPLE)
    schema = definitions.table_schema("user_click_features")
    assert schema.keys == (Field("user_id", ValueType.STRING),)
    types = {f.name: f.dtype for f in schema.features}
    assert types["user_clicks_30d"] is ValueType.INT64  # count
    assert types["user_avg_dwell_1d"] is ValueType.DOUBLE  # avg
    assert types["user_total_dwell_7d"] is ValueType.INT64  # sum of long
    assert types["user_max_dwell_1d"] is ValueType.INT64  # max of long
    assert types["user_distinct_items_7d"] is ValueType.INT64  # approx distinct
    assert types["last_click_item"] is ValueType.STRING  # projection
    assert schema.ttl_ms == 30 * 86_400_000 and schema.max_versions == 100
    table = definitions.feature_table("user_click_features")
    assert table.to_table_schema(definitions.entity("user"), definitions.source("clicks")) == schema
    assert table.feature("user_clicks_10m").window_ms == 600_000
    with pytest.raises(NotFoundError, match="did you mean 'user_clicks_1d'"):
        table.feature("user_clicks_1w")
