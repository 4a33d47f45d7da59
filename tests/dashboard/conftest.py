"""Fixtures for the dashboard: the service's API helpers, and one Chromium per module.

The browser is Debian's Chromium (``/usr/bin/chromium``, or ``$DCOUNTER_CHROMIUM``) driven
by Playwright; ``.ci/run`` installs it when missing. Without it the browser tests skip,
saying so; Playwright's own browser downloads are never used.

Playwright's sync API refuses to run inside the test's event loop, and its async API
would tie the browser to one test's loop; so the browser lives in one worker thread for
the whole module, and tests hand it work with ``await dashboard.do(...)``.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import aiohttp
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

if TYPE_CHECKING:
    import re

    from tests.conftest import SpawnNode

    from dcounter_node.testing import NodeProcess


def _load_service_fixtures() -> Any:
    # Every test area's conftest is imported under the name "conftest", so the service's
    # cannot be imported by name; load that file as a module of its own and reuse it.
    path = Path(__file__).resolve().parents[1] / "service" / "conftest.py"
    name = "dcounter_tests_service_conftest"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


_service = _load_service_fixtures()
make_api = _service.make_api
api = _service.api
DEADLINE: float = _service.DEADLINE

CHROMIUM = Path(os.environ.get("DCOUNTER_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
#: Upper bound for one condition on the page; real waits end far sooner.
PAGE_DEADLINE_MS = 20_000
#: Every node here binds free ports, keeps no state, and gossips often.
FREE = ("--listen", "127.0.0.1:0", "--http", "127.0.0.1:0", "--in-memory", "--sync-interval", "0.2")

T = TypeVar("T")


class BrowserThread:
    """A launched Chromium, owned by one worker thread that runs everything touching it."""

    def __init__(self) -> None:
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="chromium")
        self.browser: Browser | None = None

    def call(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` in the browser's thread and wait (outside any event loop)."""
        return self._executor.submit(fn).result()

    async def run(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` in the browser's thread without blocking the event loop."""
        return await asyncio.wrap_future(self._executor.submit(fn))

    def shutdown(self) -> None:
        self._executor.shutdown(wait=True)


@pytest.fixture(scope="module")
def browser_thread() -> Iterator[BrowserThread]:
    """One headless Chromium for the module's tests; skips when there is none."""
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip(
            f"no Chromium at {CHROMIUM}: install Debian's `chromium` package (.ci/run does,"
            " as root) or point DCOUNTER_CHROMIUM at a Chromium binary"
        )
    thread = BrowserThread()
    playwright = thread.call(lambda: sync_playwright().start())
    try:
        thread.browser = thread.call(
            lambda: playwright.chromium.launch(
                executable_path=str(CHROMIUM), args=list(CHROMIUM_ARGS)
            )
        )
        yield thread
    finally:
        if thread.browser is not None:
            thread.call(thread.browser.close)
        thread.call(playwright.stop)
        thread.shutdown()


@dataclass
class Dashboard:
    """One page of a node's dashboard, in its own browser context."""

    thread: BrowserThread
    page: Page
    #: Uncaught script errors and console errors, as they happened.
    page_errors: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)

    async def do(self, action: Callable[[Page], T]) -> T:
        """Run ``action(page)`` in the browser's thread."""
        return await self.thread.run(lambda: action(self.page))

    async def see(self, testid: str, text: str | re.Pattern[str]) -> None:
        """Wait (up to the page deadline) until the element ``testid`` shows ``text``."""
        await self.do(lambda page: expect(page.get_by_test_id(testid)).to_have_text(text))


OpenDashboard = Callable[[str], Awaitable[Dashboard]]


@pytest.fixture
async def open_dashboard(
    browser_thread: BrowserThread, spawn_node: SpawnNode, tmp_path: Path
) -> AsyncIterator[OpenDashboard]:
    """``await open_dashboard(http_url)``: the page, loaded; screenshots saved at the end.

    Depends on ``spawn_node`` so the final screenshot is taken before the nodes stop.
    """
    opened: list[Dashboard] = []

    def new_page(url: str) -> Dashboard:
        assert browser_thread.browser is not None
        context = browser_thread.browser.new_context(viewport={"width": 1280, "height": 900})
        page = context.new_page()
        page.set_default_timeout(PAGE_DEADLINE_MS)
        dashboard = Dashboard(browser_thread, page)
        page.on("pageerror", lambda error: dashboard.page_errors.append(str(error)))
        page.on(
            "console",
            lambda message: (
                dashboard.console_errors.append(message.text) if message.type == "error" else None
            ),
        )
        page.goto(url + "/")
        return dashboard

    async def open_(url: str) -> Dashboard:
        dashboard = await browser_thread.run(lambda: new_page(url))
        opened.append(dashboard)
        return dashboard

    yield open_
    for index, dashboard in enumerate(opened):
        path = tmp_path / f"dashboard-{index}.png"

        def finish(page: Page = dashboard.page, path: Path = path) -> None:
            page.screenshot(path=str(path), full_page=True)
            page.context.close()

        await browser_thread.run(finish)


@dataclass
class Client:
    """JSON over HTTP to node processes."""

    session: aiohttp.ClientSession

    async def get(self, url: str) -> Any:
        async with self.session.get(url) as response:
            assert response.status == 200, await response.text()
            return await response.json()

    async def post(self, url: str, body: dict[str, Any]) -> Any:
        headers = {"Idempotency-Key": uuid.uuid4().hex}
        async with self.session.post(url, json=body, headers=headers) as response:
            assert response.status in (200, 201), await response.text()
            return await response.json()


@pytest.fixture
async def client() -> AsyncIterator[Client]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=DEADLINE)) as session:
        yield Client(session)


@dataclass
class Pair:
    """Node A knows B's gossip and HTTP addresses; B knows A's gossip address."""

    a: NodeProcess
    b: NodeProcess


StartNode = Callable[..., Awaitable["NodeProcess"]]


@pytest.fixture
def start_node(spawn_node: SpawnNode) -> StartNode:
    """``await start_node(*flags)``: a ready node on free ports, in memory; flags win."""

    async def start(*flags: str) -> NodeProcess:
        node = await spawn_node(*FREE, *flags)
        await node.wait_ready()
        return node

    return start


@pytest.fixture
async def pair(start_node: StartNode, client: Client) -> Pair:
    b = await start_node()
    a = await start_node("--peers", b.gossip, "--peer-http", f"{b.gossip}={b.http}")
    await client.post(b.url + "/peers", {"addr": a.gossip})
    return Pair(a, b)
