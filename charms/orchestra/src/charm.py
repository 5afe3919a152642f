#!/usr/bin/env python3
# Copyright 2026 OSCIED contributors.
# Licensed under the Apache License, Version 2.0.

"""Juju machine charm of the OSCIED orchestra.

Every event the orchestra depends on goes to one `_reconcile` handler, which reads the config,
the relations and the secrets, renders the service's files and restarts it only when they
changed; one `collect-status` handler says what the unit waits for.

Secrets: the leader owns two application secrets, kept in the peer relation's app bag,
`root-secret-id` (root's secret: from the `root-secret` option, else generated once) and
`node-secret-id` (the units' secret, shared with the transform and publisher applications).
Each has a `*-rev` counter the leader bumps when it changes the content, so that every other
orchestra unit gets `orchestra-peers-relation-changed` and restarts with the new value.
"""

from __future__ import annotations

import ipaddress
import logging
from pathlib import Path

import ops
from charmlibs import apt, systemd
from charms.data_platform_libs.v0.data_interfaces import DatabaseRequires
from charms.filesystem_client.v0.filesystem_info import FilesystemRequires
from charms.oscied_orchestra.v0 import service, storage
from charms.oscied_orchestra.v0.amqp import AmqpRequires
from charms.oscied_orchestra.v0.node import NODE_SECRET_KEY, NodeProvides

import orchestra

logger = logging.getLogger(__name__)

PEERS = "orchestra-peers"
WORKER_ENDPOINTS = ("transform", "publisher")
DATABASE_NAME = "oscied"
ROOT = "root-secret"
NODE = "node-secret"
# Content keys of the two app secrets (Juju wants lowercase keys of 3+ characters).
SECRET_KEYS = {ROOT: "root-secret", NODE: NODE_SECRET_KEY}


class OrchestraCharm(ops.CharmBase):
    """The orchestra: every unit serves the API; the leader owns the secrets."""

    _stored = ops.StoredState()

    def __init__(self, framework: ops.Framework):
        super().__init__(framework)
        # A binary installed in a hook that could not restart the service (bad config, a
        # missing relation): the next apply restarts it even if the files did not change.
        self._stored.set_default(binary_pending=False)
        self.database = DatabaseRequires(
            self, relation_name="database", database_name=DATABASE_NAME
        )
        self.amqp = AmqpRequires(self, endpoint="amqp")
        self.storage_client = FilesystemRequires(self, "storage")
        self.nodes = NodeProvides(self, endpoints=WORKER_ENDPOINTS)
        # Filled by _reconcile, read by _on_collect_status in the same hook.
        self._statuses: list[ops.StatusBase] = []
        self._active: str | None = None
        self._departing: ops.Unit | None = None

        on = self.on
        for event in (
            on.install,
            on.start,
            on.config_changed,
            on.upgrade_charm,
            on.update_status,
            on.leader_elected,
            on.secret_changed,
            on.secret_remove,
            self.database.on.database_created,
            self.database.on.endpoints_changed,
            self.storage_client.on.mount_filesystem,
            self.storage_client.on.umount_filesystem,
        ):
            framework.observe(event, self._reconcile)
        for endpoint in ("database", "amqp", "storage", PEERS, *WORKER_ENDPOINTS):
            framework.observe(on[endpoint].relation_joined, self._reconcile)
            framework.observe(on[endpoint].relation_changed, self._reconcile)
            framework.observe(on[endpoint].relation_departed, self._reconcile)
            framework.observe(on[endpoint].relation_broken, self._reconcile)
        framework.observe(on.remove, self._on_remove)
        framework.observe(on.get_root_secret_action, self._on_get_root_secret)
        framework.observe(on.rotate_node_secret_action, self._on_rotate_node_secret)
        framework.observe(on.create_user_action, self._on_create_user)
        framework.observe(on.collect_unit_status, self._on_collect_status)

    # --- The one reconcile handler ------------------------------------------------------------

    def _reconcile(self, event: ops.EventBase) -> None:
        if isinstance(event, ops.SecretRemoveEvent):
            self._remove_revision(event)
        if isinstance(event, ops.RelationDepartedEvent):
            self._departing = event.departing_unit
        self._statuses = []
        self._active = None
        settings = None
        try:
            settings = orchestra.validate(self.config)
        except orchestra.ConfigError as e:
            self._statuses.append(ops.BlockedStatus(str(e)))
        if settings is not None:
            self._share_api_url(settings.port)
        if self.unit.is_leader():
            self._leader_secrets(self._statuses)
        if self._install_binary(event, self._statuses):
            self._stored.binary_pending = True
        if settings is None:
            # Keep a running service on its last good config rather than take the API down
            # for a typo; the Blocked status says what to fix.
            self._publish()
            return
        self._converge(settings)

    def _converge(self, settings: orchestra.Settings) -> None:
        problems = self._statuses
        storage_root = self._storage(settings, problems)
        mongodb_uri = self._mongodb_uri(settings, problems)
        amqp_uri = self._amqp_uri(settings, problems)
        root_secret, node_secret = self._secrets(problems)
        self._publish()
        if problems:
            # Missing or revoked credentials, storage, binary: nothing useful would run.
            service.stop(orchestra.NAME)
            return
        env = orchestra.environment(
            settings,
            mongodb_uri=mongodb_uri,
            amqp_uri=amqp_uri,
            storage_root=storage_root,
            root_secret=root_secret,
            node_secret=node_secret,
            rotate_root_secret=self._rotates_root_secret(),
        )
        try:
            files = orchestra.service_files(env, storage_root, self._stored.binary_pending)
            service.ensure_user()
        except ValueError as e:
            # A relation value systemd cannot carry (the message names the key, never the
            # value), or uid/gid 990 taken by another user.
            problems.append(ops.BlockedStatus(f"cannot set up oscied-orchestra: {e}"))
            return
        try:
            if service.apply(orchestra.NAME, files):
                logger.info("oscied-orchestra (re)started")
        except service.ServiceError as e:
            problems.append(ops.BlockedStatus(str(e)))
            return
        self._stored.binary_pending = False
        self.unit.set_ports(ops.Port("tcp", settings.port))
        self._active = self._active_message(settings.port)

    def _on_collect_status(self, event: ops.CollectStatusEvent) -> None:
        for status in self._statuses:
            event.add_status(status)
        if self._active is not None and not self._statuses:
            if service.failed(orchestra.NAME):
                event.add_status(
                    ops.BlockedStatus(
                        "oscied-orchestra keeps failing: journalctl -u oscied-orchestra"
                    )
                )
            else:
                event.add_status(ops.ActiveStatus(self._active))

    def _on_remove(self, _: ops.RemoveEvent) -> None:
        service.remove(orchestra.NAME)
        storage.remove_mount()

    # --- Steps ----------------------------------------------------------------------------------

    def _install_binary(self, event: ops.EventBase, problems: list[ops.StatusBase]) -> bool:
        """Install the resource on install and upgrade (or while it is not installed)."""
        installed = service.binary_path(orchestra.BINARY).exists()
        if installed and not isinstance(event, (ops.InstallEvent, ops.UpgradeCharmEvent)):
            return False
        missing = ops.BlockedStatus(
            f"missing resource {orchestra.RESOURCE}: juju attach-resource {self.app.name} "
            f"{orchestra.RESOURCE}=./orchestra"
        )
        try:
            path = self._fetch_resource()
        except (ops.ModelError, NameError):
            problems.append(missing)
            return False
        if not path.is_file() or path.stat().st_size == 0:
            problems.append(missing)
            return False
        self.unit.status = ops.MaintenanceStatus("installing the orchestra binary")
        return service.install_binary(path, orchestra.BINARY)

    def _fetch_resource(self) -> Path:
        # One place, so the unit tests can make it raise what Juju raises with no resource.
        return self.model.resources.fetch(orchestra.RESOURCE)

    def _storage(self, settings: orchestra.Settings, problems: list) -> str | None:
        tree = settings.storage
        if tree is None:
            rel = self.model.get_relation("storage")
            if rel is None:
                problems.append(
                    ops.BlockedStatus("needs a storage relation or the storage-uri option")
                )
                return None
            uri = rel.data[rel.app].get("endpoint") if rel.app is not None else None
            if not uri:
                problems.append(ops.WaitingStatus("waiting for storage to publish its export"))
                return None
            try:
                tree = storage.parse_storage_uri(uri)
            except ValueError as e:
                problems.append(ops.BlockedStatus(f"storage relation: {e}"))
                return None
        if tree.is_nfs:
            try:
                if not service.host_path("/sbin/mount.nfs").exists():
                    self.unit.status = ops.MaintenanceStatus("installing nfs-common")
                    service.install_packages(*storage.CLIENT_PACKAGES)
                self.unit.status = ops.MaintenanceStatus(f"mounting {tree.source}")
                storage.apply_mount(tree)
            except apt.Error as e:
                logger.error("installing nfs-common failed: %s", e)
                problems.append(ops.BlockedStatus("cannot install nfs-common: see juju debug-log"))
                return None
            except service.ServiceError as e:
                problems.append(ops.BlockedStatus(str(e)))
                return None
            except (systemd.SystemdError, OSError) as e:
                logger.error("mounting %s failed: %s", tree.source, e)
                problems.append(
                    ops.BlockedStatus(
                        f"cannot mount {tree.source}: see journalctl -u {storage.MOUNT_UNIT}"
                    )
                )
                return None
        return tree.root

    def _mongodb_uri(self, settings: orchestra.Settings, problems: list) -> str | None:
        if settings.mongodb_uri:
            return settings.mongodb_uri
        rel = self.model.get_relation("database")
        if rel is None:
            problems.append(
                ops.BlockedStatus("needs a database relation (mongodb) or mongodb-uri")
            )
            return None
        waiting = ops.WaitingStatus("waiting for mongodb to share credentials")
        try:
            data = self.database.fetch_relation_data().get(rel.id, {})
        except ops.ModelError:
            problems.append(waiting)
            return None
        uri = (data.get("uris") or "").strip()
        if not uri:
            user, password, hosts = (
                data.get("username"),
                data.get("password"),
                data.get("endpoints"),
            )
            if not (user and password and hosts):
                problems.append(waiting)
                return None
            uri = mongodb_uri(user, password, hosts, data.get("replset"))
        return uri

    def _amqp_uri(self, settings: orchestra.Settings, problems: list) -> str | None:
        if settings.amqp_uri:
            return settings.amqp_uri
        if self.amqp.relation is None:
            problems.append(
                ops.BlockedStatus("needs an amqp relation (rabbitmq-server) or amqp-uri")
            )
            return None
        self.amqp.request(username=self.app.name, vhost=settings.amqp_vhost)
        uri = self.amqp.uri()
        if uri is None:
            problems.append(ops.WaitingStatus("waiting for rabbitmq to share its password"))
        return uri

    # --- Peers and secrets ----------------------------------------------------------------------

    @property
    def _peers(self) -> ops.Relation | None:
        return self.model.get_relation(PEERS)

    def _share_api_url(self, port: int) -> None:
        peers = self._peers
        if peers is None:
            return
        binding = self.model.get_binding(peers)
        address = binding.network.ingress_address if binding is not None else None
        if address is None:
            return
        host = f"[{address}]" if isinstance(address, ipaddress.IPv6Address) else str(address)
        url = f"http://{host}:{port}"
        if peers.data[self.unit].get("api-url") != url:
            peers.data[self.unit]["api-url"] = url

    def _api_urls(self) -> list[str]:
        """Every orchestra unit's API URL (this one's included), sorted."""
        peers = self._peers
        if peers is None:
            return []
        # The departing unit may be this one (juju remove-unit on the leader): leave it out.
        units = [u for u in (self.unit, *peers.units) if not self._is_departing(u)]
        return sorted({url for u in units if (url := peers.data[u].get("api-url"))})

    def _is_departing(self, unit: ops.Unit) -> bool:
        return self._departing is not None and unit.name == self._departing.name

    def _leader_secrets(self, problems: list) -> None:
        """Leader: make sure both app secrets exist; follow the `root-secret` option."""
        peers = self._peers
        if peers is None:
            return
        wanted = None
        secret_id = self.config.get("root-secret")
        if secret_id:
            try:
                wanted = self._configured_root_secret(str(secret_id))
            except orchestra.ConfigError as e:
                problems.append(ops.BlockedStatus(str(e)))
                # Generate nothing: the operator means to choose root's secret.
                if not peers.data[self.app].get(f"{ROOT}-id"):
                    self._own_secret(peers, NODE, generate=True)
                    return
        self._own_secret(peers, ROOT, wanted=wanted, generate=True)
        self._own_secret(peers, NODE, generate=True)

    def _configured_root_secret(self, secret_id: str) -> str:
        grant = f"juju grant-secret <secret> {self.app.name}"
        try:
            content = self.model.get_secret(id=secret_id).get_content(refresh=True)
        except ops.SecretNotFoundError:
            raise orchestra.ConfigError(f"root-secret: no such secret (or run {grant})") from None
        except ops.ModelError:
            raise orchestra.ConfigError(f"root-secret: cannot read the secret: {grant}") from None
        value = content.get(SECRET_KEYS[ROOT])
        if not value:
            raise orchestra.ConfigError("root-secret: the secret has no root-secret key")
        return orchestra.check_secret("root-secret", value)

    def _own_secret(
        self, peers: ops.Relation, name: str, *, wanted: str | None = None, generate: bool
    ) -> ops.Secret | None:
        """Leader: the app secret `name`, created (or given new content) as needed."""
        bag = peers.data[self.app]
        key = SECRET_KEYS[name]
        secret = self._app_secret(name)
        if secret is None:
            if wanted is None and not generate:
                return None
            secret = self.app.add_secret(
                {key: wanted or orchestra.new_secret()},
                label=name,
                description=f"OSCIED {name.replace('-', ' ')} (the orchestra's)",
            )
            bag[f"{name}-id"] = secret.id
            bag[f"{name}-rev"] = "1"
            return secret
        if not bag.get(f"{name}-id"):
            bag[f"{name}-id"] = secret.id
        if wanted is not None and secret.get_content(refresh=True).get(key) != wanted:
            self._set_secret(peers, name, secret, wanted)
        return secret

    def _set_secret(self, peers: ops.Relation, name: str, secret: ops.Secret, value: str) -> int:
        """Leader: a new revision of `name`; bump its counter so the other units restart."""
        secret.set_content({SECRET_KEYS[name]: value})
        bag = peers.data[self.app]
        rev = _int(bag.get(f"{name}-rev"), 1) + 1
        bag[f"{name}-rev"] = str(rev)
        logger.info("%s changed (rev %d)", name, rev)
        return rev

    def _app_secret(self, name: str) -> ops.Secret | None:
        """The app secret `name` from the id in the peer bag (any unit), or None."""
        peers = self._peers
        secret_id = peers.data[self.app].get(f"{name}-id") if peers is not None else None
        try:
            if secret_id:
                return self.model.get_secret(id=secret_id)
            if self.unit.is_leader():
                # The bag lost its id (or never got it) but the secret is ours: find it, by
                # label first, then by id so that `.id` is set.
                found = self.model.get_secret(label=name).get_info().id
                return self.model.get_secret(id=found)
        except ops.SecretNotFoundError:
            return None
        return None

    def _secret_value(self, name: str) -> str | None:
        secret = self._app_secret(name)
        if secret is None:
            return None
        try:
            return secret.get_content(refresh=True).get(SECRET_KEYS[name])
        except ops.ModelError:
            return None

    def _secrets(self, problems: list) -> tuple[str | None, str | None]:
        if self._peers is None:
            problems.append(ops.WaitingStatus("waiting for the orchestra-peers relation"))
            return None, None
        root, node = self._secret_value(ROOT), self._secret_value(NODE)
        if (root is None or node is None) and not self.unit.is_leader():
            problems.append(
                ops.WaitingStatus("waiting for the leader to share the root and node secrets")
            )
        elif root is None or node is None:
            # Only a bad root-secret option stops the leader making them, and it said so.
            problems.append(ops.WaitingStatus("waiting for a valid root-secret"))
        return root, node

    def _rotates_root_secret(self) -> bool:
        # Root's secret changed after the first start: the leader's orchestra replaces the
        # store's hash (OSCIED_ROTATE_ROOT_SECRET); the others then take the new one. Only the
        # leader, so a unit that has not seen the change yet cannot rotate it back.
        peers = self._peers
        if not self.unit.is_leader() or peers is None:
            return False
        return _int(peers.data[self.app].get(f"{ROOT}-rev"), 1) > 1

    def _publish(self) -> None:
        """Leader: every orchestra URL and the node secret to the worker relations."""
        if not self.unit.is_leader():
            return
        secret = self._app_secret(NODE)
        if secret is not None:
            self.nodes.publish(self._api_urls(), secret)

    def _remove_revision(self, event: ops.SecretRemoveEvent) -> None:
        # Every observer moved to a newer revision of one of our secrets: drop the old one.
        if self.unit.is_leader() and event.secret.label in (ROOT, NODE):
            event.remove_revision()

    def _active_message(self, port: int) -> str:
        orchestras = 1 + sum(1 for u in self._peers.units if not self._is_departing(u))
        counts = {
            ep: sum(
                1
                for rel in self.model.relations[ep]
                for u in rel.units
                if not self._is_departing(u)
            )
            for ep in WORKER_ENDPOINTS
        }
        plural = "orchestra" if orchestras == 1 else "orchestras"
        return (
            f"API on :{port}, {orchestras} {plural}, {counts['transform']} transform and "
            f"{counts['publisher']} publisher units"
        )

    # --- Actions --------------------------------------------------------------------------------

    def _on_get_root_secret(self, event: ops.ActionEvent) -> None:
        value = self._secret_value(ROOT)
        if value is None:
            event.fail("no root secret yet: the leader makes it once the peer relation is up")
            return
        event.set_results({"root-secret": value, "username": "root"})

    def _on_rotate_node_secret(self, event: ops.ActionEvent) -> None:
        if not self.unit.is_leader():
            event.fail(
                f"only the leader rotates the node secret: juju run {self.app.name}/leader "
                "rotate-node-secret"
            )
            return
        peers, secret = self._peers, self._app_secret(NODE)
        if peers is None or secret is None:
            event.fail("no node secret yet: the leader makes it once the peer relation is up")
            return
        rev = self._set_secret(peers, NODE, secret, orchestra.new_secret())
        # Restart this unit now; the others follow node-secret-rev, the workers secret-changed.
        self._reconcile(event)
        event.set_results({"node-secret-rev": str(rev)})

    def _on_create_user(self, event: ops.ActionEvent) -> None:
        try:
            settings = orchestra.validate(self.config)
        except orchestra.ConfigError as e:
            event.fail(f"fix the config first: {e}")
            return
        root_secret = self._secret_value(ROOT)
        if root_secret is None or not service.running(orchestra.NAME):
            event.fail("the orchestra is not running on this unit yet (see juju status)")
            return
        params = event.params
        try:
            user = orchestra.create_user(
                settings.port,
                root_secret,
                mail=str(params.get("mail", "")),
                first_name=params.get("first-name"),
                last_name=params.get("last-name"),
                admin=bool(params.get("admin", False)),
            )
        except orchestra.ApiError as e:
            event.fail(str(e))
            return
        event.set_results(
            {"user-id": user.id, "mail": user.mail, "name": user.name, "secret": user.secret}
        )


def mongodb_uri(user: str, password: str, hosts: str, replset: str | None) -> str:
    """The URI when the provider gave no `uris`: `mongodb://u:p@h1,h2/oscied?...`."""
    from urllib.parse import quote

    query = "authSource=admin" + (f"&replicaSet={quote(replset, safe='')}" if replset else "")
    return (
        f"mongodb://{quote(user, safe='')}:{quote(password, safe='')}@{hosts}/{DATABASE_NAME}"
        f"?{query}"
    )


def _int(text: str | None, default: int) -> int:
    try:
        return int(text) if text is not None else default
    except ValueError:
        return default


if __name__ == "__main__":  # pragma: nocover
    ops.main(OrchestraCharm)
