"""featurestore: a stream-batch unified feature store.

This bottom layer holds core types, time semantics, configuration, errors, codecs, storage
backends and the point-in-time engine. It imports none of the other top-level packages
(registry, ingestion, backfill, sdk). Importing it starts no JVM and loads no Flink.
"""

from featurestore import environment as environment  # the os.environ of before any job

__version__ = "0.1.0"
