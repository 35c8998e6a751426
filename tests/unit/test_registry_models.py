"""Single-object rules: names, topics, paths, windows, durations, and aggregation output types."""

from __future__ import annotations

import pydantic
import pytest

from featurestore.types import ValueType
from registry import BatchBinding, Feature, FeatureTable, StreamBinding, build
from registry.models import aggregate_type

_UNSAFE = ["x; DROP TABLE users", "Clicks", "1d_clicks", "a-b", "version_ms", "seq", "a" * 64, ""]


@pytest.mark.parametrize("name", _UNSAFE)
def test_unsafe_names_are_rejected_in_python_too(name: str) -> None:
    with pytest.raises(pydantic.ValidationError, match=r"not a valid name|reserved"):
        Feature(name=name, agg="count", window="1d")


@pytest.mark.parametrize("topic", ["ctr'; DROP", "..", "a..b", "-x", "a b", "x" * 250])
def test_unsafe_topics(topic: str) -> None:
    with pytest.raises(pydantic.ValidationError, match="safe Kafka topic"):
        StreamBinding(topic=topic)


@pytest.mark.parametrize(
    "path",
    ["/abs/dt={date}/*.avro", "../x/dt={date}/*.avro", "a/./dt={date}", "a//dt={date}", "a/dt={day}/*.avro",
     "a/b/*.avro", "a/dt={date}/'x'.avro", "a\\dt={date}", "hdfs://h/dt={date}", "a/dt={date}/{date}"],
)
def test_unsafe_or_unusable_batch_paths(path: str) -> None:
    with pytest.raises(pydantic.ValidationError):
        BatchBinding(path=path)


def test_a_good_layout() -> None:
    assert BatchBinding(path="events/clicks/dt={date}/hour={hour}/*.avro").format == "avro"


@pytest.mark.parametrize("window", ["30s", "31d", "90s", "0s", "1x"])
def test_windows_are_whole_minutes_up_to_30_days(window: str) -> None:
    with pytest.raises(pydantic.ValidationError):
        Feature(name="f", agg="count", window=window)


def test_unknown_fields_are_rejected_and_models_are_frozen() -> None:
    with pytest.raises(pydantic.ValidationError, match="Extra inputs"):
        Feature(name="f", agg="count", window="1d", windw="2d")  # type: ignore[call-arg]
    feature = Feature(name="f", agg="count", window="1d")
    with pytest.raises(pydantic.ValidationError):
        feature.window = "2d"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("agg", "column", "expected"),
    [
        ("count", None, ValueType.INT64), ("count", ValueType.STRING, ValueType.INT64),
        ("sum", ValueType.INT64, ValueType.INT64), ("sum", ValueType.DOUBLE, ValueType.DOUBLE),
        ("avg", ValueType.INT64, ValueType.DOUBLE), ("min", ValueType.DOUBLE, ValueType.DOUBLE),
        ("max", ValueType.INT64, ValueType.INT64), ("last", ValueType.STRING, ValueType.STRING),
        ("approx_count_distinct", ValueType.STRING, ValueType.INT64),
    ],
)
def test_aggregate_output_types(agg: str, column: ValueType | None, expected: ValueType) -> None:
    assert aggregate_type(agg, column) is expected


@pytest.mark.parametrize(("agg", "column"), [("sum", ValueType.STRING), ("avg", ValueType.BOOL), ("max", None),
                                             ("approx_count_distinct", ValueType.FLOAT_LIST)])
def test_aggregations_that_do_not_fit(agg: str, column: ValueType | None) -> None:
    with pytest.raises(ValueError):
        aggregate_type(agg, column)


def test_build_checks_python_objects_like_yaml_ones() -> None:
    from registry import RepoValidationError

    features = [Feature(name="f", agg="count", window="1d")]
    table = FeatureTable(name="t", entity="user", source="clicks", features=features)
    with pytest.raises(RepoValidationError) as caught:
        build([table])
    reasons = [p.reason for p in caught.value.problems]
    assert reasons == ["unknown entity 'user'", "unknown source 'clicks'"]
    assert caught.value.problems[0].location == "<python>"
