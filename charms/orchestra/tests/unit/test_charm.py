# Copyright 2026 OSCIED contributors.
# Licensed under the Apache License, Version 2.0.

"""State-transition tests of the orchestra charm (ops.testing: Context/State).

The host is faked at one seam, `service.system` (systemd, apt, users); every file the charm
writes lands under OSCIED_CHARM_ROOT, a temp dir, where the tests read the env file back.
"""

import dataclasses
import io
import json
import urllib.error
from pathlib import Path

import ops
import pytest
from ops import testing
from scenario.errors import InconsistentScenarioError

import charm
import orchestra

ENV = "etc/oscied/orchestra.env"
UNIT = "etc/systemd/system/oscied-orchestra.service"
SERVICE = "oscied-orchestra.service"
MOUNT = "srv-oscied.mount"
DB_URI = "mongodb://relation-3:dbpw@10.0.0.5:27017/oscied?replicaSet=mongodb&authSource=admin"


@pytest.fixture
def binary(tmp_path):
    path = tmp_path / "orchestra-resource"
    path.write_bytes(b"\x7fELF orchestra v1")
    return path


def env_of(host) -> dict[str, str]:
    """The rendered env file, unquoted (the values in these tests need no escapes)."""
    text = (host.root / ENV).read_text()
    pairs = (line.split("=", 1) for line in text.splitlines())
    return {k: v.removeprefix('"').removesuffix('"') for k, v in pairs}


# --- State builders ----------------------------------------------------------------------------


def db_relation(with_credentials=True):
    user = testing.Secret(
        {"username": "relation-3", "password": "dbpw", "uris": DB_URI}, owner=None
    )
    data = {"database": "oscied", "endpoints": "10.0.0.5:27017", "replset": "mongodb"}
    if with_credentials:
        data["secret-user"] = user.id
    rel = testing.Relation("database", remote_app_name="mongodb", remote_app_data=data)
    return rel, user


def amqp_relation(in_unit_bag=True, password="mqpw"):
    answer = {"hostname": "10.0.0.9", "password": password} if password else {}
    if in_unit_bag:
        return testing.Relation(
            "amqp", remote_app_name="rabbitmq", remote_units_data={0: dict(answer)}
        )
    return testing.Relation(
        "amqp", remote_app_name="rabbitmq", remote_app_data=dict(answer), remote_units_data={0: {}}
    )


def storage_relation(endpoint="nfs://(10.0.0.7)/srv/export"):
    data = {"endpoint": endpoint} if endpoint else {}
    return testing.Relation("storage", remote_app_name="storage", remote_app_data=data)


def peers(units=None, app_data=None):
    return testing.PeerRelation(
        "orchestra-peers", peers_data=units or {}, local_app_data=app_data or {}
    )


def full_state(binary, *, leader=True, extra=(), secrets=(), config=None, peer=None):
    db, user = db_relation()
    relations = {db, amqp_relation(), storage_relation(), peer or peers(), *extra}
    return testing.State(
        leader=leader,
        config=config or {},
        relations=relations,
        secrets={user, *secrets},
        resources={testing.Resource(name="orchestra-binary", path=binary)},
    )


def app_secrets(state):
    return {s.label: s for s in state.secrets if s.owner == "app"}


def peer_of(state):
    (rel,) = state.get_relations("orchestra-peers")
    return rel


# --- Install and the happy path ----------------------------------------------------------------


def test_first_install_as_leader_renders_env_and_starts(host, binary):
    ctx = testing.Context(charm.OrchestraCharm, app_name="orchestra")
    out = ctx.run(ctx.on.install(), full_state(binary))

    assert out.unit_status == testing.ActiveStatus(
        "API on :5000, 1 orchestra, 0 transform and 0 publisher units"
    )
    assert (host.root / "usr/local/bin/orchestra").read_bytes() == binary.read_bytes()
    assert (host.root / ENV).stat().st_mode & 0o777 == 0o600
    secrets = app_secrets(out)
    root = secrets["root-secret"].tracked_content["root-secret"]
    node = secrets["node-secret"].tracked_content["node-secret"]
    assert len(root) >= 32 and len(node) >= 32 and root != node
    assert env_of(host) == {
        "OSCIED_LISTEN": "0.0.0.0:5000",
        "OSCIED_MONGODB_URI": DB_URI,
        "OSCIED_AMQP_URI": "amqp://orchestra:mqpw@10.0.0.9:5672/oscied",
        "OSCIED_STORAGE_ROOT": "/srv/oscied",
        "OSCIED_ROOT_SECRET": root,
        "OSCIED_NODE_SECRET": node,
        "OSCIED_LOG_FORMAT": "human",
        "OSCIED_TASK_LEASE_SECS": "30",
        "OSCIED_TASK_MAX_ATTEMPTS": "3",
        "OSCIED_MAX_UPLOAD_BYTES": "16GiB",
    }
    unit = (host.root / UNIT).read_text()
    assert "Environment=OSCIED_DATA_DIR=%S/oscied\n" in unit
    assert "RequiresMountsFor=/srv/oscied\n" in unit
    assert "ReadWritePaths=/srv/oscied\n" in unit
    assert "NoNewPrivileges=yes\n" in unit and "ProtectSystem=strict\n" in unit
    assert "What=10.0.0.7:/srv/export\n" in (host.root / "etc/systemd/system" / MOUNT).read_text()
    assert ("apt", "nfs-common") in host.calls
    assert [c for c in host.calls if c[0] == "user"] == [("user", "oscied", "990", "990")]
    assert host.restarts(SERVICE) == 1
    assert out.opened_ports == {testing.TCPPort(5000)}
    bag = peer_of(out).local_app_data
    assert bag["root-secret-id"] == secrets["root-secret"].id
    assert bag["node-secret-id"] == secrets["node-secret"].id
    assert bag["node-secret-rev"] == "1" and bag["root-secret-rev"] == "1"
    assert peer_of(out).local_unit_data["api-url"] == "http://192.0.2.0:5000"
    # The amqp request: the user and vhost, in the unit bag and (leader) the app bag.
    (amqp,) = out.get_relations("amqp")
    assert amqp.local_unit_data["username"] == "orchestra"
    assert amqp.local_unit_data["vhost"] == "oscied"
    assert amqp.local_app_data == {"username": "orchestra", "vhost": "oscied"}


def test_nothing_changes_nothing_restarts(host, binary):
    ctx = testing.Context(charm.OrchestraCharm, app_name="orchestra")
    out = ctx.run(ctx.on.install(), full_state(binary))
    env = (host.root / ENV).read_text()
    out = ctx.run(ctx.on.update_status(), out)
    out = ctx.run(ctx.on.config_changed(), out)
    assert host.restarts(SERVICE) == 1
    assert (host.root / ENV).read_text() == env
    assert out.unit_status.name == "active"


def test_missing_resource_blocks_and_says_how(host, binary, monkeypatch):
    def no_resource(self):
        raise ops.ModelError("ERROR could not download resource: HTTP request failed")

    monkeypatch.setattr(charm.OrchestraCharm, "_fetch_resource", no_resource)
    ctx = testing.Context(charm.OrchestraCharm, app_name="orchestra")
    out = ctx.run(ctx.on.install(), full_state(binary))
    assert out.unit_status == testing.BlockedStatus(
        "missing resource orchestra-binary: juju attach-resource orchestra "
        "orchestra-binary=./orchestra"
    )
    assert not (host.root / ENV).exists()
    assert host.restarts(SERVICE) == 0
    # Still blocked on the next hook: the binary is not there.
    out = ctx.run(ctx.on.update_status(), out)
    assert out.unit_status.name == "blocked"
    assert "attach-resource" in out.unit_status.message


def test_an_empty_resource_is_a_missing_one(host, tmp_path):
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    ctx = testing.Context(charm.OrchestraCharm, app_name="orchestra")
    out = ctx.run(ctx.on.install(), full_state(empty))
    assert out.unit_status.name == "blocked"
    assert out.unit_status.message.startswith("missing resource orchestra-binary")
    assert not (host.root / "usr/local/bin/orchestra").exists()


def test_upgrade_installs_the_new_binary_and_restarts(host, binary, tmp_path):
    ctx = testing.Context(charm.OrchestraCharm, app_name="orchestra")
    out = ctx.run(ctx.on.install(), full_state(binary))
    assert host.restarts(SERVICE) == 1

    # Refresh with the same binary: nothing to restart.
    out = ctx.run(ctx.on.upgrade_charm(), out)
    assert host.restarts(SERVICE) == 1

    newer = tmp_path / "orchestra-v2"
    newer.write_bytes(b"\x7fELF orchestra v2")
    state = dataclasses.replace(
        out, resources={testing.Resource(name="orchestra-binary", path=newer)}
    )
    out = ctx.run(ctx.on.upgrade_charm(), state)
    assert (host.root / "usr/local/bin/orchestra").read_bytes() == newer.read_bytes()
    assert host.restarts(SERVICE) == 2
    assert out.unit_status.name == "active"


def test_a_binary_installed_while_blocked_is_started_later(host, binary, tmp_path):
    ctx = testing.Context(charm.OrchestraCharm, app_name="orchestra")
    out = ctx.run(ctx.on.install(), full_state(binary))
    newer = tmp_path / "orchestra-v2"
    newer.write_bytes(b"\x7fELF orchestra v2")
    state = dataclasses.replace(
        out,
        config={"port": 0},
        resources={testing.Resource(name="orchestra-binary", path=newer)},
    )
    out = ctx.run(ctx.on.upgrade_charm(), state)
    assert out.unit_status.name == "blocked"
    assert host.restarts(SERVICE) == 1
    # The config is fixed back to what it was: same files, but the new binary must run.
    out = ctx.run(ctx.on.config_changed(), dataclasses.replace(out, config={}))
    assert host.restarts(SERVICE) == 2
    out = ctx.run(ctx.on.update_status(), out)
    assert host.restarts(SERVICE) == 2


# --- Config ------------------------------------------------------------------------------------


def test_good_config_change_renders_and_restarts(host, binary):
    ctx = testing.Context(charm.OrchestraCharm, app_name="orchestra")
    out = ctx.run(ctx.on.install(), full_state(binary))
    config = {
        "port": 8080,
        "log-format": "json",
        "verbose": True,
        "task-lease-secs": 60,
        "task-max-attempts": 5,
        "max-upload-bytes": "2GiB",
    }
    out = ctx.run(ctx.on.config_changed(), dataclasses.replace(out, config=config))
    env = env_of(host)
    assert env["OSCIED_LISTEN"] == "0.0.0.0:8080"
    assert env["OSCIED_LOG_FORMAT"] == "json"
    assert env["RUST_LOG"] == orchestra.VERBOSE_LOG_FILTER
    assert env["OSCIED_TASK_LEASE_SECS"] == "60"
    assert env["OSCIED_TASK_MAX_ATTEMPTS"] == "5"
    assert env["OSCIED_MAX_UPLOAD_BYTES"] == "2GiB"
    assert host.restarts(SERVICE) == 2
    assert out.opened_ports == {testing.TCPPort(8080)}
    assert peer_of(out).local_unit_data["api-url"] == "http://192.0.2.0:8080"
    assert out.unit_status == testing.ActiveStatus(
        "API on :8080, 1 orchestra, 0 transform and 0 publisher units"
    )


@pytest.mark.parametrize(
    "config, message",
    [
        ({"port": 0}, "port must be a whole number from 1 to 65535, got 0"),
        ({"log-format": "xml"}, "log-format must be human or json, got 'xml'"),
        ({"task-lease-secs": 1}, "task-lease-secs must be a whole number from 2 to 86400, got 1"),
        (
            {"task-max-attempts": 0},
            "task-max-attempts must be a whole number from 1 to 100, got 0",
        ),
        (
            {"max-upload-bytes": "lots"},
            "max-upload-bytes: 'lots' is not a size such as 1048576, 500M or 2GiB",
        ),
        ({"max-upload-bytes": "0"}, "max-upload-bytes: it must be at least 1 byte"),
        (
            {"mongodb-uri": "postgres://u:secretpw@h/db"},
            "mongodb-uri must look like mongodb://... or ",
        ),
        ({"amqp-uri": "http://u:secretpw@h"}, "amqp-uri must look like amqp://... or amqps://..."),
        ({"amqp-vhost": "a b"}, "amqp-vhost may not contain spaces or control characters"),
        ({"storage-uri": "smb://h/share"}, "storage-uri: storage URI must be nfs://host/path"),
    ],
)
def test_bad_config_blocks_naming_the_option_and_keeps_the_service(host, binary, config, message):
    ctx = testing.Context(charm.OrchestraCharm, app_name="orchestra")
    out = ctx.run(ctx.on.install(), full_state(binary))
    env = (host.root / ENV).read_text()
    out = ctx.run(ctx.on.config_changed(), dataclasses.replace(out, config=config))
    assert out.unit_status.name == "blocked"
    assert out.unit_status.message.startswith(message)
    assert "secretpw" not in out.unit_status.message
    # A typo does not take the API down: the service keeps its last good config.
    assert (host.root / ENV).read_text() == env
    assert host.restarts(SERVICE) == 1 and ("stop", SERVICE) not in host.calls


def test_bad_config_on_first_install_blocks_without_a_service(host, binary):
    ctx = testing.Context(charm.OrchestraCharm, app_name="orchestra")
    out = ctx.run(ctx.on.install(), full_state(binary, config={"port": 70000}))
    assert out.unit_status == testing.BlockedStatus(
        "port must be a whole number from 1 to 65535, got 70000"
    )
    assert not (host.root / ENV).exists()


def test_overrides_replace_the_relations(host, binary):
    ctx = testing.Context(charm.OrchestraCharm, app_name="orchestra")
    config = {
        "mongodb-uri": "mongodb://oscied:pw@db.example.net:27017/oscied",
        "amqp-uri": "amqp://oscied:pw@mq.example.net:5672/oscied",
        "storage-uri": "file:///mnt/media",
    }
    state = testing.State(
        leader=True,
        config=config,
        relations={peers()},
        resources={testing.Resource(name="orchestra-binary", path=binary)},
    )
    out = ctx.run(ctx.on.install(), state)
    assert out.unit_status.name == "active"
    env = env_of(host)
    assert env["OSCIED_MONGODB_URI"] == config["mongodb-uri"]
    assert env["OSCIED_AMQP_URI"] == config["amqp-uri"]
    assert env["OSCIED_STORAGE_ROOT"] == "/mnt/media"
    unit = (host.root / UNIT).read_text()
    assert "RequiresMountsFor=/mnt/media\n" in unit
    assert not (host.root / "etc/systemd/system" / MOUNT).exists()


def test_storage_uri_wins_over_the_relation(host, binary):
    ctx = testing.Context(charm.OrchestraCharm, app_name="orchestra")
    state = full_state(binary, config={"storage-uri": "nfs://nas.example.net:2049/media"})
    ctx.run(ctx.on.install(), state)
    mount = (host.root / "etc/systemd/system" / MOUNT).read_text()
    assert "What=nas.example.net:/media\n" in mount
    assert "port=2049" in mount
    assert env_of(host)["OSCIED_STORAGE_ROOT"] == "/srv/oscied"


# --- Database ----------------------------------------------------------------------------------


def test_database_missing_then_joined_then_changed_then_broken(host, binary):
    ctx = testing.Context(charm.OrchestraCharm, app_name="orchestra")
    base = full_state(binary)
    without_db = dataclasses.replace(
        base, relations={r for r in base.relations if r.endpoint != "database"}
    )
    out = ctx.run(ctx.on.install(), without_db)
    assert out.unit_status == testing.BlockedStatus(
        "needs a database relation (mongodb) or mongodb-uri"
    )
    assert not (host.root / ENV).exists()

    # Created, joined: MongoDB has not answered yet; the leader asked for the database.
    db, user = db_relation(with_credentials=False)
    state = dataclasses.replace(out, relations={*out.relations, db}, secrets={*out.secrets, user})
    out = ctx.run(ctx.on.relation_created(db), state)
    assert out.get_relation(db.id).local_app_data["database"] == "oscied"
    out = ctx.run(ctx.on.relation_joined(out.get_relation(db.id), remote_unit=0), out)
    assert out.unit_status == testing.WaitingStatus("waiting for mongodb to share credentials")

    # Changed: the credentials arrive as a secret.
    db = dataclasses.replace(
        out.get_relation(db.id),
        remote_app_data={**db.remote_app_data, "secret-user": user.id},
    )
    state = dataclasses.replace(out, relations={*(r for r in out.relations if r.id != db.id), db})
    out = ctx.run(ctx.on.relation_changed(db, remote_unit=0), state)
    assert out.unit_status.name == "active"
    assert env_of(host)["OSCIED_MONGODB_URI"] == DB_URI
    assert host.restarts(SERVICE) == 1

    # Broken: the credentials are gone, the service stops and the unit says why.
    out = ctx.run(ctx.on.relation_broken(out.get_relation(db.id)), out)
    assert out.unit_status == testing.BlockedStatus(
        "needs a database relation (mongodb) or mongodb-uri"
    )
    assert ("stop", SERVICE) in host.calls
    assert SERVICE not in host.active


def test_database_without_uris_builds_one(host, binary):
    user = testing.Secret({"username": "relation-3", "password": "p@ss"})
    db = testing.Relation(
        "database",
        remote_app_name="mongodb",
        remote_app_data={
            "database": "oscied",
            "endpoints": "10.0.0.5:27017,10.0.0.6:27017",
            "replset": "mongodb",
            "secret-user": user.id,
        },
    )
    state = full_state(binary)
    state = dataclasses.replace(
        state,
        relations={*(r for r in state.relations if r.endpoint != "database"), db},
        secrets={user},
    )
    ctx = testing.Context(charm.OrchestraCharm, app_name="orchestra")
    ctx.run(ctx.on.install(), state)
    assert env_of(host)["OSCIED_MONGODB_URI"] == (
        "mongodb://relation-3:p%40ss@10.0.0.5:27017,10.0.0.6:27017/oscied"
        "?authSource=admin&replicaSet=mongodb"
    )


# --- AMQP --------------------------------------------------------------------------------------


def _with(state, rel):
    others = {r for r in state.relations if r.endpoint != rel.endpoint}
    return dataclasses.replace(state, relations={*others, rel})


@pytest.mark.parametrize("in_unit_bag", [True, False], ids=["unit-bag", "app-bag"])
def test_amqp_joined_changed_broken(host, binary, in_unit_bag):
    ctx = testing.Context(charm.OrchestraCharm, app_name="orchestra")
    state = _with(full_state(binary), amqp_relation(in_unit_bag, password=None))
    rel = next(iter(state.get_relations("amqp")))
    out = ctx.run(ctx.on.relation_joined(rel, remote_unit=0), state)
    assert out.unit_status == testing.WaitingStatus("waiting for rabbitmq to share its password")
    assert out.get_relation(rel.id).local_unit_data["username"] == "orchestra"
    assert not (host.root / ENV).exists()

    answered = amqp_relation(in_unit_bag, password="s3cr/t")
    answered = dataclasses.replace(
        answered, id=rel.id, local_unit_data=out.get_relation(rel.id).local_unit_data
    )
    out = ctx.run(ctx.on.relation_changed(answered, remote_unit=0), _with(out, answered))
    assert out.unit_status.name == "active"
    assert env_of(host)["OSCIED_AMQP_URI"] == "amqp://orchestra:s3cr%2Ft@10.0.0.9:5672/oscied"

    out = ctx.run(ctx.on.relation_broken(out.get_relation(rel.id)), out)
    assert out.unit_status == testing.BlockedStatus(
        "needs an amqp relation (rabbitmq-server) or amqp-uri"
    )
    assert SERVICE not in host.active


def test_amqp_vhost_option_is_requested(host, binary):
    ctx = testing.Context(charm.OrchestraCharm, app_name="orchestra")
    out = ctx.run(ctx.on.install(), full_state(binary, config={"amqp-vhost": "media"}))
    (rel,) = out.get_relations("amqp")
    assert rel.local_unit_data["vhost"] == "media"
    assert env_of(host)["OSCIED_AMQP_URI"].endswith("/media")


# --- Storage -----------------------------------------------------------------------------------


def test_storage_missing_then_waiting_then_published_then_broken(host, binary):
    ctx = testing.Context(charm.OrchestraCharm, app_name="orchestra")
    base = full_state(binary)
    without = dataclasses.replace(
        base, relations={r for r in base.relations if r.endpoint != "storage"}
    )
    out = ctx.run(ctx.on.install(), without)
    assert out.unit_status == testing.BlockedStatus(
        "needs a storage relation or the storage-uri option"
    )

    rel = storage_relation(endpoint=None)
    out = ctx.run(ctx.on.relation_joined(rel, remote_unit=0), _with(out, rel))
    assert out.unit_status == testing.WaitingStatus("waiting for storage to publish its export")

    rel = dataclasses.replace(rel, remote_app_data={"endpoint": "nfs://(10.0.0.7:2049)/data"})
    out = ctx.run(ctx.on.relation_changed(rel, remote_unit=0), _with(out, rel))
    assert out.unit_status.name == "active"
    mount = (host.root / "etc/systemd/system" / MOUNT).read_text()
    assert "What=10.0.0.7:/data\n" in mount and "port=2049" in mount
    assert ("restart", MOUNT) in host.calls

    out = ctx.run(ctx.on.relation_broken(out.get_relation(rel.id)), out)
    assert out.unit_status == testing.BlockedStatus(
        "needs a storage relation or the storage-uri option"
    )
    assert SERVICE not in host.active


def test_storage_relation_with_a_bad_export_blocks(host, binary):
    ctx = testing.Context(charm.OrchestraCharm, app_name="orchestra")
    state = _with(full_state(binary), storage_relation("cephfs://(10.0.0.7)/x"))
    out = ctx.run(ctx.on.install(), state)
    assert out.unit_status.name == "blocked"
    assert out.unit_status.message.startswith("storage relation: storage URI must be")


def test_a_failing_mount_blocks(host, binary, monkeypatch):
    from charmlibs import systemd

    def refuse(unit):
        raise systemd.SystemdError(f"failed to restart {unit}")

    monkeypatch.setattr(host, "restart", refuse)
    ctx = testing.Context(charm.OrchestraCharm, app_name="orchestra")
    out = ctx.run(ctx.on.install(), full_state(binary))
    assert out.unit_status == testing.BlockedStatus(
        "cannot mount 10.0.0.7:/srv/export: see journalctl -u srv-oscied.mount"
    )


# --- Workers and peers -------------------------------------------------------------------------


def test_workers_get_every_api_url_and_a_granted_node_secret(host, binary):
    transform = testing.Relation(
        "transform",
        remote_app_name="transform",
        remote_units_data={0: {"hostname": "t0"}, 1: {"hostname": "t1"}, 2: {}},
    )
    publisher = testing.Relation("publisher", remote_app_name="publisher")
    peer = peers(units={1: {"api-url": "http://10.0.0.2:5000"}, 2: {}})
    ctx = testing.Context(charm.OrchestraCharm, app_name="orchestra")
    out = ctx.run(
        ctx.on.relation_joined(transform, remote_unit=2),
        full_state(binary, extra=(transform, publisher), peer=peer),
    )
    node = app_secrets(out)["node-secret"]
    for rel in (transform, publisher):
        bag = out.get_relation(rel.id).local_app_data
        assert bag["api-urls"] == "http://10.0.0.2:5000,http://192.0.2.0:5000"
        assert bag["node-secret-id"] == node.id
    assert node.remote_grants == {transform.id: {"transform"}, publisher.id: {"publisher"}}
    assert out.unit_status == testing.ActiveStatus(
        "API on :5000, 3 orchestras, 3 transform and 1 publisher units"
    )


def test_a_peer_joining_and_leaving_updates_the_api_urls(host, binary):
    transform = testing.Relation("transform", remote_app_name="transform")
    ctx = testing.Context(charm.OrchestraCharm, app_name="orchestra")
    out = ctx.run(ctx.on.install(), full_state(binary, extra=(transform,)))
    assert out.get_relation(transform.id).local_app_data["api-urls"] == "http://192.0.2.0:5000"

    peer = dataclasses.replace(peer_of(out), peers_data={1: {"api-url": "http://10.0.0.2:5000"}})
    out = ctx.run(ctx.on.relation_changed(peer, remote_unit=1), _with(out, peer))
    assert out.get_relation(transform.id).local_app_data["api-urls"] == (
        "http://10.0.0.2:5000,http://192.0.2.0:5000"
    )
    assert "2 orchestras" in out.unit_status.message

    peer = peer_of(out)
    out = ctx.run(ctx.on.relation_departed(peer, remote_unit=1, departing_unit=1), out)
    assert out.get_relation(transform.id).local_app_data["api-urls"] == "http://192.0.2.0:5000"
    assert "1 orchestra," in out.unit_status.message
    # The leader's own service is not restarted by a peer coming or going.
    assert host.restarts(SERVICE) == 1


def test_a_worker_unit_leaving_is_counted_out(host, binary):
    transform = testing.Relation(
        "transform", remote_app_name="transform", remote_units_data={0: {}, 1: {}}
    )
    ctx = testing.Context(charm.OrchestraCharm, app_name="orchestra")
    out = ctx.run(ctx.on.install(), full_state(binary, extra=(transform,)))
    assert "2 transform" in out.unit_status.message
    rel = out.get_relation(transform.id)
    out = ctx.run(ctx.on.relation_departed(rel, remote_unit=1, departing_unit=1), out)
    assert "1 transform" in out.unit_status.message


def leader_output(host, binary, **kwargs):
    ctx = testing.Context(charm.OrchestraCharm, app_name="orchestra")
    return ctx.run(ctx.on.install(), full_state(binary, **kwargs))


def as_non_leader(out, binary, peers_data=None):
    """The same app seen from unit 1: the leader's app secrets and peer app bag."""
    leader_peer = peer_of(out)
    peer = testing.PeerRelation(
        "orchestra-peers",
        id=leader_peer.id,
        local_app_data=leader_peer.local_app_data,
        peers_data=peers_data or {0: {"api-url": "http://192.0.2.0:5000"}},
    )
    return dataclasses.replace(
        out,
        leader=False,
        relations={*(r for r in out.relations if r.endpoint != "orchestra-peers"), peer},
        opened_ports=frozenset(),
    )


def test_non_leader_waits_for_the_leader_then_serves_with_its_secrets(host, binary):
    ctx = testing.Context(charm.OrchestraCharm, app_name="orchestra", unit_id=1)
    state = full_state(binary, leader=False, peer=peers(units={0: {}}))
    out = ctx.run(ctx.on.install(), state)
    assert out.unit_status == testing.WaitingStatus(
        "waiting for the leader to share the root and node secrets"
    )
    assert not app_secrets(out)
    assert not (host.root / ENV).exists()

    leader = leader_output(host, binary)
    secrets = app_secrets(leader)
    follower = as_non_leader(leader, binary)
    out = ctx.run(ctx.on.relation_changed(peer_of(follower), remote_unit=0), follower)
    assert out.unit_status == testing.ActiveStatus(
        "API on :5000, 2 orchestras, 0 transform and 0 publisher units"
    )
    env = env_of(host)
    assert env["OSCIED_ROOT_SECRET"] == secrets["root-secret"].tracked_content["root-secret"]
    assert env["OSCIED_NODE_SECRET"] == secrets["node-secret"].tracked_content["node-secret"]
    assert "OSCIED_ROTATE_ROOT_SECRET" not in env
    # A non-leader writes its own api-url, nothing in the app bags.
    assert peer_of(out).local_unit_data["api-url"] == "http://192.0.2.0:5000"
    assert peer_of(out).local_app_data == peer_of(follower).local_app_data


# --- Node secret rotation ----------------------------------------------------------------------


def test_rotate_node_secret_on_the_leader(host, binary):
    transform = testing.Relation("transform", remote_app_name="transform")
    ctx = testing.Context(charm.OrchestraCharm, app_name="orchestra")
    out = ctx.run(ctx.on.install(), full_state(binary, extra=(transform,)))
    old = env_of(host)["OSCIED_NODE_SECRET"]

    out = ctx.run(ctx.on.action("rotate-node-secret"), out)
    assert ctx.action_results == {"node-secret-rev": "2"}
    node = app_secrets(out)["node-secret"]
    new = node.latest_content["node-secret"]
    assert new != old and len(new) >= 32
    assert env_of(host)["OSCIED_NODE_SECRET"] == new
    assert peer_of(out).local_app_data["node-secret-rev"] == "2"
    assert host.restarts(SERVICE) == 2
    # Same secret id for the workers: they follow it through secret-changed.
    assert out.get_relation(transform.id).local_app_data["node-secret-id"] == node.id

    # Once every observer tracks the new revision, Juju asks the owner to drop the old one.
    ctx.run(ctx.on.secret_remove(node, revision=1), out)
    assert ctx.removed_secret_revisions == [1]


def test_rotate_node_secret_fails_off_the_leader(host, binary):
    leader = leader_output(host, binary)
    ctx = testing.Context(charm.OrchestraCharm, app_name="orchestra", unit_id=1)
    with pytest.raises(testing.ActionFailed) as failed:
        ctx.run(ctx.on.action("rotate-node-secret"), as_non_leader(leader, binary))
    assert "only the leader" in failed.value.message


def test_non_leader_restarts_when_the_leader_rotates(host, binary):
    leader = leader_output(host, binary)
    follower = as_non_leader(leader, binary)
    ctx = testing.Context(charm.OrchestraCharm, app_name="orchestra", unit_id=1)
    out = ctx.run(ctx.on.relation_changed(peer_of(follower), remote_unit=0), follower)
    restarts = host.restarts(SERVICE)

    node = app_secrets(out)["node-secret"]
    rotated = dataclasses.replace(node, latest_content={"node-secret": "n" * 43})
    peer = dataclasses.replace(
        peer_of(out), local_app_data={**peer_of(out).local_app_data, "node-secret-rev": "2"}
    )
    state = dataclasses.replace(
        _with(out, peer), secrets={*(s for s in out.secrets if s.id != node.id), rotated}
    )
    ctx.run(ctx.on.relation_changed(peer, remote_unit=0), state)
    assert env_of(host)["OSCIED_NODE_SECRET"] == "n" * 43
    assert host.restarts(SERVICE) == restarts + 1


# --- Root secret -------------------------------------------------------------------------------


def test_get_root_secret_on_leader_and_non_leader(host, binary):
    leader = leader_output(host, binary)
    root = app_secrets(leader)["root-secret"].tracked_content["root-secret"]
    ctx = testing.Context(charm.OrchestraCharm, app_name="orchestra")
    ctx.run(ctx.on.action("get-root-secret"), leader)
    assert ctx.action_results == {"root-secret": root, "username": "root"}

    ctx = testing.Context(charm.OrchestraCharm, app_name="orchestra", unit_id=1)
    ctx.run(ctx.on.action("get-root-secret"), as_non_leader(leader, binary))
    assert ctx.action_results["root-secret"] == root


def test_get_root_secret_before_there_is_one(host, binary):
    ctx = testing.Context(charm.OrchestraCharm, app_name="orchestra", unit_id=1)
    with pytest.raises(testing.ActionFailed) as failed:
        ctx.run(ctx.on.action("get-root-secret"), testing.State(relations={peers()}))
    assert "no root secret yet" in failed.value.message


def test_root_secret_option_is_used_then_rotated(host, binary):
    chosen = testing.Secret({"root-secret": "r" * 24})
    ctx = testing.Context(charm.OrchestraCharm, app_name="orchestra")
    out = ctx.run(
        ctx.on.install(), full_state(binary, config={"root-secret": chosen.id}, secrets=(chosen,))
    )
    assert out.unit_status.name == "active"
    env = env_of(host)
    assert env["OSCIED_ROOT_SECRET"] == "r" * 24
    assert "OSCIED_ROTATE_ROOT_SECRET" not in env

    # The operator changes the user secret's content: the leader replaces root's secret.
    chosen = out.get_secret(id=chosen.id)
    changed = dataclasses.replace(chosen, latest_content={"root-secret": "s" * 24})
    state = dataclasses.replace(
        out, secrets={*(s for s in out.secrets if s.id != chosen.id), changed}
    )
    out = ctx.run(ctx.on.secret_changed(changed), state)
    env = env_of(host)
    assert env["OSCIED_ROOT_SECRET"] == "s" * 24
    assert env["OSCIED_ROTATE_ROOT_SECRET"] == "true"
    assert peer_of(out).local_app_data["root-secret-rev"] == "2"
    assert app_secrets(out)["root-secret"].latest_content == {"root-secret": "s" * 24}


@pytest.mark.parametrize(
    "content, message",
    [
        ({"root-secret": "short"}, "root-secret must be 16 to 1024 characters long"),
        ({"root-secret": "has spaces in it ok"}, "root-secret may not contain spaces"),
        ({"password": "x" * 20}, "root-secret: the secret has no root-secret key"),
    ],
)
def test_bad_root_secret_option_blocks_and_generates_nothing(host, binary, content, message):
    chosen = testing.Secret(content)
    ctx = testing.Context(charm.OrchestraCharm, app_name="orchestra")
    out = ctx.run(
        ctx.on.install(), full_state(binary, config={"root-secret": chosen.id}, secrets=(chosen,))
    )
    assert out.unit_status.name == "blocked"
    assert out.unit_status.message.startswith(message)
    assert "root-secret" not in app_secrets(out)
    assert not (host.root / ENV).exists()


def test_unreadable_root_secret_option_blocks(host, binary):
    ctx = testing.Context(charm.OrchestraCharm, app_name="orchestra")
    out = ctx.run(
        ctx.on.install(), full_state(binary, config={"root-secret": "secret:d2b8fnnfjp7ltqtk8fmg"})
    )
    assert out.unit_status.name == "blocked"
    assert out.unit_status.message.startswith("root-secret: no such secret")


# --- create-user -------------------------------------------------------------------------------


class FakeResponse(io.BytesIO):
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def test_create_user_calls_the_local_api_as_root(host, binary, monkeypatch):
    out = leader_output(host, binary)
    root = app_secrets(out)["root-secret"].tracked_content["root-secret"]
    seen = {}

    def fake_urlopen(request, timeout):
        seen["url"] = request.full_url
        seen["auth"] = request.get_header("Authorization")
        seen["body"] = json.loads(request.data)
        answer = {"id": "8f6c", "mail": "ada@example.com", "name": "Ada Lovelace"}
        return FakeResponse(json.dumps(answer).encode())

    monkeypatch.setattr(orchestra, "_open", fake_urlopen)
    ctx = testing.Context(charm.OrchestraCharm, app_name="orchestra")
    params = {"mail": "ada@example.com", "first-name": "Ada", "last-name": "Lovelace"}
    ctx.run(ctx.on.action("create-user", params=params), out)

    import base64

    assert seen["url"] == "http://127.0.0.1:5000/api/v1/users"
    assert seen["auth"] == "Basic " + base64.b64encode(f"root:{root}".encode()).decode()
    body = seen["body"]
    assert body["mail"] == "ada@example.com" and body["admin_platform"] is False
    assert (body["first_name"], body["last_name"]) == ("Ada", "Lovelace")
    assert len(body["secret"]) >= 32
    assert ctx.action_results == {
        "user-id": "8f6c",
        "mail": "ada@example.com",
        "name": "Ada Lovelace",
        "secret": body["secret"],
    }


def test_create_user_reports_the_api_error(host, binary, monkeypatch):
    out = leader_output(host, binary)

    def conflict(request, timeout):
        body = json.dumps({"error": {"code": "conflict", "message": "mail taken"}}).encode()
        raise urllib.error.HTTPError(request.full_url, 409, "Conflict", {}, io.BytesIO(body))

    monkeypatch.setattr(orchestra, "_open", conflict)
    ctx = testing.Context(charm.OrchestraCharm, app_name="orchestra")
    with pytest.raises(testing.ActionFailed) as failed:
        ctx.run(ctx.on.action("create-user", params={"mail": "ada@example.com"}), out)
    assert failed.value.message == "the orchestra answered 409: mail taken"


def test_create_user_when_the_api_is_down(host, binary, monkeypatch):
    out = leader_output(host, binary)

    def refused(request, timeout):
        raise urllib.error.URLError(ConnectionRefusedError(111, "Connection refused"))

    monkeypatch.setattr(orchestra, "_open", refused)
    ctx = testing.Context(charm.OrchestraCharm, app_name="orchestra")
    with pytest.raises(testing.ActionFailed) as failed:
        ctx.run(ctx.on.action("create-user", params={"mail": "ada@example.com"}), out)
    assert failed.value.message.startswith("the orchestra on 127.0.0.1:5000 is not answering")


def test_create_user_before_the_service_runs(host, binary):
    ctx = testing.Context(charm.OrchestraCharm, app_name="orchestra")
    with pytest.raises(testing.ActionFailed) as failed:
        ctx.run(
            ctx.on.action("create-user", params={"mail": "ada@example.com"}),
            testing.State(leader=True, relations={peers()}),
        )
    assert "not running" in failed.value.message


def test_actions_take_only_their_declared_params():
    import yaml

    actions = yaml.safe_load(
        Path(charm.__file__).parents[1].joinpath("charmcraft.yaml").read_text()
    )["actions"]
    assert set(actions) == {"get-root-secret", "rotate-node-secret", "create-user"}
    assert all(a["additionalProperties"] is False for a in actions.values())
    assert actions["create-user"]["required"] == ["mail"]
    ctx = testing.Context(charm.OrchestraCharm, app_name="orchestra")
    with pytest.raises(InconsistentScenarioError, match="role is not a valid parameter"):
        ctx.run(
            ctx.on.action("create-user", params={"mail": "a@b.c", "role": "x"}), testing.State()
        )


# --- Failure seen later, and removal -----------------------------------------------------------


def test_a_failing_service_is_reported(host, binary):
    out = leader_output(host, binary)
    host.failed_units.add(SERVICE)
    ctx = testing.Context(charm.OrchestraCharm, app_name="orchestra")
    out = ctx.run(ctx.on.update_status(), out)
    assert out.unit_status == testing.BlockedStatus(
        "oscied-orchestra keeps failing: journalctl -u oscied-orchestra"
    )


def test_a_service_systemd_refuses_to_start_blocks(host, binary, monkeypatch):
    from charmlibs import systemd

    real_restart = host.restart

    def refuse(unit):
        if unit == SERVICE:
            raise systemd.SystemdError(f"failed to restart {unit}")
        real_restart(unit)

    monkeypatch.setattr(host, "restart", refuse)
    out = leader_output(host, binary)
    assert out.unit_status == testing.BlockedStatus(
        "oscied-orchestra.service did not start: see journalctl -u oscied-orchestra.service"
    )
    assert out.opened_ports == frozenset()


def test_remove_deletes_what_the_charm_wrote(host, binary):
    out = leader_output(host, binary)
    ctx = testing.Context(charm.OrchestraCharm, app_name="orchestra")
    ctx.run(ctx.on.remove(), out)
    assert not (host.root / ENV).exists()
    assert not (host.root / UNIT).exists()
    assert not Path(host.root / "etc/systemd/system" / MOUNT).exists()


def test_a_new_leader_keeps_the_secrets_and_publishes(host, binary):
    transform = testing.Relation("transform", remote_app_name="transform")
    old = leader_output(host, binary, extra=(transform,))
    secrets = app_secrets(old)
    # Unit 1 is elected: same app secrets and peer app bag, the old leader still a peer.
    follower = as_non_leader(old, binary)
    fresh_transform = dataclasses.replace(old.get_relation(transform.id), local_app_data={})
    state = dataclasses.replace(_with(follower, fresh_transform), leader=True)
    ctx = testing.Context(charm.OrchestraCharm, app_name="orchestra", unit_id=1)
    out = ctx.run(ctx.on.leader_elected(), state)
    assert app_secrets(out).keys() == {"root-secret", "node-secret"}
    assert {s.id for s in app_secrets(out).values()} == {s.id for s in secrets.values()}
    bag = out.get_relation(transform.id).local_app_data
    assert bag["node-secret-id"] == secrets["node-secret"].id
    assert bag["api-urls"] == "http://192.0.2.0:5000"
    assert peer_of(out).local_app_data["node-secret-rev"] == "1"


def test_the_leader_leaving_takes_its_url_out(host, binary):
    transform = testing.Relation("transform", remote_app_name="transform")
    peer = peers(units={1: {"api-url": "http://10.0.0.2:5000"}})
    # Unit 2, since ops.testing reads departing_unit=2 as "not given".
    ctx = testing.Context(charm.OrchestraCharm, app_name="orchestra", unit_id=2)
    out = ctx.run(ctx.on.install(), full_state(binary, extra=(transform,), peer=peer))
    assert out.get_relation(transform.id).local_app_data["api-urls"] == (
        "http://10.0.0.2:5000,http://192.0.2.0:5000"
    )
    # juju remove-unit orchestra/2: this unit sees its own departure.
    out = ctx.run(ctx.on.relation_departed(peer_of(out), remote_unit=1, departing_unit=2), out)
    assert out.get_relation(transform.id).local_app_data["api-urls"] == "http://10.0.0.2:5000"
