"""The browser client in real Chromium against a real `logbeacon serve`: pages on another origin
load `<server>/v1/client.js`, and every assertion reads what the server stored through its
query API (`GET /v1/logs?session_id=…`)."""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import ConsoleMessage

from tests.browser.conftest import StaticSite, Tab
from tests.helpers.server import RunningServer, free_port, running_server
from tests.server.test_assets import client_source, collapse_js

pytestmark = [pytest.mark.browser, pytest.mark.e2e, pytest.mark.timeout(60)]

KEY = "pk_test_browser_0123456789"
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "static" / "index.html"
UUID4 = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")
DONE = "test_done"

Event = dict[str, Any]

# Records every sendBeacon call (URL, Blob type and size, result) in localStorage, which
# outlives the page, so a test can read it after navigating away.
RECORD_BEACONS = """
const realBeacon = navigator.sendBeacon.bind(navigator);
navigator.sendBeacon = (url, data) => {
  const ok = realBeacon(url, data);
  const calls = JSON.parse(localStorage.getItem("beacons") || "[]");
  calls.push({url: url, type: data.type, size: data.size, ok: ok});
  localStorage.setItem("beacons", JSON.stringify(calls));
  return ok;
};
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, site: StaticSite) -> Iterator[RunningServer]:
    """One server for the module: browser key on, only `site`'s origin allowed."""
    env = {"LOGBEACON_BROWSER_KEY": KEY, "LOGBEACON_ALLOWED_ORIGINS": site.origin}
    with running_server(tmp_path_factory.mktemp("browser"), env=env) as running:
        yield running


def stored(server: RunningServer, session: str) -> list[Event]:
    """Every event of `session` the server stored, oldest first."""
    response = httpx.get(
        f"{server.url}/v1/logs",
        params={"session_id": session, "limit": 1000},
        headers=server.read_headers,
        timeout=5.0,
    )
    assert 200 == response.status_code, response.text
    return list(reversed(response.json()["events"]))


def wait_for(
    server: RunningServer,
    session: str,
    done: Callable[[list[Event]], bool],
    timeout: float = 10.0,
) -> list[Event]:
    """Poll the query API until `done(events)` holds; fail with what arrived otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        events = stored(server, session)
        if done(events):
            return events
        if time.monotonic() > deadline:
            pytest.fail(f"timed out; the server has for {session}: {json.dumps(events)[:2000]}")
        time.sleep(0.1)


def finish(tab: Tab, server: RunningServer, session: str, *, refill: bool = False) -> list[Event]:
    """Log a last event, flush, and return everything stored before it once it has arrived.

    Everything queued goes out in the same beacon as the last event, so nothing that was
    sent can still be in flight. `refill` waits for the rate limiter to grant a token first.
    """
    if refill:
        tab.page.wait_for_timeout(600)
    tab.page.evaluate(
        f"() => {{ LogBeacon.log('warn', '{DONE}', {{message: 'done'}}); LogBeacon.flush(); }}"
    )
    events = wait_for(server, session, lambda events: any(e["event"] == DONE for e in events))
    return [e for e in events if e["event"] != DONE]


def page_html(
    server: RunningServer,
    session: str,
    *,
    before: str = "",
    after: str = "",
    script: str | None = None,
    **options: Any,
) -> str:
    """A page that loads the client from the server and calls `LogBeacon.init`."""
    settings = {
        "endpoint": server.url,
        "key": KEY,
        "sessionId": session,
        "release": "1.2.3",
        "environment": "test",
        "flushInterval": 60_000,
        **options,
    }
    settings = {k: v for k, v in settings.items() if v is not None}
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>client test</title>
<script>{before}</script>
<script src="{script or server.url + "/v1/client.js"}"></script>
<script>LogBeacon.init({json.dumps(settings)});</script>
</head><body><p>client test</p><script>{after}</script></body></html>"""


def open_page(
    tab: Tab, site: StaticSite, server: RunningServer, *, query: str = "", **kwargs: Any
) -> str:
    """Serve a fresh page on `site` and open it; returns its session id (unique per test)."""
    session = f"s-{uuid.uuid4().hex[:16]}"
    url = site.add(f"/{session}/page.html", page_html(server, session, **kwargs))
    tab.page.goto(url + query)
    return session


def network_noise(message: ConsoleMessage) -> bool:
    """Chromium's own line for a failed request (not something page or client code printed)."""
    return message.text.startswith("Failed to load resource")


def test_thrown_error_arrives_as_window_error_with_stack(
    tab: Tab, site: StaticSite, server: RunningServer
) -> None:
    """An uncaught error becomes a window_error with type, message, a short stack, service=web."""
    session = open_page(
        tab,
        site,
        server,
        query="?token=s3cret-query#frag",
        after="function explode() { throw new RangeError('boom at checkout'); }",
    )
    raw_stack = tab.page.evaluate("() => { try { explode(); } catch (e) { return e.stack; } }")
    assert "s3cret" in raw_stack  # what the client has to strip
    tab.page.evaluate("() => new Promise(r => { setTimeout(explode); setTimeout(r, 10); })")
    events = finish(tab, server, session)
    assert ["window_error"] == [e["event"] for e in events]
    event = events[0]
    assert ("error", "web", "window", "boom at checkout") == (
        event["level"],
        event["service"],
        event["component"],
        event["message"],
    )
    assert ("1.2.3", "test", session) == (
        event["release"],
        event["environment"],
        event["session_id"],
    )
    assert f"/{session}/page.html" == event["route"]
    assert ("RangeError", "boom at checkout") == (event["error"]["type"], event["error"]["message"])
    stack = event["error"]["stack"]
    assert 2 <= len(stack) <= 20
    assert "RangeError: boom at checkout" == stack[0]
    assert "explode" in stack[1]
    assert f"/{session}/page.html:" in stack[1]
    assert UUID4.fullmatch(event["event_id"])
    assert "Chrome/" in event["user_agent"]
    assert len(event["user_agent"]) <= 160
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z", event["timestamp"])
    assert "s3cret" not in json.dumps(event)
    assert 1 == len(tab.page_errors)


def test_unhandled_rejections_arrive(tab: Tab, site: StaticSite, server: RunningServer) -> None:
    """Unhandled rejections (an Error, or a plain object) become unhandled_rejection events."""
    session = open_page(tab, site, server)
    tab.page.evaluate(
        """() => {
        Promise.reject(new TypeError("nobody caught this"));
        Promise.reject({code: 42});
    }"""
    )
    tab.page.wait_for_timeout(100)
    events = finish(tab, server, session)
    assert ["unhandled_rejection", "unhandled_rejection"] == [e["event"] for e in events]
    typed, plain = events
    assert ("error", "TypeError", "nobody caught this") == (
        typed["level"],
        typed["error"]["type"],
        typed["error"]["message"],
    )
    assert "TypeError: nobody caught this" == typed["error"]["stack"][0]
    assert ("UnhandledRejection", '{"code":42}', []) == (
        plain["error"]["type"],
        plain["error"]["message"],
        plain["error"]["stack"],
    )


def test_failed_fetches_arrive_as_network_errors(
    tab: Tab, site: StaticSite, server: RunningServer
) -> None:
    """A 500, a 404, a refused connection and a timeout are network_error events; a 200 is not."""
    closed = free_port()
    session = open_page(tab, site, server)
    outcomes = tab.page.evaluate(
        f"""async () => {{
        const results = [];
        const attempt = async (url, init) => {{
            try {{ results.push((await fetch(url, init)).status); }}
            catch (e) {{ results.push(e.name); }}
        }};
        await attempt("/status/500?token=s3cret");
        await attempt("/status/404");
        await attempt("/status/200");
        await attempt("http://127.0.0.1:{closed}/api/orders?token=s3cret", {{method: "post"}});
        await attempt("/slow?token=s3cret", {{signal: AbortSignal.timeout(200)}});
        return results;
    }}"""
    )
    assert [500, 404, 200, "TypeError", "TimeoutError"] == outcomes
    events = finish(tab, server, session)
    assert ["network_error"] * 4 == [e["event"] for e in events]
    site_host = f"127.0.0.1:{site.port}"
    assert [
        ("error", {"method": "GET", "host": site_host, "path": "/status/500", "status": 500}),
        ("warn", {"method": "GET", "host": site_host, "path": "/status/404", "status": 404}),
        ("error", {"method": "POST", "host": f"127.0.0.1:{closed}", "path": "/api/orders"}),
        ("error", {"method": "GET", "host": site_host, "path": "/slow"}),
    ] == [(e["level"], {k: v for k, v in e["http"].items() if k != "duration_ms"}) for e in events]
    assert all(e["http"]["duration_ms"] >= 0 for e in events)
    assert "GET " + site_host + "/status/500 answered 500" == events[0]["message"]
    assert ("TypeError", "TimeoutError") == (
        events[2]["error"]["type"],
        events[3]["error"]["type"],
    )
    assert events[3]["message"].endswith("timed out")
    assert {"fetch"} == {e["component"] for e in events}
    assert "s3cret" not in json.dumps(events)


def test_log_sends_manual_events_to_the_server_that_served_the_script(
    tab: Tab, site: StaticSite, server: RunningServer
) -> None:
    """LogBeacon.log sends level, event and fields; without `endpoint` it uses the script's host."""
    session = open_page(tab, site, server, endpoint=None)
    tab.page.evaluate(
        """() => LogBeacon.log("WARNING", "checkout_slow", {
            message: "checkout took 5.4 s", component: "cart", duration_ms: 5400,
            cart: {items: 3}})"""
    )
    events = finish(tab, server, session)
    assert 1 == len(events)
    event = events[0]
    assert ("warn", "checkout_slow", "checkout took 5.4 s", "cart", 5400, {"items": 3}) == (
        event["level"],
        event["event"],
        event["message"],
        event["component"],
        event["duration_ms"],
        event["cart"],
    )


def test_html_in_events_is_stored_verbatim_and_served_as_json(
    tab: Tab, site: StaticSite, server: RunningServer
) -> None:
    """INJ-09: markup sent by a page is stored as sent; the query API answers JSON, nosniff."""
    payloads = ["<script>alert(1)</script>", "<img src=x onerror=alert(1)>"]
    session = open_page(tab, site, server)
    tab.page.evaluate(
        "payloads => payloads.forEach(m => LogBeacon.log('error', 'markup', {message: m}))",
        payloads,
    )
    events = finish(tab, server, session)
    assert payloads == [e["message"] for e in events]
    response = httpx.get(
        f"{server.url}/v1/logs", params={"session_id": session}, headers=server.read_headers
    )
    assert ("application/json", "nosniff") == (
        response.headers["content-type"].split(";")[0],
        response.headers["x-content-type-options"],
    )


def test_pagehide_flushes_through_sendbeacon_as_text_plain(
    tab: Tab, site: StaticSite, server: RunningServer
) -> None:
    """Leaving the page sends the queue at once by sendBeacon with a text/plain body."""
    session = open_page(tab, site, server, before=RECORD_BEACONS)
    tab.page.evaluate("() => LogBeacon.log('error', 'before_leaving', {message: 'bye'})")
    tab.page.wait_for_timeout(200)
    assert [] == stored(server, session)  # the 60 s timer has not fired
    tab.page.goto(site.add("/elsewhere.html", "<p>elsewhere</p>"))
    events = wait_for(server, session, lambda events: len(events) >= 1)
    assert ["before_leaving"] == [e["event"] for e in events]
    beacons = tab.page.evaluate("() => JSON.parse(localStorage.getItem('beacons'))")
    assert [(f"{server.url}/v1/logs?key={KEY}", "text/plain;charset=utf-8", True)] == [
        (b["url"], b["type"], b["ok"]) for b in beacons
    ]


def test_closing_the_page_flushes_the_queue(
    tab: Tab, site: StaticSite, server: RunningServer
) -> None:
    """Closing the tab before the timer fires still delivers the queued event."""
    session = open_page(tab, site, server)
    tab.page.evaluate("() => LogBeacon.log('error', 'tab_closed', {message: 'closing'})")
    tab.page.close()
    events = wait_for(server, session, lambda events: len(events) >= 1)
    assert ["tab_closed"] == [e["event"] for e in events]


def test_hidden_page_flushes_the_queue(tab: Tab, site: StaticSite, server: RunningServer) -> None:
    """visibilitychange to hidden (tab switched, app backgrounded) sends the queue."""
    session = open_page(tab, site, server)
    tab.page.evaluate(
        """() => {
        LogBeacon.log("warn", "went_hidden", {message: "hidden"});
        Object.defineProperty(document, "visibilityState", {value: "hidden", configurable: true});
        document.dispatchEvent(new Event("visibilitychange"));
    }"""
    )
    events = wait_for(server, session, lambda events: len(events) >= 1)
    assert ["went_hidden"] == [e["event"] for e in events]


def test_full_batch_is_sent_without_waiting_for_the_timer(
    tab: Tab, site: StaticSite, server: RunningServer
) -> None:
    """The queue is flushed as soon as it holds maxBatch events."""
    session = open_page(tab, site, server, maxBatch=4)
    tab.page.evaluate(
        "() => { for (let i = 0; i < 8; i++) LogBeacon.log('warn', 'step', {message: 'step '+i}) }"
    )
    events = wait_for(server, session, lambda events: len(events) >= 8)
    assert [f"step {i}" for i in range(8)] == sorted(e["message"] for e in events)


def test_identical_errors_are_deduplicated(
    tab: Tab, site: StaticSite, server: RunningServer
) -> None:
    """50 identical errors within 30 s are sent once."""
    session = open_page(tab, site, server, after="function same() { throw new Error('same'); }")
    tab.page.evaluate(
        "() => new Promise(r => { for (let i = 0; i < 50; i++) setTimeout(same); setTimeout(r); })"
    )
    events = finish(tab, server, session)
    assert ["window_error"] == [e["event"] for e in events]


def test_distinct_errors_are_rate_limited_to_the_burst(
    tab: Tab, site: StaticSite, server: RunningServer
) -> None:
    """50 distinct errors at once yield about the burst of 10 events (2/s refill)."""
    session = open_page(
        tab, site, server, after="function differ(i) { throw new Error('distinct ' + i); }"
    )
    tab.page.evaluate(
        """() => new Promise(r => {
        for (let i = 0; i < 50; i++) setTimeout(() => differ(i));
        setTimeout(r);
    })"""
    )
    events = finish(tab, server, session, refill=True)
    assert 10 <= len(events) <= 12, [e["message"] for e in events]
    assert {"window_error"} == {e["event"] for e in events}
    # The first ten spend the burst; a late one may get a refilled token.
    assert {f"distinct {i}" for i in range(10)} <= {e["message"] for e in events}


def test_page_keeps_running_when_the_client_fails(
    tab: Tab, site: StaticSite, server: RunningServer
) -> None:
    """Endpoint down and the API misused: page code runs on, nothing thrown, nothing printed."""
    dead = f"http://127.0.0.1:{free_port()}"
    open_page(tab, site, server, endpoint=dead)
    result = tab.page.evaluate(
        """async () => {
        const cyclic = {}; cyclic.self = cyclic;
        LogBeacon.log("error", "down", {message: "endpoint is down"});
        LogBeacon.log(undefined, undefined, cyclic);
        LogBeacon.log("error", "bigint", {n: 10n});
        LogBeacon.log({}, [], "not fields");
        LogBeacon.init({endpoint: "http://[broken"});
        const stop = LogBeacon.watchEventSource(null);
        stop();
        LogBeacon.watchEventSource({})();
        LogBeacon.flush();
        await fetch("/status/503").catch(() => null);
        LogBeacon.flush();
        await new Promise(r => setTimeout(r, 300));
        return "still running";
    }"""
    )
    assert "still running" == result
    assert [] == tab.page_errors
    assert [] == tab.console_errors(ignore=network_noise)


def test_disallowed_origin_is_refused(
    tab: Tab, other_site: StaticSite, server: RunningServer
) -> None:
    """Beacons from an origin not in LOGBEACON_ALLOWED_ORIGINS are refused; nothing is stored."""
    refused_before = _count_403(server)
    sent: list[str] = []
    tab.context.on(
        "request", lambda r: sent.append(r.resource_type) if "/v1/logs?key=" in r.url else None
    )
    session = open_page(tab, other_site, server)
    outcome = tab.page.evaluate(
        f"""async () => {{
        LogBeacon.log("error", "from_elsewhere", {{message: "should not be stored"}});
        LogBeacon.flush();
        try {{
            const r = await fetch("{server.url}/v1/logs?key={KEY}", {{
                method: "POST", headers: {{"content-type": "application/json"}},
                body: JSON.stringify({{event: "json_from_elsewhere", session_id: "{session}"}})}});
            return r.status;
        }} catch (e) {{ return e.name; }}
    }}"""
    )
    assert "TypeError" == outcome  # the preflight got no Access-Control-Allow-Origin
    wait_until(lambda: _count_403(server) >= refused_before + 1)
    assert "ping" in sent  # the beacon went out, and the server refused it
    assert [] == stored(server, session)


def test_cors_answers_only_allowed_origins(
    site: StaticSite, other_site: StaticSite, server: RunningServer
) -> None:
    """Preflights and errors carry Access-Control-Allow-Origin for allowed origins only."""
    preflight = {
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type",
    }
    url = f"{server.url}/v1/logs?key={KEY}"
    allowed = httpx.options(url, headers={"Origin": site.origin, **preflight})
    refused = httpx.options(url, headers={"Origin": other_site.origin, **preflight})
    posted = httpx.post(url, json={"event": "x"}, headers={"Origin": other_site.origin})
    assert (204, site.origin) == (
        allowed.status_code,
        allowed.headers.get("access-control-allow-origin"),
    )
    assert (403, None) == (refused.status_code, refused.headers.get("access-control-allow-origin"))
    assert (403, None) == (posted.status_code, posted.headers.get("access-control-allow-origin"))


def test_allowed_origin_reads_answers_and_errors(
    tab: Tab, site: StaticSite, server: RunningServer
) -> None:
    """From an allowed origin, page code reads a JSON ingest answer and a 401 (CORS on errors)."""
    session = open_page(tab, site, server)
    answers = tab.page.evaluate(
        f"""async () => {{
        const post = async key => {{
            const r = await fetch("{server.url}/v1/logs?key=" + key, {{
                method: "POST", headers: {{"content-type": "application/json"}},
                body: JSON.stringify(
                    {{event: "json_post", level: "warn", session_id: "{session}"}})}});
            return [r.status, (await r.json()).error || null];
        }};
        return [await post("{KEY}"), await post("wrong-key-0123456789")];
    }}"""
    )
    assert [[200, None], [401, "invalid_credentials"]] == answers
    events = finish(tab, server, session)
    # The client does not report requests to its own endpoint, not even failed ones.
    assert ["json_post"] == [e["event"] for e in events]


def test_wrapped_fetch_returns_the_same_response_and_error(
    tab: Tab, site: StaticSite, server: RunningServer
) -> None:
    """The wrapper returns the original Response object and rethrows the original error."""
    fake_fetch = """
    window.answer = new Response("fake", {status: 503});
    window.offline = new TypeError("offline");
    window.broken = new Error("thrown synchronously");
    window.originalFetch = (input) => {
        if (String(input).includes("answer")) return Promise.resolve(window.answer);
        if (String(input).includes("sync")) throw window.broken;
        return Promise.reject(window.offline);
    };
    window.fetch = window.originalFetch;
    """
    session = open_page(tab, site, server, before=fake_fetch)
    checks = tab.page.evaluate(
        """async () => {
        const response = await fetch("/answer");
        let rejected = null, thrown = null;
        try { await fetch("/offline"); } catch (e) { rejected = e; }
        try { fetch("/sync"); } catch (e) { thrown = e; }
        return [window.fetch !== window.originalFetch, response === window.answer,
                rejected === window.offline, thrown === window.broken];
    }"""
    )
    assert [True, True, True, True] == checks
    events = finish(tab, server, session)
    assert [("/answer", 503, None), ("/offline", None, "TypeError")] == [
        (e["http"]["path"], e["http"].get("status"), e.get("error", {}).get("type")) for e in events
    ]


def test_init_twice_installs_handlers_once(
    tab: Tab, site: StaticSite, server: RunningServer
) -> None:
    """A second init updates the options but adds no second handler or fetch wrapper."""
    count_listeners = """
    window.added = {};
    const realAdd = window.addEventListener.bind(window);
    window.addEventListener = (type, ...rest) => {
        window.added[type] = (window.added[type] || 0) + 1;
        return realAdd(type, ...rest);
    };
    """
    session = open_page(tab, site, server, before=count_listeners)
    second = f"{session}-second"
    result = tab.page.evaluate(
        f"""() => {{
        const wrapped = window.fetch;
        LogBeacon.init({{endpoint: "{server.url}", key: "{KEY}", sessionId: "{second}",
                         flushInterval: 60000}});
        return [window.added, window.fetch === wrapped];
    }}"""
    )
    assert [{"error": 1, "unhandledrejection": 1, "pagehide": 1}, True] == result
    assert [] == finish(tab, server, second)


@pytest.mark.parametrize(
    ("missing", "via"),
    [
        ("delete Navigator.prototype.sendBeacon;", "fetch"),
        ("navigator.sendBeacon = () => false;", "fetch"),
        ("delete window.fetch;", "beacon"),
        ('Object.defineProperty(window, "crypto", {value: undefined});', "beacon"),
    ],
    ids=["no-sendBeacon", "sendBeacon-refuses", "no-fetch", "no-crypto"],
)
def test_works_without_optional_browser_apis(
    tab: Tab, site: StaticSite, server: RunningServer, missing: str, via: str
) -> None:
    """Without sendBeacon, fetch or crypto the client still delivers, with v4 UUID event ids."""
    requests: list[str] = []
    tab.context.on(
        "request", lambda r: requests.append(r.resource_type) if "/v1/logs" in r.url else None
    )
    session = open_page(tab, site, server, before=missing)
    events = finish(tab, server, session)
    assert [] == events
    assert 1 == len(stored(server, session))
    assert UUID4.fullmatch(stored(server, session)[0]["event_id"])
    assert {"fetch": "fetch", "beacon": "ping"}[via] == requests[0]
    assert [] == tab.page_errors


def test_event_source_errors_are_reported_once(
    tab: Tab, site: StaticSite, server: RunningServer
) -> None:
    """watchEventSource reports an EventSource failure once as sse_error with its readyState."""
    session = open_page(tab, site, server)
    tab.page.evaluate(
        """() => new Promise(resolve => {
        const source = new EventSource("/status/503?token=s3cret");
        LogBeacon.watchEventSource(source, "chat.stream");
        source.addEventListener("error", () => {
            source.dispatchEvent(new Event("error"));
            source.dispatchEvent(new Event("error"));
            resolve();
        }, {once: true});
    })"""
    )
    events = finish(tab, server, session)
    assert 1 == len(events)
    event = events[0]
    assert ("sse_error", "error", "chat.stream", 2) == (
        event["event"],
        event["level"],
        event["component"],
        event["ready_state"],
    )
    assert "/status/503" == event["http"]["path"]
    assert "s3cret" not in json.dumps(event)


def test_large_batches_are_split_below_64_kib(
    tab: Tab, site: StaticSite, server: RunningServer
) -> None:
    """Events too big for one beacon are split into bodies under 64 KiB, and all arrive."""
    session = open_page(tab, site, server, before=RECORD_BEACONS)
    tab.page.evaluate(
        """() => {
        for (let i = 0; i < 9; i++) {
            LogBeacon.log("warn", "big", {message: "big " + i, blob: "x".repeat(20000)});
        }
        LogBeacon.flush();
    }"""
    )
    events = wait_for(server, session, lambda events: len(events) >= 9)
    assert [f"big {i}" for i in range(9)] == sorted(e["message"] for e in events)
    sizes = [b["size"] for b in tab.page.evaluate("JSON.parse(localStorage.getItem('beacons'))")]
    assert len(sizes) >= 4
    assert all(size < 64 * 1024 for size in sizes), sizes


def test_collapsed_client_still_works(tab: Tab, site: StaticSite, server: RunningServer) -> None:
    """The collapsed source whose size test_assets measures is a working client."""
    site.add("/client.collapsed.js", collapse_js(client_source()), "application/javascript")
    session = open_page(tab, site, server, script="/client.collapsed.js")
    tab.page.evaluate("() => setTimeout(() => { throw new Error('collapsed') })")
    events = finish(tab, server, session)
    assert [("window_error", "collapsed")] == [(e["event"], e["message"]) for e in events]


def test_example_page_buttons_produce_events(
    tab: Tab, site: StaticSite, server: RunningServer
) -> None:
    """Each button of examples/static/index.html produces its documented event."""
    html = EXAMPLE.read_text(encoding="utf-8")
    assert 3 == html.count("http://127.0.0.1:8765")
    assert 1 == html.count('key: "",')
    html = html.replace("http://127.0.0.1:8765", server.url).replace('key: "",', f'key: "{KEY}",')
    tab.page.goto(site.add("/example/index.html", html))
    session = tab.page.text_content("#session")
    assert session is not None
    status = "document.getElementById('status').textContent.includes"
    for button, done in (
        ("#throw", "Threw"),
        ("#reject", "Rejected"),
        ("#fetch", "fetch answered"),
        ("#log", "Logged"),
    ):
        tab.page.click(button)
        tab.page.wait_for_function(f"{status}('{done}')")
    events = finish(tab, server, session)
    assert ["window_error", "unhandled_rejection", "network_error", "checkout_slow"] == [
        e["event"] for e in events
    ]
    assert (404, "/missing.json") == (events[2]["http"]["status"], events[2]["http"]["path"])
    assert "never-logged" not in json.dumps(events)


def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.1)


def _count_403(server: RunningServer) -> float:
    """How many ingest requests the server has answered 403 (its own Prometheus metric)."""
    text = httpx.get(f"{server.url}/metrics", headers=server.read_headers, timeout=5.0).text
    match = re.search(r'^logbeacon_ingest_requests_total\{status="403"\} (\S+)$', text, re.M)
    return float(match.group(1)) if match else 0.0
