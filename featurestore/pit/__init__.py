"""Point-in-time engine: samples joined to feature versions as of each sample's event time.

See :mod:`featurestore.pit.engine` for the rule and :mod:`featurestore.pit.query` for the SQL.
"""

from featurestore.pit.engine import ExportOptions, export, get_historical_features, reproduce
from featurestore.pit.manifest import Manifest
from featurestore.pit.sources import FeatureRef, FeatureSource

__all__ = [
    "ExportOptions",
    "FeatureRef",
    "FeatureSource",
    "Manifest",
    "export",
    "get_historical_features",
    "reproduce",
]
