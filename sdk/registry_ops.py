"""``FeatureStore.registry``: plan, apply and log on the repo's registry, and the current definitions."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from featurestore.config import ProfileConfig

if TYPE_CHECKING:
    from registry import Definitions, Plan, Registry, Version, VersionInfo


class RegistryOps:
    """The registry named by the profile; opened on first use. ``definitions()`` is the current
    version's, read once and reused until :meth:`refresh` or an :meth:`apply` through this object."""

    def __init__(self, repo: Path, config: ProfileConfig, on_change: Callable[[], None] = lambda: None) -> None:
        self.repo = repo
        self._config = config
        self._on_change = on_change
        self._registry: Registry | None = None
        self._definitions: Definitions | None = None
        self._lock = threading.Lock()

    @property
    def store(self) -> Registry:
        """The underlying :class:`registry.Registry`."""
        if self._registry is None:
            from registry import Registry
            from registry.repo import project_name

            with self._lock:
                if self._registry is None:
                    self._registry = Registry(self._config.registry, project_name(self.repo))
        return self._registry

    def plan(self, repo: str | Path | None = None) -> Plan:
        """What apply would change (validates the repo, writes nothing)."""
        return self.store.plan(repo or self.repo)

    def apply(self, repo: str | Path | None = None) -> Version:
        """Validate and write a new registry version; readers of this FeatureStore see it at once."""
        version = self.store.apply(repo or self.repo)
        self.refresh()
        return version

    def log(self) -> list[VersionInfo]:
        return self.store.log()

    def definitions(self) -> Definitions:
        """The definitions of the current registry version (NotFoundError before the first apply)."""
        if self._definitions is None:
            self._definitions = self.store.get().definitions
        return self._definitions

    def refresh(self) -> None:
        """Read the current version again on next use (another process applied)."""
        self._definitions = None
        self._on_change()

    def close(self) -> None:
        if self._registry is not None:
            self._registry.close()
            self._registry = None
