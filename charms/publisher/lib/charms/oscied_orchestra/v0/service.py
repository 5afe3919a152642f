# Copyright 2026 OSCIED contributors.
# Licensed under the Apache License, Version 2.0.

"""The OSCIED workload's systemd service, as the OSCIED charms install and run it.

Shared by the orchestra, transform and publisher charms (the orchestra charm holds the source;
`charms/sync-libs` copies it). No `ops` import, and it never sets a status: the charm calls it
and decides what to tell the operator.

- The service user is fixed: `oscied`, uid/gid 990 on every unit, so that files written on the
  NFS storage tree by one unit are owned by the same user on every other unit.
- `install_binary(src, name)` copies the charm resource to `/usr/local/bin/<name>`.
- `render_env(values)` and `render_unit(...)` render `/etc/oscied/<name>.env` and
  `/etc/systemd/system/oscied-<name>.service` (the README's sandboxed unit).
- `apply(name, files)` writes them and restarts the service only when something changed.

Every path is under `root()`, `$OSCIED_CHARM_ROOT` (default `/`), so tests render into a temp
dir. Every call to the host (systemd, apt, users, ownership) goes through `system`, an instance
of `System` that unit tests replace with a fake::

    service.system = FakeSystem()
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import subprocess
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

# The unique Charmhub library identifier, never change it
LIBID = "804d48a9222843bf9eeb61f71b35b18b"

# Increment this major API version when introducing breaking changes
LIBAPI = 0

# Increment this PATCH version before using `charmcraft publish-lib` or reset
# to 0 if you are raising the major API version
LIBPATCH = 2

logger = logging.getLogger(__name__)

__all__ = [
    "SERVICE_GID",
    "SERVICE_GROUP",
    "SERVICE_UID",
    "SERVICE_USER",
    "STORAGE_MOUNT_POINT",
    "ServiceError",
    "ServiceFiles",
    "System",
    "apply",
    "binary_path",
    "ensure_user",
    "env_path",
    "failed",
    "host_path",
    "install_binary",
    "install_packages",
    "remove",
    "render_env",
    "render_unit",
    "root",
    "running",
    "stop",
    "system",
    "unit_name",
    "unit_path",
    "write_file",
]

SERVICE_USER = "oscied"
SERVICE_GROUP = "oscied"
SERVICE_UID = 990
SERVICE_GID = 990

BIN_DIR = "/usr/local/bin"
ENV_DIR = "/etc/oscied"
UNIT_DIR = "/etc/systemd/system"
# Where every charm mounts (or finds) the storage tree; storage.py renders its mount unit.
STORAGE_MOUNT_POINT = "/srv/oscied"

_ENV_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_NAME = re.compile(r"^[a-z][a-z0-9-]*$")
# systemd's env-file parser unescapes exactly these after a backslash inside double quotes.
_ENV_ESCAPE = {"\\": "\\\\", '"': '\\"', "$": "\\$", "`": "\\`"}


def root() -> Path:
    """Return the directory every path is under: `$OSCIED_CHARM_ROOT`, default `/`."""
    return Path(os.environ.get("OSCIED_CHARM_ROOT", "/"))


def host_path(path: str) -> Path:
    """Return the absolute host path `path` placed under `root()`."""
    return root() / path.lstrip("/")


def unit_name(name: str) -> str:
    """Return the systemd unit of the service `name`: `oscied-<name>.service`."""
    return f"oscied-{_check_name(name)}.service"


def env_path(name: str) -> Path:
    """Return where the service `name` reads its environment: `/etc/oscied/<name>.env`."""
    return host_path(f"{ENV_DIR}/{_check_name(name)}.env")


def unit_path(name: str) -> Path:
    """Return the unit file of the service `name`."""
    return host_path(f"{UNIT_DIR}/{unit_name(name)}")


def binary_path(name: str) -> Path:
    """Return where `install_binary` puts the binary `name`."""
    return host_path(f"{BIN_DIR}/{_check_name(name)}")


class System:
    """The host calls this library makes; unit tests replace the module's `system`.

    The charmlibs are imported on use, so the library imports (and renders) without them.
    """

    def daemon_reload(self) -> None:
        """Make systemd read the unit files again."""
        from charmlibs import systemd

        systemd.daemon_reload()

    def enable(self, unit: str) -> None:
        """Start `unit` at boot."""
        from charmlibs import systemd

        systemd.service_enable(unit)

    def disable(self, unit: str) -> None:
        """Do not start `unit` at boot."""
        from charmlibs import systemd

        systemd.service_disable(unit)

    def start(self, unit: str) -> None:
        """Start `unit` (no-op when it runs), even after systemd gave up on it."""
        from charmlibs import systemd

        _reset_failed(unit)
        systemd.service_start(unit)

    def stop(self, unit: str) -> None:
        """Stop `unit`; for a worker this waits for its drain."""
        from charmlibs import systemd

        systemd.service_stop(unit)

    def restart(self, unit: str) -> None:
        """Restart `unit` (starts it when stopped), even after systemd gave up on it."""
        from charmlibs import systemd

        _reset_failed(unit)
        systemd.service_restart(unit)

    def running(self, unit: str) -> bool:
        """Tell whether `unit` is active."""
        from charmlibs import systemd

        return systemd.service_running(unit)

    def failed(self, unit: str) -> bool:
        """Tell whether systemd gave up on `unit`."""
        from charmlibs import systemd

        return systemd.service_failed(unit)

    def apt_install(self, *packages: str) -> None:
        """Install Debian packages (apt-get update only if one is not found)."""
        from charmlibs import apt

        apt.add_package(list(packages))

    def ensure_user(self, name: str, uid: int, gid: int) -> None:
        """Create the system group and user `name` with these ids, unless they exist.

        Raises ValueError when the name or an id is taken by something else: the files on the
        shared storage would then belong to the wrong user.
        """
        from charmlibs import passwd

        group = passwd.group_exists(name)
        if group is None:
            other = passwd.group_exists(gid)
            if other is not None:
                raise ValueError(f"gid {gid} is taken by group {other.gr_name}, wanted {name}")
            passwd.add_group(name, system_group=True, gid=gid)
        elif group.gr_gid != gid:
            raise ValueError(f"group {name} exists with gid {group.gr_gid}, wanted {gid}")
        user = passwd.user_exists(name)
        if user is None:
            other = passwd.user_exists(uid)
            if other is not None:
                raise ValueError(f"uid {uid} is taken by user {other.pw_name}, wanted {name}")
            passwd.add_user(
                name,
                shell="/usr/sbin/nologin",
                system_user=True,
                primary_group=name,
                uid=uid,
                home_dir="/nonexistent",
                create_home=False,
            )
        elif user.pw_uid != uid:
            raise ValueError(f"user {name} exists with uid {user.pw_uid}, wanted {uid}")

    def chown(self, path: Path, uid: int, gid: int) -> None:
        """Give `path` to uid:gid."""
        os.chown(path, uid, gid)


def _reset_failed(unit: str) -> None:
    # After StartLimitBurst failures systemd refuses even a manual start until this; a new
    # config (a fixed node secret) deserves a fresh try.
    subprocess.run(["/usr/bin/systemctl", "reset-failed", unit], capture_output=True, check=False)


system = System()


try:
    from charmlibs.systemd import SystemdError as _SystemdError
except ImportError:  # rendering without charmlibs installed
    _SystemdError = Exception


class ServiceError(_SystemdError):
    """The service (or the mount) could not be started; the message is fit for a status.

    A `charmlibs.systemd.SystemdError`, so code catching that catches this too.
    """


def ensure_user() -> None:
    """Create the fixed service user `oscied` (uid/gid 990) if it is not there."""
    system.ensure_user(SERVICE_USER, SERVICE_UID, SERVICE_GID)


def install_packages(*packages: str) -> None:
    """Install Debian packages the workload needs (ffmpeg, nfs-common)."""
    if packages:
        system.apt_install(*packages)


def install_binary(src: Path | str, name: str) -> bool:
    """Install the file `src` as `/usr/local/bin/<name>`, mode 0755.

    Returns whether the installed binary changed. The new file is renamed over the old one,
    so a running service keeps its binary until it is restarted (no "text file busy").
    """
    dest = binary_path(name)
    new_digest = _digest(Path(src))
    if dest.exists() and _digest(dest) == new_digest and (dest.stat().st_mode & 0o777) == 0o755:
        return False
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{name}.")
    try:
        with os.fdopen(fd, "wb") as out, Path(src).open("rb") as data:
            while chunk := data.read(1 << 20):
                out.write(chunk)
        os.chmod(tmp, 0o755)
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    logger.info("installed %s", dest)
    return True


def render_env(values: Mapping[str, str]) -> str:
    """Render an EnvironmentFile: sorted `KEY="value"` lines.

    Values are double-quoted with systemd's escapes, so spaces, quotes, `$` and `#` pass
    through as they are. Raises ValueError for a bad key, or a value systemd cannot carry on
    one line (newline, carriage return, NUL); the message names the key, never the value.
    """
    lines = []
    for key in sorted(values):
        value = values[key]
        if not _ENV_KEY.match(key):
            raise ValueError(f"invalid environment variable name {key!r}")
        if not isinstance(value, str):
            raise ValueError(f"{key} must be a string")
        if any(c in value for c in "\n\r\0"):
            raise ValueError(f"{key} must be a single line")
        quoted = "".join(_ENV_ESCAPE.get(c, c) for c in value)
        lines.append(f'{key}="{quoted}"\n')
    return "".join(lines)


def render_unit(
    name: str,
    *,
    binary: str,
    description: str,
    state_directory: str | None = None,
    environment: Mapping[str, str] | None = None,
    storage_path: str = STORAGE_MOUNT_POINT,
    writes_storage: bool = True,
    timeout_stop_secs: int = 30,
) -> str:
    """Render the sandboxed unit `oscied-<name>.service` of the README.

    Args:
        name: the service (`orchestra`, `transform`, `publisher`); its env file is
            `/etc/oscied/<name>.env`.
        binary: the executable's name in `/usr/local/bin`.
        description: the unit's Description.
        state_directory: `StateDirectory=` (under /var/lib), default `oscied-<name>`.
        environment: fixed `Environment=` lines (e.g. `OSCIED_DATA_DIR=%S/oscied`: systemd
            expands `%S`); the values are not secret, secrets go in the env file.
        storage_path: the storage tree; the service starts only once it is mounted.
        writes_storage: whether the service may write the storage tree (`ReadWritePaths=`);
            the publisher only reads it.
        timeout_stop_secs: how long `systemctl stop` waits (the drain plus a margin).
    """
    _check_name(name)
    _check_name(binary)
    state = state_directory or f"oscied-{name}"
    _check_name(state)
    _check_unit_value("description", description)
    _check_path(storage_path)
    if not isinstance(timeout_stop_secs, int) or timeout_stop_secs < 1:
        raise ValueError(f"timeout_stop_secs must be a whole number >= 1, got {timeout_stop_secs}")
    env_lines = []
    for key, value in sorted((environment or {}).items()):
        if not _ENV_KEY.match(key):
            raise ValueError(f"invalid environment variable name {key!r}")
        _check_unit_value(key, value)
        if any(c in value for c in ' "\\'):
            raise ValueError(f"{key} may not contain spaces, quotes or backslashes")
        env_lines.append(f"Environment={key}={value}\n")
    read_write = f"ReadWritePaths={storage_path}\n" if writes_storage else ""
    return (
        "# Written by the OSCIED charm; changes are overwritten.\n"
        "[Unit]\n"
        f"Description={description.replace('%', '%%')}\n"
        "Wants=network-online.target\n"
        "After=network-online.target\n"
        f"RequiresMountsFor={storage_path}\n"
        "StartLimitIntervalSec=600\n"
        "StartLimitBurst=5\n"
        "\n"
        "[Service]\n"
        f"User={SERVICE_USER}\n"
        f"Group={SERVICE_GROUP}\n"
        f"EnvironmentFile={ENV_DIR}/{name}.env\n"
        f"StateDirectory={state}\n"
        "StateDirectoryMode=0700\n"
        f"{''.join(env_lines)}"
        f"ExecStart={BIN_DIR}/{binary}\n"
        "Restart=on-failure\n"
        "RestartSec=5\n"
        "KillSignal=SIGTERM\n"
        # SIGTERM to the OSCIED process only: it drains, and stops its own ffmpeg.
        "KillMode=mixed\n"
        f"TimeoutStopSec={timeout_stop_secs}\n"
        "ProtectSystem=strict\n"
        f"{read_write}"
        "ProtectHome=yes\n"
        "PrivateTmp=yes\n"
        "PrivateDevices=yes\n"
        "NoNewPrivileges=yes\n"
        "CapabilityBoundingSet=\n"
        "ProtectKernelTunables=yes\n"
        "ProtectKernelModules=yes\n"
        "ProtectKernelLogs=yes\n"
        "ProtectControlGroups=yes\n"
        "RestrictNamespaces=yes\n"
        "RestrictRealtime=yes\n"
        "RestrictSUIDSGID=yes\n"
        "LockPersonality=yes\n"
        "ProtectClock=yes\n"
        "ProtectHostname=yes\n"
        "ProtectProc=invisible\n"
        "RemoveIPC=yes\n"
        "SystemCallArchitectures=native\n"
        "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK\n"
        "UMask=0027\n"
        "\n"
        "[Install]\n"
        "WantedBy=multi-user.target\n"
    )


@dataclass(frozen=True)
class ServiceFiles:
    """What `apply` writes for one service."""

    env: str
    """The environment file's content (`render_env`); it may hold secrets: mode 0600."""

    unit: str
    """The unit file's content (`render_unit`)."""

    binary_changed: bool = False
    """Whether `install_binary` just replaced the binary (a restart is due)."""


def apply(name: str, files: ServiceFiles, *, running: bool = True) -> bool:
    """Write the service's files, enable it and (re)start it only when needed.

    The env file is written mode 0600 in `/etc/oscied` (mode 0700); systemd reads it as root.
    With `running` (the default) the service is enabled and restarted when its env, its unit
    or its binary changed, or started when it is not running; otherwise it is left alone.
    With `running=False` (a drained worker) the files are still written and the service is
    stopped and disabled, so it stays stopped across reboots until resumed.

    Returns whether the service was (re)started; raises ServiceError if systemd refused.
    """
    unit = unit_name(name)
    env_changed = write_file(env_path(name), files.env, mode=0o600, dir_mode=0o700)
    env_path(name).parent.chmod(0o700)
    unit_changed = write_file(unit_path(name), files.unit, mode=0o644)
    if unit_changed:
        system.daemon_reload()
    if not running:
        if system.running(unit):
            system.stop(unit)
        system.disable(unit)
        return False
    system.enable(unit)
    try:
        if env_changed or unit_changed or files.binary_changed:
            logger.info("restarting %s: its configuration or binary changed", unit)
            system.restart(unit)
            return True
        if not system.running(unit):
            logger.info("starting %s: it was not running", unit)
            system.start(unit)
            return True
    except Exception as e:  # SystemdError, OSError: the journal has the reason
        logger.error("%s did not start: %s", unit, e)
        raise ServiceError(f"{unit} did not start: see journalctl -u {unit}") from None
    return False


def stop(name: str) -> None:
    """Stop the service (a worker drains first: `TimeoutStopSec` covers it)."""
    unit = unit_name(name)
    if unit_path(name).exists() and system.running(unit):
        system.stop(unit)


def running(name: str) -> bool:
    """Tell whether the service runs."""
    return system.running(unit_name(name))


def failed(name: str) -> bool:
    """Tell whether systemd gave up restarting the service (see `journalctl -u`)."""
    return system.failed(unit_name(name))


def remove(name: str) -> None:
    """Stop and disable the service and delete its unit and env files (the `remove` hook)."""
    unit = unit_name(name)
    if unit_path(name).exists():
        if system.running(unit):
            system.stop(unit)
        system.disable(unit)
    removed = False
    for path in (unit_path(name), env_path(name)):
        if path.exists():
            path.unlink()
            removed = True
    if removed:
        system.daemon_reload()


def write_file(path: Path, content: str, *, mode: int = 0o644, dir_mode: int = 0o755) -> bool:
    """Write `content` to `path` atomically with `mode`; return whether anything changed.

    The temp file is created with `mode` before any byte is written, so a secret is never
    readable by others, even for a moment.
    """
    data = content.encode()
    if path.exists():
        if path.read_bytes() == data and (path.stat().st_mode & 0o777) == mode:
            return False
    else:
        path.parent.mkdir(mode=dir_mode, parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return True


def _digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as data:
        while chunk := data.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _check_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(f"invalid service or binary name {name!r}")
    return name


def _check_path(path: str) -> None:
    if not path.startswith("/") or any(c.isspace() or c in "\\\"'%" for c in path):
        raise ValueError(f"{path!r} must be an absolute path without spaces, quotes or %")


def _check_unit_value(what: str, value: str) -> None:
    if not isinstance(value, str) or any(c in value for c in "\n\r\0"):
        raise ValueError(f"{what} must be a single line")
