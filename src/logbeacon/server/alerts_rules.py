"""Alert rules evaluated event by event (never by rescanning the store).

Each rule type is a small class: `observe(event, now)` looks at one committed event and
`tick(now)` handles what only time can trigger (a silent service, a rate falling back under
its threshold). Both return `Occurrence`s; grouping, cooldowns and delivery are elsewhere
(`alerts_notify`, `alerts_delivery`). Every piece of state is bounded.

`FingerprintMemory` decides whether an error is new: the last time each (environment,
fingerprint) was seen, kept in the alert history's SQLite file so it survives restarts.
Fingerprints are computed as the store computes them for its error groups (the SDK's
`error.fingerprint`, else the same analysis on type, message and stack).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Protocol
from urllib.parse import quote

from logbeacon.event import LEVEL_NUMBERS, parse_timestamp
from logbeacon.exceptions import EventError
from logbeacon.integrations.errors import analyze_error
from logbeacon.server.alerts_config import Rule

__all__ = [
    "MAX_TRACKED",
    "ErrorRateRule",
    "FingerprintMemory",
    "NewErrorGroupRule",
    "NoEventsRule",
    "Occurrence",
    "RuleEvaluator",
    "RunFailedRule",
    "Sighting",
    "build_evaluator",
    "error_facts",
    "event_time",
]

Event = dict[str, Any]

MAX_TRACKED: Final = 10_000  # services, runs, … a rule remembers at most
_ERROR: Final = LEVEL_NUMBERS["error"]
_TEXT_MAX: Final = 300
_FUTURE_SLACK: Final = 60.0


@dataclass(slots=True)
class Occurrence:
    """One thing a rule fired for; `weight` is how much it adds to the alert's count."""

    rule: Rule
    group: tuple[str, ...]
    service: str | None
    environment: str | None
    at: float
    title: str
    details: dict[str, Any] = field(default_factory=dict)
    link: str = "#/tail"
    weight: int = 1


@dataclass(frozen=True, slots=True)
class Sighting:
    """An error event as the rules see it: its facts (`error_facts`), its time, and when its
    fingerprint was last seen before it in its environment (None: never)."""

    facts: Mapping[str, Any]
    at: float
    previous: float | None


def _text(value: object, limit: int = _TEXT_MAX) -> str | None:
    if not isinstance(value, str) or not value:
        return None
    return value if len(value) <= limit else value[: limit - 1] + "…"


def _level(event: Mapping[str, Any]) -> int:
    level = event.get("level")
    return LEVEL_NUMBERS.get(level, 0) if isinstance(level, str) else 0


def event_time(event: Mapping[str, Any], now: float) -> float:
    try:
        value = parse_timestamp(event.get("timestamp"))
    except EventError:
        return now
    return min(value, now + _FUTURE_SLACK) if math.isfinite(value) else now


def error_facts(event: Mapping[str, Any]) -> dict[str, Any]:
    """Fingerprint, type, message and category of an error event, as the store groups it."""
    error = event.get("error")
    name = _text(event.get("event")) or "log"
    if isinstance(error, dict):
        kind = _text(error.get("type"))
        message = _text(error.get("message")) or _text(event.get("message"))
        fingerprint = error.get("fingerprint")
        category = error.get("category")
        basis: Mapping[str, Any] = error
    else:
        kind = None
        message = _text(event.get("message")) or name
        fingerprint = category = None
        basis = {"type": name, "message": event.get("message") or ""}
    if not isinstance(fingerprint, str) or not fingerprint or not isinstance(category, str):
        analysis = analyze_error(basis)
        fingerprint = fingerprint if isinstance(fingerprint, str) and fingerprint else None
        fingerprint = fingerprint or analysis.fingerprint
        category = category if isinstance(category, str) and category else analysis.category
    return {"fingerprint": fingerprint, "type": kind, "message": message, "category": category}


def _ids(event: Mapping[str, Any]) -> dict[str, Any]:
    ids = {}
    for name in ("event", "trace_id", "request_id", "run_id", "job_id", "node", "route"):
        value = _text(event.get(name), 128)
        if value is not None:
            ids[name] = value
    return ids


def _describe_error(facts: Mapping[str, Any]) -> str:
    parts = [part for part in (facts.get("type"), facts.get("message")) if part]
    return ": ".join(parts) or "error"


def _where(service: str | None, environment: str | None) -> str:
    place = f"in {service}" if service else "in an unnamed service"
    return f"{place} ({environment})" if environment else place


class RuleEvaluator(Protocol):
    rule: Rule

    def observe(self, event: Event, now: float, error: Sighting | None) -> list[Occurrence]:
        """Occurrences one committed event causes; `error` is set for error-level events."""

    def tick(self, now: float) -> list[Occurrence]:
        """Occurrences that time alone causes."""


class FingerprintMemory:
    """When each (environment, fingerprint) was last seen: decides "new" and "regression".

    `observe` returns the previous last-seen time (None when never seen) and records the new
    one; `dirty` collects changes for the history file. At `max_entries` the least recently
    seen entry is forgotten: it would fire again as new, which after that long is a fair
    description of it.
    """

    def __init__(self, max_entries: int = 100_000) -> None:
        self.max_entries = max_entries
        self._seen: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self.dirty: dict[str, tuple[float, float]] = {}

    def __len__(self) -> int:
        return len(self._seen)

    @staticmethod
    def key(environment: str | None, fingerprint: str) -> str:
        return f"{(environment or '').lower()}\x1f{fingerprint}"

    def load(self, key: str, first_seen: float, last_seen: float) -> None:
        """Restore an entry (from the history file or the store's error groups)."""
        previous = self._seen.pop(key, None)
        if previous is not None:
            first_seen = min(first_seen, previous[0])
            last_seen = max(last_seen, previous[1])
        self._seen[key] = (first_seen, last_seen)
        self._trim()

    def observe(self, key: str, at: float) -> float | None:
        previous = self._seen.pop(key, None)
        entry = (at, at) if previous is None else (min(previous[0], at), max(previous[1], at))
        self._seen[key] = entry
        self.dirty[key] = entry
        self._trim()
        return None if previous is None else previous[1]

    def _trim(self) -> None:
        while len(self._seen) > self.max_entries:
            self._seen.popitem(last=False)


class NewErrorGroupRule:
    """A fingerprint never seen in this environment, or seen again after a quiet period."""

    def __init__(self, rule: Rule) -> None:
        self.rule = rule

    def observe(self, event: Event, now: float, error: Sighting | None) -> list[Occurrence]:
        if error is None:
            return []
        service = _text(event.get("service"), 128)
        environment = _text(event.get("environment"), 64)
        if not self.rule.matches(service, environment):
            return []
        facts = error.facts
        quiet: float | None = None
        if error.previous is not None:
            quiet = error.at - error.previous
            regression = self.rule.regression_after
            if regression <= 0 or quiet < regression:
                return []
        where = _where(service, environment)
        if quiet is None:
            title = f"New error {where}: {_describe_error(facts)}"
        else:
            title = f"Regression {where} after {quiet / 86_400:.1f} days quiet: "
            title += _describe_error(facts)
        details = {
            "kind": "new" if quiet is None else "regression",
            "fingerprint": facts["fingerprint"],
            "error_type": facts["type"],
            "error_message": facts["message"],
            "category": facts["category"],
            **_ids(event),
        }
        if quiet is not None:
            details["quiet_seconds"] = round(quiet, 3)
        trace_id = details.get("trace_id")
        return [
            Occurrence(
                rule=self.rule,
                group=(self.rule.name, service or "", environment or ""),
                service=service,
                environment=environment,
                at=now,
                title=title,
                details=details,
                link=f"#/trace/{quote(trace_id, safe='')}" if trace_id else "#/errors",
            )
        ]

    def tick(self, now: float) -> list[Occurrence]:
        return []


class _RateState:
    """Errors per one-second bucket; `floor` is the oldest second still in the window."""

    __slots__ = ("buckets", "firing", "floor", "total")

    def __init__(self, floor: int) -> None:
        self.buckets: dict[int, int] = {}
        self.total = 0
        self.firing = False
        self.floor = floor

    def prune(self, since: float) -> None:
        target = int(since)
        if target <= self.floor:
            return
        if target - self.floor <= len(self.buckets):
            expired: Iterable[int] = range(self.floor, target)
        else:  # a long gap: cheaper to look at the buckets than at every second
            expired = [second for second in self.buckets if second < target]
        for second in expired:
            self.total -= self.buckets.pop(second, 0)
        self.floor = target


class ErrorRateRule:
    """Errors per minute of a service over a sliding window, at or above a threshold.

    Counted in one-second buckets of the events' timestamps (events older than the window,
    such as a backfill, do not count). Once the rate reaches the threshold the errors in the
    window are one occurrence weighing their number, then every further error while the rate
    stays there adds one; the rule re-arms when the rate falls below the threshold.
    """

    def __init__(self, rule: Rule) -> None:
        self.rule = rule
        self._states: OrderedDict[tuple[str, str], _RateState] = OrderedDict()
        self._limit = rule.threshold * rule.window / 60.0

    def observe(self, event: Event, now: float, error: Sighting | None) -> list[Occurrence]:
        if error is None:
            return []
        service = _text(event.get("service"), 128)
        environment = _text(event.get("environment"), 64)
        if not self.rule.matches(service, environment):
            return []
        at = error.at
        since = now - self.rule.window
        if at < since:
            return []
        key = (service or "", environment or "")
        state = self._states.get(key)
        if state is None:
            state = self._states[key] = _RateState(int(since))
            while len(self._states) > MAX_TRACKED:
                self._states.popitem(last=False)
        else:
            self._states.move_to_end(key)
        state.prune(since)
        second = int(at)
        if second < state.floor:
            return []
        state.buckets[second] = state.buckets.get(second, 0) + 1
        state.total += 1
        if state.total < self._limit:
            return []
        weight = 1
        if not state.firing:
            state.firing = True
            weight = state.total
        facts = error.facts
        rate = state.total / (self.rule.window / 60.0)
        window = _minutes(self.rule.window)
        title = (
            f"Error rate {_where(service, environment)}: {rate:.1f}/min over {window} "
            f"(threshold {self.rule.threshold:g}/min)"
        )
        details = {
            "errors_in_window": state.total,
            "rate_per_minute": round(rate, 3),
            "threshold_per_minute": self.rule.threshold,
            "window_seconds": self.rule.window,
            "sample_error_type": facts["type"],
            "sample_error_message": facts["message"],
            "fingerprint": facts["fingerprint"],
        }
        link = f"#/analysis?service={quote(service, safe='')}&since=1h" if service else "#/analysis"
        return [
            Occurrence(
                rule=self.rule,
                group=(self.rule.name, service or "", environment or ""),
                service=service,
                environment=environment,
                at=now,
                title=title,
                details=details,
                link=link,
                weight=weight,
            )
        ]

    def tick(self, now: float) -> list[Occurrence]:
        since = now - self.rule.window
        for key, state in list(self._states.items()):
            state.prune(since)
            if state.total < self._limit:
                state.firing = False
            if state.total == 0:
                del self._states[key]
        return []


def _minutes(seconds: float) -> str:
    if seconds % 3600 == 0:
        return f"{int(seconds // 3600)}h"
    if seconds % 60 == 0:
        return f"{int(seconds // 60)}m"
    return f"{seconds:g}s"


_RUN_END_EVENTS: Final = frozenset({"graph_failed", "pipeline_complete", "command_exit"})


class RunFailedRule:
    """A LangGraph run or a pipeline/job that ended in error, once per run id."""

    def __init__(self, rule: Rule) -> None:
        self.rule = rule
        self._fired: OrderedDict[str, None] = OrderedDict()

    def _failed(self, name: str, event: Event) -> bool:
        if name == "graph_failed":
            if _level(event) >= _ERROR:
                return True
            return self.rule.include_cancelled and event.get("status") == "error"
        if name == "pipeline_complete":
            status = event.get("status")
            return status == "error" or (status is None and _level(event) >= _ERROR)
        code = event.get("exit_code")
        return isinstance(code, int) and not isinstance(code, bool) and code != 0

    def observe(self, event: Event, now: float, error: Sighting | None) -> list[Occurrence]:
        name = event.get("event")
        if name not in _RUN_END_EVENTS or not self._failed(str(name), event):
            return []
        service = _text(event.get("service"), 128)
        environment = _text(event.get("environment"), 64)
        if not self.rule.matches(service, environment):
            return []
        job_id = _text(event.get("job_id"), 128)
        run_id = _text(event.get("run_id"), 128) or job_id
        if name == "graph_failed":
            kind, label = "graph", _text(event.get("graph"), 128)
        elif name == "pipeline_complete":
            kind, label = "pipeline", _text(event.get("pipeline"), 128)
        else:
            kind, label = "command", None
        candidates = {value for value in (label, job_id, run_id) if value}
        if self.rule.names and not candidates.intersection(self.rule.names):
            return []
        if run_id is not None:
            if run_id in self._fired:
                return []
            self._fired[run_id] = None
            while len(self._fired) > MAX_TRACKED:
                self._fired.popitem(last=False)
        subject = " ".join(part for part in (kind, label) if part)
        title = f"Run failed {_where(service, environment)}: {subject}"
        if run_id:
            title += f" (run {run_id})"
        details: dict[str, Any] = {"run_kind": kind, "run_name": label, **_ids(event)}
        if error is not None or isinstance(event.get("error"), dict):
            facts = error.facts if error is not None else error_facts(event)
            details.update(error_type=facts["type"], error_message=facts["message"])
            title += f": {_describe_error(facts)}"
        duration = event.get("duration_ms")
        if isinstance(duration, int | float) and not isinstance(duration, bool):
            details["duration_ms"] = duration
        if kind == "command":
            details["exit_code"] = event.get("exit_code")
        return [
            Occurrence(
                rule=self.rule,
                group=(self.rule.name, service or "", environment or "", label or ""),
                service=service,
                environment=environment,
                at=now,
                title=title,
                details=details,
                link=f"#/runs/{quote(run_id, safe='')}" if run_id else "#/runs",
            )
        ]

    def tick(self, now: float) -> list[Occurrence]:
        return []


class NoEventsRule:
    """A service that sent nothing for `after` seconds (by arrival time): fires once per
    silence and re-arms when the service is heard again.

    Services named in the rule are watched from the start; without names, every service seen
    (matching the environment filter) is watched from its first event.
    """

    def __init__(self, rule: Rule, now: float) -> None:
        self.rule = rule
        self._last: OrderedDict[str, float] = OrderedDict((name, now) for name in rule.services)
        self._silent: set[str] = set()

    def observe(self, event: Event, now: float, error: Sighting | None) -> list[Occurrence]:
        service = _text(event.get("service"), 128)
        if service is None or not self.rule.matches(service, _text(event.get("environment"))):
            return []
        self._last[service] = now
        self._last.move_to_end(service)
        self._silent.discard(service)
        while len(self._last) > MAX_TRACKED:
            dropped, _ = self._last.popitem(last=False)
            self._silent.discard(dropped)
        return []

    def tick(self, now: float) -> list[Occurrence]:
        found = []
        environment = ", ".join(self.rule.environments) or None
        for service, last in self._last.items():
            quiet = now - last
            if service in self._silent or quiet < self.rule.after:
                continue
            self._silent.add(service)
            found.append(
                Occurrence(
                    rule=self.rule,
                    group=(self.rule.name, service),
                    service=service,
                    environment=environment,
                    at=now,
                    title=(
                        f"No events from {service} in the last {_minutes(self.rule.after)}"
                        + (f" ({environment})" if environment else "")
                    ),
                    details={"silent_seconds": round(quiet, 3), "after_seconds": self.rule.after},
                    link=f"#/tail?service={quote(service, safe='')}",
                )
            )
        return found


def build_evaluator(rule: Rule, now: float) -> RuleEvaluator:
    """The evaluator of one configured rule."""
    if rule.type == "new_error_group":
        return NewErrorGroupRule(rule)
    if rule.type == "error_rate":
        return ErrorRateRule(rule)
    if rule.type == "run_failed":
        return RunFailedRule(rule)
    return NoEventsRule(rule, now)
