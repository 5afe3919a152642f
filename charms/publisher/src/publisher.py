# Copyright 2026 OSCIED contributors.
# Licensed under the Apache License, Version 2.0.

"""What is the publisher unit's own: its port, its public URL, its web root (no `ops` here).

Everything a worker shares with the transform unit (relations, env file, systemd unit,
drain) is in `charms.oscied_orchestra.v0.worker`; this module says what sets the publisher
apart.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

NAME = "publisher"
BINARY = "worker-publisher"
DESCRIPTION = "OSCIED publisher unit"
DEFAULT_PORT = 5080
# The web root on local disk, in the service's StateDirectory (/var/lib/oscied-publisher/www,
# systemd expands %S); its .oscied/ holds the unit's id, so the id stays with the files it
# serves. The storage tree stays read-only: publications are copied from it.
UNIT_ENVIRONMENT = {"OSCIED_WWW_ROOT": "%S/oscied-publisher/www"}
WWW_ROOT = "/var/lib/oscied-publisher/www"


def parse_port(value: Any) -> int:
    """The `port` option: 1 to 65535."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise ValueError(f"port must be a whole number from 1 to 65535, got {str(value)[:32]}")
    return value


def parse_public_url(text: str) -> str:
    """The `public-url` option as the binary checks it: http(s), a host, no query/fragment.

    Returned without a trailing slash, as the binary keeps it.
    """
    scheme, sep, rest = str(text).strip().partition("://")
    if not sep or scheme not in ("http", "https"):
        raise ValueError("public-url must start with http:// or https://")
    rest = rest.rstrip("/")
    if not rest.split("/")[0]:
        raise ValueError("public-url must name a host")
    url = f"{scheme}://{rest}"
    if "?" in url or "#" in url or any(c.isspace() for c in url):
        raise ValueError("public-url must not hold a query, a fragment or spaces")
    return url


def default_public_url(address: str, port: int) -> str:
    """`http://<address>:<port>`, an IPv6 address in brackets."""
    host = f"[{address}]" if ":" in address else address
    return f"http://{host}:{port}"


def settings(config: Mapping[str, Any], address: str) -> dict[str, Any]:
    """The publisher's own options from the charm config and the unit's address.

    Returns the env variables, the facts registered with the orchestra, the port to open and
    the start of the Active message; raises ValueError naming the option and why.
    """
    port = parse_port(config.get("port", DEFAULT_PORT))
    given = str(config.get("public-url") or "").strip()
    public_url = parse_public_url(given) if given else default_public_url(address, port)
    return {
        "env": {"OSCIED_LISTEN": f"0.0.0.0:{port}", "OSCIED_PUBLIC_URL": public_url},
        "facts": {"public-url": public_url},
        "ports": (port,),
        "summary": f"serving {public_url}",
    }
