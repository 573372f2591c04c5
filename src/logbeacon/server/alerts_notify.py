"""From occurrences to alerts: grouping, cooldowns and the two payload formats.

A rule's occurrences are grouped by the rule's group key (rule + service + environment, and
the run name for `run_failed`). The first occurrence of a quiet group opens it; it is sent
`group_wait` seconds later with every occurrence that arrived meanwhile counted in. After a
send the group is in cooldown: what arrives during the cooldown is collected and sent as
one alert, with its count, when the cooldown ends. So a storm of a thousand errors is one
message that says 1000, not a thousand messages.

Alerts carry summaries only (titles, ids, error type and a clipped message), and the whole
document goes through the server's redactor before it is stored or sent.
"""

from __future__ import annotations

import secrets
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from logbeacon.event import encode, format_timestamp
from logbeacon.redact import Redactor
from logbeacon.server.alerts_rules import Occurrence

__all__ = [
    "PAYLOAD_VERSION",
    "PendingAlert",
    "Throttle",
    "alert_document",
    "json_payload",
    "payload_body",
    "slack_payload",
]

PAYLOAD_VERSION: Final = 1
MAX_PENDING: Final = 10_000
_NOUNS: Final = {
    "new_error_group": ("new error group", "new error groups"),
    "error_rate": ("error", "errors"),
    "run_failed": ("failed run", "failed runs"),
    "no_events": ("silent period", "silent periods"),
}
# Fields of the stored document that are not part of a webhook payload.
_INTERNAL: Final = ("fired_epoch", "deliveries")


@dataclass(slots=True)
class PendingAlert:
    """Occurrences of one group waiting to be sent."""

    first: Occurrence
    count: int
    first_at: float
    last_at: float
    due: float


class Throttle:
    """Groups occurrences and applies each rule's `group_wait` and `cooldown`."""

    def __init__(self) -> None:
        self._pending: OrderedDict[tuple[str, ...], PendingAlert] = OrderedDict()
        self._quiet_until: dict[tuple[str, ...], float] = {}
        self.dropped = 0

    def __len__(self) -> int:
        return len(self._pending)

    def add(self, occurrence: Occurrence) -> None:
        key = occurrence.group
        pending = self._pending.get(key)
        if pending is not None:
            pending.count += occurrence.weight
            pending.last_at = occurrence.at
            return
        if len(self._pending) >= MAX_PENDING:
            self.dropped += occurrence.weight
            return
        rule = occurrence.rule
        due = max(occurrence.at + rule.group_wait, self._quiet_until.get(key, 0.0))
        self._pending[key] = PendingAlert(
            first=occurrence,
            count=occurrence.weight,
            first_at=occurrence.at,
            last_at=occurrence.at,
            due=due,
        )

    def due(self, now: float) -> list[PendingAlert]:
        """Groups whose time has come (removed; their cooldown starts now)."""
        ready = [key for key, pending in self._pending.items() if pending.due <= now]
        found = []
        for key in ready:
            pending = self._pending.pop(key)
            self._quiet_until[key] = now + pending.first.rule.cooldown
            found.append(pending)
        if len(self._quiet_until) > MAX_PENDING:
            self._quiet_until = {k: t for k, t in self._quiet_until.items() if t > now}
        return found


def _count_line(rule_type: str, count: int) -> str:
    one, many = _NOUNS.get(rule_type, ("occurrence", "occurrences"))
    return f"{count} {one if count == 1 else many}"


def alert_document(
    pending: PendingAlert, *, now: float, base_url: str, redactor: Redactor
) -> dict[str, Any]:
    """The alert as stored in the history and sent as the generic JSON payload."""
    first = pending.first
    rule = first.rule
    text = first.title
    if pending.count > 1:
        text += f" (+{pending.count - 1} more: {_count_line(rule.type, pending.count)})"
    document = {
        "id": secrets.token_hex(8),
        "rule": rule.name,
        "type": rule.type,
        "title": first.title,
        "text": text,
        "service": first.service,
        "environment": first.environment,
        "count": pending.count,
        "first_at": format_timestamp(pending.first_at),
        "last_at": format_timestamp(pending.last_at),
        "fired_at": format_timestamp(now),
        "link": f"{base_url}/{first.link}",
        "details": dict(first.details),
    }
    redacted: dict[str, Any] = redactor.redact(document)
    redacted["fired_epoch"] = now
    return redacted


def json_payload(document: Mapping[str, Any]) -> dict[str, Any]:
    """The generic JSON payload: the alert without the history's bookkeeping."""
    return {"version": PAYLOAD_VERSION} | {
        key: value for key, value in document.items() if key not in _INTERNAL
    }


def _slack_escape(text: object) -> str:
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_payload(document: Mapping[str, Any]) -> dict[str, Any]:
    """A Slack incoming-webhook message: one `text` in mrkdwn with a link to the dashboard."""
    count = int(document.get("count") or 1)
    lines = [f":rotating_light: *{_slack_escape(document.get('title', 'logbeacon alert'))}*"]
    facts = [f"rule `{_slack_escape(document.get('rule'))}`"]
    if count > 1:
        facts.append(_count_line(str(document.get("type")), count))
    facts.append(f"last at {_slack_escape(document.get('last_at'))}")
    lines.append(" · ".join(facts))
    link = str(document.get("link", ""))
    if link:
        lines.append(f"<{_slack_escape(link)}|Open in logbeacon>")
    return {"text": "\n".join(lines)}


def payload_body(document: Mapping[str, Any], fmt: str) -> bytes:
    """The exact bytes POSTed (and signed) for a webhook of this format."""
    payload = slack_payload(document) if fmt == "slack" else json_payload(document)
    return encode(payload)
