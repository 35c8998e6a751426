"""Python -> YAML -> Python gives equal objects; the Python and YAML forms of the example agree."""

from __future__ import annotations

import importlib.util
import shutil
import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from featurestore.types import ValueType
from registry import Definitions, Entity, Feature, FeatureTable, JoinKey, Source, StreamBinding, build, dump_yaml
from registry import load_repo as load

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "ctr"


def _python_example() -> Definitions:
    spec = importlib.util.spec_from_file_location("ctr_definitions", EXAMPLE / "ctr_definitions.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    result: Definitions = module.definitions()
    return result


def _write_repo(root: Path, definitions: Definitions) -> None:
    root.mkdir(parents=True, exist_ok=True)
    (root / "featurestore.yaml").write_text(f"project: {definitions.project}\n")
    (root / "definitions.yaml").write_text(dump_yaml(definitions))


def test_python_api_builds_the_same_objects_as_the_yaml_example() -> None:
    assert _python_example() == load(EXAMPLE)


def test_example_round_trips_through_yaml(tmp_path: Path) -> None:
    original = load(EXAMPLE)
    _write_repo(tmp_path / "repo", original)
    assert load(tmp_path / "repo") == original


def test_sections_and_kind_documents_are_equal_ways_in(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(EXAMPLE, repo)
    sectioned = (repo / "item_features.yaml").read_text()
    assert sectioned.count("feature_tables:") == 1
    original = load(repo)
    (repo / "item_features.yaml").unlink()
    items = Definitions(feature_tables=[t for t in original.feature_tables if t.entity == "item"])
    (repo / "item_features.yaml").write_text(dump_yaml(items))
    assert load(repo) == original


# ---------------------------------------------------------------------------------- hypothesis

_names = st.from_regex(r"[a-z][a-z0-9_]{0,10}", fullmatch=True).filter(lambda n: n not in ("version_ms", "seq"))
_COLUMNS = {"ts": None, "n_long": "long", "n_double": "double", "s_text": "string", "flag": "boolean"}
_AGGS_BY_TYPE = {
    "long": ["last", "count", "sum", "avg", "min", "max", "approx_count_distinct"],
    "double": ["last", "count", "sum", "avg", "min", "max", "approx_count_distinct"],
    "string": ["last", "count", "approx_count_distinct"],
    "boolean": ["last", "count", "approx_count_distinct"],
}
_windows = st.sampled_from(["1m", "10m", "90m", "1h", "6h", "1d", "7d", "14d", "30d", "600s", "1w"])
_durations = st.sampled_from(["0s", "5m", "1h", "30d", "1500ms", "90s"])


@st.composite
def _features(draw: st.DrawFn) -> list[Feature]:
    names = draw(st.lists(_names.filter(lambda n: n != "user_id"), min_size=1, max_size=6, unique=True))
    out = []
    for name in names:
        column = draw(st.sampled_from(["n_long", "n_double", "s_text", "flag"]))
        agg = draw(st.sampled_from(_AGGS_BY_TYPE[_COLUMNS[column] or "long"]))
        window = None if agg == "last" and draw(st.booleans()) else draw(_windows)
        text = draw(st.text(alphabet="abc xyz:#'\"\n-", max_size=20))
        out.append(Feature(name=name, agg=agg, column=column, window=window, description=text))
    return out


@st.composite
def _definitions(draw: st.DrawFn) -> Definitions:
    fields: list[dict[str, object]] = [
        {"name": "user_id", "type": "string"},
        {"name": "ts", "type": {"type": "long", "logicalType": "timestamp-millis"}},
    ]
    fields += [{"name": n, "type": t} for n, t in _COLUMNS.items() if t is not None]
    source = Source(
        name="events", avro_schema={"type": "record", "name": "E", "fields": fields}, event_time="ts",
        stream=StreamBinding(topic=draw(st.from_regex(r"[a-z][a-z0-9._-]{0,12}", fullmatch=True).filter(
            lambda t: ".." not in t)), partitions=draw(st.integers(1, 64))),
        allowed_lateness=draw(_durations),
    )
    entity = Entity(name="user", join_keys=[JoinKey(name="user_id", dtype=ValueType.STRING)])
    table_names = draw(st.lists(_names.filter(lambda n: n not in ("user", "events")), min_size=1, max_size=4,
                                unique=True))
    tables = [
        FeatureTable(
            name=name, entity="user", source="events", features=draw(_features()),
            ttl=draw(st.none() | _durations), online_versions=draw(st.none() | st.integers(1, 1000)),
            online=draw(st.booleans()), offline=draw(st.booleans()),
            owner=draw(st.none() | st.text(max_size=10)),
            tags=draw(st.dictionaries(_names, st.text(max_size=8), max_size=3)),
        )
        for name in table_names
    ]
    return build([entity, source, *tables], project="prop")


@settings(max_examples=40, deadline=None)
@given(definitions=_definitions())
def test_python_to_yaml_to_python_is_identity(definitions: Definitions) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        _write_repo(Path(tmp) / "repo", definitions)
        assert load(Path(tmp) / "repo") == definitions


def test_durations_are_normalised_so_equal_meanings_compare_equal() -> None:
    a = Feature(name="a", agg="count", window="600s")
    b = Feature(name="a", agg="count", window="10m")
    assert a == b and a.window == "10m" and a.window_ms == 600_000
    assert Feature(name="a", agg="count", window="1w").window == "7d"
