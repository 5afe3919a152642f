# Copyright 2026 OSCIED contributors.
# Licensed under the Apache License, Version 2.0.

"""The OSCIED storage tree: where it is and how a unit mounts it.

Shared by the orchestra, transform and publisher charms (the orchestra charm holds the source;
`charms/sync-libs` copies it). No `ops` import, and it never sets a status.

The tree comes either from the `storage` relation (interface `filesystem_info`, whose provider
writes `endpoint` = `nfs://(host[:port])/path` in its app bag) or from the `storage-uri`
option. `parse_storage_uri` accepts:

- `nfs://host/path`, `nfs://host:port/path` and the `filesystem_info` form
  `nfs://(host[:port])/path` (percent-encoded parts decoded): an NFS export, mounted by the
  systemd unit `srv-oscied.mount` at `/srv/oscied`;
- `file:///path`: a directory already there (a mount the host manages); nothing is mounted.

It raises ValueError with a message saying why, fit for a Blocked status. Mounting goes
through `service.system` (systemd), so unit tests replace it the same way.
"""

from __future__ import annotations

import ipaddress
import logging
import re
from dataclasses import dataclass
from urllib.parse import quote, unquote

from charms.oscied_orchestra.v0 import service

# The unique Charmhub library identifier, never change it
LIBID = "af9195451a3b481da0a02b7cd4d5cd6f"

# Increment this major API version when introducing breaking changes
LIBAPI = 0

# Increment this PATCH version before using `charmcraft publish-lib` or reset
# to 0 if you are raising the major API version
LIBPATCH = 2

logger = logging.getLogger(__name__)

__all__ = [
    "CLIENT_PACKAGES",
    "MOUNT_OPTIONS",
    "MOUNT_POINT",
    "MOUNT_UNIT",
    "Storage",
    "apply_mount",
    "mounted",
    "parse_storage_uri",
    "remove_mount",
    "render_mount_unit",
]

MOUNT_POINT = service.STORAGE_MOUNT_POINT
# systemd requires a mount unit to be named after its mount point.
MOUNT_UNIT = "srv-oscied.mount"
MOUNT_OPTIONS = "hard,noatime,_netdev"
# What a client needs to mount NFS.
CLIENT_PACKAGES = ("nfs-common",)

# Characters a path may hold: it ends up in a unit file and an NFS mount source, where spaces,
# quotes, backslashes, `%` (systemd specifiers) and control characters would change meaning.
_PATH_CHARS = re.compile(r"^[A-Za-z0-9._~/+,=@:-]+$")
_LABEL = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")


@dataclass(frozen=True)
class Storage:
    """Where the storage tree is."""

    scheme: str
    """`nfs` (mount an export) or `file` (a local path, nothing to mount)."""

    path: str
    """The NFS export path, or the local directory."""

    host: str = ""
    """The NFS server (a name, an IPv4 or an IPv6 address without brackets)."""

    port: int | None = None
    """The NFS server's port, when not the default."""

    @property
    def is_nfs(self) -> bool:
        """Whether the tree is an NFS export to mount."""
        return self.scheme == "nfs"

    @property
    def root(self) -> str:
        """The local directory the services use (`OSCIED_STORAGE_ROOT`)."""
        return MOUNT_POINT if self.is_nfs else self.path

    @property
    def source(self) -> str:
        """The mount source, `host:/path` (`[v6]:/path`)."""
        if not self.is_nfs:
            raise ValueError("a file:// storage has no mount source")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.path}"

    @property
    def uri(self) -> str:
        """The canonical URI: `file:///path`, or `nfs://(host[:port])/path`.

        The NFS form is the one filesystem_info writes: the `:` and brackets inside the
        parentheses percent-encoded, which its parser needs.
        """
        if not self.is_nfs:
            return f"file://{self.path}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        port = f":{self.port}" if self.port else ""
        return f"nfs://({quote(host + port, safe='')}){quote(self.path)}"

    def __str__(self) -> str:
        """Return the canonical URI."""
        return self.uri


def parse_storage_uri(uri: str) -> Storage:
    """Parse a storage URI (see the module doc); raise ValueError saying why it is not one."""
    if not isinstance(uri, str) or not uri.strip():
        raise ValueError("storage URI is empty")
    uri = uri.strip()
    if any(c.isspace() or ord(c) < 32 for c in uri):
        raise ValueError("storage URI may not contain spaces or control characters")
    scheme, sep, rest = uri.partition("://")
    scheme = scheme.lower()
    if not sep or scheme not in ("nfs", "file"):
        shown = scheme if sep and len(scheme) <= 16 else "none"
        raise ValueError(
            f"storage URI must be nfs://host/path or file:///path (scheme {shown} is not "
            "supported)"
        )
    rest, _, query = rest.partition("?")
    netloc, slash, path = rest.partition("/")
    path = _check_path(slash + path)
    if scheme == "file":
        if netloc not in ("", "localhost"):
            raise ValueError("file:// storage URI takes no host: write file:///path")
        if query:
            raise ValueError("file:// storage URI takes no options")
        return Storage(scheme="file", path=path)
    if query:
        # The filesystem_info lib ignores NFS options too; nothing of them is used.
        logger.warning("ignoring the options of the NFS storage URI")
    host, port = _parse_nfs_netloc(netloc)
    return Storage(scheme="nfs", path=path, host=host, port=port)


def render_mount_unit(storage: Storage) -> str:
    """Render `srv-oscied.mount`, mounting the NFS export at `/srv/oscied`."""
    if not storage.is_nfs:
        raise ValueError("a file:// storage needs no mount unit")
    options = MOUNT_OPTIONS + (f",port={storage.port}" if storage.port else "")
    return (
        "# Written by the OSCIED charm; changes are overwritten.\n"
        "[Unit]\n"
        f"Description=OSCIED storage tree from {storage.source}\n"
        "Wants=network-online.target\n"
        "After=network-online.target\n"
        "\n"
        "[Mount]\n"
        f"What={storage.source}\n"
        f"Where={MOUNT_POINT}\n"
        "Type=nfs\n"
        f"Options={options}\n"
        # A hook waits for the mount: give up (the charm says so) rather than hang.
        "TimeoutSec=60\n"
        "\n"
        "[Install]\n"
        "WantedBy=remote-fs.target\n"
    )


def _mount_unit_path():
    return service.host_path(f"{service.UNIT_DIR}/{MOUNT_UNIT}")


def apply_mount(storage: Storage) -> bool:
    """Make the storage tree available; return whether it was (re)mounted.

    NFS: write `srv-oscied.mount`, enable it, and mount (or remount, when the unit changed).
    Services with `RequiresMountsFor=/srv/oscied` are restarted by systemd with the mount.
    file://: remove a mount unit left from an earlier NFS storage; nothing else.
    Raises `service.ServiceError` when the mount fails (the server is unreachable, the
    export refuses this host), with a message fit for a status.
    """
    if not storage.is_nfs:
        remove_mount()
        return False
    service.host_path(MOUNT_POINT).mkdir(parents=True, exist_ok=True)
    changed = service.write_file(_mount_unit_path(), render_mount_unit(storage))
    if changed:
        service.system.daemon_reload()
    service.system.enable(MOUNT_UNIT)
    try:
        if changed:
            logger.info("mounting %s at %s", storage.source, MOUNT_POINT)
            service.system.restart(MOUNT_UNIT)
            return True
        if not service.system.running(MOUNT_UNIT):
            service.system.start(MOUNT_UNIT)
            return True
    except Exception as e:  # SystemdError: the journal has mount.nfs's reason
        logger.error("mounting %s failed: %s", storage.source, e)
        raise service.ServiceError(
            f"cannot mount {storage.source}: see journalctl -u {MOUNT_UNIT}"
        ) from None
    return False


def mounted() -> bool:
    """Tell whether `srv-oscied.mount` is active."""
    return service.system.running(MOUNT_UNIT)


def remove_mount() -> None:
    """Unmount and delete `srv-oscied.mount` if the charm wrote one."""
    path = _mount_unit_path()
    if not path.exists():
        return
    if service.system.running(MOUNT_UNIT):
        service.system.stop(MOUNT_UNIT)
    service.system.disable(MOUNT_UNIT)
    path.unlink()
    service.system.daemon_reload()


def _check_path(path: str) -> str:
    path = unquote(path)
    if not path.startswith("/"):
        raise ValueError("storage URI needs an absolute path (nfs://host/path, file:///path)")
    if not _PATH_CHARS.match(path):
        raise ValueError("storage path may hold only letters, digits and . _ ~ / + , = @ : -")
    parts = path.split("/")[1:]
    if parts and parts[-1] == "":
        parts.pop()
    if any(p in ("", ".", "..") for p in parts):
        raise ValueError("storage path may not contain empty, . or .. segments")
    return "/" + "/".join(parts)


def _parse_nfs_netloc(netloc: str) -> tuple[str, int | None]:
    if "@" in netloc:
        raise ValueError("NFS storage URI takes no user")
    if netloc.startswith("(") and netloc.endswith(")"):
        netloc = netloc[1:-1]
    netloc = unquote(netloc)
    if not netloc:
        raise ValueError("NFS storage URI needs a host: nfs://host/path")
    if "," in netloc:
        raise ValueError("NFS storage URI takes one host, not a list")
    port_text = ""
    if netloc.startswith("["):
        host, bracket, after = netloc[1:].partition("]")
        if not bracket or (after and not after.startswith(":")):
            raise ValueError("NFS storage URI has a malformed [IPv6] host")
        if after == ":":
            raise ValueError("NFS storage URI has an empty port")
        port_text = after[1:]
        try:
            host = str(ipaddress.IPv6Address(host))
        except ValueError:
            raise ValueError("NFS storage URI has an invalid IPv6 address") from None
    else:
        host, colon, port_text = netloc.partition(":")
        if colon and not port_text:
            raise ValueError("NFS storage URI has an empty port")
        _check_host(host)
    return host, _parse_port(port_text)


def _parse_port(text: str) -> int | None:
    if not text:
        return None
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise ValueError("NFS storage URI port must be a number from 1 to 65535")
    return int(text)


def _check_host(host: str) -> None:
    try:
        ipaddress.IPv4Address(host)
        return
    except ValueError:
        pass
    labels = host.rstrip(".").split(".")
    if len(host) > 253 or not all(_LABEL.match(label) for label in labels):
        raise ValueError("NFS storage URI host must be a host name or an IP address")
    if labels[-1].isdigit():
        # All-digit last label: a mistyped IPv4 address, not a name.
        raise ValueError("NFS storage URI host must be a host name or an IP address")
