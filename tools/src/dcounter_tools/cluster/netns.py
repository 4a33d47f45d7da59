"""Virtual hosts: one Linux network namespace per node on a private bridge (``--hosts netns``).

Layout of one lab (``TAG`` is 4 random hex digits, so parallel labs do not collide):

* a bridge ``dclabTAGb`` in the root namespace, with the address ``10.77.X.1/24``, through
  which the launcher (clients, poller) reaches every node;
* per node ``i``: a namespace ``dclab-TAG-nI`` holding ``lo`` and ``eth0`` with the address
  ``10.77.X.(10+i)/24``; ``eth0`` is one end of a veth pair whose other end,
  ``dclabTAGvI``, is a port of the bridge.

Address range: ``10.77.0.0/16`` (:data:`NETWORK`), used only inside namespaces this module
creates and on its own bridge; each lab takes the first ``/24`` no other interface on the
machine uses. Every name starts with :data:`PREFIX`, which nothing else uses, so
:func:`sweep` (``dcounter-cluster clean``) can remove leftovers of a crashed run without
touching anything else.

Partitions are blackhole routes inside a namespace (``ip route add blackhole DST/32``):
packets to DST are dropped at the sender, as a cut cable would. Healing removes them.
"""

from __future__ import annotations

import atexit
import contextlib
import ipaddress
import os
import secrets
import shutil
import signal
import subprocess
from dataclasses import dataclass
from typing import TYPE_CHECKING

from dcounter_tools.errors import ClusterError, LabUnavailableError

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

__all__ = ["GATEWAY_HOST", "NETWORK", "PREFIX", "Host", "NetnsHosts", "require_netns", "sweep"]

#: The prefix of every namespace, bridge and veth the lab creates.
PREFIX = "dclab"
#: The address range of the lab networks (one /24 per lab).
NETWORK = ipaddress.IPv4Network("10.77.0.0/16")
#: Host number of the bridge's own address in its /24; nodes start at 10.
GATEWAY_HOST = 1
_FIRST_NODE_HOST = 10
MAX_NODES = 240
_IP_TIMEOUT = 20.0


@dataclass(frozen=True, slots=True)
class Host:
    """One virtual host: its namespace and its address."""

    name: str
    netns: str
    address: str


def _ip(*args: str, stdin: str | None = None, check: bool = True) -> str:
    """Run ``ip ARGS``; ClusterError (with ip's message) if it fails and ``check``."""
    try:
        done = subprocess.run(
            ["ip", *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=_IP_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ClusterError(f"ip {' '.join(args)}: {exc}") from None
    if check and done.returncode != 0:
        raise ClusterError(f"ip {' '.join(args)}: {done.stderr.strip() or done.returncode}")
    return done.stdout


def require_netns() -> None:
    """LabUnavailableError unless this process can create network namespaces."""
    if os.geteuid() != 0:
        raise LabUnavailableError(
            "--hosts netns needs root (it creates network namespaces, a bridge and veth "
            "pairs); run it as root, or use --hosts local"
        )
    if shutil.which("ip") is None:
        raise LabUnavailableError("--hosts netns needs the ip command (apt-get install iproute2)")


def _used_subnets() -> set[int]:
    """The third octets of 10.77.X.0/24 networks already on some interface here."""
    used = set()
    for line in _ip("-o", "-4", "addr", "show").splitlines():
        for word in line.split():
            with contextlib.suppress(ValueError):
                net = ipaddress.IPv4Interface(word).network
                if net.subnet_of(NETWORK):
                    used.add(int(net.network_address.packed[2]))
    return used


def _names(kind: str) -> list[str]:
    if kind == "netns":
        return [line.split()[0] for line in _ip("netns", "list").splitlines() if line.strip()]
    names = []
    for line in _ip("-o", "link", "show").splitlines():
        # "12: dclab1a2bb: <...>" or "13: dclab1a2bv0@if2: <...>"
        parts = line.split(":", 2)
        if len(parts) > 1:
            names.append(parts[1].strip().split("@")[0])
    return names


def _kill_netns_processes(netns: str) -> None:
    for pid in _ip("netns", "pids", netns, check=False).split():
        with contextlib.suppress(ProcessLookupError, ValueError, PermissionError):
            os.kill(int(pid), signal.SIGKILL)


def sweep(prefix: str = PREFIX) -> list[str]:
    """Remove every namespace and link whose name starts with ``prefix``; what was removed.

    Processes still running in those namespaces are killed first (a crashed launcher's
    nodes), so the namespaces really go away.
    """
    removed = []
    for netns in _names("netns"):
        if netns.startswith(prefix):
            _kill_netns_processes(netns)
            _ip("netns", "del", netns, check=False)
            removed.append(f"netns {netns}")
    for link in _names("link"):
        if link.startswith(prefix):
            _ip("link", "del", link, check=False)
            removed.append(f"link {link}")
    return removed


_LIVE: set[NetnsHosts] = set()


def _remove_live() -> None:
    for hosts in list(_LIVE):
        hosts.destroy()


atexit.register(_remove_live)


class NetnsHosts:
    """The namespaces, veth pairs and bridge of one lab; see the module docstring."""

    def __init__(self, names: Sequence[str], *, tag: str | None = None) -> None:
        if not 1 <= len(names) <= MAX_NODES:
            raise LabUnavailableError(f"--hosts netns runs 1 to {MAX_NODES} nodes")
        self.tag = tag or secrets.token_hex(2)
        self._names = list(names)
        self.bridge = f"{PREFIX}{self.tag}b"
        self.hosts: list[Host] = []
        self.gateway = ""
        self._created: list[tuple[str, str]] = []

    def _veth(self, index: int) -> str:
        return f"{PREFIX}{self.tag}v{index}"

    def create(self) -> None:
        """Create the bridge and one namespace per node; on failure remove what was made."""
        _LIVE.add(self)
        try:
            self._create()
        except BaseException:
            self.destroy()
            raise

    def _create(self) -> None:
        free = [x for x in range(1, 255) if x not in _used_subnets()]
        if not free:
            raise ClusterError(f"every /24 of {NETWORK} is in use; try dcounter-cluster clean")
        base = f"{NETWORK.network_address.packed[0]}.{NETWORK.network_address.packed[1]}"
        subnet = f"{base}.{free[0]}"
        self.gateway = f"{subnet}.{GATEWAY_HOST}"
        _ip("link", "add", self.bridge, "type", "bridge")
        self._created.append(("link", self.bridge))
        _ip("addr", "add", f"{self.gateway}/24", "dev", self.bridge)
        _ip("link", "set", self.bridge, "up")
        for index, name in enumerate(self._names):
            netns = f"{PREFIX}-{self.tag}-n{index}"
            address = f"{subnet}.{_FIRST_NODE_HOST + index}"
            _ip("netns", "add", netns)
            self._created.append(("netns", netns))
            veth = self._veth(index)
            _ip("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", netns)
            self._created.append(("link", veth))
            _ip("link", "set", veth, "master", self.bridge, "up")
            _ip("-n", netns, "addr", "add", f"{address}/24", "dev", "eth0")
            _ip("-n", netns, "link", "set", "lo", "up")
            _ip("-n", netns, "link", "set", "eth0", "up")
            self.hosts.append(Host(name, netns, address))

    def exec_prefix(self, index: int) -> list[str]:
        """The command prefix that runs a program on host ``index`` (``ip netns exec``).

        ``ip netns exec`` execs the program (no fork), so its pid is the program's.
        """
        return ["ip", "netns", "exec", self.hosts[index].netns]

    def block(self, links: Iterable[tuple[int, int]]) -> None:
        """Cut each directed link ``(src, dst)``: a blackhole route to dst inside src."""
        routes: dict[int, list[str]] = {}
        for src, dst in links:
            routes.setdefault(src, []).append(self.hosts[dst].address)
        for src, addresses in routes.items():
            lines = "".join(f"route add blackhole {a}/32\n" for a in addresses)
            _ip("-n", self.hosts[src].netns, "-batch", "-", stdin=lines)

    def heal(self) -> None:
        """Remove every blackhole route of every host."""
        for host in self.hosts:
            _ip("-n", host.netns, "route", "flush", "type", "blackhole")

    def blackholes(self) -> dict[str, list[str]]:
        """Each host's blackholed destinations (what a partition looks like right now)."""
        found = {}
        for host in self.hosts:
            text = _ip("-n", host.netns, "route", "show", "type", "blackhole", check=False)
            found[host.name] = [line.split()[1] for line in text.splitlines() if line.strip()]
        return found

    def destroy(self) -> None:
        """Remove everything :meth:`create` made (processes inside are killed); idempotent."""
        _LIVE.discard(self)
        for kind, name in reversed(self._created):
            if kind == "netns":
                _kill_netns_processes(name)
                _ip("netns", "del", name, check=False)
            else:
                _ip("link", "del", name, check=False)
        self._created.clear()
