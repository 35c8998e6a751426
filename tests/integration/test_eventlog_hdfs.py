"""History landed on the real HDFS and read back, file positions included."""

from __future__ import annotations

import uuid

import pytest

from featurestore import eventlog
from featurestore.datagen import CtrLogSpec, generate
from featurestore.errors import NotFoundError
from featurestore.fs import open_fs
from featurestore.services import ports
from tests.unit.test_eventlog import CLICK_AVRO, LAYOUT


def test_land_and_read_history_on_hdfs(services: object) -> None:
    root = f"{ports.HDFS_URI}/tests/history-{uuid.uuid4().hex[:8]}"
    clicks = generate(CtrLogSpec(days=1, users=50, items=50, impressions_per_day=5_000)).clicks
    try:
        paths = eventlog.land(clicks, root, LAYOUT, fmt="avro", avro_schema=CLICK_AVRO, landing_column="arrival_ms")
        assert all(p.startswith(ports.HDFS_URI) for p in paths)
        back = eventlog.read(root, LAYOUT, fmt="avro", with_position=True)
        assert back.num_rows == clicks.num_rows
        assert sorted(back["impression_id"].to_pylist()) == sorted(clicks["impression_id"].to_pylist())
        with pytest.raises(NotFoundError):
            open_fs(root).read_bytes(f"{root}/no/such/file.avro")
    finally:
        open_fs(root).delete(root)
    assert eventlog.files(root, LAYOUT) == []
