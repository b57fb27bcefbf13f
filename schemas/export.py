"""JSON Schema files for producers: one per event type, the bare envelope and the log snapshot.

The committed copies live in `schemas/jsonschema/`; a unit test regenerates them and fails when
they differ (`ilog schema export schemas/jsonschema` refreshes them).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from schemas.events import EVENT_MODELS, MAX_ATTRIBUTES, MAX_EVENT_BYTES, CloudEventEnvelope
from schemas.examples import EXAMPLE_EVENTS
from schemas.snapshot import LogSnapshot

SCHEMA_ID_BASE = "https://interaction-log-sync.github.io/schemas/v1/"
"""Under the project's name; `v1` changes only with a breaking change of the contract (CONTRACT.md)."""
MAX_BYTES_KEYWORD = "x-maxBytes"
"""JSON Schema has no keyword for a document's size: the event bound travels as this annotation."""
_EVENT_BOUND_COMMENT = (
    f"One event is at most {MAX_EVENT_BYTES} bytes ({MAX_BYTES_KEYWORD}; binary mode: the value plus its ce_ "
    f"headers); an interaction holds at most {MAX_ATTRIBUTES} attribute keys. Over a size bound: rejected "
    "too_large; other violations: invalid."
)


def schema_documents() -> dict[str, dict[str, Any]]:
    """File name → JSON Schema document."""
    models: dict[str, type[BaseModel]] = {
        f"event.{event_type}.json": model for event_type, model in EVENT_MODELS.items()
    }
    models["envelope.json"] = CloudEventEnvelope
    models["snapshot.json"] = LogSnapshot
    documents = {}
    for file_name, model in sorted(models.items()):
        document: dict[str, Any] = {"$schema": "https://json-schema.org/draft/2020-12/schema",
                                    "$id": SCHEMA_ID_BASE + file_name,
                                    **model.model_json_schema(mode="validation")}
        if model is not LogSnapshot:
            document["$comment"] = _EVENT_BOUND_COMMENT
            document[MAX_BYTES_KEYWORD] = MAX_EVENT_BYTES
            event_type = file_name.removeprefix("event.").removesuffix(".json")
            document["examples"] = ([EXAMPLE_EVENTS[event_type]] if event_type in EXAMPLE_EVENTS
                                    else list(EXAMPLE_EVENTS.values()))
        documents[file_name] = document
    return documents


def export_json_schemas(directory: Path) -> list[Path]:
    """Write every schema into `directory` (created if missing); returns the paths written."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for file_name, document in schema_documents().items():
        path = directory / file_name
        path.write_text(json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n",
                        encoding="utf-8")
        written.append(path)
    return written
