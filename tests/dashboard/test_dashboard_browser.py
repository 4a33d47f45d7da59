"""The dashboard in a real browser (Chromium), against real node processes."""

from __future__ import annotations

import re
import signal
from typing import TYPE_CHECKING

import pytest
from playwright.sync_api import expect

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from playwright.sync_api import Page
    from tests.dashboard.conftest import Client, OpenDashboard, Pair, StartNode

pytestmark = pytest.mark.slow


async def test_page_follows_a_write_on_another_node_until_converged(
    pair: Pair, client: Client, open_dashboard: OpenDashboard
) -> None:
    dashboard = await open_dashboard(pair.a.url)
    await dashboard.see("counter-value", "0")

    await client.post(pair.b.url + "/increment", {"by": 5})

    await dashboard.see("counter-value", "5")
    await dashboard.see("convergence", "converged")
    b_replica = pair.b.replica

    def replica_entries(page: Page) -> None:
        entry = page.get_by_test_id("replicas").locator(f'li[data-replica="{b_replica}"]')
        expect(entry).to_contain_text("+5")
        expect(page.get_by_test_id("replica-count")).to_have_text("(1 entry)")
        peer = page.get_by_test_id("peers").locator(f'li[data-peer="{pair.b.gossip}"]')
        expect(peer).to_have_attribute("data-status", "up")
        expect(peer).to_contain_text("value 5")
        expect(page.get_by_test_id("connection")).to_have_text("live")

    await dashboard.do(replica_entries)
    # The page keeps to its Content-Security-Policy: a violation is a console error.
    assert dashboard.console_errors == []
    assert dashboard.page_errors == []


async def test_buttons_write_through_this_node_with_an_idempotency_key(
    pair: Pair, client: Client, open_dashboard: OpenDashboard
) -> None:
    dashboard = await open_dashboard(pair.a.url)
    await dashboard.see("counter-value", "0")

    def increment_by_3(page: Page) -> dict[str, str]:
        page.get_by_test_id("amount").fill("3")
        with page.expect_request(re.compile(r"/increment$")) as request:
            page.get_by_test_id("increment").click()
        return request.value.headers

    headers = await dashboard.do(increment_by_3)
    assert headers.get("idempotency-key")
    await dashboard.see("counter-value", "3")
    assert (await client.get(pair.a.url + "/counter"))["value"] == 3

    def decrement_by_1(page: Page) -> None:
        page.get_by_test_id("amount").fill("1")
        page.get_by_test_id("decrement").click()

    await dashboard.do(decrement_by_1)
    await dashboard.see("counter-value", "2")
    counter = await client.get(pair.a.url + "/counter")
    assert counter["value"] == 2
    assert counter["increments"] == {pair.a.replica: 3}
    assert counter["decrements"] == {pair.a.replica: 1}
    await dashboard.see("contribution", "2")
    await dashboard.see("convergence", "converged")
    assert (await client.get(pair.b.url + "/counter"))["value"] == 2

    def sparklines_drawn(page: Page) -> None:
        for testid in ("writes-sparkline", "value-sparkline"):
            expect(page.get_by_test_id(testid).locator("polyline")).to_have_count(1)

    await dashboard.do(sparklines_drawn)
    assert dashboard.page_errors == []


async def test_write_errors_are_shown_next_to_the_buttons(
    pair: Pair, client: Client, open_dashboard: OpenDashboard
) -> None:
    dashboard = await open_dashboard(pair.a.url)
    await dashboard.see("counter-value", "0")

    def click_with(amount: str) -> Callable[[Page], None]:
        def action(page: Page) -> None:
            page.get_by_test_id("amount").fill(amount)
            page.get_by_test_id("increment").click()

        return action

    await dashboard.do(click_with("two"))
    await dashboard.see("write-error", re.compile("amount must be a whole number"))

    await dashboard.do(click_with(str(2**64 - 1)))
    await dashboard.see("counter-value", str(2**64 - 1))
    await dashboard.see("write-error", "")
    # A second maximal increment would overflow this replica's count: the node says 409.
    await dashboard.do(click_with(str(2**64 - 1)))
    await dashboard.see("write-error", re.compile(r"increment failed \(HTTP 409\)"))
    assert (await client.get(pair.a.url + "/counter"))["value"] == 2**64 - 1
    assert dashboard.page_errors == []


async def test_a_stopped_peer_is_marked_down(
    pair: Pair, client: Client, open_dashboard: OpenDashboard
) -> None:
    dashboard = await open_dashboard(pair.a.url)
    peer = f'li[data-peer="{pair.b.gossip}"]'

    await dashboard.do(
        lambda page: expect(page.get_by_test_id("peers").locator(peer)).to_have_attribute(
            "data-status", "up"
        )
    )
    pair.b.signal(signal.SIGTERM)
    assert await pair.b.wait_exit() == 0

    def marked_down(page: Page) -> None:
        expect(page.get_by_test_id("peers").locator(peer)).to_have_attribute("data-status", "down")
        expect(page.get_by_test_id("peers").locator(peer)).to_contain_text("unreachable")
        expect(page.get_by_test_id("convergence")).to_have_text("unknown: 0 of 1 peers answered")

    await dashboard.do(marked_down)
    assert dashboard.page_errors == []


async def test_the_page_shows_when_its_node_is_gone_and_reconnects_when_it_is_back(
    start_node: StartNode, client: Client, open_dashboard: OpenDashboard
) -> None:
    first = await start_node()
    dashboard = await open_dashboard(first.url)
    await dashboard.see("connection", "live")

    first.signal(signal.SIGTERM)
    assert await first.wait_exit() == 0

    await dashboard.see("connection", re.compile("^disconnected"))
    await dashboard.do(
        lambda page: expect(page.locator("body")).to_have_attribute(
            "data-connection", "disconnected"
        )
    )
    # Another node on the same HTTP address: the page finds it by itself.
    second = await start_node("--http", first.http)
    await client.post(second.url + "/increment", {"by": 7})
    await dashboard.see("connection", "live")
    await dashboard.see("counter-value", "7")
    await dashboard.see("replica-id", second.replica)
    assert dashboard.page_errors == []


async def test_the_token_is_kept_for_the_session_and_sent_as_a_bearer_token(
    start_node: StartNode, open_dashboard: OpenDashboard
) -> None:
    node = await start_node()
    dashboard = await open_dashboard(node.url)
    await dashboard.see("connection", "live")

    def use_token(page: Page) -> dict[str, str]:
        page.get_by_test_id("token").fill("s3cret")
        # A new token reopens the stream with it.
        with page.expect_request(re.compile(r"/counter/watch$")) as request:
            page.get_by_role("button", name="Use").click()
        return request.value.headers

    assert (await dashboard.do(use_token)).get("authorization") == "Bearer s3cret"

    def after_reload(page: Page) -> tuple[object, dict[str, str]]:
        page.reload()
        expect(page.get_by_test_id("token")).to_have_value("s3cret")
        with page.expect_request(re.compile(r"/increment$")) as request:
            page.get_by_test_id("increment").click()
        return page.evaluate("sessionStorage.getItem('dcounter.token')"), request.value.headers

    stored, headers = await dashboard.do(after_reload)
    assert stored == "s3cret"
    assert headers.get("authorization") == "Bearer s3cret"
    await dashboard.see("counter-value", "1")  # this node has no token file: any token goes
    assert dashboard.page_errors == []


async def test_a_node_with_tokens_asks_for_one_and_works_with_it_end_to_end(
    start_node: StartNode, open_dashboard: OpenDashboard, tmp_path: Path
) -> None:
    read, write = "dash-read-3e8c1a5f0b7d", "dash-write-9a2d6f4c1e8b"
    tokens = tmp_path / "tokens"
    tokens.write_text(f"read {read}\nwrite {write}\n")
    b = await start_node("--api-tokens", str(tokens))
    a = await start_node(
        "--api-tokens",
        str(tokens),
        "--peers",
        b.gossip,
        "--peer-http",
        # Either NodeProcess: .http is the URL here, "host:port" in dcounter_node.testing.
        f"{b.gossip}={b.http.removeprefix('http://')}",
    )
    dashboard = await open_dashboard("http://" + a.http.removeprefix("http://"))
    await dashboard.see("connection", re.compile("needs an API token"))

    def use(token: str) -> Callable[[Page], None]:
        def action(page: Page) -> None:
            page.get_by_test_id("token").fill(token)
            page.get_by_role("button", name="Use").click()

        return action

    def increment(page: Page) -> None:
        page.get_by_test_id("amount").fill("2")
        page.get_by_test_id("increment").click()

    await dashboard.do(use(read))
    await dashboard.see("connection", "live")
    await dashboard.see("counter-value", "0")
    await dashboard.do(increment)
    await dashboard.see("write-error", re.compile(r"increment failed \(HTTP 403\).*write scope"))

    await dashboard.do(use(write))
    await dashboard.do(increment)
    await dashboard.see("counter-value", "2")
    await dashboard.see("write-error", "")

    # /cluster asked peer b with the page's token: b answers with its (converged) value.
    def peer_answers(page: Page) -> None:
        peer = page.get_by_test_id("peers").locator(f'li[data-peer="{b.gossip}"]')
        expect(peer).to_contain_text("value 2")
        expect(page.get_by_test_id("convergence")).to_have_text("converged")

    await dashboard.do(peer_answers)
    # Chromium logs the refused requests as console errors; scripts raised nothing.
    assert dashboard.page_errors == []
