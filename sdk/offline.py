"""``FeatureStore.offline``: point-in-time features for training, from the offline log.

Wraps :mod:`featurestore.pit.engine` with the registry's table schemas and the profile's offline
log (Iceberg): callers name features (``table:feature`` refs or a training set) and give samples;
this finds the tables, their schemas and log snapshots.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from sdk.features import FeaturesInput, expand_refs
from sdk.registry_ops import RegistryOps
from sdk.stores import Stores

if TYPE_CHECKING:
    from featurestore.pit.engine import ExportOptions
    from featurestore.pit.manifest import Manifest
    from featurestore.pit.samples import SamplesInput
    from featurestore.pit.sources import FeatureSource


class OfflineFeatures:
    def __init__(self, stores: Stores, registry: RegistryOps) -> None:
        self._stores = stores
        self._registry = registry

    def sources(self, refs: Sequence[str]) -> list[FeatureSource]:
        """The offline-log tables (current snapshots) holding ``refs``."""
        from featurestore.pit.sources import FeatureSource

        definitions = self._registry.definitions()
        tables = dict.fromkeys(ref.partition(":")[0] for ref in refs)
        log = self._stores.offline_log
        out = []
        for name in tables:
            schema = definitions.table_schema(name)
            out.append(FeatureSource(schema, log.table(schema)))
        return out

    def _plan(self, features: FeaturesInput, options: ExportOptions | None) -> tuple[list[str], ExportOptions]:
        from featurestore.pit.engine import ExportOptions

        refs = expand_refs(self._registry.definitions(), features)
        if options is None:
            strict = False
            if isinstance(features, str) and ":" not in features:
                strict = self._registry.definitions().training_set(features).strict
            options = ExportOptions(strict=strict)
        return refs, options

    def get_historical_features(
        self,
        samples: SamplesInput,
        features: FeaturesInput,
        *,
        event_time: str = "ts",
        options: ExportOptions | None = None,
        engine: str = "duckdb",
    ) -> pa.Table:
        """The samples with each feature as of the sample's ``event_time`` (a training set's
        ``as_of: strict`` is honoured when ``features`` names one). ``engine``: ``duckdb`` (one
        machine) or ``flink`` (a Flink batch job, on the profile's cluster when it has one); the
        same rows either way."""
        from featurestore.pit.engine import get_historical_features

        join = self._join(engine)  # a wrong engine fails before anything is read
        refs, opts = self._plan(features, options)
        return get_historical_features(samples, refs, self.sources(refs), event_time=event_time, options=opts,
                                       join=join)

    def _join(self, engine: str) -> Any:
        if engine == "duckdb":
            return None
        if engine == "flink":
            from ingestion.flink_export import for_profile

            return for_profile(self._stores.config.flink)
        from featurestore.errors import ValidationError

        raise ValidationError(f"unknown export engine {engine!r}", location="engine", hint="duckdb or flink")

    def export(
        self,
        samples: SamplesInput,
        features: FeaturesInput,
        *,
        output: str | Path,
        format: str = "parquet",
        event_time: str = "ts",
        options: ExportOptions | None = None,
        manifest_path: str | Path | None = None,
        engine: str = "duckdb",
    ) -> Manifest:
        """Write the point-in-time join to ``output`` with a manifest (registry version, snapshots,
        content hash) at ``manifest_path`` (default ``<output>.manifest.json``; an Iceberg export
        writes one only when given a path). ``engine``: as for :meth:`get_historical_features`."""
        from featurestore.pit.engine import export

        join = self._join(engine)  # a wrong engine fails before anything is read
        refs, opts = self._plan(features, options)
        current = self._registry.store.current()
        return export(
            samples, refs, self.sources(refs), output=output, format=format, event_time=event_time, options=opts,
            registry_version="" if current is None else str(current.id), log=self._stores.offline_log,
            manifest_path=manifest_path, join=join,
        )

    def reproduce(self, manifest: Manifest | str | Path, *, output: str | Path, **kwargs: Any) -> Manifest:
        """Run an export again from its manifest (same samples, snapshots and options)."""
        from featurestore.pit.engine import reproduce

        return reproduce(manifest, output=output, log=self._stores.offline_log, **kwargs)
