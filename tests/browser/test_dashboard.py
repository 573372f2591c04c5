"""The dashboard in real Chromium against a real `logbeacon serve`: sign-in through the printed
URL, each view with realistic data (a trace across web → api → langgraph with a failing node,
errors of several categories, a pipeline run), live updates over the stream, the XSS payloads
of INJ-09 shown as text, no console errors and no request to another origin.

Set LOGBEACON_UPDATE_SCREENSHOT=1 to rewrite docs/img/dashboard.png from this suite."""

from __future__ import annotations

import os
import re
import secrets
import struct
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from playwright.sync_api import ConsoleMessage, Dialog, Page, Request, expect

from logbeacon.event import format_timestamp, new_event_id
from logbeacon.integrations.errors import analyze_error
from tests.helpers.server import RunningServer, running_server

if TYPE_CHECKING:
    from tests.browser.conftest import Tab

pytestmark = [pytest.mark.browser, pytest.mark.e2e]

SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "img" / "dashboard.png"
VIEWPORT = {"width": 1280, "height": 800}
# Read at import: the suite's autouse fixture clears LOGBEACON_* variables before each test.
UPDATE_SCREENSHOT = os.environ.get("LOGBEACON_UPDATE_SCREENSHOT") == "1"
WAIT_MS = 10_000  # the longest any single expectation waits

XSS_IMG = '<img src=x onerror="window.__xss=1;alert(1)">'
XSS_SCRIPT = "<script>window.__xss=2;alert(2)</script>"


# --------------------------------------------------------------------------- data


def _error(type_: str, message: str, stack: list[str] | None = None) -> dict[str, Any]:
    """An `error` object as the SDK sends it: analysed, categorised and fingerprinted."""
    error: dict[str, Any] = {"type": type_, "message": message, "stack": stack or []}
    analysis = analyze_error(error)
    error.update(
        category=analysis.category,
        suggestions=list(analysis.suggestions),
        fingerprint=analysis.fingerprint,
    )
    return error


@dataclass
class Clock:
    """Event timestamps: a fixed start and offsets in milliseconds."""

    start: float

    def at(self, ms: float) -> str:
        return format_timestamp(self.start + ms / 1000)


@dataclass
class Seeded:
    """Ids of the realistic data the module stored."""

    trace_id: str
    session_id: str
    request_id: str
    graph_run: str
    job_id: str
    trace_events: int
    session_events: int
    xss_session: str
    services: tuple[str, ...] = ("web", "api", "langgraph")
    categories: set[str] = field(default_factory=set)


def realistic_events(now: float) -> tuple[list[dict[str, Any]], Seeded]:
    """A user's failed analysis request across browser, API and agent, other failures of
    several kinds, a partial pipeline run, ordinary traffic, and the XSS payloads."""
    clock = Clock(now - 90)
    trace_id = secrets.token_hex(16)
    session_id = f"sess-{secrets.token_hex(4)}"
    request_id = f"req-{secrets.token_hex(6)}"
    graph_run = str(uuid.uuid4())
    job_id = f"job-{secrets.token_hex(3)}"
    common = {"trace_id": trace_id, "session_id": session_id, "environment": "staging"}
    rate_limit = _error(
        "openai.RateLimitError",
        "Error code: 429 - Rate limit reached for gpt-4o in organization org-demo",
        ["Traceback (most recent call last):", '  File "agent/writer.py", line 42, in write'],
    )
    graph = {"run_id": graph_run, "graph": "research_agent", "service": "langgraph"}
    trace = [
        {
            "service": "web",
            "event": "page_view",
            "level": "info",
            "route": "/reports/new",
            "timestamp": clock.at(0),
        },
        {
            "service": "api",
            "event": "request_received",
            "level": "debug",
            "request_id": request_id,
            "timestamp": clock.at(40),
        },
        {
            **graph,
            "event": "graph_start",
            "level": "info",
            "status": "running",
            "timestamp": clock.at(60),
        },
        {
            **graph,
            "event": "node_start",
            "level": "info",
            "node": "researcher",
            "step": 1,
            "status": "running",
            "timestamp": clock.at(70),
        },
        {
            **graph,
            "event": "llm_complete",
            "level": "info",
            "node": "researcher",
            "model": "gpt-4o-mini",
            "duration_ms": 380.0,
            "prompt_tokens": 812,
            "completion_tokens": 164,
            "timestamp": clock.at(460),
        },
        {
            **graph,
            "event": "tool_complete",
            "level": "info",
            "node": "researcher",
            "tool": "web_search",
            "duration_ms": 210.0,
            "timestamp": clock.at(690),
        },
        {
            **graph,
            "event": "node_complete",
            "level": "info",
            "node": "researcher",
            "step": 1,
            "status": "success",
            "duration_ms": 640.0,
            "timestamp": clock.at(710),
        },
        {
            **graph,
            "event": "node_start",
            "level": "info",
            "node": "writer",
            "step": 2,
            "status": "running",
            "timestamp": clock.at(720),
        },
        {
            **graph,
            "event": "node_failed",
            "level": "error",
            "node": "writer",
            "step": 2,
            "status": "error",
            "duration_ms": 1150.0,
            "error": rate_limit,
            "timestamp": clock.at(1870),
        },
        {
            **graph,
            "event": "graph_failed",
            "level": "error",
            "status": "error",
            "duration_ms": 1815.0,
            "timestamp": clock.at(1875),
        },
        {
            "service": "api",
            "event": "http_request",
            "level": "error",
            "request_id": request_id,
            "message": "POST /api/reports → 502",
            "http": {
                "method": "POST",
                "route": "/api/reports",
                "status": 502,
                "duration_ms": 1890.0,
            },
            "timestamp": clock.at(1930),
        },
        {
            "service": "web",
            "event": "network_error",
            "level": "error",
            "message": "POST /api/reports failed with 502",
            "http": {
                "method": "POST",
                "host": "app.example.com",
                "route": "/api/reports",
                "status": 502,
                "duration_ms": 1960.0,
            },
            "timestamp": clock.at(1965),
        },
    ]
    for event in trace:
        for key, value in common.items():
            event.setdefault(key, value)

    later = Clock(now - 60)
    other_errors = [
        {
            "service": "api",
            "event": "unhandled_exception",
            "level": "error",
            "message": "fetching the company profile timed out",
            "error": _error("TimeoutError", "timed out after 30 s"),
            "trace_id": secrets.token_hex(16),
            "timestamp": later.at(0),
        },
        {
            "service": "api",
            "event": "unhandled_exception",
            "level": "error",
            "error": _error("TimeoutError", "timed out after 30 s"),
            "trace_id": secrets.token_hex(16),
            "timestamp": later.at(5000),
        },
        {
            "service": "scheduler",
            "event": "job_failed",
            "level": "critical",
            "error": _error("sqlite3.OperationalError", "database is locked"),
            "timestamp": later.at(9000),
        },
        {
            "service": "api",
            "event": "request_invalid",
            "level": "error",
            "error": _error("pydantic.ValidationError", "1 validation error for Profile: email"),
            "session_id": session_id,
            "timestamp": later.at(12000),
        },
        {
            "service": "web",
            "event": "window_error",
            "level": "error",
            "error": _error(
                "TypeError",
                "Cannot read properties of undefined (reading 'map')",
                [
                    "TypeError: Cannot read properties of undefined (reading 'map')",
                    "    at renderRows (https://app.example.com/assets/table.js:31:17)",
                ],
            ),
            "session_id": session_id,
            "component": "ReportTable",
            "timestamp": later.at(14000),
        },
    ]

    run = Clock(now - 45)
    pipeline = {"service": "worker", "job_id": job_id, "pipeline": "company_research"}
    layers = [
        {
            **pipeline,
            "event": "pipeline_start",
            "level": "info",
            "status": "running",
            "timestamp": run.at(0),
        },
        {
            **pipeline,
            "event": "layer_start",
            "level": "info",
            "layer": 1,
            "layer_name": "fetch_company",
            "timestamp": run.at(10),
        },
        {
            **pipeline,
            "event": "layer_complete",
            "level": "info",
            "layer": 1,
            "layer_name": "fetch_company",
            "status": "success",
            "duration_ms": 820.0,
            "timestamp": run.at(830),
        },
        {
            **pipeline,
            "event": "layer_start",
            "level": "info",
            "layer": 2,
            "layer_name": "opportunity_mapper",
            "timestamp": run.at(840),
        },
        {
            **pipeline,
            "event": "layer_complete",
            "level": "info",
            "layer": 2,
            "layer_name": "opportunity_mapper",
            "status": "success",
            "duration_ms": 2400.0,
            "fit_score": 85,
            "timestamp": run.at(3240),
        },
        {
            **pipeline,
            "event": "layer_start",
            "level": "info",
            "layer": 3,
            "layer_name": "people_mapper",
            "timestamp": run.at(3250),
        },
        {
            **pipeline,
            "event": "layer_error",
            "level": "error",
            "layer": 3,
            "layer_name": "people_mapper",
            "status": "error",
            "duration_ms": 510.0,
            "error": _error("httpx.ConnectError", "[Errno 111] Connection refused"),
            "timestamp": run.at(3760),
        },
        {
            **pipeline,
            "event": "layer_skip",
            "level": "info",
            "layer": 4,
            "layer_name": "outreach_writer",
            "status": "skipped",
            "reason": "disabled",
            "timestamp": run.at(3770),
        },
        {
            **pipeline,
            "event": "pipeline_complete",
            "level": "warn",
            "status": "partial",
            "duration_ms": 3780.0,
            "timestamp": run.at(3780),
        },
    ]

    traffic_clock = Clock(now - 600)
    traffic = [
        {
            "service": "api",
            "event": "http_request",
            "level": "info",
            "http": {
                "method": "GET",
                "route": "/api/reports/{id}",
                "status": 200,
                "duration_ms": 18.0 + (i % 7) * 9,
            },
            "request_id": f"req-{i:04d}",
            "timestamp": traffic_clock.at(i * 9000),
        }
        for i in range(60)
    ]

    xss_session = f"sess-<b>{secrets.token_hex(3)}</b>"
    xss = [
        {
            "service": "web",
            "event": "window_error",
            "level": "error",
            "message": XSS_IMG,
            "session_id": xss_session,
            "error": _error("Error", XSS_SCRIPT),
            "timestamp": later.at(20000),
        },
        {
            "service": "web",
            "event": "log",
            "level": "warn",
            "message": XSS_SCRIPT,
            "session_id": xss_session,
            "timestamp": later.at(20500),
        },
    ]

    events = [*traffic, *trace, *other_errors, *layers, *xss]
    for event in events:
        event.setdefault("event_id", new_event_id())
    seeded = Seeded(
        trace_id=trace_id,
        session_id=session_id,
        request_id=request_id,
        graph_run=graph_run,
        job_id=job_id,
        trace_events=len(trace),
        session_events=len(trace) + 2,
        xss_session=xss_session,
        categories={
            e["error"]["category"] for e in [*trace, *other_errors, *layers] if "error" in e
        },
    )
    return events, seeded


def post(server: RunningServer, events: list[dict[str, Any]]) -> None:
    """Ingest events (loopback ingestion is open) and insist that every one was stored."""
    response = httpx.post(f"{server.url}/v1/logs", json={"events": events}, timeout=10)
    assert 200 == response.status_code, response.text
    body = response.json()
    assert ([], len(events)) == (body["rejected"], body["accepted"] + body["duplicates"])


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """One real server for the module, with generated read token (the printed-URL case)."""
    with running_server(tmp_path_factory.mktemp("dashboard")) as running:
        yield running


@pytest.fixture(scope="module")
def seeded(server: RunningServer) -> Seeded:
    """The realistic mix, stored once."""
    events, ids = realistic_events(time.time())
    post(server, events)
    return ids


@dataclass
class Dashboard:
    """A signed-in dashboard page and everything it did that a test must not see."""

    tab: Tab
    server: RunningServer
    foreign_requests: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)

    @property
    def page(self) -> Page:
        return self.tab.page

    def open(self, route: str) -> Page:
        """Navigate to a `#/…` route and wait for its view to be mounted."""
        self.page.goto(f"{self.server.url}/{route}")
        expect(self.page.locator("main section.view")).to_be_attached(timeout=WAIT_MS)
        return self.page

    def assert_clean(self) -> None:
        """No console error or warning, no uncaught exception, no dialog, no other origin."""
        assert [] == self.tab.console_errors(ignore=lambda _: False)
        assert [] == self.tab.page_errors
        assert [] == self.dialogs
        assert [] == self.foreign_requests
        assert self.page.evaluate("window.__xss") is None


@pytest.fixture
def dashboard(tab: Tab, server: RunningServer, seeded: Seeded) -> Dashboard:
    """A 1280×800 page signed in the way a person does: the URL `serve` printed."""
    dash = Dashboard(tab, server)
    page = tab.page
    page.set_viewport_size(VIEWPORT)

    def on_request(request: Request) -> None:
        if not request.url.startswith(server.url + "/"):
            dash.foreign_requests.append(request.url)

    def on_dialog(dialog: Dialog) -> None:
        dash.dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("request", on_request)
    page.on("dialog", on_dialog)
    page.goto(f"{server.url}/?token={server.read_token}")
    expect(page).to_have_url(re.compile(r"/#/tail$"), timeout=WAIT_MS)
    return dash


def console_text(messages: list[ConsoleMessage]) -> list[str]:
    return [m.text for m in messages]


# --------------------------------------------------------------------------- tests


def test_printed_url_signs_in_and_drops_the_token_from_the_address(
    dashboard: Dashboard,
) -> None:
    """`/?token=` lands on the tail with the token only in an HttpOnly SameSite=Strict cookie."""
    page = dashboard.page
    assert dashboard.server.read_token not in page.url
    expect(page.get_by_role("heading", name="Live tail")).to_be_visible()
    cookies = dashboard.tab.context.cookies(dashboard.server.url)
    assert [("logbeacon_token", True, "Strict")] == [
        (c["name"], c["httpOnly"], c["sameSite"]) for c in cookies
    ]
    assert "" == page.evaluate("document.cookie")  # unreadable from scripts
    dashboard.assert_clean()


def test_without_cookie_the_sign_in_form_opens_the_dashboard(
    tab: Tab, server: RunningServer
) -> None:
    """A fresh browser gets the sign-in form; posting the token opens the app shell."""
    page = tab.page
    page.goto(f"{server.url}/#/errors")
    expect(page.get_by_label("Read token")).to_be_focused()
    page.get_by_label("Read token").fill("wrong-token-0123456789abcdef0123")
    page.get_by_role("button", name="Open the dashboard").click()
    expect(page.get_by_role("alert")).to_contain_text("not a read token")
    page.get_by_label("Read token").fill(server.read_token)
    page.get_by_role("button", name="Open the dashboard").click()
    expect(page.get_by_role("heading", name="Live tail")).to_be_visible(timeout=WAIT_MS)
    assert [] == tab.page_errors
    # The failed attempt's 401 is the only console message Chromium writes.
    assert all("401" in m.text for m in tab.console if m.type == "error"), console_text(tab.console)


def test_tail_shows_new_events_live_and_buffers_while_paused(
    dashboard: Dashboard, seeded: Seeded
) -> None:
    """A posted event appears at the top at once; paused, it waits in the buffer until resume."""
    page = dashboard.page
    status = page.locator(".tail-status")
    expect(status).to_have_text("live", timeout=WAIT_MS)
    expect(page.locator(".tail-list > li").first).to_be_visible()

    marker = f"checkout finished {secrets.token_hex(4)}"
    post(
        dashboard.server,
        [{"service": "api", "event": "checkout", "level": "warn", "message": marker}],
    )
    first = page.locator(".tail-list > li").first
    expect(first).to_contain_text(marker, timeout=WAIT_MS)
    expect(first).to_have_class(re.compile(r"\blevel-row-warn\b"))

    first.locator(".event-summary").click()
    expect(first.locator(".event-json")).to_be_visible()
    expect(first.locator(".event-json")).to_contain_text(f'"message": "{marker}"')

    page.keyboard.press("Escape")
    page.locator("body").press("p")  # the pause shortcut
    expect(status).to_have_text(re.compile(r"^paused · 0 new buffered"))
    held = f"held while paused {secrets.token_hex(4)}"
    post(
        dashboard.server,
        [{"service": "api", "event": "checkout", "level": "info", "message": held}],
    )
    expect(status).to_have_text(re.compile(r"^paused · 1 new buffered"), timeout=WAIT_MS)
    expect(page.locator(".tail-list")).not_to_contain_text(held)
    page.get_by_role("button", name="Resume").click()
    expect(page.locator(".tail-list > li").first).to_contain_text(held)
    expect(status).to_have_text("live")
    dashboard.assert_clean()


def test_tail_filters_apply_to_history_and_stream(dashboard: Dashboard, seeded: Seeded) -> None:
    """Level and service filters narrow what the tail shows, live events included."""
    page = dashboard.page
    page.get_by_label("Level").select_option("error")
    page.get_by_label("Service").fill("langgraph")
    page.get_by_role("button", name="Apply").click()
    expect(page).to_have_url(re.compile(r"#/tail\?level=error&service=langgraph$"))
    expect(page.locator(".tail-status")).to_have_text("live", timeout=WAIT_MS)
    rows = page.locator(".tail-list > li")
    expect(rows.first).to_be_visible(timeout=WAIT_MS)  # the history arrives in one piece
    before = rows.count()
    assert before >= 2  # the seeded node_failed and graph_failed at least
    assert {"langgraph"} == set(rows.locator(".service").all_inner_texts())
    post(
        dashboard.server,
        [
            {"service": "api", "event": "noise", "level": "error"},
            {"service": "langgraph", "event": "node_failed", "level": "info"},
            {
                "service": "langgraph",
                "event": "node_failed",
                "level": "critical",
                "message": "boom",
            },
        ],
    )
    expect(rows.first).to_contain_text("boom", timeout=WAIT_MS)
    expect(rows).to_have_count(before + 1)
    dashboard.assert_clean()


def test_xss_payloads_are_shown_as_text_and_never_run(dashboard: Dashboard, seeded: Seeded) -> None:
    """INJ-09: `<img onerror>` and `<script>` in messages, errors and ids render as text."""
    page = dashboard.page
    tail = page.locator(".tail-list")
    expect(tail).to_contain_text(XSS_IMG, timeout=WAIT_MS)
    expect(tail).to_contain_text(XSS_SCRIPT)
    live = f"{XSS_IMG} live {secrets.token_hex(3)}"
    post(dashboard.server, [{"service": "web", "event": "log", "level": "error", "message": live}])
    expect(tail.locator("li").first).to_contain_text(live, timeout=WAIT_MS)
    tail.locator("li").first.locator(".event-summary").click()

    dashboard.open("#/errors")
    expect(page.locator(".error-groups")).to_contain_text(XSS_SCRIPT, timeout=WAIT_MS)

    page.locator("body").press("/")
    page.keyboard.type(seeded.xss_session)
    page.keyboard.press("Enter")
    result = page.locator(".search-result[data-field='session_id']")
    expect(result).to_contain_text(seeded.xss_session, timeout=WAIT_MS)
    result.get_by_role("link", name="Open the session timeline").click()
    expect(page.locator(".waterfall > li")).to_have_count(2, timeout=WAIT_MS)
    expect(page.locator("h1")).to_contain_text(seeded.xss_session)

    assert 0 == page.locator("main img, main script, main b").count()
    dashboard.assert_clean()


def test_errors_view_lists_groups_with_categories(dashboard: Dashboard, seeded: Seeded) -> None:
    """Each error group shows its count, category, services, suggestions and sample trace."""
    page = dashboard.page
    dashboard.open("#/errors")
    groups = page.locator(".error-group")
    expect(groups.first).to_be_visible(timeout=WAIT_MS)
    categories = set(page.locator(".error-group .category").all_inner_texts())
    assert {"rate_limit", "timeout", "database", "validation", "network"} <= categories
    assert seeded.categories <= categories

    timeout = groups.filter(has_text="TimeoutError")
    expect(timeout.locator(".error-count")).to_have_text("2")
    expect(timeout.locator(".suggestions li").first).to_be_visible()
    expect(timeout.locator(".service-chip")).to_have_text(["api"])

    rate = groups.filter(has_text="RateLimitError")
    rate.get_by_role("link", name=re.compile(r"^trace ")).first.click()
    expect(page).to_have_url(re.compile(f"#/trace/{seeded.trace_id}$"))
    expect(page.locator(".waterfall > li")).to_have_count(seeded.trace_events, timeout=WAIT_MS)
    dashboard.assert_clean()


def test_trace_view_is_one_waterfall_across_services(dashboard: Dashboard, seeded: Seeded) -> None:
    """One row per event of the trace, lanes for web/api/langgraph, bars, errors marked."""
    page = dashboard.page
    dashboard.open(f"#/trace/{seeded.trace_id}")
    rows = page.locator(".waterfall > li")
    expect(rows).to_have_count(seeded.trace_events, timeout=WAIT_MS)
    services = [row.get_attribute("data-service") for row in rows.all()]
    assert set(seeded.services) == set(services)
    expect(page.locator(".lane-legend li")).to_have_count(3)
    errors = page.locator(".waterfall > li.wf-error")
    expect(errors).to_have_count(4)  # node_failed, graph_failed, http 502, network_error
    assert {"node_failed", "graph_failed", "http_request", "network_error"} == set(
        errors.locator(".event-name").all_inner_texts()
    )
    # Events with a duration are bars; the longest (the browser's fetch) spans most of it.
    bars = page.locator(".wf-bar")
    expect(bars).to_have_count(7)
    widths = [float(b.evaluate("e => e.getBoundingClientRect().width")) for b in bars.all()]
    track = float(page.locator(".wf-row .wf-track").first.evaluate("e => e.clientWidth"))
    assert max(widths) > 0.9 * track
    # Ordered by start: the page view first, the browser's network error spans from near 0.
    expect(rows.first).to_contain_text("page_view")
    expect(page.locator(".facts")).to_contain_text("4 errors")
    dashboard.assert_clean()


def test_search_by_session_id_and_by_trace_id(dashboard: Dashboard, seeded: Seeded) -> None:
    """`/` focuses the search; a session id lists its events, a trace id opens the trace."""
    page = dashboard.page
    page.locator("body").press("/")
    search = page.get_by_label("Search by any id")
    expect(search).to_be_focused()
    search.fill(seeded.session_id)
    search.press("Enter")
    result = page.locator(".search-result[data-field='session_id']")
    expect(result.locator(".event-list > li")).to_have_count(seeded.session_events, timeout=WAIT_MS)
    result.get_by_role("link", name="Open the session timeline").click()
    expect(page.locator(".waterfall > li")).to_have_count(seeded.session_events, timeout=WAIT_MS)

    page.locator("body").press("/")
    search.fill(seeded.request_id)
    search.press("Enter")
    request = page.locator(".search-result[data-field='request_id']")
    expect(request.locator(".event-list > li")).to_have_count(2, timeout=WAIT_MS)

    page.locator("body").press("/")
    search.fill(seeded.trace_id.upper())
    search.press("Enter")
    expect(page).to_have_url(re.compile(f"#/trace/{seeded.trace_id}$"), timeout=WAIT_MS)
    expect(page.locator(".waterfall > li")).to_have_count(seeded.trace_events, timeout=WAIT_MS)
    dashboard.assert_clean()


def test_runs_list_and_pipeline_steps(dashboard: Dashboard, seeded: Seeded) -> None:
    """The runs list links to a run whose layer buttons show success, error and skipped."""
    page = dashboard.page
    dashboard.open("#/runs")
    row = page.locator(f"tr[data-run-id='{seeded.job_id}']")
    expect(row).to_contain_text("partial", timeout=WAIT_MS)
    expect(page.locator(f"tr[data-run-id='{seeded.graph_run}']")).to_contain_text("error")
    row.get_by_role("link").click()
    buttons = page.locator(".steps .step")
    expect(buttons).to_have_count(4, timeout=WAIT_MS)
    assert ["success", "success", "error", "skipped"] == [
        b.get_attribute("data-status") for b in buttons.all()
    ]
    buttons.nth(2).click()
    detail = page.locator(".step-detail")
    expect(detail).to_contain_text("ConnectError", timeout=WAIT_MS)
    expect(detail.locator(".event-list > li")).to_have_count(2, timeout=WAIT_MS)
    dashboard.assert_clean()


def test_run_buttons_change_state_live(dashboard: Dashboard, seeded: Seeded) -> None:
    """Open on a running graph: buttons go pending → running → success / error as events land."""
    page = dashboard.page
    server = dashboard.server
    # A finished earlier run of the same graph tells the page which steps to expect.
    previous = str(uuid.uuid4())
    base = {"service": "langgraph", "graph": "triage_agent"}
    post(
        server,
        [
            {**base, "run_id": previous, "event": "graph_start", "level": "info"},
            *[
                {
                    **base,
                    "run_id": previous,
                    "event": "node_complete",
                    "level": "info",
                    "node": node,
                    "step": i + 1,
                    "status": "success",
                    "duration_ms": 5.0,
                }
                for i, node in enumerate(["classify", "answer", "review"])
            ],
            {
                **base,
                "run_id": previous,
                "event": "graph_complete",
                "level": "info",
                "status": "success",
            },
        ],
    )
    run_id = str(uuid.uuid4())
    live = {**base, "run_id": run_id}
    post(server, [{**live, "event": "graph_start", "level": "info", "status": "running"}])
    dashboard.open(f"#/runs/{run_id}")
    expect(page.locator(".live-state")).to_have_text("● live", timeout=WAIT_MS)
    steps = page.locator(".steps .step")

    def state(name: str) -> tuple[str | None, str]:
        button = steps.filter(has_text=name)
        return button.get_attribute("data-status"), button.locator(
            ".step-status"
        ).text_content() or ""

    expect(steps).to_have_count(3, timeout=WAIT_MS)
    expect(page.locator(".step-pending")).to_have_count(3)

    post(server, [{**live, "event": "node_start", "level": "info", "node": "classify", "step": 1}])
    expect(steps.filter(has_text="classify")).to_have_class(
        re.compile(r"\bstep-running\b"), timeout=WAIT_MS
    )
    assert ("running", "running") == state("classify")

    post(
        server,
        [
            {
                **live,
                "event": "node_complete",
                "level": "info",
                "node": "classify",
                "step": 1,
                "status": "success",
                "duration_ms": 12.0,
            }
        ],
    )
    expect(steps.filter(has_text="classify")).to_have_class(
        re.compile(r"\bstep-success\b"), timeout=WAIT_MS
    )
    expect(steps.filter(has_text="classify")).to_contain_text("12 ms")

    post(server, [{**live, "event": "node_start", "level": "info", "node": "answer", "step": 2}])
    expect(steps.filter(has_text="answer")).to_have_class(
        re.compile(r"\bstep-running\b"), timeout=WAIT_MS
    )
    post(
        server,
        [
            {
                **live,
                "event": "node_failed",
                "level": "error",
                "node": "answer",
                "step": 2,
                "status": "error",
                "duration_ms": 30.0,
                "error": _error("ValueError", "the model returned an empty answer"),
            }
        ],
    )
    expect(steps.filter(has_text="answer")).to_have_class(
        re.compile(r"\bstep-error\b"), timeout=WAIT_MS
    )
    assert ("error", "error") == state("answer")
    expect(page.locator(".step-pending")).to_have_count(1)  # review never started yet

    post(server, [{**live, "event": "graph_failed", "level": "error", "status": "error"}])
    expect(page.locator(".run-status")).to_have_text("error", timeout=WAIT_MS)
    expect(page.locator(".step-pending")).to_have_count(0)  # a finished run expects nothing
    expect(steps).to_have_count(2)
    dashboard.assert_clean()


def test_analysis_draws_an_svg_error_rate_chart(dashboard: Dashboard, seeded: Seeded) -> None:
    """The analysis view draws the error-rate chart itself and lists the slowest steps."""
    page = dashboard.page
    dashboard.open("#/analysis?since=1h")
    chart = page.locator("svg.chart")
    expect(chart).to_be_visible(timeout=WAIT_MS)
    expect(chart.locator("rect.bar-error").first).to_be_attached()
    assert chart.locator("g.bucket").count() >= 10
    expect(chart.locator("path.rate-line")).to_have_count(1)
    assert "errors in" in (chart.get_attribute("aria-label") or "")
    slowest = page.get_by_role("table", name="Slowest nodes and layers")
    expect(slowest).to_contain_text("opportunity_mapper")
    expect(slowest).to_contain_text("writer")
    dashboard.assert_clean()


def test_keyboard_reaches_every_view(dashboard: Dashboard, seeded: Seeded) -> None:
    """Number keys switch views, Tab reaches the controls, and focus is visible."""
    page = dashboard.page
    for key, heading in [("2", "Errors"), ("3", "Runs"), ("4", "Analysis"), ("1", "Live tail")]:
        page.locator("body").press(key)
        expect(page.get_by_role("heading", name=heading, exact=True)).to_be_visible(timeout=WAIT_MS)
    page.keyboard.press("Tab")  # focus is on <main> after a view change: into the view
    assert page.evaluate("document.querySelector('main').contains(document.activeElement)")
    assert "SELECT" == page.evaluate("document.activeElement.tagName")  # the level filter
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert "solid" == outline
    dashboard.assert_clean()


def test_dashboard_screenshot(dashboard: Dashboard, seeded: Seeded) -> None:
    """The README screenshot renders at 1280×800 (written with LOGBEACON_UPDATE_SCREENSHOT=1)."""
    page = dashboard.page
    dashboard.open(f"#/trace/{seeded.trace_id}")
    expect(page.locator(".waterfall > li")).to_have_count(seeded.trace_events, timeout=WAIT_MS)
    failed = page.locator(".waterfall > li.wf-error").filter(has_text="node_failed")
    failed.locator(".wf-label").click()  # the failing node's JSON, error analysis included
    expect(failed.locator(".event-json")).to_contain_text('"category": "rate_limit"')
    page.mouse.move(0, 0)  # no hover or focus styles in the picture
    page.evaluate("document.activeElement.blur()")
    png = page.screenshot(full_page=False)
    assert b"\x89PNG\r\n\x1a\n" == png[:8]
    assert (1280, 800) == struct.unpack(">II", png[16:24])
    if UPDATE_SCREENSHOT:
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        SCREENSHOT.write_bytes(png)
    dashboard.assert_clean()


def test_a_new_error_group_appears_within_two_seconds(dashboard: Dashboard, seeded: Seeded) -> None:
    """With the errors view open, an error of a kind never seen before shows up as its own
    group within 2 s of its ingestion, without a click."""
    page = dashboard.page
    with page.expect_response(lambda r: "/v1/stream" in r.url, timeout=WAIT_MS):
        dashboard.open("#/errors")
    expect(page.locator(".error-group").first).to_be_visible(timeout=WAIT_MS)
    kind = f"QuotaExceeded{secrets.token_hex(3)}"
    post(
        dashboard.server,
        [
            {
                "service": "billing",
                "event": "charge_failed",
                "level": "error",
                "error": _error(kind, "monthly quota of 1000 charges exceeded"),
            }
        ],
    )
    expect(page.locator(".error-group").filter(has_text=kind)).to_be_visible(timeout=2_000)
    dashboard.assert_clean()


def test_run_view_follows_a_real_langgraph_run_from_running_to_error(
    dashboard: Dashboard, seeded: Seeded
) -> None:
    """While a real LangGraph graph executes (events shipped by the SDK), the failing node's
    button turns from running to error live, and the run from running to error."""
    import io
    import threading
    from typing import TypedDict

    from langgraph.graph import END, START, StateGraph

    import logbeacon
    from logbeacon.integrations.langgraph import LangGraphCallbackHandler
    from logbeacon.sdk import reset

    class State(TypedDict):
        text: str

    release = threading.Event()

    def classify(state: State) -> dict[str, Any]:
        return {"text": state["text"] + " [billing]"}

    def answer(state: State) -> dict[str, Any]:
        release.wait(WAIT_MS / 1000 * 3)  # "working" until the test has seen it running
        raise RuntimeError("the model returned an empty answer")

    builder = StateGraph(State)
    builder.add_node("classify", classify)
    builder.add_node("answer", answer)
    builder.add_edge(START, "classify")
    builder.add_edge("classify", "answer")
    builder.add_edge("answer", END)
    graph = builder.compile(name="support_agent")
    run_id = uuid.uuid4()
    failures: list[BaseException] = []

    def invoke() -> None:
        config: Any = {"callbacks": [LangGraphCallbackHandler()], "run_id": run_id}
        try:
            graph.invoke({"text": "my invoice is wrong"}, config=config)
        except RuntimeError as exc:
            failures.append(exc)

    page = dashboard.page
    logbeacon.configure(
        service="support", ship_to=dashboard.server.url, stream=io.StringIO(), format="json"
    )
    runner = threading.Thread(target=invoke)
    try:
        runner.start()
        # Open the run once the server knows it (as when following a link to it); before
        # that its page would answer 404, which Chromium logs as a console error.
        url = f"{dashboard.server.url}/v1/runs/{run_id}"
        deadline = time.monotonic() + WAIT_MS / 1000
        while time.monotonic() < deadline:
            if httpx.get(url, headers=dashboard.server.read_headers).status_code == 200:
                break
            time.sleep(0.1)
        dashboard.open(f"#/runs/{run_id}")
        steps = page.locator(".steps .step")
        answer_button = steps.filter(has_text="answer")
        expect(answer_button).to_have_class(re.compile(r"\bstep-running\b"), timeout=WAIT_MS)
        expect(steps.filter(has_text="classify")).to_have_class(re.compile(r"\bstep-success\b"))
        expect(page.locator(".run-status")).to_have_text("running")
        release.set()
        expect(answer_button).to_have_class(re.compile(r"\bstep-error\b"), timeout=WAIT_MS)
        expect(page.locator(".run-status")).to_have_text("error", timeout=WAIT_MS)
    finally:
        release.set()
        runner.join(30)
        assert logbeacon.flush(5.0)
        reset()
    assert ["the model returned an empty answer"] == [str(f) for f in failures]
    dashboard.assert_clean()


SCREENSHOTS = Path(__file__).resolve().parents[2] / "build" / "screenshots"


def test_every_view_renders_real_content_without_console_errors(
    dashboard: Dashboard, seeded: Seeded
) -> None:
    """Each view (tail, errors, trace, session, search, runs, run, analysis) renders the seeded
    data with no console error, and is saved as a 1280×800 screenshot in build/screenshots/."""
    page = dashboard.page
    views = [
        ("tail", "#/tail", ".tail-list > li"),
        ("errors", "#/errors", ".error-group"),
        ("trace", f"#/trace/{seeded.trace_id}", ".waterfall > li"),
        ("session", f"#/session/{seeded.session_id}", ".waterfall > li"),
        ("runs", "#/runs", f"tr[data-run-id='{seeded.job_id}']"),
        ("run", f"#/runs/{seeded.job_id}", ".steps .step"),
        ("run-graph", f"#/runs/{seeded.graph_run}", ".steps .step"),
        ("analysis", "#/analysis?since=1h", "svg.chart"),
    ]
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    written = []
    for name, route, content in views:
        dashboard.open(route)
        expect(page.locator(content).first).to_be_visible(timeout=WAIT_MS)
        page.wait_for_timeout(300)  # let late parts (chart, counts) settle for the picture
        page.mouse.move(0, 0)
        png = page.screenshot(full_page=False)
        assert (1280, 800) == struct.unpack(">II", png[16:24])
        (SCREENSHOTS / f"{name}.png").write_bytes(png)
        written.append(name)
        dashboard.assert_clean()
    page.locator("body").press("/")
    page.get_by_label("Search by any id").fill(seeded.session_id)
    page.get_by_label("Search by any id").press("Enter")
    result = page.locator(".search-result[data-field='session_id'] .event-list > li")
    expect(result).to_have_count(seeded.session_events, timeout=WAIT_MS)
    (SCREENSHOTS / "search.png").write_bytes(page.screenshot(full_page=False))
    dashboard.assert_clean()
    assert [v[0] for v in views] == written
