"""The fold stage: events topic -> pure core -> store -> upserts topic, and its finalizer loop."""
