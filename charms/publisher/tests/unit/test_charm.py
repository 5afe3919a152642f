# Copyright 2026 OSCIED contributors.
# Licensed under the Apache License, Version 2.0.

"""State-transition tests of the publisher charm (ops.testing; the host is faked in conftest).

The reconcile is the workers' shared library, tested at length by the transform charm's
tests; these run every kind of event through the publisher charm too, and check what is the
publisher's own: its port, its public URL, its web root, a storage it only reads.
"""

import dataclasses
import stat

import ops
import pytest
from charms.oscied_orchestra.v0 import worker
from ops import testing

from charm import PublisherCharm

APP = "publisher"
UNIT = "oscied-publisher.service"
MOUNT = "srv-oscied.mount"
URLS = "http://10.0.0.5:5000,http://10.0.0.6:5000"
NFS = "nfs://(10.0.0.4)/srv/oscied"
# ops.testing's default address of every binding.
ADDRESS = "192.0.2.0"
ACTIVE = testing.ActiveStatus(f"serving http://{ADDRESS}:5080, queues publisher")


@pytest.fixture
def ctx():
    return testing.Context(PublisherCharm, app_name=APP)


@pytest.fixture
def binary(tmp_path):
    path = tmp_path / "resource" / "worker-publisher"
    path.parent.mkdir()
    path.write_bytes(b"\x7fELF v1")
    return testing.Resource(name="worker-publisher-binary", path=path)


def node_secret(value="n0de-s3cret"):
    return testing.Secret({"node-secret": value})


def orchestra(secret=None, urls=URLS, units=(0, 1)):
    app_data = {}
    if urls:
        app_data["api-urls"] = urls
    if secret is not None:
        app_data["node-secret-id"] = secret.id
    return testing.Relation(
        "orchestra",
        interface="oscied_node",
        remote_app_name="orchestra",
        remote_app_data=app_data,
        remote_units_data={u: {} for u in units},
    )


def rabbitmq(password="mq-pw"):
    answer = {"hostname": "10.0.0.9", "password": password} if password else {}
    return testing.Relation(
        "amqp", interface="rabbitmq", remote_app_name="rabbitmq", remote_units_data={0: answer}
    )


def nfs_storage(endpoint=NFS):
    return testing.Relation(
        "storage",
        interface="filesystem_info",
        remote_app_name="storage",
        remote_app_data={"endpoint": endpoint} if endpoint else {},
    )


def full_state(binary, secret=None, leader=True, config=None, **relations):
    secret = secret or node_secret()
    rels = {"orchestra": orchestra(secret), "amqp": rabbitmq(), "storage": nfs_storage()}
    rels.update(relations)
    return testing.State(
        leader=leader,
        config=config or {},
        relations={r for r in rels.values() if r is not None},
        secrets={secret},
        resources={binary},
    )


def swap(state, old, new):
    """`state` with the relation or secret `old` replaced by `new` (same id)."""
    if isinstance(old, testing.Secret):
        return dataclasses.replace(state, secrets=(state.secrets - {old}) | {new})
    return dataclasses.replace(state, relations=(state.relations - {old}) | {new})


def env_of(host) -> dict[str, str]:
    out = {}
    for line in (host.root / "etc/oscied/publisher.env").read_text().splitlines():
        key, _, value = line.partition("=")
        out[key] = value[1:-1]
    return out


def unit_file(host) -> str:
    return (host.root / "etc/systemd/system" / UNIT).read_text()


def running(ctx, binary, host, **kw):
    out = ctx.run(ctx.on.install(), full_state(binary, **kw))
    assert out.unit_status == ACTIVE
    host.calls.clear()
    return out


# -- install ----------------------------------------------------------------------------------


def test_first_install_alone_installs_and_says_what_it_needs(ctx, binary, host):
    out = ctx.run(ctx.on.install(), testing.State(resources={binary}))
    assert out.unit_status == testing.BlockedStatus(
        "needs an orchestra relation or api-url + node-secret"
    )
    installed = host.root / "usr/local/bin/worker-publisher"
    assert stat.S_IMODE(installed.stat().st_mode) == 0o755
    # No ffmpeg for a publisher.
    assert not [c for c in host.calls if c[0] == "apt"]
    assert not (host.root / "etc/oscied").exists()


def test_install_with_everything_serves_on_its_port(ctx, binary, host):
    out = ctx.run(ctx.on.install(), full_state(binary))
    assert out.unit_status == ACTIVE
    assert env_of(host) == {
        "OSCIED_API_URL": URLS,
        "OSCIED_NODE_SECRET": "n0de-s3cret",
        "OSCIED_AMQP_URI": "amqp://publisher:mq-pw@10.0.0.9:5672/oscied",
        "OSCIED_STORAGE_ROOT": "/srv/oscied",
        "OSCIED_QUEUES": "publisher",
        "OSCIED_CONCURRENCY": "1",
        "OSCIED_DRAIN_SECS": "60",
        "OSCIED_LOG_FORMAT": "human",
        "OSCIED_LISTEN": "0.0.0.0:5080",
        "OSCIED_PUBLIC_URL": f"http://{ADDRESS}:5080",
    }
    unit = unit_file(host)
    for line in (
        "ExecStart=/usr/local/bin/worker-publisher",
        "StateDirectory=oscied-publisher",
        # The web root on local disk, in its StateDirectory, as the README's unit.
        "Environment=OSCIED_WWW_ROOT=%S/oscied-publisher/www",
        "RequiresMountsFor=/srv/oscied",
        "ProtectSystem=strict",
        "TimeoutStopSec=90",
    ):
        assert f"\n{line}\n" in unit, line
    # It only reads the storage tree.
    assert "ReadWritePaths" not in unit
    assert out.opened_ports == frozenset({testing.TCPPort(5080)})
    assert host.restarts(UNIT) == 1
    bag = out.get_relations("orchestra")[0].local_unit_data
    assert bag["public-url"] == f"http://{ADDRESS}:5080"
    assert bag["queues"] == "publisher"


def test_a_hook_with_nothing_new_restarts_nothing(ctx, binary, host):
    out = running(ctx, binary, host)
    out = ctx.run(ctx.on.update_status(), out)
    assert out.unit_status == ACTIVE
    assert host.restarts(UNIT) == 0


# -- resource, upgrade ------------------------------------------------------------------------


def test_missing_resource_blocks(ctx, binary, host, monkeypatch):
    def no_resource(self):
        raise ops.ModelError("no resource")

    monkeypatch.setattr(worker.Worker, "fetch_binary", no_resource)
    out = ctx.run(ctx.on.install(), full_state(binary))
    assert out.unit_status == testing.BlockedStatus(
        "missing resource worker-publisher-binary: juju attach-resource publisher "
        "worker-publisher-binary=./worker-publisher"
    )
    assert not (host.root / "etc/systemd/system" / UNIT).exists()


def test_upgrade_restarts_onto_the_new_binary(ctx, binary, host):
    out = running(ctx, binary, host)
    binary.path.write_bytes(b"\x7fELF v2")
    ctx.run(ctx.on.upgrade_charm(), out)
    assert (host.root / "usr/local/bin/worker-publisher").read_bytes() == b"\x7fELF v2"
    assert host.calls.count(("restart", UNIT)) == 1


# -- config -------------------------------------------------------------------------------------


def test_port_and_public_url(ctx, binary, host):
    out = running(ctx, binary, host)
    config = {"port": 8080, "public-url": "https://cdn1.example.net/oscied/", "concurrency": 2}
    out = ctx.run(ctx.on.config_changed(), dataclasses.replace(out, config=config))
    assert out.unit_status == testing.ActiveStatus(
        "serving https://cdn1.example.net/oscied, queues publisher, concurrency 2"
    )
    env = env_of(host)
    assert env["OSCIED_LISTEN"] == "0.0.0.0:8080"
    assert env["OSCIED_PUBLIC_URL"] == "https://cdn1.example.net/oscied"
    assert out.opened_ports == frozenset({testing.TCPPort(8080)})
    bag = out.get_relations("orchestra")[0].local_unit_data
    assert bag["public-url"] == "https://cdn1.example.net/oscied"
    assert bag["concurrency"] == "2"
    assert host.calls.count(("restart", UNIT)) == 1


def test_the_default_public_url_follows_the_port(ctx, binary, host):
    ctx.run(ctx.on.install(), full_state(binary, config={"port": 80}))
    assert env_of(host)["OSCIED_PUBLIC_URL"] == f"http://{ADDRESS}:80"


def test_an_ipv6_address_is_bracketed(ctx, binary, host):
    state = full_state(binary)
    state = dataclasses.replace(
        state, networks={testing.Network("orchestra", ingress_addresses=["fd00::7"])}
    )
    ctx.run(ctx.on.install(), state)
    assert env_of(host)["OSCIED_PUBLIC_URL"] == "http://[fd00::7]:5080"


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"port": 0}, "port must be a whole number from 1 to 65535, got 0"),
        ({"port": 70000}, "port must be a whole number from 1 to 65535, got 70000"),
        ({"public-url": "ftp://cdn"}, "public-url must start with http:// or https://"),
        ({"public-url": "cdn.example.net"}, "public-url must start with http:// or https://"),
        ({"public-url": "http://"}, "public-url must name a host"),
        (
            {"public-url": "http://cdn/?a=1"},
            "public-url must not hold a query, a fragment or spaces",
        ),
        (
            {"queues": "transform"},
            "queues: a publisher unit cannot consume 'transform', a transform queue",
        ),
        (
            {"queues": "cdn,transform-gpu"},
            "queues: a publisher unit cannot consume 'transform-gpu', a transform queue",
        ),
        ({"concurrency": 0}, "concurrency must be a whole number ≥ 1, got 0"),
        ({"drain-secs": 86401}, "drain-secs must be at most 86400, got 86401"),
        ({"log-format": "yaml"}, "log-format must be human or json, got 'yaml'"),
    ],
)
def test_bad_config_blocks_naming_the_option(ctx, binary, host, config, message):
    out = running(ctx, binary, host)
    before = env_of(host)
    out = ctx.run(ctx.on.config_changed(), dataclasses.replace(out, config=config))
    assert out.unit_status == testing.BlockedStatus(message)
    assert env_of(host) == before
    assert not [c for c in host.calls if c[0] in ("stop", "restart")]


def test_named_queues_are_taken(ctx, binary, host):
    out = running(ctx, binary, host)
    out = ctx.run(
        ctx.on.config_changed(), dataclasses.replace(out, config={"queues": "publisher,cdn"})
    )
    assert env_of(host)["OSCIED_QUEUES"] == "publisher,cdn"
    assert out.unit_status == testing.ActiveStatus(
        f"serving http://{ADDRESS}:5080, queues publisher,cdn"
    )


def test_no_task_limits_for_a_publisher(ctx, binary, host):
    # worker-publisher takes neither OSCIED_TASK_MAX_SECS nor OSCIED_MAX_OUTPUT_BYTES.
    ctx.run(ctx.on.install(), full_state(binary, config={"verbose": True}))
    env = env_of(host)
    assert "OSCIED_TASK_MAX_SECS" not in env
    assert "OSCIED_MAX_OUTPUT_BYTES" not in env
    assert env["RUST_LOG"] == "debug,lapin=info"


# -- relations ----------------------------------------------------------------------------------


def test_orchestra_joined_then_changed(ctx, binary, host):
    secret = node_secret()
    rel = orchestra(secret=None, urls="")
    state = full_state(binary, secret, orchestra=rel)
    out = ctx.run(ctx.on.relation_joined(rel, remote_unit=0), state)
    assert out.unit_status == testing.WaitingStatus(
        "waiting for the orchestra leader to share the node secret"
    )
    answered = dataclasses.replace(
        out.get_relation(rel.id), remote_app_data={"api-urls": URLS, "node-secret-id": secret.id}
    )
    out = ctx.run(
        ctx.on.relation_changed(answered, remote_unit=0),
        swap(out, out.get_relation(rel.id), answered),
    )
    assert out.unit_status == ACTIVE
    assert host.restarts(UNIT) == 1


def test_orchestra_relation_broken_stops_serving(ctx, binary, host):
    out = running(ctx, binary, host)
    out = ctx.run(ctx.on.relation_broken(out.get_relations("orchestra")[0]), out)
    assert out.unit_status == testing.BlockedStatus(
        "needs an orchestra relation or api-url + node-secret"
    )
    assert ("stop", UNIT) in host.calls


def test_a_remote_orchestra_unit_leaving(ctx, binary, host):
    out = running(ctx, binary, host)
    rel = out.get_relations("orchestra")[0]
    left = dataclasses.replace(
        rel,
        remote_app_data={**rel.remote_app_data, "api-urls": "http://10.0.0.6:5000"},
        remote_units_data={1: {}},
    )
    out = ctx.run(
        ctx.on.relation_departed(left, remote_unit=0, departing_unit=0), swap(out, rel, left)
    )
    assert env_of(host)["OSCIED_API_URL"] == "http://10.0.0.6:5000"
    assert out.unit_status == ACTIVE


def test_node_secret_rotating_restarts(ctx, binary, host):
    secret = node_secret("old-secret")
    out = running(ctx, binary, host, secret=secret)
    rotated = dataclasses.replace(
        out.get_secret(id=secret.id), latest_content={"node-secret": "new-secret"}
    )
    out = ctx.run(ctx.on.secret_changed(rotated), swap(out, out.get_secret(id=secret.id), rotated))
    assert env_of(host)["OSCIED_NODE_SECRET"] == "new-secret"
    assert host.calls.count(("restart", UNIT)) == 1


@pytest.mark.parametrize("leader", [True, False])
def test_amqp_joined_changed_broken(ctx, binary, host, leader):
    rel = rabbitmq(password=None)
    out = ctx.run(
        ctx.on.relation_joined(rel, remote_unit=0), full_state(binary, leader=leader, amqp=rel)
    )
    assert out.unit_status == testing.WaitingStatus("waiting for rabbitmq to share its password")
    got = out.get_relation(rel.id)
    assert got.local_unit_data["username"] == "publisher"
    assert (got.local_app_data.get("username") == "publisher") is leader
    answered = dataclasses.replace(
        got, remote_units_data={0: {"hostname": "10.0.0.9", "password": "pw"}}
    )
    out = ctx.run(ctx.on.relation_changed(answered, remote_unit=0), swap(out, got, answered))
    assert out.unit_status == ACTIVE
    assert env_of(host)["OSCIED_AMQP_URI"] == "amqp://publisher:pw@10.0.0.9:5672/oscied"
    out = ctx.run(ctx.on.relation_broken(out.get_relation(rel.id)), out)
    assert out.unit_status == testing.BlockedStatus(
        "needs an amqp relation (rabbitmq-server) or amqp-uri"
    )
    assert ("stop", UNIT) in host.calls


def test_storage_joined_changed_broken(ctx, binary, host):
    rel = nfs_storage(endpoint=None)
    out = ctx.run(ctx.on.relation_joined(rel, remote_unit=0), full_state(binary, storage=rel))
    assert out.unit_status == testing.WaitingStatus("waiting for storage to publish its export")
    answered = dataclasses.replace(out.get_relation(rel.id), remote_app_data={"endpoint": NFS})
    out = ctx.run(
        ctx.on.relation_changed(answered, remote_unit=0),
        swap(out, out.get_relation(rel.id), answered),
    )
    assert out.unit_status == ACTIVE
    assert (
        "\nWhat=10.0.0.4:/srv/oscied\n" in (host.root / "etc/systemd/system" / MOUNT).read_text()
    )
    out = ctx.run(ctx.on.relation_broken(out.get_relation(rel.id)), out)
    assert out.unit_status == testing.BlockedStatus(
        "needs a storage relation or the storage-uri option"
    )


def test_overrides_for_a_unit_outside_the_model(ctx, binary, host):
    user_secret = testing.Secret({"node-secret": "from-user"})
    (host.root / "mnt/oscied").mkdir(parents=True)
    config = {
        "api-url": "http://a:5000,http://b:5000",
        "node-secret": user_secret.id,
        "amqp-uri": "amqp://oscied:pw@mq:5672/oscied",
        "storage-uri": "file:///mnt/oscied",
        "public-url": "http://cdn2.example.net:5080",
    }
    out = ctx.run(
        ctx.on.install(),
        testing.State(config=config, secrets={user_secret}, resources={binary}),
    )
    assert out.unit_status == testing.ActiveStatus(
        "serving http://cdn2.example.net:5080, queues publisher"
    )
    env = env_of(host)
    assert env["OSCIED_API_URL"] == "http://a:5000,http://b:5000"
    assert env["OSCIED_NODE_SECRET"] == "from-user"
    assert env["OSCIED_STORAGE_ROOT"] == "/mnt/oscied"
    assert "\nRequiresMountsFor=/mnt/oscied\n" in unit_file(host)
    assert not (host.root / "etc/systemd/system" / MOUNT).exists()


@pytest.mark.parametrize("leader", [True, False])
def test_leader_and_non_leader(ctx, binary, host, leader):
    out = ctx.run(ctx.on.install(), full_state(binary, leader=leader))
    assert out.unit_status == ACTIVE


# -- drain and resume ---------------------------------------------------------------------------


def test_drain_then_resume(ctx, binary, host):
    out = running(ctx, binary, host)
    out = ctx.run(ctx.on.action("drain"), out)
    assert host.calls == [("stop", UNIT), ("disable", UNIT)]
    assert out.unit_status == testing.ActiveStatus("drained: not taking jobs (run resume)")
    out = ctx.run(ctx.on.update_status(), out)
    assert UNIT not in host.active
    out = ctx.run(ctx.on.action("resume"), out)
    assert ctx.action_results == {"result": f"{UNIT} started"}
    assert out.unit_status == ACTIVE


def test_stop_and_remove(ctx, binary, host):
    out = running(ctx, binary, host)
    out = ctx.run(ctx.on.stop(), out)
    assert host.calls == [("stop", UNIT)]
    ctx.run(ctx.on.remove(), out)
    assert not (host.root / "etc/oscied/publisher.env").exists()
    assert not (host.root / "etc/systemd/system" / UNIT).exists()
