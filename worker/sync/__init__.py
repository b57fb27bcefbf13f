"""The sync stage: upserts topic -> targets, per-target queues, offsets ledger."""
