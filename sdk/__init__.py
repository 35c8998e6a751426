"""The top layer: the FeatureStore facade, the CLI and the HTTP server. Nothing imports it.

``from sdk import FeatureStore`` imports the facade on first use, so ``import sdk`` (and the CLI)
stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sdk.store import FeatureStore

__all__ = ["FeatureStore"]


def __getattr__(name: str) -> Any:
    if name == "FeatureStore":
        from sdk.store import FeatureStore

        return FeatureStore
    raise AttributeError(name)
