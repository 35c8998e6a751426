"""The export equals a naive oracle built on time_semantics.pick_version.

What a version writes (featurestore.schema): versions arrive in batches, each with a random
subset of the feature columns. A feature absent from a batch is not written by its rows (the
versions table records the batch's columns in ``_written``; a row with a null ``_written``
writes every feature); a null in a present column is an explicit null value, which hides older
values like any value. So a feature's versions are the rows that write it, nulls included.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from featurestore.pit import ExportOptions, FeatureSource, get_historical_features
from featurestore.schema import WRITTEN, Field, TableSchema, write_set
from featurestore.time_semantics import pick_version
from featurestore.types import ValueType

USERS = [1, 2, 3, 4]  # 4 never has a version
ITEMS = ["a", "b", "c"]


def user_schema(ttl: int | None) -> TableSchema:
    return TableSchema(
        "user", (Field("user_id", ValueType.INT64),),
        (Field("clicks", ValueType.INT64), Field("ctr", ValueType.DOUBLE)), ttl_ms=ttl,
    )


def item_schema(ttl: int | None) -> TableSchema:
    return TableSchema("item", (Field("item_id", ValueType.STRING),), (Field("tag", ValueType.STRING),), ttl_ms=ttl)


times = st.integers(min_value=0, max_value=30)
ttls = st.one_of(st.none(), st.integers(min_value=1, max_value=15))


# A batch's feature columns: a subset, or None for "no _written recorded" (every feature written).
USER_COLUMNS = st.sampled_from([None, (), ("clicks",), ("ctr",), ("clicks", "ctr")])


@st.composite
def user_versions(draw: st.DrawFn) -> list[dict[str, Any]]:
    rows = draw(st.lists(st.tuples(st.sampled_from(USERS[:3]), times,
                                   st.one_of(st.none(), st.integers(-5, 5)),
                                   st.one_of(st.none(), st.floats(0, 1, allow_nan=False))), max_size=25))
    seqs = draw(st.permutations(range(len(rows))))  # unique seq: ties on time broken by seq only
    columns = draw(st.lists(USER_COLUMNS, min_size=5, max_size=5))  # per batch (at most 5)
    cuts = sorted(draw(st.lists(st.integers(0, len(rows)), min_size=2, max_size=4)))  # batches: runs of rows
    out = []
    for i, ((u, t, c, r), s) in enumerate(zip(rows, seqs, strict=True)):
        names = columns[sum(1 for cut in cuts if cut <= i)]  # one column set per batch
        values = {"clicks": c, "ctr": r}
        row = {"user_id": u, "version_ms": t, "seq": s, WRITTEN: None if names is None else write_set(names)}
        row.update({n: values[n] if names is None or n in names else None for n in values})  # absent: null
        out.append(row)
    return out


@st.composite
def item_versions(draw: st.DrawFn) -> list[dict[str, Any]]:
    rows = draw(st.lists(st.tuples(st.sampled_from(ITEMS[:2]), times,
                                   st.one_of(st.none(), st.text("xyz", max_size=3))), max_size=15))
    seqs = draw(st.permutations(range(100, 100 + len(rows))))
    return [{"item_id": i, "version_ms": t, "seq": s, "tag": g} for (i, t, g), s in zip(rows, seqs, strict=True)]


def writes(version: dict[str, Any], feature: str) -> bool:
    written = version.get(WRITTEN)
    return written is None or feature in written.split(",")


samples_strategy = st.lists(st.tuples(st.sampled_from(USERS), st.sampled_from(ITEMS), st.integers(0, 40)),
                            min_size=1, max_size=30)


def oracle(versions: list[dict[str, Any]], key: str, feature: str, key_value: object, at: int,
           ttl: int | None, strict: bool) -> object:
    cells = [(v["version_ms"], v["seq"], v[feature]) for v in versions
             if v[key] == key_value and writes(v, feature)]
    picked = pick_version(cells, at, ttl, strict=strict)
    return None if picked is None else picked[2]


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(user_versions(), item_versions(), samples_strategy, ttls, ttls, st.booleans(), st.integers(1, 8))
def test_export_matches_pick_version_oracle(
    users: list[dict[str, Any]], items: list[dict[str, Any]], samples: list[tuple[int, str, int]],
    user_ttl: int | None, item_ttl: int | None, strict: bool, chunk_rows: int,
) -> None:
    us, its = user_schema(user_ttl), item_schema(item_ttl)
    sample_table = pa.table({
        "uid": pa.array([s[0] for s in samples], pa.int64()),
        "item_id": [s[1] for s in samples],
        "ts": pa.array([s[2] for s in samples], pa.int64()),
    })
    sources = [
        FeatureSource(us, pa.Table.from_pylist(users, schema=us.arrow_schema().append(pa.field(WRITTEN, pa.string()))),
                      join_keys={"user_id": "uid"}),
        FeatureSource(its, pa.Table.from_pylist(items, schema=its.arrow_schema())),  # no _written: nulls are values
    ]
    out = get_historical_features(
        sample_table, ["user:clicks", "user:ctr", "item:tag"], sources, event_time="ts",
        options=ExportOptions(strict=strict, chunk_rows=chunk_rows, threads=1, memory_limit="256MB"),
    )
    assert out.column_names == ["uid", "item_id", "ts", "clicks", "ctr", "tag"]
    assert out.select(["uid", "item_id", "ts"]).equals(sample_table)
    for row, (uid, item, at) in zip(out.to_pylist(), samples, strict=True):
        assert row["clicks"] == oracle(users, "user_id", "clicks", uid, at, user_ttl, strict)
        assert row["ctr"] == oracle(users, "user_id", "ctr", uid, at, user_ttl, strict)
        assert row["tag"] == oracle(items, "item_id", "tag", item, at, item_ttl, strict)


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 10), st.integers(0, 1), st.booleans())
def test_ttl_boundary_exactly_ttl_old_is_expired(ttl: int, offset: int, strict: bool) -> None:
    schema = user_schema(ttl)
    versions = pa.Table.from_pylist([{"user_id": 1, "version_ms": 100, "seq": 0, "clicks": 7, "ctr": None}],
                                    schema=schema.arrow_schema())
    at = 100 + ttl - offset  # exactly ttl old (offset 0) or one ms younger
    samples = pa.table({"user_id": pa.array([1], pa.int64()), "t": pa.array([at], pa.int64())})
    out = get_historical_features(samples, ["user:clicks"], [FeatureSource(schema, versions)], event_time="t",
                                  options=ExportOptions(strict=strict))
    visible = offset == 1 and not (strict and at == 100)
    assert out.column("clicks").to_pylist() == [7 if visible else None]
