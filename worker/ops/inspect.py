"""`ilog inspect ID`: the log as Redis holds it, in the snapshot shape of CONTRACT.md."""

from __future__ import annotations

import json
from dataclasses import asdict

import typer

from adapters.base import TargetState
from worker.core.fold import snapshot
from worker.core.state import InteractionLog, Tombstone
from worker.runtime import bootstrap
from worker.runtime.settings import Settings
from worker.runtime.targets import TARGET_NAMES


def inspect_interaction(interaction_id: str, settings: Settings) -> int:
    """Exit 0 with the log as JSON; 1 with a clear sentence when there is no log."""
    bootstrap.require_redis(settings)
    store = bootstrap.log_store(settings)
    try:
        stored = store.load([interaction_id])[interaction_id]
        states = bootstrap.sync_state_store(settings, store.client).load([interaction_id], TARGET_NAMES)
        synced = {target: asdict(state) for (_id, target), state in states.items() if state != TargetState()}
    finally:
        store.close()
    state = stored.state
    if isinstance(state, InteractionLog):
        document = snapshot(state).model_dump(mode="json")
        if synced:
            document["synced"] = synced
        typer.echo(json.dumps(document, indent=2, ensure_ascii=False))
        return 0
    if isinstance(state, Tombstone):
        typer.echo(
            f"{interaction_id}: finalized (log v{state.version} at {state.finalized_at.isoformat()}); "
            "the edit window is closed and only a tombstone is kept"
            + (f"; synced: {json.dumps(synced)}" if synced else ""),
            err=True,
        )
        return 1
    typer.echo(f"{interaction_id}: no log in Redis (never seen, or expired after its retention)", err=True)
    return 1
