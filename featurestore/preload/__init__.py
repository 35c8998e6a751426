"""Preloading: work done ahead of use so readers never wait on remote storage.

* :mod:`featurestore.preload.training`: iterate an exported training set (Parquet, local or
  ``hdfs://``) as Arrow record batches while the next row groups are prefetched, on background
  threads, into a byte-bounded local cache.
* :mod:`featurestore.preload.snapshot`: load a batch-computed snapshot of a feature table into the
  online cache and the versioned store, then switch readers to it with one atomic pointer write.
* :mod:`featurestore.preload.schedule`: a stoppable periodic background task (hot-key refresh).

Core layer: imports only ``featurestore``; nothing here starts a JVM.
"""
