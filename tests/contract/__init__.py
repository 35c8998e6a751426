"""Contract test suites, one per storage protocol, run against every backend."""
