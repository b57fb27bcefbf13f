"""The tickets the Zendesk target writes: the log as a private comment or in the log field, with the mapped
attributes, on a linked ticket (an update) or on a ticket made for it (`external_id` = interaction id, its requester,
perhaps a follow-up of a closed ticket)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from zenpy.lib.api_objects import Comment, Ticket, User

from adapters.attributes import FieldValue
from adapters.zendesk_render import (
    TicketField,
    attribute_custom_fields,
    chosen_requester_id,
    marker,
    render_comment,
)
from adapters.zendesk_writes import Write
from schemas.snapshot import LogSnapshot


@dataclass(frozen=True)
class TicketPayloads:
    """`log_field_id`: field mode's field (None: comment mode); `attribute_fields`: attribute → ticket field id;
    `field_specs`: the account's ticket fields, read when an attribute is mapped."""

    log_field_id: int | None
    attribute_fields: dict[str, int]
    field_specs: Callable[[], dict[int, TicketField]]

    def log_payload(self, snapshot: LogSnapshot) -> tuple[Comment | None, list[dict[str, FieldValue]]]:
        mapping = self.attribute_fields
        custom_fields = attribute_custom_fields(snapshot, mapping, self.field_specs() if mapping else {})
        text = render_comment(snapshot)
        if self.log_field_id is not None:
            return None, [{"id": self.log_field_id, "value": text}, *custom_fields]
        return Comment(body=text, public=False), custom_fields

    def update(self, ticket_id: int, snapshot: LogSnapshot) -> Ticket:
        comment, custom_fields = self.log_payload(snapshot)
        ticket = Ticket(id=ticket_id)
        if comment is not None:
            ticket.comment = comment
        if custom_fields:
            ticket.custom_fields = custom_fields
        return ticket

    def new_ticket(self, index: int, snapshot: LogSnapshot, *, follow_up_of: int | None = None,
                   requester_id: int | None = None) -> Write:
        """A ticket that carries the log from its creation: one write, no later update. `follow_up_of`: made a
        follow-up of that closed ticket; `requester_id`: its requester, else the one `chosen_requester_id`
        names, else the customer."""
        comment, custom_fields = self.log_payload(snapshot)
        ticket = Ticket(
            external_id=snapshot.interaction_id,
            subject=snapshot.subject or f"Interaction {snapshot.interaction_id}",
            # field mode: the ticket still needs a first comment; as every comment the worker writes, it ends
            # with the marker line
            comment=comment or Comment(body=f"Interaction {snapshot.interaction_id}\n\n"
                                            f"{marker(snapshot.interaction_id, snapshot.version)}", public=False),
        )
        if custom_fields:
            ticket.custom_fields = custom_fields
        if follow_up_of is not None:
            ticket.via_followup_source_id = follow_up_of
        requester_id = requester_id if requester_id is not None else chosen_requester_id(snapshot)
        requester = _requester(snapshot) if requester_id is None else None
        if requester_id is not None:
            ticket.requester_id = requester_id
        elif requester is not None:
            ticket.requester = requester
            # zenpy's setter also sets `requester_id` to the new user's id, None: sent as `"requester_id": null`
            # beside the `requester` object, it would ask for no requester (the agent's own ticket) instead
            ticket._dirty_attributes.discard("requester_id")
        key = f"{snapshot.interaction_id}:v{snapshot.version}"
        return Write(index, ticket, snapshot.version, create=True, idempotency_key=key)


def _requester(snapshot: LogSnapshot) -> User | None:
    customer = snapshot.customer
    if customer is None or not (customer.name or customer.address):
        return None
    address = customer.address or ""
    if "@" in address:
        return User(name=customer.name or address, email=address)
    return User(name=customer.name or address, phone=address or None)
