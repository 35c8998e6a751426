"""The real local services (Redis, HBase, HDFS, Kafka) run by the project itself, on loopback.

`featurestore.services.manager` is the entry point (`up`, `down`, `status`, `require`,
`flink_jars`). Each service is a small module of its own; `process` holds the spawn, pid-file and
health-wait helpers they share, `maven` resolves Java classpaths from Maven Central and `jvm`
builds Java command lines. Importing this package starts nothing.
"""
