"""The offline log: every version of every feature table, in Iceberg (see :mod:`featurestore.offline.log`)."""

from featurestore.offline.log import BATCH_ID_PROPERTY, AppendResult, OfflineLog, OfflineTable

__all__ = ["BATCH_ID_PROPERTY", "AppendResult", "OfflineLog", "OfflineTable"]
