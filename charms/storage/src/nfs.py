# Copyright 2026 OSCIED contributors.
# Licensed under the Apache License, Version 2.0.

"""The storage charm's workload: an NFS server exporting the OSCIED storage tree.

No `ops` import. Every path is under `$OSCIED_CHARM_ROOT` (default `/`) and every call to the
host (apt, systemd, exportfs, systemd-detect-virt, chown) goes through `host`, an instance of
`Host` that unit tests replace.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import re
import subprocess
import tempfile
from pathlib import Path

logger = logging.getLogger(__name__)

# The OSCIED service user's ids, the same on every unit of every OSCIED charm
# (charms.oscied_orchestra.v0.service.SERVICE_UID; charms/tests/test_libs.py checks they agree).
SERVICE_UID = 990
SERVICE_GID = 990

PACKAGES = ("nfs-kernel-server",)
SERVER_UNIT = "nfs-server.service"
EXPORTS_FILE = "/etc/exports.d/oscied.exports"
NFS_PORT = 2049
# root_squash maps a client's root (a charm creating a directory) to the service user instead
# of nobody, so every file in the tree belongs to uid 990.
EXPORT_OPTIONS = (
    f"rw,sync,no_subtree_check,root_squash,anonuid={SERVICE_UID},anongid={SERVICE_GID}"
)

# Directories an export must not be, or be inside of: the system's own.
_SYSTEM_DIRS = (
    "/bin",
    "/boot",
    "/dev",
    "/etc",
    "/lib",
    "/lib64",
    "/proc",
    "/root",
    "/run",
    "/sbin",
    "/sys",
    "/tmp",
    "/usr",
    "/var/lib/juju",
    "/var/log",
)
_PATH_CHARS = re.compile(r"^/[A-Za-z0-9._~/+,=@:-]*$")
_LABEL = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")


class Host:
    """The calls to the host; unit tests replace the module's `host`."""

    def apt_install(self, *packages: str) -> None:
        """Install Debian packages (apt-get update only when one is not found)."""
        from charmlibs import apt

        apt.add_package(list(packages))

    def installed(self, package: str) -> bool:
        """Tell whether a Debian package is installed."""
        from charmlibs import apt

        try:
            apt.DebianPackage.from_installed_package(package)
        except apt.PackageNotFoundError:
            return False
        return True

    def container(self) -> str:
        """Return the container technology this machine runs in, or "" on a VM or metal."""
        result = subprocess.run(
            ["/usr/bin/systemd-detect-virt", "--container"],
            capture_output=True,
            text=True,
            check=False,
        )
        name = result.stdout.strip()
        # Exit 1 and "none" when not in a container.
        return "" if result.returncode != 0 or name == "none" else name

    def exportfs_reload(self) -> None:
        """Make the kernel server re-read every exports file."""
        subprocess.run(["/usr/sbin/exportfs", "-ra"], capture_output=True, check=True)

    def enable_server(self) -> None:
        """Start the NFS server now and at boot."""
        from charmlibs import systemd

        systemd.service_enable("--now", SERVER_UNIT)

    def server_running(self) -> bool:
        """Tell whether the NFS server is active."""
        from charmlibs import systemd

        return systemd.service_running(SERVER_UNIT)

    def chown(self, path: Path, uid: int, gid: int) -> None:
        """Give `path` to uid:gid."""
        os.chown(path, uid, gid)


host = Host()


class HostError(Exception):
    """A host operation failed; the message is fit for a status (no secrets here)."""


def root() -> Path:
    """Return the directory every path is under: `$OSCIED_CHARM_ROOT`, default `/`."""
    return Path(os.environ.get("OSCIED_CHARM_ROOT", "/"))


def host_path(path: str) -> Path:
    """Return the absolute host path `path` placed under `root()`."""
    return root() / path.lstrip("/")


def container() -> str:
    """Return the container this unit runs in ("" if none): the kernel NFS server needs a VM."""
    return host.container()


def missing_packages() -> list[str]:
    """Return the server packages not installed yet."""
    return [p for p in PACKAGES if not host.installed(p)]


def install() -> None:
    """Install the NFS server packages unless they are there; raise HostError if apt fails."""
    missing = missing_packages()
    if not missing:
        return
    logger.info("installing %s", " ".join(missing))
    try:
        host.apt_install(*missing)
    except Exception as e:  # apt raises PackageError, CalledProcessError, OSError...
        logger.error("installing %s failed: %s", " ".join(missing), e)
        raise HostError(f"failed to install {' '.join(missing)}: see juju debug-log") from None


def validate_path(value: str) -> str:
    """Return the export directory of the `path` option, normalised; raise ValueError why not."""
    path = (value or "").strip()
    if not path.startswith("/"):
        raise ValueError(f"path must be an absolute directory, got {_show(path)}")
    if not _PATH_CHARS.match(path):
        raise ValueError("path may hold only letters, digits and . _ ~ / + , = @ : -")
    parts = [p for p in path.split("/") if p]
    if any(p in (".", "..") for p in parts):
        raise ValueError("path may not contain . or .. segments")
    path = "/" + "/".join(parts)
    if path == "/":
        raise ValueError("path may not be /")
    for system in _SYSTEM_DIRS:
        if path == system or path.startswith(system + "/"):
            raise ValueError(f"path may not be in {system}")
    return path


def parse_clients(value: str) -> list[str]:
    """Parse the `clients` option: CIDRs, IP addresses or host names, comma or space separated.

    Returns them normalised, without duplicates, in order; [] when the option is empty.
    Raises ValueError naming the first bad entry.
    """
    clients: list[str] = []
    for entry in re.split(r"[,\s]+", (value or "").strip()):
        if not entry:
            continue
        client = _parse_client(entry)
        if client not in clients:
            clients.append(client)
    return clients


def _parse_client(entry: str) -> str:
    try:
        return str(ipaddress.ip_network(entry, strict=False))
    except ValueError:
        pass
    labels = entry.rstrip(".").split(".")
    if (
        len(entry) <= 253
        and all(_LABEL.match(label) for label in labels)
        and not labels[-1].isdigit()
    ):
        return entry.lower()
    raise ValueError(f"clients: {_show(entry)} is not a CIDR, an IP address or a host name")


def render_exports(path: str, clients: list[str]) -> str:
    """Render the exports file giving `clients` read-write access to `path`."""
    if not clients:
        raise ValueError("an export needs at least one client")
    access = " ".join(f"{client}({EXPORT_OPTIONS})" for client in clients)
    return f"# Written by the oscied-storage charm; changes are overwritten.\n{path} {access}\n"


def ensure_export_dir(path: str) -> None:
    """Create the export directory, owned by the service user, mode 0750 (data is kept)."""
    directory = host_path(path)
    directory.mkdir(parents=True, exist_ok=True)
    info = directory.stat()
    if (info.st_uid, info.st_gid) != (SERVICE_UID, SERVICE_GID):
        host.chown(directory, SERVICE_UID, SERVICE_GID)
    if info.st_mode & 0o777 != 0o750:
        directory.chmod(0o750)


def apply_exports(path: str, clients: list[str]) -> bool:
    """Write the exports file; reload the exports only when it changed. Return whether it did."""
    target = host_path(EXPORTS_FILE)
    content = render_exports(path, clients)
    if target.exists() and target.read_text() == content:
        return False
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".oscied.")
    try:
        os.fchmod(fd, 0o644)
        with os.fdopen(fd, "w") as out:
            out.write(content)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    logger.info("exporting %s to %s", path, ", ".join(clients))
    _reload()
    return True


def remove_exports() -> bool:
    """Stop exporting (the data stays). Return whether there was an export."""
    target = host_path(EXPORTS_FILE)
    if not target.exists():
        return False
    target.unlink()
    _reload()
    return True


def _reload() -> None:
    try:
        host.exportfs_reload()
    except subprocess.CalledProcessError as e:
        detail = (e.stderr or b"").decode(errors="replace").strip().splitlines()
        logger.error("exportfs -ra failed: %s", "; ".join(detail))
        raise HostError(
            f"exportfs -ra failed: {detail[0][:80] if detail else 'no output'}"
        ) from None


def start_server() -> bool:
    """Start the NFS server if it is not running. Return whether it runs."""
    if host.server_running():
        return True
    try:
        host.enable_server()
    except Exception as e:  # SystemdError; the status says where to look
        logger.error("starting %s failed: %s", SERVER_UNIT, e)
    return host.server_running()


def _show(value: str) -> str:
    """Quote a config value for a status message, cut short."""
    return repr(value if len(value) <= 40 else value[:37] + "...")
