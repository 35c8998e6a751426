"""The stores of one profile, opened on first use (constructing this opens nothing)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from featurestore.config import ProfileConfig
from featurestore.errors import FeatureStoreError, NotFoundError, ServiceUnavailableError

if TYPE_CHECKING:
    from featurestore.offline.log import OfflineLog
    from featurestore.preload.snapshot import SnapshotPointers
    from featurestore.storage.online import OnlineBase
    from featurestore.storage.versioned import VersionedStore

_HEALTH_PROBE = "fs_health_probe"


@dataclass(frozen=True)
class StoreHealth:
    name: str  # online_cache | versioned_store
    uri: str
    status: Literal["ok", "down"]
    service: str | None = None  # the server that is down (redis, hbase, ...)
    reason: str | None = None


class Stores:
    """Lazily opened connections: the versioned store, the online cache (with the snapshot
    pointers next to it) and the offline log. Thread-safe; ``close`` closes what was opened."""

    def __init__(self, config: ProfileConfig) -> None:
        self.config = config
        self._lock = threading.Lock()
        self._versioned: VersionedStore | None = None
        self._online: OnlineBase | None = None
        self._offline: OfflineLog | None = None
        self._pointers: SnapshotPointers | None = None

    @property
    def opened(self) -> tuple[str, ...]:
        """Which stores have been opened so far."""
        pairs = (("versioned_store", self._versioned), ("online_cache", self._online),
                 ("offline_log", self._offline), ("snapshot_pointers", self._pointers))
        return tuple(name for name, obj in pairs if obj is not None)

    @property
    def versioned(self) -> VersionedStore:
        if self._versioned is None:
            from featurestore.storage.versioned import open_versioned_store

            with self._lock:
                if self._versioned is None:
                    self._versioned = open_versioned_store(self.config.versioned_store)
        return self._versioned

    @property
    def online_cache(self) -> OnlineBase:
        if self._online is None:
            from featurestore.storage.online import open_online_cache

            with self._lock:
                if self._online is None:
                    self._online = open_online_cache(self.config.online_cache)
        return self._online

    @property
    def pointers(self) -> SnapshotPointers:
        if self._pointers is None:
            from featurestore.preload.snapshot import open_pointers

            with self._lock:
                if self._pointers is None:
                    self._pointers = open_pointers(self.config.online_cache)
        return self._pointers

    @property
    def offline_log(self) -> OfflineLog:
        if self._offline is None:
            from featurestore.offline.log import OfflineLog

            with self._lock:
                if self._offline is None:
                    self._offline = OfflineLog(self.config.offline_log)
        return self._offline

    def health(self) -> list[StoreHealth]:
        """Probe the serving stores (one cheap request each); never raises for a store that is down."""
        out = []
        probes: tuple[tuple[str, str, Callable[[], object]], ...] = (
            ("online_cache", self.config.online_cache, lambda: self.online_cache.schema(_HEALTH_PROBE)),
            ("versioned_store", self.config.versioned_store, lambda: self.versioned.schema(_HEALTH_PROBE)),
        )
        for name, uri, probe in probes:
            try:
                probe()
                out.append(StoreHealth(name, uri, "ok"))
            except NotFoundError:
                out.append(StoreHealth(name, uri, "ok"))
            except ServiceUnavailableError as exc:
                out.append(StoreHealth(name, uri, "down", exc.service, exc.message))
            except FeatureStoreError as exc:
                out.append(StoreHealth(name, uri, "down", None, exc.message))
        return out

    def close(self) -> None:
        with self._lock:
            for obj in (self._versioned, self._online, self._pointers):
                if obj is not None:
                    obj.close()
            self._versioned = self._online = self._pointers = None
            self._offline = None
