"""The top layer: the FeatureStore facade, the CLI and the HTTP server. Nothing imports it."""
