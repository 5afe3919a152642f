"""The orchestra workload: config checks, its environment, and calls to its local API.

No `ops` import: the charm gathers facts from Juju and hands them here. Rendering and running
the systemd service is the shared `charms.oscied_orchestra.v0.service` library's job.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from charms.oscied_orchestra.v0 import service, storage

NAME = "orchestra"
BINARY = "orchestra"
RESOURCE = "orchestra-binary"
# The data dir: /var/lib/oscied (StateDirectory=), as the README's unit.
STATE_DIRECTORY = "oscied"
# Cluster mode runs no unit: nothing to drain but open requests.
TIMEOUT_STOP_SECS = 30
# What `verbose` turns RUST_LOG into (the binaries' default is "info,lapin=off").
VERBOSE_LOG_FILTER = "debug,lapin=info"

# The binary's own bounds (orchestra/src/config.rs), checked here so a bad value is a Blocked
# status instead of a service that keeps failing to start.
TASK_LEASE_SECS = (2, 86400)
TASK_MAX_ATTEMPTS = (1, 100)
SECRET_LENGTH = (16, 1024)

_SIZE = re.compile(r"^([0-9]+)\s*([A-Za-z]*)$")
_SIZE_SHIFT = {"": 0, "b": 0, "k": 10, "kb": 10, "kib": 10, "m": 20, "mb": 20, "mib": 20}
_SIZE_SHIFT |= {"g": 30, "gb": 30, "gib": 30, "t": 40, "tb": 40, "tib": 40}
_VHOST = re.compile(r"^[A-Za-z0-9._~/-]{1,255}$")


class ConfigError(ValueError):
    """A config option's value is wrong; the message names the option and says why."""


@dataclass(frozen=True)
class Settings:
    """The validated config options the environment is made of."""

    port: int
    log_format: str
    verbose: bool
    task_lease_secs: int
    task_max_attempts: int
    max_upload_bytes: str
    mongodb_uri: str
    amqp_uri: str
    amqp_vhost: str
    storage: storage.Storage | None
    """The `storage-uri` override, parsed; None: the storage relation says."""


def _whole(config: Mapping[str, object], key: str, bounds: tuple[int, int]) -> int:
    value = config.get(key)
    low, high = bounds
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigError(f"{key} must be a whole number from {low} to {high}, got {value}")
    return value


def _text(config: Mapping[str, object], key: str) -> str:
    value = config.get(key, "")
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ConfigError(f"{key} must be a string")
    value = value.strip()
    if any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in value):
        raise ConfigError(f"{key} may not contain spaces or control characters")
    return value


def parse_size(text: str) -> int:
    """Bytes, or with a unit (`500M`, `2GiB`, powers of 1024), as the binary takes them."""
    match = _SIZE.match(text.strip())
    if not match or match.group(2).lower() not in _SIZE_SHIFT:
        raise ValueError(f"{text!r} is not a size such as 1048576, 500M or 2GiB")
    value = int(match.group(1)) << _SIZE_SHIFT[match.group(2).lower()]
    if value >= 1 << 64:
        raise ValueError(f"{text!r} is too large")
    return value


def _uri(config: Mapping[str, object], key: str, schemes: tuple[str, ...]) -> str:
    value = _text(config, key)
    if value and not any(value.startswith(f"{s}://") and len(value) > len(s) + 3 for s in schemes):
        shown = " or ".join(f"{s}://..." for s in schemes)
        # Never echo the value: it may carry a password.
        raise ConfigError(f"{key} must look like {shown}")
    return value


def validate(config: Mapping[str, object]) -> Settings:
    """Check every option; raise ConfigError naming the first bad one."""
    log_format = config.get("log-format")
    if log_format not in ("human", "json"):
        raise ConfigError(f"log-format must be human or json, got {str(log_format)[:32]!r}")
    verbose = config.get("verbose", False)
    if not isinstance(verbose, bool):
        raise ConfigError("verbose must be true or false")
    max_upload = _text(config, "max-upload-bytes")
    try:
        if parse_size(max_upload) < 1:
            raise ValueError("it must be at least 1 byte")
    except ValueError as e:
        raise ConfigError(f"max-upload-bytes: {e}") from None
    vhost = _text(config, "amqp-vhost")
    if not _VHOST.match(vhost):
        raise ConfigError(
            f"amqp-vhost must be 1 to 255 letters, digits or . _ ~ / -, got {vhost[:32]!r}"
        )
    storage_uri = _text(config, "storage-uri")
    try:
        tree = storage.parse_storage_uri(storage_uri) if storage_uri else None
    except ValueError as e:
        raise ConfigError(f"storage-uri: {e}") from None
    return Settings(
        port=_whole(config, "port", (1, 65535)),
        log_format=log_format,
        verbose=verbose,
        task_lease_secs=_whole(config, "task-lease-secs", TASK_LEASE_SECS),
        task_max_attempts=_whole(config, "task-max-attempts", TASK_MAX_ATTEMPTS),
        max_upload_bytes=max_upload,
        mongodb_uri=_uri(config, "mongodb-uri", ("mongodb", "mongodb+srv")),
        amqp_uri=_uri(config, "amqp-uri", ("amqp", "amqps")),
        amqp_vhost=vhost,
        storage=tree,
    )


def check_secret(what: str, value: str) -> str:
    """A root or node secret fit for the env file and HTTP Basic; raise ConfigError if not."""
    low, high = SECRET_LENGTH
    if not low <= len(value) <= high:
        raise ConfigError(f"{what} must be {low} to {high} characters long")
    if any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in value):
        raise ConfigError(f"{what} may not contain spaces or control characters")
    return value


def new_secret() -> str:
    """A fresh random secret (256 bits, URL-safe)."""
    return secrets.token_urlsafe(32)


def environment(
    settings: Settings,
    *,
    mongodb_uri: str,
    amqp_uri: str,
    storage_root: str,
    root_secret: str,
    node_secret: str,
    rotate_root_secret: bool = False,
) -> dict[str, str]:
    """The orchestra's environment file, as a mapping (`service.render_env` renders it).

    `OSCIED_DATA_DIR` is not here: the unit file sets it from its `StateDirectory=`.
    """
    env = {
        "OSCIED_LISTEN": f"0.0.0.0:{settings.port}",
        "OSCIED_MONGODB_URI": mongodb_uri,
        "OSCIED_AMQP_URI": amqp_uri,
        "OSCIED_STORAGE_ROOT": storage_root,
        "OSCIED_ROOT_SECRET": root_secret,
        "OSCIED_NODE_SECRET": node_secret,
        "OSCIED_LOG_FORMAT": settings.log_format,
        "OSCIED_TASK_LEASE_SECS": str(settings.task_lease_secs),
        "OSCIED_TASK_MAX_ATTEMPTS": str(settings.task_max_attempts),
        "OSCIED_MAX_UPLOAD_BYTES": settings.max_upload_bytes,
    }
    if rotate_root_secret:
        env["OSCIED_ROTATE_ROOT_SECRET"] = "true"
    if settings.verbose:
        env["RUST_LOG"] = VERBOSE_LOG_FILTER
    return env


def service_files(env: Mapping[str, str], storage_root: str, binary_changed: bool):
    """The env file and the sandboxed unit file of `oscied-orchestra.service`."""
    return service.ServiceFiles(
        env=service.render_env(env),
        unit=service.render_unit(
            NAME,
            binary=BINARY,
            description="OSCIED orchestra",
            state_directory=STATE_DIRECTORY,
            environment={"OSCIED_DATA_DIR": f"%S/{STATE_DIRECTORY}"},
            storage_path=storage_root,
            # Uploads are written to the storage tree.
            writes_storage=True,
            timeout_stop_secs=TIMEOUT_STOP_SECS,
        ),
        binary_changed=binary_changed,
    )


# --- The local API ---------------------------------------------------------------------------


class ApiError(Exception):
    """The local API refused a request or could not be reached; the message says why."""


@dataclass(frozen=True)
class NewUser:
    """What `create_user` answers."""

    id: str
    mail: str
    name: str
    secret: str


Opener = Callable[..., object]


def create_user(
    port: int,
    root_secret: str,
    *,
    mail: str,
    first_name: str | None = None,
    last_name: str | None = None,
    admin: bool = False,
    secret: str | None = None,
    opener: Opener | None = None,
    timeout: float = 30.0,
) -> NewUser:
    """Create a user through this unit's API as root; return its id and its (new) secret.

    Names default to the mail's parts (the API wants both non-empty): `ada@example.com` is
    "ada example.com". `opener` is `_open` unless a test gives another.
    """
    mail = mail.strip()
    local, at, domain = mail.partition("@")
    if not at or not local or not domain:
        raise ApiError(f"mail must look like name@domain, got {mail[:64]!r}")
    body = {
        "mail": mail,
        "first_name": (first_name or "").strip() or local,
        "last_name": (last_name or "").strip() or domain,
        "secret": secret or new_secret(),
        "admin_platform": bool(admin),
    }
    token = base64.b64encode(f"root:{root_secret}".encode()).decode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/v1/users",
        data=json.dumps(body).encode(),
        method="POST",
        headers={
            "Authorization": f"Basic {token}",
            "Content-Type": "application/json",
            "Accept": "application/json",
        },
    )
    opener = opener or _open
    try:
        with opener(request, timeout=timeout) as response:
            answer = json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as e:
        raise ApiError(f"the orchestra answered {e.code}: {_error_message(e)}") from None
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise ApiError(f"the orchestra on 127.0.0.1:{port} is not answering ({reason})") from None
    except ValueError:
        raise ApiError("the orchestra answered something that is not JSON") from None
    if not isinstance(answer, dict) or not answer.get("id"):
        raise ApiError("the orchestra's answer has no user id")
    return NewUser(
        id=str(answer["id"]),
        mail=str(answer.get("mail", mail)),
        name=str(answer.get("name", "")),
        secret=body["secret"],
    )


def _open(request: urllib.request.Request, timeout: float):
    # Straight to 127.0.0.1: never through an http_proxy the hook's environment may carry.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    return opener.open(request, timeout=timeout)


def _error_message(error: urllib.error.HTTPError) -> str:
    # Errors are {"error": {"code", "message"}}; fall back to the reason phrase.
    try:
        data = json.loads(error.read() or b"{}")
        return str(data["error"]["message"])[:300]
    except (ValueError, KeyError, TypeError, OSError):
        return str(error.reason)[:300]
