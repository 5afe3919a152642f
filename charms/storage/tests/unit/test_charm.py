# Copyright 2026 OSCIED contributors.
# Licensed under the Apache License, Version 2.0.

"""State-transition tests of the oscied-storage charm (ops.testing, fake host)."""

import dataclasses

import pytest
from charms.filesystem_client.v0.filesystem_info import NfsInfo
from ops import testing

import nfs
from charm import StorageCharm

APP = "oscied-storage"
ME = f"{APP}/0"
OTHER = f"{APP}/1"
EXPORTS = "etc/exports.d/oscied.exports"


def network(address="10.0.0.7", cidr="10.0.0.0/24"):
    return testing.Network(
        "filesystem",
        bind_addresses=[testing.BindAddress([testing.Address(address, cidr=cidr)])],
        ingress_addresses=[address],
    )


def peers(app=None, units=None, local=None):
    return testing.PeerRelation(
        "storage-peers",
        local_app_data=app or {},
        peers_data=units or {},
        local_unit_data=local or {},
    )


def client(**kwargs):
    return testing.Relation("filesystem", remote_app_name="transform", **kwargs)


def state(*relations, leader=True, config=None, net=None):
    return testing.State(
        leader=leader,
        config=config or {},
        relations=set(relations),
        networks={net or network()},
    )


@pytest.fixture
def ctx():
    return testing.Context(StorageCharm)


def peer_of(out):
    return out.get_relations("storage-peers")[0]


def endpoint(out, rel):
    return out.get_relation(rel.id).local_app_data.get("endpoint")


# --- first install --------------------------------------------------------------------------


def test_install_on_the_leader_exports_to_its_subnet(ctx, host, tmp_path):
    out = ctx.run(ctx.on.install(), state(peers()))
    assert out.unit_status == testing.ActiveStatus("exporting /srv/oscied to 10.0.0.0/24")
    assert testing.MaintenanceStatus("installing nfs-kernel-server") in ctx.unit_status_history
    assert host.packages == {"nfs-kernel-server"}
    assert (tmp_path / "srv/oscied").is_dir()
    assert host.chowns == [(str(tmp_path / "srv/oscied"), 990, 990)]
    assert (tmp_path / EXPORTS).read_text().splitlines()[1] == (
        "/srv/oscied 10.0.0.0/24(rw,sync,no_subtree_check,root_squash,anonuid=990,anongid=990)"
    )
    assert host.reloads == 1
    assert host.server_active
    assert out.opened_ports == {testing.TCPPort(2049)}
    peer = peer_of(out)
    assert peer.local_app_data["server-unit"] == ME
    assert peer.local_app_data["endpoint"] == "nfs://(10.0.0.7)/srv/oscied"
    assert peer.local_unit_data["address"] == "10.0.0.7"


def test_install_before_the_peer_relation_waits(ctx, host, tmp_path):
    out = ctx.run(ctx.on.install(), state())
    assert out.unit_status == testing.WaitingStatus("waiting for the peer relation")
    assert host.packages == {"nfs-kernel-server"}
    assert not (tmp_path / EXPORTS).exists()


def test_in_an_lxd_container_it_blocks_without_installing(ctx, host):
    host.container_name = "lxc"
    out = ctx.run(ctx.on.install(), state(peers()))
    assert out.unit_status == testing.BlockedStatus(
        "cannot serve NFS from a lxc container: redeploy with "
        "--constraints virt-type=virtual-machine"
    )
    assert host.packages == set()


def test_apt_failure_blocks_then_recovers(ctx, host):
    host.apt_error = RuntimeError("E: Unable to locate package nfs-kernel-server")
    out = ctx.run(ctx.on.install(), state(peers()))
    assert out.unit_status == testing.BlockedStatus(
        "failed to install nfs-kernel-server: see juju debug-log"
    )
    host.apt_error = None
    out = ctx.run(ctx.on.update_status(), out)
    assert out.unit_status == testing.ActiveStatus("exporting /srv/oscied to 10.0.0.0/24")


def test_server_that_will_not_start_blocks(ctx, host):
    host.server_broken = True
    out = ctx.run(ctx.on.install(), state(peers()))
    assert out.unit_status == testing.BlockedStatus(
        "nfs-server is not running: see journalctl -u nfs-server"
    )


def test_exportfs_failure_blocks(ctx, host):
    host.exportfs_error = "exportfs: Failed to stat /srv/oscied: No such file or directory"
    out = ctx.run(ctx.on.install(), state(peers()))
    assert out.unit_status == testing.BlockedStatus(
        "exportfs -ra failed: exportfs: Failed to stat /srv/oscied: No such file or directory"
    )


def test_no_address_on_the_binding_waits(ctx, host):
    net = testing.Network("filesystem", bind_addresses=[], ingress_addresses=[])
    out = ctx.run(ctx.on.install(), state(peers(), net=net))
    assert out.unit_status == testing.WaitingStatus(
        "waiting for an address on the filesystem binding"
    )


def test_default_clients_without_a_cidr_is_the_address_itself(ctx, host):
    net = testing.Network(
        "filesystem",
        bind_addresses=[testing.BindAddress([testing.Address("10.0.0.7")])],
        ingress_addresses=["10.0.0.7"],
    )
    out = ctx.run(ctx.on.install(), state(peers(), net=net))
    assert out.unit_status == testing.ActiveStatus("exporting /srv/oscied to 10.0.0.7/32")


# --- config ----------------------------------------------------------------------------------


def test_config_clients_and_path(ctx, host, tmp_path):
    config = {"clients": "10.1.0.0/16, nas.Example.net 10.1.0.0/16", "path": "/data/oscied/"}
    out = ctx.run(ctx.on.config_changed(), state(peers(), config=config))
    assert out.unit_status == testing.ActiveStatus(
        "exporting /data/oscied to 10.1.0.0/16, nas.example.net"
    )
    line = (tmp_path / EXPORTS).read_text().splitlines()[1]
    assert line.startswith("/data/oscied 10.1.0.0/16(rw,") and " nas.example.net(rw," in line
    assert (tmp_path / "data/oscied").is_dir()
    assert peer_of(out).local_app_data["endpoint"] == "nfs://(10.0.0.7)/data/oscied"


def test_unchanged_config_does_not_reload_exports(ctx, host):
    out = ctx.run(ctx.on.install(), state(peers()))
    out = ctx.run(ctx.on.config_changed(), out)
    out = ctx.run(ctx.on.update_status(), out)
    assert host.reloads == 1
    out = ctx.run(
        ctx.on.config_changed(), dataclasses.replace(out, config={"clients": "10.9.0.1"})
    )
    assert host.reloads == 2
    assert out.unit_status == testing.ActiveStatus("exporting /srv/oscied to 10.9.0.1/32")


@pytest.mark.parametrize(
    "config, message",
    [
        (
            {"clients": "10.0.0.0/33"},
            "clients: '10.0.0.0/33' is not a CIDR, an IP address or a host name",
        ),
        ({"clients": "*"}, "clients: '*' is not a CIDR, an IP address or a host name"),
        ({"clients": "10.0.0.0/24(rw,no_root_squash)"}, "is not a CIDR"),
        ({"path": "srv/oscied"}, "path must be an absolute directory, got 'srv/oscied'"),
        ({"path": ""}, "path must be an absolute directory, got ''"),
        ({"path": "/"}, "path may not be /"),
        ({"path": "/etc/oscied"}, "path may not be in /etc"),
        ({"path": "/srv/../etc"}, "path may not contain . or .. segments"),
        ({"path": "/srv/a b"}, "path may hold only letters, digits and . _ ~ / + , = @ : -"),
    ],
)
def test_bad_config_blocks_and_exports_nothing(ctx, host, tmp_path, config, message):
    out = ctx.run(ctx.on.config_changed(), state(peers(), config=config))
    assert out.unit_status.name == "blocked"
    assert message in out.unit_status.message
    assert not (tmp_path / EXPORTS).exists()
    assert host.reloads == 0


def test_bad_config_then_fixed(ctx, host):
    out = ctx.run(ctx.on.config_changed(), state(peers(), config={"clients": "nope!"}))
    assert out.unit_status.name == "blocked"
    out = ctx.run(ctx.on.config_changed(), dataclasses.replace(out, config={"clients": ""}))
    assert out.unit_status == testing.ActiveStatus("exporting /srv/oscied to 10.0.0.0/24")


# --- the filesystem relation ----------------------------------------------------------------


def test_relation_joined_gets_the_endpoint(ctx, host):
    rel = client()
    out = ctx.run(ctx.on.relation_joined(rel, remote_unit=0), state(peers(), rel))
    uri = endpoint(out, rel)
    assert uri == "nfs://(10.0.0.7)/srv/oscied"
    assert NfsInfo.from_uri(uri, None) == NfsInfo("10.0.0.7", None, "/srv/oscied")


def test_relation_changed_keeps_the_endpoint(ctx, host):
    rel = client(remote_units_data={0: {"anything": "x"}})
    out = ctx.run(ctx.on.relation_changed(rel, remote_unit=0), state(peers(), rel))
    assert endpoint(out, rel) == "nfs://(10.0.0.7)/srv/oscied"
    assert out.unit_status == testing.ActiveStatus("exporting /srv/oscied to 10.0.0.0/24")


def test_every_relation_gets_the_endpoint_and_a_path_change(ctx, host):
    a, b = client(), testing.Relation("filesystem", remote_app_name="publisher")
    out = ctx.run(ctx.on.config_changed(), state(peers(), a, b, config={"path": "/srv/media"}))
    assert endpoint(out, a) == endpoint(out, b) == "nfs://(10.0.0.7)/srv/media"


def test_relation_broken_keeps_serving(ctx, host):
    rel = client()
    out = ctx.run(ctx.on.install(), state(peers(), rel))
    out = ctx.run(ctx.on.relation_broken(out.get_relation(rel.id)), out)
    assert out.unit_status == testing.ActiveStatus("exporting /srv/oscied to 10.0.0.0/24")
    assert host.reloads == 1


def test_non_leader_server_exports_but_does_not_write_the_app_bag(ctx, host, tmp_path):
    rel = client()
    out = ctx.run(
        ctx.on.relation_joined(rel, remote_unit=0),
        state(peers(app={"server-unit": ME}), rel, leader=False),
    )
    assert out.unit_status == testing.ActiveStatus("exporting /srv/oscied to 10.0.0.0/24")
    assert endpoint(out, rel) is None
    assert peer_of(out).local_unit_data["address"] == "10.0.0.7"
    assert (tmp_path / EXPORTS).exists()


# --- leader and non-leader, units joining and leaving ---------------------------------------


def test_non_leader_waits_for_the_leader_to_choose(ctx, host, tmp_path):
    out = ctx.run(ctx.on.install(), state(peers(), leader=False))
    assert out.unit_status == testing.WaitingStatus(
        "waiting for the leader to choose the serving unit"
    )
    assert not (tmp_path / EXPORTS).exists()


def test_second_unit_is_a_standby_and_exports_nothing(ctx, host, tmp_path):
    (tmp_path / "etc/exports.d").mkdir(parents=True)
    (tmp_path / EXPORTS).write_text("left from before\n")
    rel = peers(app={"server-unit": OTHER}, units={1: {"address": "10.0.0.8"}})
    out = ctx.run(ctx.on.relation_joined(rel, remote_unit=1), state(rel, leader=False))
    assert out.unit_status == testing.BlockedStatus(
        f"standby: {OTHER} serves the tree; remove this unit (juju remove-unit {ME})"
    )
    assert not (tmp_path / EXPORTS).exists()
    assert host.reloads == 1
    assert out.opened_ports == frozenset()


def test_new_leader_keeps_publishing_the_serving_unit(ctx, host, tmp_path):
    rel = client()
    peer = peers(app={"server-unit": OTHER}, units={1: {"address": "10.0.0.8"}})
    out = ctx.run(ctx.on.leader_elected(), state(peer, rel))
    assert endpoint(out, rel) == "nfs://(10.0.0.8)/srv/oscied"
    assert out.unit_status.name == "blocked"
    assert out.unit_status.message.startswith(f"standby: {OTHER} serves the tree")
    assert not (tmp_path / EXPORTS).exists()


def test_leader_waits_for_the_serving_unit_address(ctx, host):
    peer = peers(app={"server-unit": OTHER}, units={1: {}})
    out = ctx.run(ctx.on.leader_elected(), state(peer, client()))
    assert out.unit_status == testing.WaitingStatus(f"waiting for {OTHER} to share its address")


def test_serving_unit_leaving_blocks_the_leader_until_take_over(ctx, host, tmp_path):
    rel = client(local_app_data={"endpoint": "nfs://(10.0.0.8)/srv/oscied"})
    # During relation-departed the leaving unit is no longer among the peers.
    peer = peers(app={"server-unit": OTHER})
    out = ctx.run(
        ctx.on.relation_departed(peer, remote_unit=1, departing_unit=1), state(peer, rel)
    )
    assert out.unit_status == testing.BlockedStatus(
        f"{OTHER} held the tree and is gone: restore its data to /srv/oscied here, "
        "then run the take-over action"
    )
    assert endpoint(out, rel) == "nfs://(10.0.0.8)/srv/oscied"  # unchanged until told
    out = ctx.run(ctx.on.action("take-over"), out)
    assert ctx.action_results == {"previous": OTHER, "server": ME}
    assert out.unit_status == testing.ActiveStatus("exporting /srv/oscied to 10.0.0.0/24")
    assert endpoint(out, rel) == "nfs://(10.0.0.7)/srv/oscied"
    assert (tmp_path / EXPORTS).exists()


def test_take_over_on_a_non_leader_fails(ctx, host):
    with pytest.raises(testing.ActionFailed) as err:
        ctx.run(ctx.on.action("take-over"), state(peers(app={"server-unit": OTHER}), leader=False))
    assert "leader" in err.value.message


def test_take_over_without_peers_fails(ctx, host):
    with pytest.raises(testing.ActionFailed) as err:
        ctx.run(ctx.on.action("take-over"), state())
    assert "peer relation" in err.value.message


def test_another_unit_joining_changes_nothing_for_the_server(ctx, host):
    out = ctx.run(ctx.on.install(), state(peers()))
    peer = dataclasses.replace(peer_of(out), peers_data={1: {}})
    out = ctx.run(
        ctx.on.relation_joined(peer, remote_unit=1), dataclasses.replace(out, relations={peer})
    )
    assert out.unit_status == testing.ActiveStatus("exporting /srv/oscied to 10.0.0.0/24")
    assert peer_of(out).local_app_data["server-unit"] == ME
    assert host.reloads == 1


# --- upgrade and removal ----------------------------------------------------------------------


def test_upgrade_converges_without_reinstalling_or_reloading(ctx, host):
    out = ctx.run(ctx.on.install(), state(peers()))
    seen = len(ctx.unit_status_history)
    out = ctx.run(ctx.on.upgrade_charm(), out)
    assert out.unit_status == testing.ActiveStatus("exporting /srv/oscied to 10.0.0.0/24")
    assert host.reloads == 1
    assert all(s.name != "maintenance" for s in ctx.unit_status_history[seen:])


def test_upgrade_installs_a_missing_package(ctx, host):
    out = ctx.run(ctx.on.install(), state(peers()))
    host.packages.clear()
    out = ctx.run(ctx.on.upgrade_charm(), out)
    assert host.packages == {"nfs-kernel-server"}
    assert out.unit_status.name == "active"


def test_remove_stops_exporting_and_keeps_the_data(ctx, host, tmp_path):
    out = ctx.run(ctx.on.install(), state(peers()))
    (tmp_path / "srv/oscied/media.mp4").write_bytes(b"data")
    out = ctx.run(ctx.on.remove(), out)
    assert not (tmp_path / EXPORTS).exists()
    assert host.reloads == 2
    assert (tmp_path / "srv/oscied/media.mp4").exists()


def test_start_uses_the_running_server(ctx, host):
    host.server_active = True
    out = ctx.run(ctx.on.start(), state(peers()))
    assert out.unit_status.name == "active"


def test_nfs_uid_is_the_service_uid():
    assert (nfs.SERVICE_UID, nfs.SERVICE_GID) == (990, 990)
