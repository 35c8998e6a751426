"""Definitions (entities, sources, feature tables, sample tables, training sets), their
validation, the versioned registry and the compiler to Flink SQL. Imports only `featurestore`."""
