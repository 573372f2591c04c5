"""Fixtures of the browser suite: Debian's Chromium driven by Playwright (one per session), and
small static sites on their own 127.0.0.1 ports — other origins than the logbeacon server —
serving the test pages."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Browser, BrowserContext, ConsoleMessage, Page, sync_playwright

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


@pytest.fixture(scope="package")
def browser() -> Iterator[Browser]:
    """One headless Chromium for the whole suite (a launch takes seconds)."""
    if not CHROMIUM.exists():
        pytest.fail(
            f"the browser tests need Debian's chromium at {CHROMIUM}: run `make test`, which "
            "installs it (or `apt-get install -y chromium`)",
            pytrace=False,
        )
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield chromium
        finally:
            chromium.close()


class StaticSite:
    """An HTTP server on its own port (so its own origin) serving pages that tests register.

    Besides the pages: `/status/<code>` answers that status with an empty body, `/slow`
    answers after one second, and anything else is a 404.
    """

    def __init__(self) -> None:
        self.pages: dict[str, tuple[bytes, str]] = {}
        site = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                site.answer(self)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # quiet: the test output is for failures

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self.origin = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def add(self, path: str, text: str, content_type: str = "text/html") -> str:
        """Serve `text` at `path`; returns its URL."""
        self.pages[path] = (text.encode("utf-8"), f"{content_type}; charset=utf-8")
        return self.origin + path

    def answer(self, handler: BaseHTTPRequestHandler) -> None:
        path = urlsplit(handler.path).path
        status, body, content_type = 404, b"not found", "text/html; charset=utf-8"
        if path in self.pages:
            status, (body, content_type) = 200, self.pages[path]
        elif path.startswith("/status/") and path[8:].isdigit():
            status, body = int(path[8:]), b""
        elif path == "/slow":
            time.sleep(1.0)
            status, body = 200, b"slow"
        handler.send_response(status)
        handler.send_header("Content-Type", content_type)
        handler.send_header("Content-Length", str(len(body)))
        handler.send_header("Cache-Control", "no-store")
        handler.end_headers()
        handler.wfile.write(body)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


@pytest.fixture(scope="session")
def site() -> Iterator[StaticSite]:
    """The page origin the server allows (LOGBEACON_ALLOWED_ORIGINS)."""
    static = StaticSite()
    yield static
    static.close()


@pytest.fixture(scope="session")
def other_site() -> Iterator[StaticSite]:
    """A page origin the server does not allow."""
    static = StaticSite()
    yield static
    static.close()


@dataclass
class Tab:
    """A page in a fresh browser context, with what it printed and what it threw."""

    context: BrowserContext
    page: Page
    console: list[ConsoleMessage] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)

    def console_errors(self, *, ignore: Callable[[ConsoleMessage], bool]) -> list[str]:
        """Console errors and warnings, except those `ignore` accepts."""
        return [
            f"{m.type}: {m.text} ({m.location.get('url')})"
            for m in self.console
            if m.type in ("error", "warning") and not ignore(m)
        ]


@pytest.fixture
def tab(browser: Browser) -> Iterator[Tab]:
    """A page in its own context (no shared storage or cache between tests)."""
    context = browser.new_context()
    context.set_default_timeout(10_000)
    page = context.new_page()
    opened = Tab(context, page)
    # Lambdas, not bound methods: Playwright cannot wrap a builtin like list.append.
    page.on("console", lambda message: opened.console.append(message))  # noqa: PLW0108
    page.on("pageerror", lambda error: opened.page_errors.append(str(error)))
    yield opened
    context.close()
