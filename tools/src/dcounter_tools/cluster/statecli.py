"""``dcounter-cluster up``, ``status`` and ``down``: a cluster left running in the background."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dcounter_tools.cluster.certs import TLS_DIR
from dcounter_tools.cluster.cliparser import DEFAULT_STATE_DIR, STATE_DIR_ENV, positive, spec_of
from dcounter_tools.cluster.state import (
    STATE_FILE,
    NodeStatus,
    cluster_down,
    cluster_status,
    cluster_up,
)

if TYPE_CHECKING:
    import argparse

    from dcounter_client import Member

__all__ = ["down_command", "status_command", "up_command"]


def _default_state_dir() -> Path:
    return Path(os.environ.get(STATE_DIR_ENV, DEFAULT_STATE_DIR))


async def up_command(args: argparse.Namespace) -> int:
    spec = spec_of(args)
    state_dir = args.state_dir or _default_state_dir()
    state = await cluster_up(spec, state_dir, startup_timeout=args.startup_timeout, tls=args.tls)
    if args.json:
        print(json.dumps(state.to_json(), indent=2))
        return 0
    width = max(len(n.name) for n in state.nodes)
    count = len(state.nodes)
    # `source` is "flags" or "config file PATH" (the JSON keeps it as it is).
    origin = "command-line flags" if state.source == "flags" else state.source
    print(f"{count} node{'' if count == 1 else 's'} up, configured by {origin}:")
    for n in state.nodes:
        print(f"  {n.name:<{width}}  pid {n.pid:<7} gossip {n.gossip:<21} http {n.http}")
    print(f"state: {state_dir / STATE_FILE}")
    if args.tls:
        print(
            "gossip over mutual TLS, API over HTTPS with tokens: CA, node certificates and"
            f" API tokens in {state_dir / TLS_DIR}"
        )
    print("see them with: dcounter-cluster status; stop them with: dcounter-cluster down")
    return 0


async def status_command(args: argparse.Namespace) -> int:
    state_dir = args.state_dir or _default_state_dir()
    found = await cluster_status(state_dir, request_timeout=args.timeout)
    if found is None:
        print(f"no cluster is up (no {STATE_FILE} in {state_dir})", file=sys.stderr)
        return 1
    _, statuses = found
    all_up = all(s.state == "up" for s in statuses)
    if args.json:
        print(
            json.dumps(
                {
                    "state_dir": str(state_dir),
                    "all_up": all_up,
                    "nodes": [
                        {
                            "name": s.name,
                            "pid": s.pid,
                            "gossip": s.gossip,
                            "http": s.http,
                            "state": s.state,
                            "value": s.value,
                            "replica": s.replica,
                            "peers": list(s.peers) if s.peers is not None else None,
                            "error": s.error,
                            "members": _members_json(s.members),
                            "members_error": s.members_error,
                        }
                        for s in statuses
                    ],
                },
                indent=2,
            )
        )
        return 0 if all_up else 1
    width = max(len(s.name) for s in statuses)
    for s in statuses:
        if s.state == "up":
            peers = ", ".join(s.peers or ()) or "none"
            print(f"{s.name:<{width}}  up    value {s.value:<8} gossip {s.gossip}  peers: {peers}")
        elif s.state == "dead":
            print(f"{s.name:<{width}}  DEAD  (pid {s.pid} is gone) gossip {s.gossip}")
        else:
            print(f"{s.name:<{width}}  UNREACHABLE  http {s.http}: {s.error}")
        _print_members(s, indent=" " * (width + 2))
    values = {s.value for s in statuses if s.state == "up"}
    if all_up and len(values) == 1:
        print(f"all {len(statuses)} nodes up, every node at {values.pop()}")
    elif all_up:
        print(f"all {len(statuses)} nodes up; values differ (still converging?)")
    else:
        up_count = sum(s.state == "up" for s in statuses)
        print(f"{up_count} of {len(statuses)} nodes up")
    return 0 if all_up else 1


def _members_json(members: tuple[Member, ...] | None) -> list[dict[str, Any]] | None:
    if members is None:
        return None
    return [
        {
            "address": m.address,
            "replica": m.replica,
            "state": m.state,
            "incarnation": m.incarnation,
            "since": m.since,
        }
        for m in members
    ]


def _print_members(status: NodeStatus, indent: str) -> None:
    """The member list as ``status``'s node sees it, one member a line."""
    if status.members_error is not None:
        print(f"{indent}members: cannot read them: {status.members_error}")
    if not status.members:
        return
    now = time.time()
    width = max(len(m.address) for m in status.members)
    print(f"{indent}members as {status.name} sees them:")
    for m in status.members:
        since = time.strftime("%H:%M:%S", time.localtime(m.since))
        age = max(0.0, now - m.since)
        print(
            f"{indent}  {m.address:<{width}}  {m.state:<7}  incarnation {m.incarnation:<3}"
            f"  since {since} ({age:.0f} s ago)  replica {m.replica}"
        )


async def down_command(args: argparse.Namespace) -> int:
    positive("--grace", args.grace)
    state_dir = args.state_dir or _default_state_dir()
    results = await cluster_down(state_dir, grace=args.grace)
    if results is None:
        print(f"no cluster is up (no {STATE_FILE} in {state_dir}); nothing to stop")
        return 0
    for r in results:
        print(f"{r.name}: pid {r.pid} {r.outcome}")
    print(f"removed {state_dir / STATE_FILE}")
    return 0
