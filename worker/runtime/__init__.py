"""The runtime: settings, the composition root, health, metrics, logging."""
