"""Sync targets: Salesforce (simple-salesforce), Zendesk (zenpy) and a signed webhook.

`worker.runtime.targets.build_targets(settings)` builds the enabled ones; each implements
`adapters.base.Target` and reports one `SyncOutcome` per item.
"""

from adapters.base import (
    BudgetExhausted,
    Failed,
    PermanentSyncError,
    Retry,
    RetryableSyncError,
    Skipped,
    Synced,
    SyncError,
    SyncItem,
    SyncOutcome,
    Target,
    TargetState,
    TargetUnavailableError,
    compute_backoff,
    next_target_state,
)

__all__ = [
    "BudgetExhausted",
    "Failed",
    "PermanentSyncError",
    "Retry",
    "RetryableSyncError",
    "Skipped",
    "SyncError",
    "SyncItem",
    "SyncOutcome",
    "Synced",
    "Target",
    "TargetState",
    "TargetUnavailableError",
    "compute_backoff",
    "next_target_state",
]
