# Copyright 2026 OSCIED contributors.
# Licensed under the Apache License, Version 2.0.

"""What the transform and publisher charms share: one reconcile, its statuses, drain/resume.

A worker unit runs one binary (`worker-transform`, `worker-publisher`) as the systemd service
`oscied-<name>`, fed by three relations, each with a config override for units outside the
model (an override wins over its relation):

- `orchestra` (`oscied_node`, `node.NodeRequires`): the API URLs and the node secret;
  overrides `api-url` and `node-secret` (a Juju user secret id, content key `node-secret`);
- `amqp` (`rabbitmq`, `amqp.AmqpRequires`): the broker; override `amqp-uri`;
- `storage` (`filesystem_info`): the shared tree, mounted at /srv/oscied for NFS; override
  `storage-uri`.

Usage, a worker charm::

    class TransformCharm(worker.WorkerCharm):
        WORKLOAD = worker.Workload(name="transform", ...)

or, in a charm that does more, what `WorkerCharm` does::

    self.worker = worker.Worker(self, WORKLOAD, on_progress=...)
    framework.observe(self.on.collect_unit_status, self._on_collect_status)

    def _on_collect_status(self, event):
        for status in self.worker.statuses():
            event.add_status(status)

`Worker` observes every event the reconcile needs (install, config, upgrade, relations,
secrets, leadership, update-status), the `drain` and `resume` actions, `stop` and `remove`.
It never sets the unit's status itself: `statuses()` says what the unit waits for and the
charm's collect-status handler adds them; `on_progress` (given by the charm) shows the long
steps (installing, mounting) while they run.
"""

from __future__ import annotations

import logging
import re
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import ops
from charmlibs import apt, systemd
from charms.filesystem_client.v0.filesystem_info import FilesystemRequires
from charms.oscied_orchestra.v0 import amqp, node, service, storage

# The unique Charmhub library identifier, never change it
LIBID = "e7a95e406ce744ce98bd20e3f1a03a77"

# Increment this major API version when introducing breaking changes
LIBAPI = 0

# Increment this PATCH version before using `charmcraft publish-lib` or reset
# to 0 if you are raising the major API version
LIBPATCH = 2

logger = logging.getLogger(__name__)

ORCHESTRA = "orchestra"
AMQP = "amqp"
STORAGE = "storage"
KINDS = ("transform", "publisher")

# The binaries' own bounds (oscied_protocol::unit::cli and worker-transform's config).
MAX_CONCURRENCY = 256
MAX_DRAIN_SECS = 86400
MAX_TASK_SECS = 30 * 86400
# systemd kills what is left this long after the drain (TimeoutStopSec = drain + margin).
STOP_MARGIN_SECS = 30
# What `verbose` turns RUST_LOG into, as the orchestra charm does (the binaries' default is
# "info,lapin=off"; lapin's own lines repeat what the broker logs).
VERBOSE_LOG_FILTER = "debug,lapin=info"
# The NFS client's mount helper, from nfs-common.
MOUNT_NFS = "/usr/sbin/mount.nfs"
# systemd writes the container type here; NFS cannot be mounted inside an LXD container.
CONTAINER_FILE = "/run/systemd/container"

_QUEUE_CHARS = re.compile(r"^[A-Za-z0-9_.-]+$")
_SIZE = re.compile(r"^([0-9]+)\s*([A-Za-z]*)$")
_SIZE_SHIFTS = {
    "": 0, "b": 0,
    "k": 10, "kb": 10, "kib": 10,
    "m": 20, "mb": 20, "mib": 20,
    "g": 30, "gb": 30, "gib": 30,
    "t": 40, "tb": 40, "tib": 40,
}  # fmt: skip


@dataclass(frozen=True)
class Extra:
    """What a workload adds to the common settings (its own options, validated)."""

    env: Mapping[str, str] = field(default_factory=dict)
    """More variables of the env file (the publisher's `OSCIED_LISTEN`, `OSCIED_PUBLIC_URL`)."""

    facts: Mapping[str, str] = field(default_factory=dict)
    """More facts registered in the orchestra relation (the publisher's `public-url`)."""

    ports: tuple[int, ...] = ()
    """TCP ports the unit opens."""

    summary: str = ""
    """The start of the Active message ("serving http://10.0.0.7:5080")."""


@dataclass(frozen=True)
class Workload:
    """One worker kind: what its charm passes to `Worker`."""

    name: str
    """`transform` or `publisher`: the service `oscied-<name>`, its kind of queues."""

    binary: str
    """The binary in /usr/local/bin, shipped as the charm resource `<binary>-binary`."""

    description: str
    """The unit file's Description."""

    task_limits: bool = False
    """Whether the binary takes `task-max-secs` and `max-output-bytes` (transform)."""

    writes_storage: bool = True
    """Whether the service writes the storage tree (`ReadWritePaths=`)."""

    unit_environment: Mapping[str, str] = field(default_factory=dict)
    """Fixed `Environment=` lines of the unit (the publisher's web root under `%S`)."""

    install: Callable[[bool], str | None] | None = None
    """Installs what the binary needs (ffmpeg); `True` on install/upgrade. Returns None when
    ready, else why not (a Blocked message)."""

    extra: Callable[[Mapping[str, Any], str], Extra] | None = None
    """The workload's own options from (config, the unit's address); raises ValueError naming
    the option and why."""

    @property
    def resource(self) -> str:
        """The charm resource holding the binary."""
        return f"{self.binary}-binary"

    @property
    def unit(self) -> str:
        """The systemd unit."""
        return service.unit_name(self.name)


@dataclass(frozen=True)
class Settings:
    """The validated common options."""

    queues: tuple[str, ...]
    concurrency: int
    drain_secs: int
    task_max_secs: int
    max_output_bytes: str
    log_format: str
    verbose: bool
    vhost: str
    extra: Extra


@dataclass
class Plan:
    """What one hook found: the service's environment, or why it cannot run yet."""

    settings: Settings | None = None
    env: dict[str, str] = field(default_factory=dict)
    store: storage.Storage | None = None
    problems: list[ops.StatusBase] = field(default_factory=list)
    missing: bool = False
    """A required source is gone (a relation removed): the service must not keep running."""


# -- option values, checked as the binaries check them --------------------------------------


def reserved_kind(name: str) -> str | None:
    """The kind a queue name belongs to (`transform`, `transform-…`), or None if named."""
    for kind in KINDS:
        rest = name[len(kind) :] if name.startswith(kind) else None
        if rest is not None and (rest == "" or rest[0] in "-._"):
            return kind
    return None


def parse_queues(kind: str, text: str) -> tuple[str, ...]:
    """`OSCIED_QUEUES` of a `kind` unit: 1–64 of `A-Z a-z 0-9 _ - .` each, its own kind's."""
    names = tuple(n.strip() for n in str(text).split(",") if n.strip())
    if not names:
        raise ValueError("queues must name at least one queue, e.g. " + kind)
    for name in names:
        shown = repr(name[:64])
        if name.startswith("unit@"):
            raise ValueError(f"queues: {shown} is a unit's own queue: only the orchestra uses it")
        if len(name) > 64 or not _QUEUE_CHARS.match(name):
            raise ValueError(
                f"queues: {shown} is not a queue name (1 to 64 letters, digits, '_', '-', '.')"
            )
        if name.startswith("amq."):
            raise ValueError(f"queues: {shown}: names starting with 'amq.' are AMQP's")
        other = reserved_kind(name)
        if other is not None and other != kind:
            raise ValueError(f"queues: a {kind} unit cannot consume {shown}, a {other} queue")
    return names


def parse_size(text: str) -> int:
    """`1048576`, `500M`, `2GiB`: bytes with an optional binary unit, as the binary reads it."""
    match = _SIZE.match(str(text).strip())
    shift = _SIZE_SHIFTS.get(match.group(2).lower()) if match else None
    if match is None or shift is None:
        raise ValueError("not a size such as 1048576, 500M or 16GiB")
    value = int(match.group(1)) << shift
    if value >= 1 << 64:
        raise ValueError("too large")
    return value


def parse_api_urls(text: str) -> list[str]:
    """`OSCIED_API_URL`: one or more http(s) URLs, comma separated, as the units check them."""
    urls = []
    for entry in (e.strip() for e in str(text).split(",")):
        if not entry:
            continue
        base = entry.rstrip("/")
        base = base[: -len("/api/v1")] if base.endswith("/api/v1") else base
        scheme, sep, rest = base.partition("://")
        if not sep or scheme not in ("http", "https"):
            raise ValueError(f"{entry!r} is not an http(s) URL")
        if not rest.split("/")[0]:
            raise ValueError(f"{entry!r} names no host")
        if any(c.isspace() for c in base) or "?" in base or "#" in base:
            raise ValueError(f"{entry!r} holds a space, a query or a fragment")
        urls.append(entry)
    if not urls:
        raise ValueError("names no URL")
    return urls


def _int_option(config: Mapping[str, Any], name: str, low: int, high: int) -> int:
    value = config.get(name)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be a whole number, got {str(value)[:32]!r}")
    if value < low:
        raise ValueError(f"{name} must be a whole number ≥ {low}, got {value}")
    if value > high:
        raise ValueError(f"{name} must be at most {high}, got {value}")
    return value


def _common_settings(kind: str, config: Mapping[str, Any], task_limits: bool) -> dict[str, Any]:
    # Each check raises ValueError naming its option; the caller collects them.
    checks: dict[str, Callable[[], Any]] = {
        "queues": lambda: parse_queues(kind, config.get("queues") or ""),
        "concurrency": lambda: _int_option(config, "concurrency", 1, MAX_CONCURRENCY),
        "drain_secs": lambda: _int_option(config, "drain-secs", 0, MAX_DRAIN_SECS),
        "log_format": lambda: _log_format(config.get("log-format")),
        "vhost": lambda: _vhost(config.get("amqp-vhost")),
    }
    if task_limits:
        checks["task_max_secs"] = lambda: _int_option(config, "task-max-secs", 0, MAX_TASK_SECS)
        checks["max_output_bytes"] = lambda: _max_output_bytes(config.get("max-output-bytes"))
    values: dict[str, Any] = {"task_max_secs": 0, "max_output_bytes": ""}
    errors = []
    for key, check in checks.items():
        try:
            values[key] = check()
        except ValueError as e:
            errors.append(str(e))
    if errors:
        raise _ConfigError(errors)
    values["verbose"] = bool(config.get("verbose"))
    return values


def _log_format(value: Any) -> str:
    if value not in ("human", "json"):
        raise ValueError(f"log-format must be human or json, got {str(value)[:32]!r}")
    return value


def _vhost(value: Any) -> str:
    text = str(value or "")
    if not text or len(text) > 255 or any(not c.isprintable() for c in text):
        raise ValueError("amqp-vhost must be 1 to 255 printable characters")
    return text


def _max_output_bytes(value: Any) -> str:
    try:
        size = parse_size(value)
    except ValueError as e:
        raise ValueError(f"max-output-bytes: {e}, got {str(value)[:32]!r}") from None
    if size == 0:
        raise ValueError("max-output-bytes must be more than 0")
    return str(value).strip()


class _ConfigError(ValueError):
    def __init__(self, errors: list[str]):
        super().__init__("; ".join(errors))
        self.errors = errors


# -- the charm side --------------------------------------------------------------------------


class Worker(ops.Object):
    """The reconcile of a worker charm (see the module doc)."""

    _stored = ops.StoredState()

    def __init__(
        self,
        charm: ops.CharmBase,
        workload: Workload,
        on_progress: Callable[[str], None] | None = None,
    ):
        super().__init__(charm, f"oscied-worker-{workload.name}")
        self._charm = charm
        self.workload = workload
        self._on_progress = on_progress or (lambda _message: None)
        # A binary installed in a hook that could not restart the service (waiting, a typo)
        # is still due a restart once one can.
        self._stored.set_default(drained=False, binary_pending=False)
        self.orchestra = node.NodeRequires(charm, endpoint=ORCHESTRA)
        self.amqp = amqp.AmqpRequires(charm, endpoint=AMQP)
        self.storage = FilesystemRequires(charm, STORAGE)
        # What this hook's reconcile met on the host (apt, resource, mount): Blocked messages.
        self._host_problems: list[ops.StatusBase] = []
        self._plan: Plan | None = None

        on = charm.on
        events = [
            on.install,
            on.start,
            on.config_changed,
            on.upgrade_charm,
            on.update_status,
            on.leader_elected,
            on.secret_changed,
        ]
        for endpoint in (ORCHESTRA, AMQP, STORAGE):
            relation = on[endpoint]
            events += [
                relation.relation_joined,
                relation.relation_changed,
                relation.relation_departed,
                relation.relation_broken,
            ]
        for event in events:
            self.framework.observe(event, self._reconcile)
        self.framework.observe(on.stop, self._on_stop)
        self.framework.observe(on.remove, self._on_remove)
        self.framework.observe(on.drain_action, self._on_drain)
        self.framework.observe(on.resume_action, self._on_resume)

    @property
    def drained(self) -> bool:
        """Whether the `drain` action stopped the service (until `resume`)."""
        return bool(self._stored.drained)

    # -- reconcile ---------------------------------------------------------------------------

    def _reconcile(self, event: ops.EventBase) -> None:
        """Converge the host on what config and relations say; restart only on a change."""
        fresh = isinstance(event, (ops.InstallEvent, ops.UpgradeCharmEvent))
        self._host_problems = []
        self._plan = None
        if fresh:
            self._on_progress(f"installing {self.workload.binary}")
        try:
            service.ensure_user()
        except ValueError as e:
            self._host_problems.append(ops.BlockedStatus(f"service user: {e}"))
        if self._install_binary(fresh):
            self._stored.binary_pending = True
        if self.workload.install is not None:
            why = self.workload.install(fresh)
            if why:
                self._host_problems.append(ops.BlockedStatus(why))
        plan = self.plan()
        if plan.settings is not None:
            self.amqp.request(username=self._charm.app.name, vhost=plan.settings.vhost)
            self._register(plan.settings)
        if plan.missing:
            self._halt()
            return
        if plan.problems or self._host_problems or plan.store is None:
            # Waiting for an answer, or a typo in the config: a running service keeps the
            # last good configuration rather than going down.
            return
        if not self._mount(plan.store):
            return
        self._apply(plan)

    def plan(self) -> Plan:
        """What config and relations say, computed once per hook (no change to the host)."""
        if self._plan is None:
            self._plan = self._make_plan()
        return self._plan

    def _make_plan(self) -> Plan:
        plan = Plan()
        config = self._charm.config
        try:
            values = _common_settings(self.workload.name, config, self.workload.task_limits)
        except _ConfigError as e:
            plan.problems += [ops.BlockedStatus(message) for message in e.errors]
            values = None
        extra = Extra()
        if self.workload.extra is not None:
            try:
                extra = self.workload.extra(config, self._address())
            except ValueError as e:
                plan.problems.append(ops.BlockedStatus(str(e)))
        if values is not None and not plan.problems:
            plan.settings = Settings(extra=extra, **values)
        api_url, node_secret = self._orchestra(plan)
        amqp_uri = self._amqp_uri(plan)
        plan.store = self._storage(plan)
        if plan.settings is None or None in (api_url, node_secret, amqp_uri, plan.store):
            return plan
        plan.env = self._env(plan.settings, api_url, node_secret, amqp_uri, plan.store)
        return plan

    def _env(
        self,
        settings: Settings,
        api_url: str,
        node_secret: str,
        amqp_uri: str,
        store: storage.Storage,
    ) -> dict[str, str]:
        env = {
            "OSCIED_API_URL": api_url,
            "OSCIED_NODE_SECRET": node_secret,
            "OSCIED_AMQP_URI": amqp_uri,
            "OSCIED_STORAGE_ROOT": store.root,
            "OSCIED_QUEUES": ",".join(settings.queues),
            "OSCIED_CONCURRENCY": str(settings.concurrency),
            "OSCIED_DRAIN_SECS": str(settings.drain_secs),
            "OSCIED_LOG_FORMAT": settings.log_format,
        }
        if self.workload.task_limits:
            env["OSCIED_MAX_OUTPUT_BYTES"] = settings.max_output_bytes
            if settings.task_max_secs:
                env["OSCIED_TASK_MAX_SECS"] = str(settings.task_max_secs)
        if settings.verbose:
            env["RUST_LOG"] = VERBOSE_LOG_FILTER
        env.update(settings.extra.env)
        return env

    # -- the three sources: override, else relation ------------------------------------------

    def _orchestra(self, plan: Plan) -> tuple[str | None, str | None]:
        """The API URLs (comma separated) and the node secret."""
        config = self._charm.config
        url_override = str(config.get("api-url") or "").strip()
        secret_id = str(config.get("node-secret") or "").strip()
        if self.orchestra.relation is None and not (url_override and secret_id):
            plan.missing = True
            plan.problems.append(
                ops.BlockedStatus("needs an orchestra relation or api-url + node-secret")
            )
            return None, None
        if secret_id:
            node_secret = self._user_node_secret(secret_id, plan)
        else:
            # Always the latest revision: a rotation must reach the service (secret-changed).
            node_secret = self.orchestra.node_secret(refresh=True)
            if node_secret is None:
                plan.problems.append(
                    ops.WaitingStatus("waiting for the orchestra leader to share the node secret")
                )
        return self._api_url(url_override, plan), node_secret

    def _api_url(self, override: str, plan: Plan) -> str | None:
        text, source = override, "api-url"
        if not text:
            text, source = ",".join(self.orchestra.api_urls()), "orchestra relation api-urls"
            if not text:
                plan.problems.append(
                    ops.WaitingStatus("waiting for the orchestra leader to share its API URLs")
                )
                return None
        try:
            parse_api_urls(text)
        except ValueError as e:
            plan.problems.append(ops.BlockedStatus(f"{source}: {e}"))
            return None
        return text

    def _user_node_secret(self, secret_id: str, plan: Plan) -> str | None:
        try:
            content = self.model.get_secret(id=secret_id).get_content(refresh=True)
        except (ops.SecretNotFoundError, ops.ModelError):
            plan.problems.append(
                ops.BlockedStatus(
                    "node-secret: cannot read the secret: juju grant-secret <secret> "
                    + self._charm.app.name
                )
            )
            return None
        value = content.get(node.NODE_SECRET_KEY)
        if not value:
            plan.problems.append(
                ops.BlockedStatus(f"node-secret: the secret has no key {node.NODE_SECRET_KEY}")
            )
            return None
        return value

    def _amqp_uri(self, plan: Plan) -> str | None:
        override = str(self._charm.config.get("amqp-uri") or "").strip()
        if override:
            scheme, sep, rest = override.partition("://")
            if scheme not in ("amqp", "amqps") or not sep or not rest.split("/")[0]:
                # Never echo it: it holds a password.
                plan.problems.append(
                    ops.BlockedStatus("amqp-uri must be amqp://user:password@host:5672/vhost")
                )
                return None
            return override
        if self.amqp.relation is None:
            plan.missing = True
            plan.problems.append(
                ops.BlockedStatus("needs an amqp relation (rabbitmq-server) or amqp-uri")
            )
            return None
        if plan.settings is None:
            return None  # the vhost is not known
        uri = self.amqp.uri(username=self._charm.app.name, vhost=plan.settings.vhost)
        if uri is None:
            plan.problems.append(ops.WaitingStatus("waiting for rabbitmq to share its password"))
        return uri

    def _storage(self, plan: Plan) -> storage.Storage | None:
        override = str(self._charm.config.get("storage-uri") or "").strip()
        source = "storage-uri"
        if not override:
            relations = self.storage.relations
            if not relations:
                plan.missing = True
                plan.problems.append(
                    ops.BlockedStatus("needs a storage relation or the storage-uri option")
                )
                return None
            relation = relations[0]
            override = relation.data[relation.app].get("endpoint", "") if relation.app else ""
            if not override:
                plan.problems.append(
                    ops.WaitingStatus("waiting for storage to publish its export")
                )
                return None
            source = "storage relation"
        try:
            store = storage.parse_storage_uri(override)
        except ValueError as e:
            plan.problems.append(ops.BlockedStatus(f"{source}: {e}"))
            return None
        if not store.is_nfs and not service.host_path(store.path).is_dir():
            plan.problems.append(
                ops.BlockedStatus(f"{source}: {store.path} is not a directory on this machine")
            )
            return None
        return store

    def _address(self) -> str:
        binding = self.model.get_binding(ORCHESTRA)
        address = binding.network.ingress_address if binding is not None else None
        return str(address) if address is not None else socket.getfqdn()

    # -- the host ----------------------------------------------------------------------------

    def fetch_binary(self) -> Path:
        """The resource's file (raises ops.ModelError when none was attached)."""
        return self.model.resources.fetch(self.workload.resource)

    def _install_binary(self, fresh: bool) -> bool:
        """Install the resource on install/upgrade, or while no binary is there yet."""
        installed = service.binary_path(self.workload.binary).exists()
        if installed and not fresh:
            return False
        try:
            path = self.fetch_binary()
        except ops.ModelError:
            logger.warning("no %s resource attached", self.workload.resource)
            return False
        if path.stat().st_size == 0:
            logger.warning("the %s resource is empty", self.workload.resource)
            return False
        return service.install_binary(path, self.workload.binary)

    def _missing_resource(self) -> ops.StatusBase:
        w = self.workload
        return ops.BlockedStatus(
            f"missing resource {w.resource}: juju attach-resource {self._charm.app.name} "
            f"{w.resource}=./{w.binary}"
        )

    def _mount(self, store: storage.Storage) -> bool:
        """Make the tree available (NFS: nfs-common, the mount unit); False when it is not."""
        if store.is_nfs:
            container = service.host_path(CONTAINER_FILE)
            if container.exists() and container.read_text().strip() == "lxc":
                self._host_problems.append(
                    ops.BlockedStatus(
                        "cannot mount NFS in an LXD container: deploy on a VM "
                        "(--constraints virt-type=virtual-machine) or set storage-uri file://"
                    )
                )
                return False
            if not service.host_path(MOUNT_NFS).exists():
                self._on_progress("installing nfs-common")
                why = install_packages(storage.CLIENT_PACKAGES)
                if why:
                    self._host_problems.append(ops.BlockedStatus(why))
                    return False
        try:
            if store.is_nfs and not storage.mounted():
                self._on_progress(f"mounting {store.source} at {storage.MOUNT_POINT}")
            storage.apply_mount(store)
        except service.ServiceError as e:
            self._host_problems.append(ops.BlockedStatus(str(e)))
            return False
        return True

    def _apply(self, plan: Plan) -> None:
        assert plan.settings is not None and plan.store is not None
        if not service.binary_path(self.workload.binary).exists():
            return
        w = self.workload
        try:
            env = service.render_env(plan.env)
        except ValueError as e:
            # The message names the variable, never its value.
            self._host_problems.append(ops.BlockedStatus(f"cannot render the environment: {e}"))
            return
        unit = service.render_unit(
            w.name,
            binary=w.binary,
            description=w.description,
            environment=dict(w.unit_environment),
            storage_path=plan.store.root,
            writes_storage=w.writes_storage,
            timeout_stop_secs=plan.settings.drain_secs + STOP_MARGIN_SECS,
        )
        pending = bool(self._stored.binary_pending)
        files = service.ServiceFiles(env=env, unit=unit, binary_changed=pending)
        try:
            service.apply(w.name, files, running=not self.drained)
        except service.ServiceError as e:
            self._host_problems.append(ops.BlockedStatus(str(e)))
            return
        if not self.drained:
            # Started on the binary now installed (a drained unit starts on it at resume).
            self._stored.binary_pending = False
        self._charm.unit.set_ports(*plan.settings.extra.ports)

    def _halt(self) -> None:
        """Stop (drain) and disable the service: a source it runs on was removed."""
        if not service.unit_path(self.workload.name).exists():
            return
        if service.running(self.workload.name):
            logger.info("stopping %s: a relation it needs was removed", self.workload.unit)
            self._on_progress(f"stopping {self.workload.unit} (draining)")
            service.stop(self.workload.name)
        service.system.disable(self.workload.unit)

    def _register(self, settings: Settings) -> None:
        facts = {
            "hostname": socket.gethostname(),
            "queues": ",".join(settings.queues),
            "concurrency": str(settings.concurrency),
        }
        facts.update(settings.extra.facts)
        self.orchestra.register(**{k.replace("-", "_"): v for k, v in facts.items()})

    # -- statuses ----------------------------------------------------------------------------

    def statuses(self) -> list[ops.StatusBase]:
        """Every problem the unit has, else one status: Active with a short fact, or the service's.

        The charm's collect-status handler adds them all; ops shows the most urgent.
        """
        found: list[ops.StatusBase] = []
        if not service.binary_path(self.workload.binary).exists():
            found.append(self._missing_resource())
        found += self._host_problems
        found += self.plan().problems
        if found:
            return found
        settings = self.plan().settings
        assert settings is not None
        if self.drained:
            return [ops.ActiveStatus("drained: not taking jobs (run resume)")]
        unit = self.workload.unit
        if service.failed(self.workload.name):
            return [ops.BlockedStatus(f"{unit} failed: see journalctl -u {unit}")]
        if not service.running(self.workload.name):
            return [ops.MaintenanceStatus(f"{unit} is not running yet: see journalctl -u {unit}")]
        return [ops.ActiveStatus(_summary(settings))]

    # -- stop, remove, actions ---------------------------------------------------------------

    def _on_stop(self, _event: ops.StopEvent) -> None:
        # The unit is leaving: the service drains (running jobs finish within drain-secs).
        service.stop(self.workload.name)

    def _on_remove(self, _event: ops.RemoveEvent) -> None:
        service.remove(self.workload.name)
        # Another OSCIED service on this machine (a colocated charm) may use the same mount.
        others = list(service.host_path(service.UNIT_DIR).glob("oscied-*.service"))
        if not others:
            storage.remove_mount()

    def _on_drain(self, event: ops.ActionEvent) -> None:
        self._stored.drained = True
        unit = self.workload.unit
        if not service.unit_path(self.workload.name).exists():
            event.set_results({"result": f"{unit} not installed: stays stopped until resume"})
            return
        if service.running(self.workload.name):
            event.log(f"stopping {unit}: running jobs may finish (drain-secs), then hands back")
            try:
                service.stop(self.workload.name)
            except systemd.SystemdError as e:
                logger.error("cannot stop %s: %s", unit, e)
                event.fail(f"cannot stop {unit}: see journalctl -u {unit}")
                return
        service.system.disable(unit)
        event.set_results({"result": f"{unit} stopped: the unit takes no job until resume"})

    def _on_resume(self, event: ops.ActionEvent) -> None:
        self._stored.drained = False
        self._reconcile(event)
        unit = self.workload.unit
        if service.unit_path(self.workload.name).exists() and service.running(self.workload.name):
            event.set_results({"result": f"{unit} started"})
            return
        found = self.statuses()
        # What collect-status shows: the first Blocked, else the first other.
        worst = next((s for s in found if s.name == "blocked"), found[0] if found else None)
        why = worst.message if worst is not None and worst.message else "see juju status"
        event.set_results({"result": f"resumed; {unit} is not running: {why}"})


class WorkerCharm(ops.CharmBase):
    """A worker unit's whole charm: `Worker` on the subclass's `WORKLOAD`, its statuses added.

    The long steps show as Maintenance while they run.
    """

    WORKLOAD: ClassVar[Workload]

    def __init__(self, framework: ops.Framework):
        super().__init__(framework)
        self.worker = Worker(self, self.WORKLOAD, on_progress=self._progress)
        framework.observe(self.on.collect_unit_status, self._on_collect_status)

    def _progress(self, message: str) -> None:
        self.unit.status = ops.MaintenanceStatus(message)

    def _on_collect_status(self, event: ops.CollectStatusEvent) -> None:
        for status in self.worker.statuses():
            event.add_status(status)


def install_packages(packages: tuple[str, ...]) -> str | None:
    """Install Debian packages; None when done, else why not (the apt error's words)."""
    try:
        service.install_packages(*packages)
    except apt.Error as e:
        logger.error("cannot install %s: %s", " ".join(packages), e)
        return f"cannot install {' '.join(packages)}: {e}"
    return None


def _summary(settings: Settings) -> str:
    parts = [settings.extra.summary] if settings.extra.summary else []
    parts.append(f"queues {','.join(settings.queues)}")
    if not settings.extra.summary or settings.concurrency > 1:
        parts.append(f"concurrency {settings.concurrency}")
    return ", ".join(parts)
