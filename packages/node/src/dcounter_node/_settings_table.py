"""The table of every ``dcounter-node`` setting: one row per config key and flag.

It drives the config file parser, the command-line flags and ``NodeSettings.to_argv``
(:mod:`dcounter_node._settings`); adding a setting means adding a field to ``NodeSettings``
and a row here.
"""

from __future__ import annotations

from dcounter_node._config import NodeConfig
from dcounter_node._http_limits import HTTPLimits
from dcounter_node._membership_dns import MAX_RETRY
from dcounter_node._setting_values import (
    LOG_FORMATS,
    LOG_LEVELS,
    LOOPS,
    WIRE_MODES,
    SettingSpec,
    _address,
    _boolean,
    _choice,
    _directory,
    _file,
    _hosts,
    _hosts_text,
    _member_count,
    _member_count_text,
    _origins,
    _origins_text,
    _peer,
    _peer_http,
    _peer_http_text,
    _peer_http_to_text,
    _peers,
    _peers_text,
    _positive_int,
    _positive_int_text,
    _seconds,
    _seconds_or_off,
    _seconds_or_off_text,
    _seconds_text,
    _seconds_to_text,
)

__all__ = ["SETTINGS"]

_NODE_DEFAULTS = NodeConfig()
_HTTP_DEFAULTS = HTTPLimits()

SETTINGS: tuple[SettingSpec, ...] = (
    SettingSpec(
        "listen",
        "--listen",
        "gossip (TCP) address to listen on; port 0 picks a free port",
        _address,
        _address,
        metavar="HOST:PORT",
    ),
    SettingSpec(
        "peers",
        "--peers",
        "comma-separated gossip addresses of static peers",
        _peers,
        _peers_text,
        metavar="ADDR[,ADDR...]",
        default_text="none",
        to_text=",".join,
    ),
    SettingSpec(
        "http",
        "--http",
        "HTTP API address to listen on; port 0 picks a free port",
        _address,
        _address,
        metavar="HOST:PORT",
    ),
    # Redis protocol (issue 20): see "Redis protocol" in the node README.
    SettingSpec(
        "resp",
        "--resp",
        "also serve the Redis protocol (RESP2, RESP3 via HELLO) on this address: INCR,"
        " INCRBY, DECR, DECRBY, GET, MGET, EXISTS, SCAN and friends on the node's counters;"
        " over TLS when the HTTP API is HTTPS, with AUTH TOKEN when it has API tokens;"
        " port 0 picks a free port",
        _address,
        _address,
        metavar="HOST:PORT",
        default_text="off",
    ),
    SettingSpec(
        "resp_max_connections",
        "--resp-max-connections",
        "Redis-protocol connections open at once; beyond it a new one is answered an error"
        " and closed",
        _positive_int,
        _positive_int_text,
        metavar="N",
    ),
    SettingSpec(
        "resp_idle_timeout",
        "--resp-idle-timeout",
        "seconds a Redis-protocol connection may stay open without a request",
        _seconds,
        _seconds_text,
        metavar="SECONDS",
        to_text=_seconds_to_text,
    ),
    # Dashboard (issue 16): where GET /cluster asks peers for their value.
    SettingSpec(
        "peer_http",
        "--peer-http",
        "HTTP API addresses of peers, as gossip address=HTTP address pairs; the dashboard"
        " (GET /cluster) asks these peers for their value",
        _peer_http,
        _peer_http_text,
        metavar="GOSSIP=HTTP[,...]",
        default_text="none (in a config file: every other entry's http)",
        to_text=_peer_http_to_text,
    ),
    SettingSpec(
        "sync_interval",
        "--sync-interval",
        "seconds between digest pulls",
        _seconds,
        _seconds_text,
        metavar="SECONDS",
        to_text=_seconds_to_text,
    ),
    SettingSpec(
        "full_sync_interval",
        "--full-sync-interval",
        "seconds between full-state pushes",
        _seconds,
        _seconds_text,
        metavar="SECONDS",
        default_text="10 x sync interval",
        to_text=_seconds_to_text,
    ),
    SettingSpec(
        "max_sync_peers",
        "--max-sync-peers",
        "peers contacted per sync round",
        _positive_int,
        _positive_int_text,
        metavar="N",
    ),
    SettingSpec(
        "max_replicas",
        "--max-replicas",
        "most replica entries the counter may hold; a push from a peer that would pass it is"
        " rejected whole (a guard against made-up replica ids)",
        _positive_int,
        _positive_int_text,
        metavar="N",
    ),
    SettingSpec(
        "max_keys",
        "--max-keys",
        "most named counters the node holds; a write or a peer's push that would pass it is"
        " refused (a push whole)",
        _positive_int,
        _positive_int_text,
        metavar="N",
    ),
    SettingSpec(
        "max_key_length",
        "--max-key-length",
        "longest counter name, in UTF-8 bytes; a write or a peer's push with a longer one is"
        " refused (a push whole)",
        _positive_int,
        _positive_int_text,
        metavar="BYTES",
    ),
    SettingSpec(
        "delta_gossip",
        "--delta-gossip",
        "push each change to a few peers at once; off gives the seed's periodic gossip only",
        _boolean,
        None,
        default_text="on",
    ),
    SettingSpec(
        "log_level",
        "--log-level",
        "log threshold (logs go to stderr)",
        _choice(LOG_LEVELS),
        _choice(LOG_LEVELS),
        metavar="{" + ",".join(LOG_LEVELS) + "}",
    ),
    SettingSpec(
        "log_format",
        "--log-format",
        "log line format",
        _choice(LOG_FORMATS),
        _choice(LOG_FORMATS),
        metavar="{" + ",".join(LOG_FORMATS) + "}",
    ),
    # Durable state (issue 7); dcounter_node._cli turns these into a SQLiteStore.
    SettingSpec(
        "data_dir",
        "--data-dir",
        "directory holding this node's replica id and counts (created if missing; relative"
        " to the working directory); on restart the node resumes them",
        _directory,
        _directory,
        metavar="DIR",
        default_text="$XDG_DATA_HOME/dcounter/<listen address>, or in memory when the listen"
        " port is 0",
    ),
    SettingSpec(
        "in_memory",
        "--in-memory",
        "keep no durable state (a new replica id every start); wins over data_dir",
        _boolean,
        None,
        default_text="off",
    ),
    SettingSpec(
        "durability",
        "--durability",
        "always: fsync each commit (survives power loss); batched: group commit without"
        " fsync (survives a process crash); writes are acknowledged once committed either"
        " way",
        _choice(("always", "batched")),
        _choice(("always", "batched")),
        metavar="{always,batched}",
    ),
    # Idempotency-Keys (issue 17): kept in the database with the counts they produced.
    SettingSpec(
        "idempotency_ttl",
        "--idempotency-ttl",
        "seconds a write's Idempotency-Key is remembered, so a retry gets the first answer"
        " (in the database, across restarts and crashes; in memory with --in-memory)",
        _seconds,
        _seconds_text,
        metavar="SECONDS",
        to_text=_seconds_to_text,
    ),
    SettingSpec(
        "idempotency_keys",
        "--idempotency-keys",
        "most Idempotency-Keys remembered (the newest are kept)",
        _positive_int,
        _positive_int_text,
        metavar="N",
    ),
    # Wire and event loop (issue 8).
    SettingSpec(
        "wire",
        "--wire",
        "how to send gossip: auto = one persistent stream per peer, falling back to the"
        " seed's framing for peers that do not confirm it; seed = the seed's framing only"
        " (receiving accepts both either way)",
        _choice(WIRE_MODES),
        _choice(WIRE_MODES),
        metavar="{" + ",".join(WIRE_MODES) + "}",
    ),
    SettingSpec(
        "loop",
        "--loop",
        "event loop; uvloop needs the dcounter-node[fast] extra",
        _choice(LOOPS),
        _choice(LOOPS),
        metavar="{" + ",".join(LOOPS) + "}",
    ),
    # HTTP hardening (issue 12).
    SettingSpec(
        "http_max_connections",
        "--http-max-connections",
        "HTTP connections open at once; beyond it a connection that never sent a byte is"
        " closed to make room, else the new one gets 503",
        _positive_int,
        _positive_int_text,
        metavar="N",
    ),
    SettingSpec(
        "http_header_timeout",
        "--http-header-timeout",
        "seconds a client may take to send a request's head once it began (and then its"
        " body); slower connections are closed",
        _seconds,
        _seconds_text,
        metavar="SECONDS",
        to_text=_seconds_to_text,
    ),
    SettingSpec(
        "http_idle_timeout",
        "--http-idle-timeout",
        "seconds an HTTP connection may stay open without a request (after connecting or"
        " after its last response)",
        _seconds,
        _seconds_text,
        metavar="SECONDS",
        to_text=_seconds_to_text,
    ),
    SettingSpec(
        "allowed_origins",
        "--allowed-origins",
        "comma-separated browser origins (https://host[:port], or *) whose pages may use the"
        " API besides the node's own; requests from other pages' origins get 403",
        _origins,
        _origins_text,
        metavar="ORIGIN[,ORIGIN...]",
        default_text="none",
        to_text=",".join,
    ),
    SettingSpec(
        "allowed_hosts",
        "--allowed-hosts",
        "comma-separated host names or IP addresses (or *) that requests may name in their"
        " Host header, port not compared; other requests get 421 (a guard against DNS"
        " rebinding)",
        _hosts,
        _hosts_text,
        metavar="HOST[,HOST...]",
        default_text="with --http on a loopback address: localhost, 127.0.0.1, [::1] and that"
        " address; otherwise any host",
        to_text=",".join,
    ),
    # Gossip over mutual TLS (issue 13): all three files or none.
    SettingSpec(
        "tls_cert",
        "--tls-cert",
        "this node's certificate chain (PEM) for gossip over mutual TLS: every gossip"
        " connection in and out is then TLS 1.3 with a certificate from the cluster CA both"
        " ways; needs --tls-key and --tls-ca; re-read on SIGHUP",
        _file,
        _file,
        metavar="FILE",
        default_text="none: plain TCP",
    ),
    SettingSpec(
        "tls_key",
        "--tls-key",
        "the private key (PEM) of --tls-cert",
        _file,
        _file,
        metavar="FILE",
        default_text="none",
    ),
    SettingSpec(
        "tls_ca",
        "--tls-ca",
        "the cluster CA certificate (PEM): the only root trusted for gossip peers",
        _file,
        _file,
        metavar="FILE",
        default_text="none",
    ),
    SettingSpec(
        "plaintext_peers",
        "--plaintext-peers",
        "with TLS: IP:PORT gossip addresses of peers that cannot speak it (Go reference"
        " nodes), dialled in plain TCP; plain connections are also accepted from their IPs."
        " Trusted and unauthenticated: see the README's Security section",
        _peers,
        _peers_text,
        metavar="ADDR[,ADDR...]",
        default_text="none",
        to_text=",".join,
    ),
    # HTTPS and API tokens (issue 13); dcounter_node._security reads these.
    SettingSpec(
        "http_tls_cert",
        "--http-tls-cert",
        "certificate chain (PEM) to serve the HTTP API over HTTPS with; needs --http-tls-key",
        _file,
        _file,
        metavar="FILE",
        default_text="the gossip certificate (--tls-cert) if given, else plain HTTP",
    ),
    SettingSpec(
        "http_tls_key",
        "--http-tls-key",
        "private key (PEM) of --http-tls-cert",
        _file,
        _file,
        metavar="FILE",
        default_text="--tls-key when the certificate is --tls-cert",
    ),
    SettingSpec(
        "http_tls_ca",
        "--http-tls-ca",
        "CA certificates (PEM): HTTPS clients are asked for a certificate, and one they"
        " present must be signed by these; clients without one are still served",
        _file,
        _file,
        metavar="FILE",
        default_text="client certificates not requested",
    ),
    SettingSpec(
        "api_tokens",
        "--api-tokens",
        "file of API tokens, one 'SCOPE TOKEN' per line (scope read, write or admin);"
        " requests then need 'Authorization: Bearer TOKEN' (GET /health and the dashboard's"
        " page stay open); re-read on SIGHUP",
        _file,
        _file,
        metavar="FILE",
        default_text="none: the API is open to anyone who can reach it",
    ),
    SettingSpec(
        "require_auth",
        "--require-auth",
        "refuse to start (exit 2) when listening on a non-loopback address without TLS and"
        " API tokens, instead of warning",
        _boolean,
        None,
        default_text="off",
    ),
    # Membership (issue 14): see "Membership" in the node README.
    SettingSpec(
        "advertise",
        "--advertise",
        "the gossip address other nodes dial, and this node's identity; required when"
        " --listen is a wildcard (0.0.0.0, ::)",
        _peer,
        _peer,
        metavar="HOST:PORT",
        default_text="the listen address",
    ),
    SettingSpec(
        "join",
        "--join",
        "comma-separated gossip addresses of dcounter nodes to join (any member will do);"
        " members found this way become gossip peers besides --peers",
        _peers,
        _peers_text,
        metavar="ADDR[,ADDR...]",
        default_text="none: no membership, static --peers only",
        to_text=",".join,
    ),
    SettingSpec(
        "join_dns",
        "--join-dns",
        "a DNS name whose A/AAAA records are nodes to join (a Kubernetes headless service),"
        " with their gossip port; resolved at start and again every --join-dns-interval;"
        " a name that does not resolve yet is retried, never fatal",
        _peer,
        _peer,
        metavar="NAME:PORT",
        default_text="none",
    ),
    SettingSpec(
        "join_dns_interval",
        "--join-dns-interval",
        "seconds between resolutions of --join-dns while this node has live members (every"
        f" {MAX_RETRY:g} s at most while it is alone or the name does not resolve)",
        _seconds,
        _seconds_text,
        metavar="SECONDS",
        to_text=_seconds_to_text,
    ),
    SettingSpec(
        "probe_interval",
        "--probe-interval",
        "seconds between membership probes (one member each)",
        _seconds,
        _seconds_text,
        metavar="SECONDS",
        to_text=_seconds_to_text,
    ),
    SettingSpec(
        "suspect_timeout",
        "--suspect-timeout",
        "least seconds a member stays suspect (unanswered probes) before it is declared dead,"
        " once 2 other members confirm the suspicion (up to 6 times that before), in a"
        " cluster of up to 10 members (times log10 of the member count above)",
        _seconds,
        _seconds_text,
        metavar="SECONDS",
        to_text=_seconds_to_text,
    ),
    SettingSpec(
        "max_members",
        "--max-members",
        "most members this node keeps in its member list (itself included); members beyond"
        " it that gossip names are ignored and counted (a guard against made-up addresses)",
        _member_count,
        _member_count_text,
        metavar="N",
    ),
    SettingSpec(
        "forget_after",
        "--forget-after",
        "seconds a dead or left member stays in the member list (probed now and then, so a"
        " healed partition or a restarted node is seen alive again) before it is forgotten;"
        " 0: never",
        _seconds_or_off,
        _seconds_or_off_text,
        metavar="SECONDS",
        to_text=_seconds_to_text,
    ),
    # Pruning (issue 14): see "Pruning" in the node README.
    SettingSpec(
        "prune_after",
        "--prune-after",
        "seconds this node runs before it collapses the replica entries of its address's"
        " earlier incarnations into one, holds the id of a member that left before it"
        " prunes it, and how long a member it is the standing heir of must be dead before"
        " it prunes that one (needs every peer to be a member); 0: never",
        _seconds_or_off,
        _seconds_or_off_text,
        metavar="SECONDS",
        to_text=_seconds_to_text,
    ),
)
