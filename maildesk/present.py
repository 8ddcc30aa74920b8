"""The documented JSON shapes of the CLI (users script against them).

Each function turns stored rows or a parsed mail into plain dicts with the
keys README lists; times are ISO 8601 with an offset. Changing a key here is
changing a public contract.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from maildesk.mail.classify import Classification
from maildesk.mail.parse import Address, ParsedMail
from maildesk.models import Attachment, Inbound, Message, Outbox, Participant, Ticket, TicketEvent

if TYPE_CHECKING:  # the rule engine and replay load only for the commands that use them
    from maildesk.config import AgentConfig
    from maildesk.desk.replay import Change
    from maildesk.desk.routing import Routing
    from maildesk.desk.rules import Evaluation


def iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def ticket_summary(ticket: Ticket) -> dict[str, Any]:
    return {
        "id": ticket.id,
        "subject": ticket.subject,
        "status": ticket.status,
        "queue": ticket.queue,
        "priority": ticket.priority,
        "requester": ticket.requester,
        "assignee": ticket.assignee,
        "tags": list(ticket.tags or []),
        "linked_ticket_id": ticket.linked_ticket_id,
        "created_at": iso(ticket.created_at),
        "updated_at": iso(ticket.updated_at),
    }


def ticket_detail(ticket: Ticket) -> dict[str, Any]:
    return {
        **ticket_summary(ticket),
        "participants": [participant(p) for p in ticket.participants],
        "events": [event(e) for e in ticket.events],
        "messages": [message(m) for m in ticket.messages],
    }


def participant(row: Participant) -> dict[str, Any]:
    return {"address": row.address, "name": row.name, "role": row.role}


def event(row: TicketEvent) -> dict[str, Any]:
    return {"at": iso(row.at), "actor": row.actor, "type": row.type, "reason": row.reason, "detail": row.detail}


def message(row: Message) -> dict[str, Any]:
    return {
        "id": row.id,
        "direction": row.direction,
        "kind": row.kind,
        "from": {"name": row.from_name, "address": row.from_address},
        "to": row.to,
        "cc": row.cc,
        "subject": row.subject,
        "message_id": row.message_id,
        "in_reply_to": row.in_reply_to,
        "references": row.references,
        "date": iso(row.date),
        "body_text": row.body_text,
        "new_text": row.new_text,
        "classification": {"class": row.classification, "reason": row.classification_reason},
        "defects": row.defects,
        "attachments": [attachment(a) for a in row.attachments],
    }


def attachment(row: Attachment) -> dict[str, Any]:
    return {
        "filename": row.filename or None,
        "safe_filename": row.safe_filename,
        "content_type": row.content_type,
        "size": row.size,
        "sha256": row.sha256,
    }


def inbound(row: Inbound) -> dict[str, Any]:
    return {
        "id": row.id,
        "state": row.state,
        "source": row.source,
        "size": row.size,
        "sha256": row.sha256,
        "message_id": row.message_id,
        "ticket_id": row.ticket_id,
        "attempts": row.attempts,
        "error": row.error,
        "disposition": row.disposition,
        "received_at": iso(row.received_at),
        "processed_at": iso(row.processed_at),
        "envelope": row.envelope,
    }


def _address(value: Address) -> dict[str, str]:
    return {"name": value.name, "address": value.address}


def inspected(parsed: ParsedMail, verdict: Classification) -> dict[str, Any]:
    return {
        "from": _address(parsed.sender),
        "to": [_address(a) for a in parsed.to],
        "cc": [_address(a) for a in parsed.cc],
        "reply_to": [_address(a) for a in parsed.reply_to],
        "subject": parsed.subject,
        "date": iso(parsed.date),
        "message_id": parsed.message_id,
        "message_id_synthesized": parsed.message_id_synthesized,
        "in_reply_to": parsed.in_reply_to,
        "references": parsed.references,
        "text": parsed.text,
        "html": parsed.html,
        "new_text": parsed.new_text,
        "attachments": [
            {
                "filename": a.filename or None,
                "safe_filename": a.safe_filename,
                "content_type": a.content_type,
                "size": a.size,
                "sha256": a.sha256,
                "content_id": a.content_id,
                "inline": a.inline,
            }
            for a in parsed.attachments
        ],
        "classification": {"class": verdict.kind, "reason": verdict.reason},
        "defects": parsed.defects,
    }


def outbox_item(row: Outbox) -> dict[str, Any]:
    return {
        "id": row.id,
        "ticket_id": row.ticket_id,
        "kind": row.kind,
        "to": list(row.to),
        "subject": row.subject,
        "status": row.status,
        "attempts": row.attempts,
        "last_error": row.last_error,
        "reason": row.reason,
        "message_id": row.message_id,
        "created_at": iso(row.created_at),
        "next_attempt_at": iso(row.next_attempt_at) if row.status == "queued" else None,
        "sent_at": iso(row.sent_at),
    }


def rules_trial(evaluation: Evaluation, routing: Routing) -> dict[str, Any]:
    """``rules test --json``: each rule in order, then the routing the mail would get."""
    return {
        "rules": [{"name": step.name, "matched": step.matched, "status": step.status, "because": step.because,
                   "actions": step.actions.as_dict() if step.actions is not None else None}
                  for step in evaluation.trace],
        "outcome": routing.as_dict(),
    }


def replay_change(change: Change) -> dict[str, Any]:
    """One entry of ``rules replay --json``."""
    return {"ticket_id": change.ticket_id, "message_id": change.message_id, "followup": change.followup,
            "changed": list(change.changed), "old": change.old, "new": change.new}


def agent(config: AgentConfig, open_tickets: int) -> dict[str, Any]:
    """One entry of ``agents list --json``."""
    return {"address": config.address, "name": config.name, "queues": list(config.queues),
            "open_tickets": open_tickets}
