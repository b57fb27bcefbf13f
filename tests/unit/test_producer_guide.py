"""docs/producers.md: every JSON sample is an event the schema of its type and the worker both accept, and
the guide shows the sample of every type (the schemas' `examples`)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from jsonschema import Draft202012Validator

from schemas.decode import decode_event
from schemas.events import EVENT_MODELS, Rejection
from schemas.examples import EXAMPLE_EVENTS

REPO = Path(__file__).resolve().parents[2]
GUIDE = REPO / "docs" / "producers.md"


def samples() -> list[dict[str, object]]:
    blocks = re.findall(r"```json\n(.*?)\n```", GUIDE.read_text(), flags=re.S)
    return [json.loads(block) for block in blocks]


def test_the_guide_shows_the_sample_of_every_type_in_order() -> None:
    assert list(EXAMPLE_EVENTS.values()) == samples()
    assert set(EVENT_MODELS) == {sample["type"] for sample in samples()}


def test_every_sample_passes_its_schema_with_format_checking_and_the_worker() -> None:
    for sample in samples():
        schema = json.loads((REPO / "schemas" / "jsonschema" / f"event.{sample['type']}.json").read_text())
        validator = Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)
        assert [] == [error.message for error in validator.iter_errors(sample)], sample["type"]
        decoded = decode_event(json.dumps(sample).encode())
        assert not isinstance(decoded, Rejection), decoded


def test_the_samples_are_one_interaction_in_sequence() -> None:
    assert {"conv-42"} == {sample["subject"] for sample in samples()}
    assert list(range(1, len(samples()) + 1)) == [sample["sequence"] for sample in samples()]
