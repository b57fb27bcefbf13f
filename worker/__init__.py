"""The worker: the pure fold, the Redis store, the Kafka loops, the finalizer, the CLI."""
