"""PostgreSQL URLs as the bridge reads them: the hosts one names, a URL of its own for each
(so each is tried with its own connect timeout, as libpq does), and the password hidden."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlsplit, urlunsplit

DEFAULT_CONNECT_TIMEOUT = 5.0
SESSION_ATTRS = frozenset(
    {"any", "primary", "standby", "prefer-standby", "read-write", "read-only"}
)
# With several hosts only these keep every session on the one server that can write.
PRIMARY_ONLY = frozenset({"read-write", "primary"})


@dataclass(frozen=True)
class Dsn:
    """What a URL names: ``hosts`` as written (for logs), ``urls`` one connectable URL each,
    in the URL's order, and the seconds each host gets to answer."""

    hosts: tuple[str, ...]
    urls: tuple[str, ...]
    connect_timeout: float


def _check_host(host: str) -> None:
    name, port = host, ""
    if host.startswith("["):
        name, _, rest = host.partition("]")
        if rest and not rest.startswith(":"):
            raise ValueError(f"host {host!r} is not host[:port]")
        port = rest[1:]
    elif ":" in host:
        name, _, port = host.rpartition(":")
    if not name.strip("[]"):
        raise ValueError("names an empty host")
    if port and not (port.isdigit() and 0 < int(port) <= 65535):
        raise ValueError(f"host {host!r} has no valid port")


def parse_dsn(dsn: str) -> Dsn:
    """Read a ``postgresql://`` URL; ValueError says what is wrong with it.

    Several hosts (``postgresql://h1:5432,h2:5432/db``) become one URL each, and then
    ``target_session_attrs`` must pick the primary. ``connect_timeout`` (libpq's, seconds per
    host) is taken out: the driver would pass it to the server as a setting it does not know.
    """
    parts = urlsplit(dsn)
    if parts.scheme not in ("postgres", "postgresql"):
        raise ValueError("must be a postgresql:// URL, or empty for the embedded server")
    params = dict(parse_qsl(parts.query, keep_blank_values=True))
    timeout = DEFAULT_CONNECT_TIMEOUT
    if "connect_timeout" in params:
        try:
            timeout = float(params["connect_timeout"])
        except ValueError:
            timeout = math.nan
        if not 0 < timeout < math.inf:
            raise ValueError("connect_timeout must be a number of seconds above 0")
    # Kept as written, not re-encoded: a socket directory in host= stays what it was.
    query = "&".join(
        piece for piece in parts.query.split("&") if piece.split("=", 1)[0] != "connect_timeout"
    )
    attrs = params.get("target_session_attrs") or os.environ.get("PGTARGETSESSIONATTRS", "")
    if attrs and attrs not in SESSION_ATTRS:
        raise ValueError(f"target_session_attrs must be one of {', '.join(sorted(SESSION_ATTRS))}")
    userinfo, at, hostlist = parts.netloc.rpartition("@")
    hosts = tuple(hostlist.split(",")) if hostlist else ()
    for host in hosts:
        _check_host(host)
    several = len(hosts) > 1 or "," in params.get("host", "")
    if several and attrs not in PRIMARY_ONLY:
        raise ValueError(
            "names several hosts: add ?target_session_attrs=read-write so that the bridge "
            "uses only the one that is the primary"
        )
    if len(hosts) > 1 and "host" not in params and "port" not in params:
        urls = tuple(
            urlunsplit(parts._replace(netloc=f"{userinfo}{at}{host}", query=query))
            for host in hosts
        )
        return Dsn(hosts, urls, timeout)
    # One host, or hosts in the query (host=a,b&port=…): the driver goes through them.
    shown = hostlist or params.get("host", "") or "localhost"
    return Dsn((shown,), (urlunsplit(parts._replace(query=query)),), timeout)


def safe_dsn(dsn: str) -> str:
    """The DSN with its password removed (in the authority or the query), for logs."""
    parts = urlsplit(dsn)
    if parts.password is not None:
        userinfo, _, hosts = parts.netloc.rpartition("@")
        user = userinfo.partition(":")[0]
        parts = parts._replace(netloc=f"{user}:***@{hosts}")
    if "password=" in parts.query:
        query = "&".join(
            "password=***" if piece.split("=", 1)[0] == "password" else piece
            for piece in parts.query.split("&")
        )
        parts = parts._replace(query=query)
    return urlunsplit(parts)
