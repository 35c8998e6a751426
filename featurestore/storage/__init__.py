"""Storage backends: the versioned store, the online cache and the offline log."""
