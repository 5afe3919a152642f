#!/usr/bin/env python3
# Copyright 2026 OSCIED contributors.
# Licensed under the Apache License, Version 2.0.

"""The oscied-storage charm: an NFS server exporting the OSCIED storage tree.

It provides `filesystem` (interface `filesystem_info`, the vendored filesystem-charms lib), so
the orchestra and worker charms mount it the same way as any `nfs-server-proxy`. One unit
holds the tree: the first leader records itself in the peer app bag as `server-unit`, and
keeps serving when leadership moves; the leader always publishes that unit's address.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import ops
from charms.filesystem_client.v0.filesystem_info import FilesystemProvides, NfsInfo

import nfs

logger = logging.getLogger(__name__)

PEER = "storage-peers"
ENDPOINT = "filesystem"
SERVER_KEY = "server-unit"
ADDRESS_KEY = "address"


class StatusError(Exception):
    """End the reconcile early, with the status to show."""

    def __init__(self, status: ops.StatusBase):
        super().__init__(status.message)
        self.status = status


@dataclass(frozen=True)
class Settings:
    """The validated config."""

    path: str
    clients: list[str]


class StorageCharm(ops.CharmBase):
    """Serve the storage tree over NFS and publish it on `filesystem`."""

    def __init__(self, framework: ops.Framework):
        super().__init__(framework)
        self._filesystem = FilesystemProvides(self, ENDPOINT, PEER)
        self._status: ops.StatusBase | None = None
        for event in (
            self.on.install,
            self.on.start,
            self.on.config_changed,
            self.on.upgrade_charm,
            self.on.update_status,
            self.on.leader_elected,
            self.on[PEER].relation_created,
            self.on[PEER].relation_joined,
            self.on[PEER].relation_changed,
            self.on[PEER].relation_departed,
            self.on[ENDPOINT].relation_joined,
            self.on[ENDPOINT].relation_changed,
            self.on[ENDPOINT].relation_broken,
        ):
            framework.observe(event, self._reconcile)
        framework.observe(self.on.take_over_action, self._on_take_over)
        framework.observe(self.on.remove, self._on_remove)
        framework.observe(self.on.collect_unit_status, self._on_collect_status)

    # --- the one reconcile ---------------------------------------------------------------------

    def _reconcile(self, _: ops.EventBase | None = None) -> None:
        try:
            self._status = self._converge()
        except StatusError as stop:
            self._status = stop.status
        except nfs.HostError as e:
            self._status = ops.BlockedStatus(str(e))

    def _converge(self) -> ops.StatusBase:
        container = nfs.container()
        if container:
            raise StatusError(
                ops.BlockedStatus(
                    f"cannot serve NFS from a {container} container: redeploy with "
                    "--constraints virt-type=virtual-machine"
                )
            )
        self._install()
        settings = self._settings()
        peers = self.model.get_relation(PEER)
        if peers is None:
            raise StatusError(ops.WaitingStatus("waiting for the peer relation"))
        server = self._server(peers)
        if server != self.unit.name:
            nfs.remove_exports()
            self.unit.set_ports()
            self._publish_for(server, peers, settings)
            raise StatusError(
                ops.BlockedStatus(
                    f"standby: {server} serves the tree; remove this unit "
                    f"(juju remove-unit {self.unit.name})"
                )
            )
        address, subnet = self._address()
        clients = settings.clients or [subnet]
        nfs.ensure_export_dir(settings.path)
        nfs.apply_exports(settings.path, clients)
        if not nfs.start_server():
            raise StatusError(
                ops.BlockedStatus("nfs-server is not running: see journalctl -u nfs-server")
            )
        self.unit.set_ports(nfs.NFS_PORT)
        peers.data[self.unit][ADDRESS_KEY] = address
        if self.unit.is_leader():
            self._filesystem.set_info(NfsInfo(hostname=address, port=None, path=settings.path))
        return ops.ActiveStatus(f"exporting {settings.path} to {', '.join(clients)}")

    def _install(self) -> None:
        if nfs.missing_packages():
            self.unit.status = ops.MaintenanceStatus("installing nfs-kernel-server")
            nfs.install()

    def _settings(self) -> Settings:
        try:
            path = nfs.validate_path(str(self.config.get("path", "")))
            clients = nfs.parse_clients(str(self.config.get("clients", "")))
        except ValueError as e:
            raise StatusError(ops.BlockedStatus(str(e))) from None
        return Settings(path=path, clients=clients)

    def _server(self, peers: ops.Relation) -> str:
        """Return the unit holding the tree; the first leader to look becomes it."""
        server = peers.data[self.app].get(SERVER_KEY)
        if server:
            return server
        if not self.unit.is_leader():
            raise StatusError(
                ops.WaitingStatus("waiting for the leader to choose the serving unit")
            )
        peers.data[self.app][SERVER_KEY] = self.unit.name
        return self.unit.name

    def _publish_for(self, server: str, peers: ops.Relation, settings: Settings) -> None:
        """As a leader that is not the server, publish the server's address."""
        if not self.unit.is_leader():
            return
        unit = next((u for u in peers.units if u.name == server), None)
        if unit is None:
            raise StatusError(
                ops.BlockedStatus(
                    f"{server} held the tree and is gone: restore its data to {settings.path} "
                    "here, then run the take-over action"
                )
            )
        address = peers.data[unit].get(ADDRESS_KEY)
        if not address:
            raise StatusError(ops.WaitingStatus(f"waiting for {server} to share its address"))
        self._filesystem.set_info(NfsInfo(hostname=address, port=None, path=settings.path))

    def _address(self) -> tuple[str, str]:
        """Return this unit's address on `filesystem` and the subnet it is in."""
        binding = self.model.get_binding(ENDPOINT)
        network = binding.network if binding else None
        address = network.ingress_address if network else None
        if network is None or address is None:
            raise StatusError(
                ops.WaitingStatus("waiting for an address on the filesystem binding")
            )
        subnets = [i.subnet for i in network.interfaces if i.subnet and i.address == address]
        subnets += [i.subnet for i in network.interfaces if i.subnet]
        subnet = str(subnets[0]) if subnets else str(address)
        return str(address), subnet

    # --- actions and teardown ------------------------------------------------------------------

    def _on_take_over(self, event: ops.ActionEvent) -> None:
        if not self.unit.is_leader():
            event.fail("run take-over on the leader unit (juju status shows it)")
            return
        peers = self.model.get_relation(PEER)
        if peers is None:
            event.fail("the peer relation is not there yet; try again in a minute")
            return
        previous = peers.data[self.app].get(SERVER_KEY, "")
        peers.data[self.app][SERVER_KEY] = self.unit.name
        self._reconcile()
        event.set_results({"previous": previous or "none", "server": self.unit.name})

    def _on_remove(self, _: ops.RemoveEvent) -> None:
        # StatusError exporting; the data stays on the disk for whoever needs it.
        try:
            nfs.remove_exports()
        except nfs.HostError as e:
            logger.warning("%s", e)
        self._status = ops.MaintenanceStatus("removed the export; the data stays on disk")

    # --- status --------------------------------------------------------------------------------

    def _on_collect_status(self, event: ops.CollectStatusEvent) -> None:
        # A hook nothing here observes (stop, a failed action) leaves the status as it was.
        if self._status is not None:
            event.add_status(self._status)


if __name__ == "__main__":  # pragma: nocover
    ops.main(StorageCharm)
