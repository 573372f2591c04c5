"""The production level policy (DESIGN.md §4): in `prod`, keep warn and above.

Two exceptions let the events that explain a failure through: LangGraph node/run events (so a
graph's successful steps are on the timeline next to its failure), and every event of a
session that holds a valid diagnostic token. The policy runs on normalised events, so the
level it sees is the one that gets stored (duplicate keys were already refused).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

__all__ = ["LEVEL_NOT_ALLOWED", "LevelPolicy"]

LEVEL_NOT_ALLOWED: Final = "level_not_allowed"
_FILTERED_LEVELS: Final = frozenset({"debug", "info"})
_LANGGRAPH_PREFIXES: Final = ("node_", "run_", "graph_")


class LevelPolicy:
    """Decides per event; `enabled` is False outside prod (everything passes)."""

    __slots__ = ("enabled",)

    def __init__(self, *, enabled: bool) -> None:
        self.enabled = enabled

    def allows(self, event: Mapping[str, Any], diagnostic_session: str | None = None) -> bool:
        if not self.enabled or event.get("level") not in _FILTERED_LEVELS:
            return True
        if diagnostic_session is not None and event.get("session_id") == diagnostic_session:
            return True
        return _is_langgraph_step(event)


def _is_langgraph_step(event: Mapping[str, Any]) -> bool:
    if event.get("service") != "langgraph":
        return False
    name = event.get("event")
    if isinstance(name, str) and name.startswith(_LANGGRAPH_PREFIXES):
        return True
    return "node" in event or "run_id" in event
