"""Backfill: history on HDFS replayed through the same streaming job as ordered, partitioned
streams. May import `ingestion`, `registry` and `featurestore`; never `sdk`."""
