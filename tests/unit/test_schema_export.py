"""The committed JSON Schemas match the models (regenerate with `ilog schema export schemas/jsonschema`)."""

from __future__ import annotations

import json
from pathlib import Path

from schemas.events import EVENT_TYPES
from schemas.export import export_json_schemas

COMMITTED = Path(__file__).resolve().parents[2] / "schemas" / "jsonschema"


def test_committed_json_schemas_are_not_stale(tmp_path: Path) -> None:
    written = export_json_schemas(tmp_path)
    fresh = {path.name: path.read_text(encoding="utf-8") for path in written}
    committed = {path.name: path.read_text(encoding="utf-8") for path in COMMITTED.glob("*.json")}
    assert committed == fresh, "run: ilog schema export schemas/jsonschema"


def test_one_schema_per_event_type_plus_envelope_and_snapshot(tmp_path: Path) -> None:
    names = {path.name for path in export_json_schemas(tmp_path)}
    assert names == {f"event.{t}.json" for t in EVENT_TYPES} | {"envelope.json", "snapshot.json"}


def test_event_schema_pins_the_type_and_requires_the_envelope(tmp_path: Path) -> None:
    export_json_schemas(tmp_path)
    schema = json.loads((tmp_path / "event.interaction.connected.json").read_text(encoding="utf-8"))
    assert schema["properties"]["type"]["const"] == "interaction.connected"
    assert set(schema["required"]) == {"specversion", "id", "source", "subject", "time", "type", "data"}
