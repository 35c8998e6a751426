"""The streaming job: the compiled plan run on PyFlink, its sinks and dead letters.
Imports `registry` and `featurestore`; never `backfill` or `sdk`."""
