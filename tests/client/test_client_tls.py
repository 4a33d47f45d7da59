"""The client's ``verify`` against a node serving its API over HTTPS (issue 13).

Each test runs with the async client and with the sync one (see conftest.py).
"""

from __future__ import annotations

import ssl
from typing import TYPE_CHECKING

import pytest
import trustme

from dcounter_client import Client, InvalidArgumentError, UnavailableError

if TYPE_CHECKING:
    from pathlib import Path

    from tests.client.conftest import MakeClient, StartNode

    from dcounter_node.testing import NodeProcess

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
async def node(start_node: StartNode, ca: trustme.CA, tmp_path: Path) -> NodeProcess:
    cert, key = tmp_path / "node.pem", tmp_path / "node.key"
    issued = ca.issue_cert("127.0.0.1")
    issued.private_key_and_cert_chain_pem.write_to_path(str(cert))
    issued.private_key_pem.write_to_path(str(key))
    return await start_node(
        "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0", "--in-memory",
        "--http-tls-cert", str(cert), "--http-tls-key", str(key),
    )  # fmt: skip


def https(node: NodeProcess) -> str:
    return f"https://{node.http}"


async def test_a_client_trusting_the_ca_reaches_an_https_node(
    node: NodeProcess, ca: trustme.CA, make_client: MakeClient
) -> None:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    client = make_client(https(node), verify=context)
    assert await client.increment(3) == 3
    assert await client.value() == 3
    assert (await client.counter()).node == https(node)


async def test_verify_takes_a_ca_bundle_path(
    node: NodeProcess, ca: trustme.CA, make_client: MakeClient, tmp_path: Path
) -> None:
    bundle = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    client = make_client(https(node), verify=str(bundle))
    assert await client.increment() == 1


async def test_a_client_not_trusting_the_ca_sends_nothing(
    node: NodeProcess, make_client: MakeClient
) -> None:
    stranger = make_client(https(node), retries=0)  # the system's CAs only
    with pytest.raises(UnavailableError, match="CERTIFICATE_VERIFY_FAILED"):
        await stranger.increment()
    unchecked = make_client(https(node), verify=False)
    assert await unchecked.value() == 0


def test_a_bad_verify_is_an_invalid_argument(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgumentError, match="CA bundle"):
        Client("https://127.0.0.1:1", verify=str(tmp_path / "missing.pem"))
    with pytest.raises(InvalidArgumentError, match="verify must be"):
        Client("https://127.0.0.1:1", verify=1)  # type: ignore[arg-type]
