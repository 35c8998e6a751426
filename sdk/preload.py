"""``FeatureStore.preload``: training-set prefetch, snapshot loads with an atomic switch, hot keys.

The machinery is in :mod:`featurestore.preload`; this binds it to the profile's stores, the
registry's schemas and the online read path's in-process cache.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from featurestore.time_semantics import to_millis
from sdk.features import EntitiesInput, FeaturesInput
from sdk.online import OnlineReader
from sdk.registry_ops import RegistryOps
from sdk.stores import Stores

if TYPE_CHECKING:
    from featurestore.preload.schedule import Periodic
    from featurestore.preload.snapshot import SnapshotRef
    from featurestore.preload.source import RangeSource
    from featurestore.preload.training import TrainingSetReader


class Preloader:
    def __init__(self, stores: Stores, registry: RegistryOps, online: OnlineReader) -> None:
        self._stores = stores
        self._registry = registry
        self._online = online

    def training_set(
        self,
        files: str | Sequence[str],
        *,
        columns: Sequence[str] | None = None,
        cache_bytes: int = 256 << 20,
        workers: int = 4,
        prefetch: bool = True,
        batch_rows: int | None = None,
        source: RangeSource | None = None,
    ) -> TrainingSetReader:
        """An exported training set (a directory, file or list of Parquet files, local or
        ``hdfs://``) as record batches, prefetched into a ``cache_bytes``-bounded cache.
        ``reader.numpy(batch_size)`` and ``TorchStyleIterable(reader, batch_size)`` adapt it."""
        from featurestore.preload.training import TrainingSetReader

        return TrainingSetReader(
            files, source=source, columns=columns, prefetch=prefetch, cache_bytes=cache_bytes, workers=workers,
            batch_rows=batch_rows,
        )

    def snapshot(self, table: str, snapshot: pa.Table, *, as_of: Any) -> SnapshotRef:
        """Load a batch-computed snapshot of ``table`` (latest values per key) into the versioned
        store and the online cache, then switch readers to it atomically."""
        from featurestore.preload.snapshot import SnapshotLoader

        schema = self._registry.definitions().table_schema(table)
        loader = SnapshotLoader(self._stores.online_cache, self._stores.versioned, self._stores.pointers)
        return loader.load(schema, snapshot, as_of_ms=to_millis(as_of, what="as_of"))

    def current_snapshot(self, table: str) -> SnapshotRef | None:
        return self._stores.pointers.current(table)

    def hot_keys(
        self, features: FeaturesInput, entities: EntitiesInput, *, every_s: float = 5.0, start: bool = True
    ) -> Periodic:
        """Keep these keys in the in-process cache, re-read every ``every_s`` seconds on a
        background thread; ``.stop()`` ends it, ``.stats()`` counts runs and errors."""
        from featurestore.preload.schedule import Periodic

        hold_s = 2 * every_s + max(self._online.options.local_cache_s, 0.0)
        task = Periodic(
            lambda: self._online.refresh(features, entities, hold_s=hold_s), every_s, name="fs-hot-keys"
        )
        return task.start() if start else task
