"""The emulated org's Task: describe metadata and field validation like a real org.

Two kinds of failure, as Salesforce reports them:
- a value the JSON reader cannot turn into the field's type (text in a number field, a bad
  date) fails the whole request with 400 JSON_PARSER_ERROR, before any record is looked at;
- everything else (length, picklist, required, id format, unknown or read-only field) is a
  per-record error `{"statusCode", "message", "fields"}`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

STATUS_VALUES = ("Not Started", "In Progress", "Completed", "Waiting on someone else", "Deferred")
PRIORITY_VALUES = ("High", "Normal", "Low")
CALL_TYPE_VALUES = ("Inbound", "Outbound", "Internal")
SUBTYPE_VALUES = ("Task", "Email", "ListEmail", "Cadence", "Call", "LinkedIn")
_ID_RE = re.compile(r"^[a-zA-Z0-9]{15}(?:[a-zA-Z0-9]{3})?$")
_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s.]+$")  # what an org's email field takes, roughly
_STRING_TYPES = frozenset({"string", "textarea", "combobox", "picklist", "phone", "email", "url"})


@dataclass(frozen=True)
class TaskField:
    name: str
    type: str
    label: str
    length: int = 0
    createable: bool = True
    updateable: bool = True
    nillable: bool = True
    custom: bool = False
    picklist: tuple[str, ...] = ()
    restricted: bool = False
    default: str | None = None
    precision: int = 0
    scale: int = 0

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name, "label": self.label, "type": self.type, "length": self.length,
            "createable": self.createable, "updateable": self.updateable, "nillable": self.nillable,
            "custom": self.custom, "precision": self.precision, "scale": self.scale,
            "defaultValue": self.default, "restrictedPicklist": self.restricted,
            "referenceTo": ["Contact", "Lead"] if self.name == "WhoId" else
            (["Account", "Case", "Opportunity"] if self.name == "WhatId" else []),
            "picklistValues": [
                {"active": True, "defaultValue": value == self.default, "label": value, "validFor": None,
                 "value": value}
                for value in self.picklist
            ],
        }


def _picklist(name: str, label: str, values: tuple[str, ...], **kw: Any) -> TaskField:
    return TaskField(name, "picklist", label, length=40, picklist=values, restricted=True, **kw)


TASK_FIELDS: tuple[TaskField, ...] = (
    TaskField("Id", "id", "Activity ID", 18, createable=False, updateable=False, nillable=False),
    TaskField("Subject", "combobox", "Subject", 255),
    TaskField("Description", "textarea", "Description", 32000),
    _picklist("Status", "Status", STATUS_VALUES, nillable=False, default="Not Started"),
    _picklist("Priority", "Priority", PRIORITY_VALUES, nillable=False, default="Normal"),
    TaskField("ActivityDate", "date", "Due Date Only"),
    TaskField("WhoId", "reference", "Name ID", 18),
    TaskField("WhatId", "reference", "Related To ID", 18),
    TaskField("OwnerId", "reference", "Assigned To ID", 18),
    _picklist("TaskSubtype", "Task Subtype", SUBTYPE_VALUES, updateable=False),
    _picklist("CallType", "Call Type", CALL_TYPE_VALUES),
    TaskField("CallDurationInSeconds", "int", "Call Duration", precision=9),
    TaskField("CallDisposition", "string", "Call Result", 255),
    TaskField("CallObject", "string", "Call Object Identifier", 255),
    TaskField("IsClosed", "boolean", "Closed", createable=False, updateable=False, nillable=False),
    TaskField("CreatedDate", "datetime", "Created Date", createable=False, updateable=False),
    TaskField("LastModifiedDate", "datetime", "Last Modified Date", createable=False, updateable=False),
    TaskField("Tier__c", "string", "Tier", 40, custom=True),
    TaskField("Score__c", "double", "Score", custom=True, precision=18, scale=2),
    TaskField("Queue__c", "string", "Queue", 80, custom=True),
    _picklist("Segment__c", "Segment", ("SMB", "Enterprise"), custom=True),
    TaskField("Customer_Email__c", "email", "Customer Email", 80, custom=True),
)
FIELDS_BY_LOWER = {f.name.lower(): f for f in TASK_FIELDS}
REQUIRED_ON_CREATE = ("Status", "Priority")


class JsonParserError(ValueError):
    """A value the JSON reader cannot convert: the whole request fails."""


def describe_task() -> dict[str, Any]:
    return {
        "name": "Task", "label": "Task", "keyPrefix": "00T", "createable": True, "updateable": True,
        "queryable": True, "custom": False,
        "fields": [f.describe() for f in TASK_FIELDS],
        "urls": {"sobject": "/services/data/v62.0/sobjects/Task"},
    }


def record_error(code: str, message: str, fields: list[str]) -> dict[str, Any]:
    return {"statusCode": code, "message": message, "fields": fields}


def is_salesforce_id(value: Any) -> bool:
    return isinstance(value, str) and bool(_ID_RE.match(value))


def coerce_value(spec: TaskField, value: Any) -> Any:
    """Convert like the JSON reader does, or raise JsonParserError."""
    if value is None:
        return None
    if spec.type in ("int", "double"):
        return _coerce_number(spec, value)
    if spec.type == "boolean":
        if not isinstance(value, bool):
            raise JsonParserError(_parser_message("boolean", value))
        return value
    if spec.type == "date":
        if not (isinstance(value, str) and _DATE_RE.match(value)):
            raise JsonParserError(_parser_message("date", value))
        return value
    if isinstance(value, dict | list):
        raise JsonParserError(_parser_message("string", value))
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _coerce_number(spec: TaskField, value: Any) -> Any:
    kind = "int" if spec.type == "int" else "double"
    if isinstance(value, bool):
        raise JsonParserError(_parser_message(kind, value))
    try:
        number = float(value) if isinstance(value, str) else value
    except ValueError as exc:
        raise JsonParserError(_parser_message(kind, value)) from exc
    if not isinstance(number, int | float):
        raise JsonParserError(_parser_message(kind, value))
    if kind == "int":
        if float(number) != int(number):
            raise JsonParserError(_parser_message(kind, value))
        return int(number)
    return float(number)


def _parser_message(kind: str, value: Any) -> str:
    token = "VALUE_STRING" if isinstance(value, str) else "VALUE_" + type(value).__name__.upper()
    return (f"Cannot deserialize instance of {kind} from {token} value {value} "
            "or request may be missing a required field at [line:1, column:1]")


@dataclass
class Checked:
    """A record's values converted to field types, plus its per-record errors."""

    values: dict[str, Any] = field(default_factory=dict)
    errors: list[dict[str, Any]] = field(default_factory=list)


def check_record(record: dict[str, Any], creating: bool) -> Checked:
    """Validate one record body; raises JsonParserError for unconvertible values."""
    checked = Checked()
    for key, raw in record.items():
        if key == "attributes" or (not creating and key.lower() == "id"):
            continue
        spec = FIELDS_BY_LOWER.get(key.lower())
        if spec is None:
            checked.errors.append(record_error(
                "INVALID_FIELD", f"No such column '{key}' on sobject of type Task", [key]))
            continue
        checked.values[spec.name] = coerce_value(spec, raw)
    for name, value in checked.values.items():
        error = _field_error(FIELDS_BY_LOWER[name.lower()], value, creating)
        if error is not None:
            checked.errors.append(error)
    if creating:
        missing = [name for name in REQUIRED_ON_CREATE if checked.values.get(name) in (None, "")]
        if missing:
            checked.errors.append(record_error(
                "REQUIRED_FIELD_MISSING", f"Required fields are missing: [{', '.join(missing)}]", missing))
    return checked


LEAD_PREFIX = "00Q"


def integrity_errors(task: dict[str, Any]) -> list[dict[str, Any]]:
    """Rules across fields of the Task as it would be saved: a Task whose WhoId is a lead takes no WhatId
    (Task object reference: "If the WhoId refers to a lead, then the WhatId field must be empty")."""
    who, what = task.get("WhoId"), task.get("WhatId")
    if isinstance(who, str) and who.startswith(LEAD_PREFIX) and what:
        return [record_error("FIELD_INTEGRITY_EXCEPTION",
                             "Related To ID: a task whose Name is a lead cannot be related to another record",
                             ["WhatId"])]
    return []


def _field_error(spec: TaskField, value: Any, creating: bool) -> dict[str, Any] | None:
    allowed = spec.createable if creating else spec.updateable
    if not allowed:
        return record_error(
            "INVALID_FIELD_FOR_INSERT_UPDATE",
            f"Unable to create/update fields: {spec.name}. Please check the security settings of this "
            "field and verify that it is read/write for your profile or permission set.", [spec.name])
    if value is None:
        if not spec.nillable and not creating:
            return record_error("REQUIRED_FIELD_MISSING", f"Required fields are missing: [{spec.name}]",
                                [spec.name])
        return None
    if spec.type == "reference" and not is_salesforce_id(value):
        return record_error("MALFORMED_ID", f"{spec.label}: id value of incorrect type: {value}", [spec.name])
    if spec.type in _STRING_TYPES and spec.length and len(value) > spec.length:
        return record_error("STRING_TOO_LONG",
                            f"{spec.label}: data value too large: {value[:40]} (max length={spec.length})",
                            [spec.name])
    if spec.type == "double" and spec.precision and abs(value) >= 10 ** (spec.precision - spec.scale):
        # more integer digits than precision - scale allow: the record fails, as in a real org
        return record_error("NUMBER_OUTSIDE_VALID_RANGE",
                            f"{spec.label}: value outside of valid range on numeric field: {value}", [spec.name])
    if spec.type == "email" and not _EMAIL_RE.match(value):
        return record_error("INVALID_EMAIL_ADDRESS", f"{spec.label}: invalid email address: {value}", [spec.name])
    if spec.restricted and value not in spec.picklist:
        return record_error("INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
                            f"{spec.label}: bad value for restricted picklist field: {value}", [spec.name])
    return None
