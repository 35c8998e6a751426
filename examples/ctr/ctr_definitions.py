"""The CTR example built with the Python API: the same objects as the YAML files next to it.

    from examples.ctr.ctr_definitions import definitions
    Registry.for_repo("examples/ctr").apply(definitions())

tests/unit/test_registry_roundtrip.py checks that this equals ``load_repo("examples/ctr")``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from registry import (
    BatchBinding,
    Condition,
    Definitions,
    Entity,
    Feature,
    FeatureTable,
    JoinKey,
    SampleTable,
    Source,
    StreamBinding,
    TrainingSet,
    build,
)

HERE = Path(__file__).parent


def _avsc(name: str) -> dict[str, Any]:
    schema: dict[str, Any] = json.loads((HERE / "schemas" / f"{name}.avsc").read_text())
    return schema


def _source(name: str, description: str) -> Source:
    return Source(
        name=name,
        description=description,
        owner="feed-team",
        avro_schema=_avsc(name),
        event_time="ts",
        allowed_lateness="5m",
        stream=StreamBinding(topic=f"ctr.{name}", format="avro", partitions=8),
        batch=BatchBinding(path=f"events/{name}/dt={{date}}/hour={{hour}}/*.avro", format="avro"),
    )


def _count(name: str, window: str) -> Feature:
    return Feature(name=name, agg="count", window=window)


def definitions() -> Definitions:
    user = Entity(name="user", join_keys=[JoinKey(name="user_id")], description="A signed-in reader of the feed.")
    item = Entity(
        name="item", join_keys=[JoinKey(name="item_id")],
        description="A piece of content that can be shown in the feed.",
    )
    impressions = _source("impressions", "Items shown to users.")
    clicks = _source("clicks", "Clicks on impressions; a click arrives after its impression, within minutes.")
    common: dict[str, Any] = {"owner": "ranking-team", "ttl": "30d", "online_versions": 100}
    user_clicks = FeatureTable(
        name="user_click_features", entity="user", source="clicks", **common,
        description="What a user clicked, over short and long windows.",
        tags={"team": "ranking", "domain": "feed"},
        features=[
            _count("user_clicks_10m", "10m"),
            _count("user_clicks_1d", "1d"),
            _count("user_clicks_30d", "30d"),
            Feature(name="user_distinct_items_7d", agg="approx_count_distinct", column="item_id", window="7d"),
            Feature(name="user_avg_dwell_1d", agg="avg", column="dwell_ms", window="1d"),
            Feature(name="user_max_dwell_1d", agg="max", column="dwell_ms", window="1d"),
            Feature(name="user_total_dwell_7d", agg="sum", column="dwell_ms", window="7d"),
            Feature(name="last_click_item", column="item_id", description="projection: the newest value"),
            Feature(name="last_click_category", column="category"),
        ],
    )
    user_impressions = FeatureTable(
        name="user_impression_features", entity="user", source="impressions", **common,
        description="What a user was shown; with user_click_features this gives the user's CTR.",
        tags={"team": "ranking", "domain": "feed"},
        features=[
            _count("user_impressions_10m", "10m"),
            _count("user_impressions_1d", "1d"),
            _count("user_impressions_30d", "30d"),
            Feature(name="user_avg_position_1d", agg="avg", column="position", window="1d"),
            Feature(name="last_device", column="device"),
        ],
    )
    item_clicks = FeatureTable(
        name="item_click_features", entity="item", source="clicks", **common, tags={"team": "ranking"},
        features=[
            _count("item_clicks_1h", "1h"),
            _count("item_clicks_1d", "1d"),
            _count("item_clicks_30d", "30d"),
            Feature(name="item_distinct_users_1d", agg="approx_count_distinct", column="user_id", window="1d"),
            Feature(name="item_avg_dwell_1d", agg="avg", column="dwell_ms", window="1d"),
        ],
    )
    item_impressions = FeatureTable(
        name="item_impression_features", entity="item", source="impressions", **common, tags={"team": "ranking"},
        filter=[Condition(column="position", op="<", value=50)],
        features=[
            _count("item_impressions_1h", "1h"),
            _count("item_impressions_1d", "1d"),
            _count("item_impressions_30d", "30d"),
            Feature(name="item_min_position_1d", agg="min", column="position", window="1d"),
        ],
    )
    samples = SampleTable(
        name="ctr_samples", base_source="impressions", label_source="clicks", join_key="impression_id",
        window="10m", label="clicked", owner="ranking-team",
        columns=["impression_id", "user_id", "item_id", "ts", "position", "device"],
        features=[
            "user_click_features:user_clicks_1d",
            "user_click_features:user_clicks_30d",
            "user_impression_features:user_impressions_1d",
            "item_click_features:item_clicks_1h",
            "item_impression_features:item_impressions_1d",
        ],
    )
    training = TrainingSet(
        name="ctr_deepfm_v1", sample_table="ctr_samples", as_of="inclusive", owner="ranking-team",
        description="DeepFM training data; adds short-window, long-window and distinct-count features to the samples.",
        features=[
            "user_click_features:user_clicks_10m",
            "user_impression_features:user_impressions_30d",
            "user_click_features:user_distinct_items_7d",
            "user_click_features:user_avg_dwell_1d",
            "user_click_features:last_click_category",
            "item_click_features:item_clicks_30d",
            "item_impression_features:item_impressions_30d",
        ],
    )
    objects = [user, item, impressions, clicks, user_clicks, user_impressions, item_clicks, item_impressions]
    return build([*objects, samples, training], project="ctr")
