"""The ``FeatureStore`` facade: one object per feature repo, split by job.

    fs = FeatureStore("examples/ctr")               # opens nothing yet
    fs.registry.apply()                             # plan / apply / log
    fs.online.get(["user_click_features:user_clicks_1d"], ["u1", "u2"]).to_pandas()
    fs.offline.get_historical_features(samples, "ctr_deepfm_v1")
    fs.preload.training_set("hdfs://.../export/").numpy(1024)
    fs.history.land("clicks", events)               # history a backfill replays

Each job is a small object of its own (:class:`~sdk.registry_ops.RegistryOps`,
:class:`~sdk.online.OnlineReader`, :class:`~sdk.offline.OfflineFeatures`,
:class:`~sdk.preload.Preloader`, :class:`~sdk.history.History`) sharing one lazily opened :class:`~sdk.stores.Stores`.
Constructing a FeatureStore reads featurestore.yaml and nothing else: no connection, no JVM.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from featurestore.config import ProfileConfig, load_config
from sdk.history import History
from sdk.offline import OfflineFeatures
from sdk.online import OnlineReader, ServingOptions
from sdk.preload import Preloader
from sdk.registry_ops import RegistryOps
from sdk.stores import StoreHealth, Stores


class FeatureStore:
    """The feature repo at ``repo`` on ``profile`` (default: the repo's own); ``overrides`` are
    profile fields (``online_cache="redis://..."``), the highest precedence."""

    def __init__(
        self,
        repo: str | Path = ".",
        profile: str | None = None,
        *,
        serving: ServingOptions | None = None,
        **overrides: Any,
    ) -> None:
        self.repo = Path(repo).resolve()
        self.config: ProfileConfig = load_config(self.repo, profile=profile, overrides=overrides)
        self.stores = Stores(self.config)
        self.registry = RegistryOps(self.repo, self.config, on_change=lambda: self.online.invalidate())
        self.online = OnlineReader(self.stores, self.registry.definitions, serving or ServingOptions())
        self.offline = OfflineFeatures(self.stores, self.registry)
        self.preload = Preloader(self.stores, self.registry, self.online)
        self.history = History(self.config.history, self.registry.definitions)

    def health(self) -> list[StoreHealth]:
        """Each serving store: ok, or down with the service and the reason."""
        return self.stores.health()

    def close(self) -> None:
        self.registry.close()
        self.stores.close()

    def __enter__(self) -> FeatureStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"FeatureStore({str(self.repo)!r}, opened={list(self.stores.opened)})"
