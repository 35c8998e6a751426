"""FeatureStore.offline: point-in-time features through the registry's schemas and the offline log."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from featurestore.errors import NotFoundError
from tests.unit.test_sdk_online import C1D, DAY, NOW, USERS, make_repo, open_store, versions


def test_historical_features_and_export(tmp_path: Path) -> None:
    fs = open_store(make_repo(tmp_path))
    schema = fs.registry.definitions().table_schema(USERS)
    log = fs.stores.offline_log.ensure_table(schema)
    log.append(versions(schema, [
        {"user_id": "u1", "version_ms": NOW - 2 * DAY, "seq": 1, "user_clicks_1d": 1},
        {"user_id": "u1", "version_ms": NOW - DAY, "seq": 2, "user_clicks_1d": 2},
    ]))
    samples = pa.table({"user_id": ["u1", "u1", "u2"], "ts": [NOW - DAY - 1, NOW - DAY, NOW]})
    got = fs.offline.get_historical_features(samples, [C1D])
    assert got["user_clicks_1d"].to_pylist() == [1, 2, None]
    target = tmp_path / "out" / "train.parquet"
    target.parent.mkdir()
    manifest = fs.offline.export(samples, [C1D], output=target)
    assert manifest.row_count == 3 and manifest.registry_version == "1"
    assert pq.read_table(target)["user_clicks_1d"].to_pylist() == [1, 2, None]
    again = fs.offline.reproduce(f"{target}.manifest.json", output=tmp_path / "out" / "again.parquet",
                                 samples=samples)
    assert again.row_count == 3
    with pytest.raises(NotFoundError):  # item tables were never written to the log
        fs.offline.get_historical_features(samples.append_column("item_id", pa.array(["i"] * 3)), "ctr_deepfm_v1")
    fs.close()
