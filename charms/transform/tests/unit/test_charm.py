# Copyright 2026 OSCIED contributors.
# Licensed under the Apache License, Version 2.0.

"""State-transition tests of the transform charm (ops.testing; the host is faked in conftest).

They run the charm's real charmcraft.yaml (ops.testing loads it) and the real shared libs, and
check the files it renders under OSCIED_CHARM_ROOT, the systemd calls and the statuses.
"""

import dataclasses
import stat

import ops
import pytest
from charmlibs import apt
from charms.oscied_orchestra.v0 import service, worker
from ops import testing

from charm import TransformCharm

APP = "transform"
UNIT = "oscied-transform.service"
MOUNT = "srv-oscied.mount"
URLS = "http://10.0.0.5:5000,http://10.0.0.6:5000"
NFS = "nfs://(10.0.0.4)/srv/oscied"


# -- building blocks --------------------------------------------------------------------------


@pytest.fixture
def ctx():
    return testing.Context(TransformCharm, app_name=APP)


@pytest.fixture
def binary(tmp_path):
    path = tmp_path / "resource" / "worker-transform"
    path.parent.mkdir()
    path.write_bytes(b"\x7fELF v1")
    return testing.Resource(name="worker-transform-binary", path=path)


def node_secret(value="n0de-s3cret", latest=None):
    return testing.Secret(
        {"node-secret": value}, latest_content=None if latest is None else {"node-secret": latest}
    )


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


def rabbitmq(password="mq-pw", in_app_bag=False):
    answer = {"hostname": "10.0.0.9", "password": password} if password else {}
    return testing.Relation(
        "amqp",
        interface="rabbitmq",
        remote_app_name="rabbitmq",
        remote_app_data=answer if in_app_bag else {},
        remote_units_data={0: {} if in_app_bag else answer},
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
    rels = {
        "orchestra": orchestra(secret),
        "amqp": rabbitmq(),
        "storage": nfs_storage(),
    }
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


def no_resource(self):
    raise ops.ModelError("no resource")


def env_of(host) -> dict[str, str]:
    path = host.root / "etc/oscied/transform.env"
    out = {}
    for line in path.read_text().splitlines():
        key, _, value = line.partition("=")
        assert value.startswith('"') and value.endswith('"'), line
        out[key] = value[1:-1]
    return out


def unit_file(host) -> str:
    return (host.root / "etc/systemd/system" / UNIT).read_text()


def running(ctx, binary, host, **kw):
    """A unit that went through install with everything related: active, service running."""
    out = ctx.run(ctx.on.install(), full_state(binary, **kw))
    assert out.unit_status == testing.ActiveStatus("queues transform, concurrency 1")
    host.calls.clear()
    return out


# -- install ----------------------------------------------------------------------------------


def test_first_install_alone_installs_and_says_what_it_needs(ctx, binary, host):
    out = ctx.run(ctx.on.install(), testing.State(resources={binary}))
    assert out.unit_status == testing.BlockedStatus(
        "needs an orchestra relation or api-url + node-secret"
    )
    installed = host.root / "usr/local/bin/worker-transform"
    assert installed.read_bytes() == b"\x7fELF v1"
    assert stat.S_IMODE(installed.stat().st_mode) == 0o755
    assert ("apt", "ffmpeg") in host.calls
    assert ("user", "oscied", "990", "990") in host.calls
    # Nothing to run yet: no unit, no env, no systemd call.
    assert not (host.root / "etc/oscied").exists()
    assert not [c for c in host.calls if c[0] in ("restart", "start", "enable")]


def test_install_with_everything_renders_and_starts(ctx, binary, host):
    out = ctx.run(ctx.on.install(), full_state(binary))
    assert out.unit_status == testing.ActiveStatus("queues transform, concurrency 1")
    assert env_of(host) == {
        "OSCIED_API_URL": URLS,
        "OSCIED_NODE_SECRET": "n0de-s3cret",
        "OSCIED_AMQP_URI": "amqp://transform:mq-pw@10.0.0.9:5672/oscied",
        "OSCIED_STORAGE_ROOT": "/srv/oscied",
        "OSCIED_QUEUES": "transform",
        "OSCIED_CONCURRENCY": "1",
        "OSCIED_DRAIN_SECS": "300",
        "OSCIED_MAX_OUTPUT_BYTES": "16GiB",
        "OSCIED_LOG_FORMAT": "human",
    }
    env = host.root / "etc/oscied/transform.env"
    assert stat.S_IMODE(env.stat().st_mode) == 0o600
    unit = unit_file(host)
    for line in (
        "ExecStart=/usr/local/bin/worker-transform",
        "EnvironmentFile=/etc/oscied/transform.env",
        "User=oscied",
        "StateDirectory=oscied-transform",
        "RequiresMountsFor=/srv/oscied",
        "ReadWritePaths=/srv/oscied",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "KillMode=mixed",
        "TimeoutStopSec=330",
    ):
        assert f"\n{line}\n" in unit, line
    mount = (host.root / "etc/systemd/system" / MOUNT).read_text()
    assert "\nWhat=10.0.0.4:/srv/oscied\n" in mount
    assert "\nType=nfs\n" in mount
    assert ("apt", "nfs-common") in host.calls
    assert host.restarts(MOUNT) == 1
    assert host.calls.index(("restart", MOUNT)) < host.calls.index(("restart", UNIT))
    assert ("enable", UNIT) in host.calls
    assert host.restarts(UNIT) == 1
    assert out.opened_ports == frozenset()
    # Maintenance while the long steps run.
    assert testing.MaintenanceStatus("installing worker-transform") in ctx.unit_status_history
    assert (
        testing.MaintenanceStatus("mounting 10.0.0.4:/srv/oscied at /srv/oscied")
        in ctx.unit_status_history
    )


def test_a_hook_with_nothing_new_restarts_nothing(ctx, binary, host):
    out = running(ctx, binary, host)
    out = ctx.run(ctx.on.update_status(), out)
    assert out.unit_status == testing.ActiveStatus("queues transform, concurrency 1")
    assert host.restarts(UNIT) == 0
    assert host.restarts(MOUNT) == 0
    assert not [c for c in host.calls if c[0] == "apt"]


def test_install_registers_the_units_facts(ctx, binary, host):
    out = ctx.run(ctx.on.install(), full_state(binary, config={"concurrency": 3}))
    bag = out.get_relations("orchestra")[0].local_unit_data
    assert bag["queues"] == "transform"
    assert bag["concurrency"] == "3"
    assert bag["hostname"]


# -- resource and upgrade -----------------------------------------------------------------------


def test_missing_resource_blocks_and_says_how_to_attach(ctx, binary, host, monkeypatch):
    monkeypatch.setattr(worker.Worker, "fetch_binary", no_resource)
    out = ctx.run(ctx.on.install(), full_state(binary))
    assert out.unit_status == testing.BlockedStatus(
        "missing resource worker-transform-binary: juju attach-resource transform "
        "worker-transform-binary=./worker-transform"
    )
    assert not (host.root / "usr/local/bin/worker-transform").exists()
    assert not (host.root / "etc/systemd/system" / UNIT).exists()
    assert host.restarts(UNIT) == 0


def test_an_empty_resource_is_a_missing_one(ctx, binary, host):
    binary.path.write_bytes(b"")
    out = ctx.run(ctx.on.install(), full_state(binary))
    assert out.unit_status.name == "blocked"
    assert out.unit_status.message.startswith("missing resource worker-transform-binary")


def test_attaching_the_resource_later_starts_the_unit(ctx, binary, host, monkeypatch):
    with monkeypatch.context() as patch:
        patch.setattr(worker.Worker, "fetch_binary", no_resource)
        out = ctx.run(ctx.on.install(), full_state(binary))
    assert out.unit_status.name == "blocked"
    # `juju attach-resource` runs upgrade-charm.
    out = ctx.run(ctx.on.upgrade_charm(), out)
    assert out.unit_status == testing.ActiveStatus("queues transform, concurrency 1")
    assert host.restarts(UNIT) == 1


def test_upgrade_restarts_onto_the_new_binary(ctx, binary, host):
    out = running(ctx, binary, host)
    binary.path.write_bytes(b"\x7fELF v2")
    out = ctx.run(ctx.on.upgrade_charm(), out)
    assert (host.root / "usr/local/bin/worker-transform").read_bytes() == b"\x7fELF v2"
    assert host.calls.count(("restart", UNIT)) == 1
    assert out.unit_status == testing.ActiveStatus("queues transform, concurrency 1")


def test_a_binary_installed_while_blocked_is_restarted_onto_later(ctx, binary, host):
    out = running(ctx, binary, host)
    binary.path.write_bytes(b"\x7fELF v2")
    # Upgraded while a typo blocks: the new binary is installed, the service left alone.
    out = ctx.run(ctx.on.upgrade_charm(), dataclasses.replace(out, config={"concurrency": 0}))
    assert out.unit_status.name == "blocked"
    assert (host.root / "usr/local/bin/worker-transform").read_bytes() == b"\x7fELF v2"
    assert host.restarts(UNIT) == 0
    # The typo fixed, the env is what it was, yet the service moves onto the new binary.
    out = ctx.run(ctx.on.config_changed(), dataclasses.replace(out, config={}))
    assert host.calls.count(("restart", UNIT)) == 1
    out = ctx.run(ctx.on.update_status(), out)
    assert host.calls.count(("restart", UNIT)) == 1


def test_upgrade_with_the_same_binary_does_not_restart(ctx, binary, host):
    out = running(ctx, binary, host)
    ctx.run(ctx.on.upgrade_charm(), out)
    assert host.restarts(UNIT) == 0
    # ffmpeg is checked again on upgrade.
    assert ("apt", "ffmpeg") in host.calls


def test_apt_failing_blocks_with_its_reason(ctx, binary, host):
    host.apt_error = apt.PackageError("Failed to install packages: ffmpeg")
    out = ctx.run(ctx.on.install(), full_state(binary))
    assert out.unit_status == testing.BlockedStatus(
        "cannot install ffmpeg: Failed to install packages: ffmpeg"
    )
    # Converges later: update-status tries again while ffmpeg is missing.
    host.apt_error = None
    out = ctx.run(ctx.on.update_status(), out)
    assert out.unit_status == testing.ActiveStatus("queues transform, concurrency 1")


# -- config -------------------------------------------------------------------------------------


def test_good_config_changes_the_env_and_restarts(ctx, binary, host):
    out = running(ctx, binary, host)
    config = {
        "queues": "transform, gpu",
        "concurrency": 2,
        "drain-secs": 60,
        "task-max-secs": 3600,
        "max-output-bytes": "2GiB",
        "log-format": "json",
        "verbose": True,
    }
    out = ctx.run(ctx.on.config_changed(), dataclasses.replace(out, config=config))
    assert out.unit_status == testing.ActiveStatus("queues transform,gpu, concurrency 2")
    env = env_of(host)
    assert env["OSCIED_QUEUES"] == "transform,gpu"
    assert env["OSCIED_CONCURRENCY"] == "2"
    assert env["OSCIED_DRAIN_SECS"] == "60"
    assert env["OSCIED_TASK_MAX_SECS"] == "3600"
    assert env["OSCIED_MAX_OUTPUT_BYTES"] == "2GiB"
    assert env["OSCIED_LOG_FORMAT"] == "json"
    assert env["RUST_LOG"] == "debug,lapin=info"
    assert "\nTimeoutStopSec=90\n" in unit_file(host)
    assert host.calls.count(("restart", UNIT)) == 1
    bag = out.get_relations("orchestra")[0].local_unit_data
    assert (bag["queues"], bag["concurrency"]) == ("transform,gpu", "2")


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"concurrency": 0}, "concurrency must be a whole number ≥ 1, got 0"),
        ({"concurrency": 257}, "concurrency must be at most 256, got 257"),
        ({"queues": " , "}, "queues must name at least one queue, e.g. transform"),
        (
            {"queues": "transform,publisher"},
            "queues: a transform unit cannot consume 'publisher', a publisher queue",
        ),
        (
            {"queues": "publisher-eu"},
            "queues: a transform unit cannot consume 'publisher-eu', a publisher queue",
        ),
        (
            {"queues": "gpu fast"},
            "queues: 'gpu fast' is not a queue name (1 to 64 letters, digits, '_', '-', '.')",
        ),
        ({"queues": "amq.gen"}, "queues: 'amq.gen': names starting with 'amq.' are AMQP's"),
        (
            {"queues": "unit@abc"},
            "queues: 'unit@abc' is a unit's own queue: only the orchestra uses it",
        ),
        ({"drain-secs": -1}, "drain-secs must be a whole number ≥ 0, got -1"),
        ({"task-max-secs": 2592001}, "task-max-secs must be at most 2592000, got 2592001"),
        (
            {"max-output-bytes": "lots"},
            "max-output-bytes: not a size such as 1048576, 500M or 16GiB, got 'lots'",
        ),
        ({"max-output-bytes": "0"}, "max-output-bytes must be more than 0"),
        ({"log-format": "xml"}, "log-format must be human or json, got 'xml'"),
        ({"amqp-vhost": ""}, "amqp-vhost must be 1 to 255 printable characters"),
        ({"api-url": "ftp://10.0.0.5"}, "api-url: 'ftp://10.0.0.5' is not an http(s) URL"),
        (
            {"amqp-uri": "http://u:secret-pw@h/"},
            "amqp-uri must be amqp://user:password@host:5672/vhost",
        ),
        (
            {"storage-uri": "cephfs://(10.0.0.1)/x"},
            "storage-uri: storage URI must be nfs://host/path or file:///path (scheme cephfs "
            "is not supported)",
        ),
    ],
)
def test_bad_config_blocks_naming_the_option(ctx, binary, host, config, message):
    out = running(ctx, binary, host)
    before = env_of(host)
    out = ctx.run(ctx.on.config_changed(), dataclasses.replace(out, config=config))
    assert out.unit_status == testing.BlockedStatus(message)
    # A typo does not take a running unit down: it keeps its last good configuration.
    assert env_of(host) == before
    assert not [c for c in host.calls if c[0] in ("stop", "restart", "disable")]
    # Secrets never reach the status.
    assert "secret-pw" not in out.unit_status.message


def test_every_bad_option_is_reported(ctx, binary, host):
    state = full_state(binary, config={"concurrency": 0, "log-format": "xml"})
    with ctx(ctx.on.config_changed(), state) as mgr:
        out = mgr.run()
        found = [s.message for s in mgr.charm.worker.statuses()]
    # The first shows; the others are in the list collect-status gets.
    assert out.unit_status == testing.BlockedStatus(
        "concurrency must be a whole number ≥ 1, got 0"
    )
    assert "log-format must be human or json, got 'xml'" in found


def test_fixing_the_config_recovers(ctx, binary, host):
    out = ctx.run(ctx.on.install(), full_state(binary, config={"concurrency": 0}))
    assert out.unit_status.name == "blocked"
    assert not (host.root / "etc/oscied/transform.env").exists()
    out = ctx.run(ctx.on.config_changed(), dataclasses.replace(out, config={"concurrency": 4}))
    assert out.unit_status == testing.ActiveStatus("queues transform, concurrency 4")
    assert env_of(host)["OSCIED_CONCURRENCY"] == "4"


# -- the orchestra relation ---------------------------------------------------------------------


def test_orchestra_joined_before_the_leader_answers_waits(ctx, binary, host):
    rel = orchestra(secret=None, urls="")
    state = full_state(binary, orchestra=rel)
    out = ctx.run(ctx.on.relation_joined(rel, remote_unit=0), state)
    assert out.unit_status == testing.WaitingStatus(
        "waiting for the orchestra leader to share the node secret"
    )
    # It registers at once, so the orchestra counts it.
    assert out.get_relation(rel.id).local_unit_data["queues"] == "transform"
    assert not (host.root / "etc/oscied/transform.env").exists()


def test_orchestra_changed_with_urls_and_granted_secret_starts(ctx, binary, host):
    secret = node_secret()
    rel = orchestra(secret=None, urls="")
    out = ctx.run(
        ctx.on.relation_joined(rel, remote_unit=0), full_state(binary, secret, orchestra=rel)
    )
    answered = dataclasses.replace(
        out.get_relation(rel.id),
        remote_app_data={"api-urls": URLS, "node-secret-id": secret.id},
    )
    state = swap(out, out.get_relation(rel.id), answered)
    out = ctx.run(ctx.on.relation_changed(answered, remote_unit=0), state)
    assert out.unit_status == testing.ActiveStatus("queues transform, concurrency 1")
    assert env_of(host)["OSCIED_API_URL"] == URLS
    assert env_of(host)["OSCIED_NODE_SECRET"] == "n0de-s3cret"
    assert host.restarts(UNIT) == 1


def test_orchestra_urls_without_the_secret_wait_for_it(ctx, binary, host):
    rel = orchestra(secret=None)
    out = ctx.run(ctx.on.relation_changed(rel, remote_unit=0), full_state(binary, orchestra=rel))
    assert out.unit_status == testing.WaitingStatus(
        "waiting for the orchestra leader to share the node secret"
    )


def test_secret_id_published_but_not_granted_yet_waits(ctx, binary, host):
    secret = node_secret()
    rel = orchestra(secret=secret)
    state = full_state(binary, orchestra=rel)
    # The secret is not in the state: this unit may not view it (not granted yet).
    state = dataclasses.replace(state, secrets=set())
    out = ctx.run(ctx.on.relation_changed(rel, remote_unit=0), state)
    assert out.unit_status == testing.WaitingStatus(
        "waiting for the orchestra leader to share the node secret"
    )


def test_orchestra_relation_broken_stops_the_service(ctx, binary, host):
    out = running(ctx, binary, host)
    rel = out.get_relations("orchestra")[0]
    out = ctx.run(ctx.on.relation_broken(rel), out)
    assert out.unit_status == testing.BlockedStatus(
        "needs an orchestra relation or api-url + node-secret"
    )
    assert ("stop", UNIT) in host.calls
    assert ("disable", UNIT) in host.calls


def test_a_remote_orchestra_unit_leaving_moves_to_the_remaining_urls(ctx, binary, host):
    out = running(ctx, binary, host)
    rel = out.get_relations("orchestra")[0]
    # The orchestra leader publishes the URLs of the units that remain.
    left = dataclasses.replace(
        rel,
        remote_app_data={**rel.remote_app_data, "api-urls": "http://10.0.0.5:5000"},
        remote_units_data={0: {}},
    )
    state = swap(out, rel, left)
    out = ctx.run(ctx.on.relation_departed(left, remote_unit=1, departing_unit=1), state)
    assert out.unit_status == testing.ActiveStatus("queues transform, concurrency 1")
    assert env_of(host)["OSCIED_API_URL"] == "http://10.0.0.5:5000"
    assert host.calls.count(("restart", UNIT)) == 1


def test_a_remote_unit_leaving_without_a_change_restarts_nothing(ctx, binary, host):
    out = running(ctx, binary, host)
    rel = out.get_relations("orchestra")[0]
    out = ctx.run(ctx.on.relation_departed(rel, remote_unit=1, departing_unit=1), out)
    assert out.unit_status.name == "active"
    assert host.restarts(UNIT) == 0


def test_a_bad_url_from_the_relation_blocks(ctx, binary, host):
    rel = orchestra(secret=node_secret(), urls="orchestra:5000")
    secret_id = rel.remote_app_data["node-secret-id"]
    state = full_state(binary, orchestra=rel)
    state = dataclasses.replace(
        state, secrets={testing.Secret({"node-secret": "x"}, id=secret_id)}
    )
    out = ctx.run(ctx.on.relation_changed(rel, remote_unit=0), state)
    assert out.unit_status == testing.BlockedStatus(
        "orchestra relation api-urls: 'orchestra:5000' is not an http(s) URL"
    )


# -- the node secret rotating -------------------------------------------------------------------


def test_the_unit_runs_on_the_latest_revision(ctx, binary, host):
    # A rotation that happened before this unit's first hook: it starts on the new secret.
    secret = node_secret("old-secret", latest="new-secret")
    out = ctx.run(ctx.on.install(), full_state(binary, secret=secret))
    assert env_of(host)["OSCIED_NODE_SECRET"] == "new-secret"
    assert out.get_secret(id=secret.id).tracked_content == {"node-secret": "new-secret"}


def test_node_secret_changed_event_with_a_new_revision(ctx, binary, host):
    old = node_secret("old-secret")
    out = running(ctx, binary, host, secret=old)
    assert env_of(host)["OSCIED_NODE_SECRET"] == "old-secret"
    # The orchestra rotated: the unit's view has a newer revision than it tracks.
    rotated = dataclasses.replace(
        out.get_secret(id=old.id), latest_content={"node-secret": "new-secret"}
    )
    out = ctx.run(ctx.on.secret_changed(rotated), swap(out, out.get_secret(id=old.id), rotated))
    assert env_of(host)["OSCIED_NODE_SECRET"] == "new-secret"
    assert host.calls.count(("restart", UNIT)) == 1
    assert out.get_secret(id=old.id).tracked_content == {"node-secret": "new-secret"}


# -- overrides for units outside the model -----------------------------------------------------


def test_overrides_run_without_any_relation(ctx, binary, host, tmp_path):
    user_secret = testing.Secret({"node-secret": "from-user"})
    (host.root / "data/oscied").mkdir(parents=True)
    config = {
        "api-url": "http://orchestra.example.net:5000",
        "node-secret": user_secret.id,
        "amqp-uri": "amqp://oscied:pw@mq.example.net:5672/oscied",
        "storage-uri": "file:///data/oscied",
    }
    state = testing.State(config=config, secrets={user_secret}, resources={binary})
    out = ctx.run(ctx.on.install(), state)
    assert out.unit_status == testing.ActiveStatus("queues transform, concurrency 1")
    env = env_of(host)
    assert env["OSCIED_API_URL"] == "http://orchestra.example.net:5000"
    assert env["OSCIED_NODE_SECRET"] == "from-user"
    assert env["OSCIED_AMQP_URI"] == "amqp://oscied:pw@mq.example.net:5672/oscied"
    assert env["OSCIED_STORAGE_ROOT"] == "/data/oscied"
    unit = unit_file(host)
    assert "\nRequiresMountsFor=/data/oscied\n" in unit
    assert "\nReadWritePaths=/data/oscied\n" in unit
    # file:// is a tree already there: nothing is mounted.
    assert not (host.root / "etc/systemd/system" / MOUNT).exists()
    assert not [c for c in host.calls if c[0] == "apt" and "nfs-common" in c]


def test_overrides_win_over_the_relations(ctx, binary, host):
    (host.root / "data").mkdir()
    user_secret = testing.Secret({"node-secret": "from-user"})
    state = full_state(
        binary,
        config={
            "api-url": "http://other:5000",
            "node-secret": user_secret.id,
            "amqp-uri": "amqps://u:p@mq:5671/v",
            "storage-uri": "file:///data",
        },
    )
    state = dataclasses.replace(state, secrets=state.secrets | {user_secret})
    ctx.run(ctx.on.config_changed(), state)
    env = env_of(host)
    assert env["OSCIED_API_URL"] == "http://other:5000"
    assert env["OSCIED_NODE_SECRET"] == "from-user"
    assert env["OSCIED_AMQP_URI"] == "amqps://u:p@mq:5671/v"
    assert env["OSCIED_STORAGE_ROOT"] == "/data"


def test_the_user_node_secret_rotating_restarts(ctx, binary, host):
    user_secret = testing.Secret({"node-secret": "v1"})
    state = full_state(binary, config={"node-secret": user_secret.id})
    state = dataclasses.replace(state, secrets=state.secrets | {user_secret})
    out = ctx.run(ctx.on.install(), state)
    assert env_of(host)["OSCIED_NODE_SECRET"] == "v1"
    host.calls.clear()
    rotated = dataclasses.replace(
        out.get_secret(id=user_secret.id), latest_content={"node-secret": "v2"}
    )
    state = swap(out, out.get_secret(id=user_secret.id), rotated)
    out = ctx.run(ctx.on.secret_changed(rotated), state)
    assert env_of(host)["OSCIED_NODE_SECRET"] == "v2"
    assert host.calls.count(("restart", UNIT)) == 1


def test_a_user_secret_not_granted_blocks(ctx, binary, host):
    state = full_state(binary, config={"node-secret": "secret:cr0bs0l1000000000000"})
    out = ctx.run(ctx.on.config_changed(), state)
    assert out.unit_status == testing.BlockedStatus(
        "node-secret: cannot read the secret: juju grant-secret <secret> transform"
    )


def test_a_user_secret_without_the_key_blocks(ctx, binary, host):
    user_secret = testing.Secret({"token": "x"})
    state = full_state(binary, config={"node-secret": user_secret.id})
    state = dataclasses.replace(state, secrets=state.secrets | {user_secret})
    out = ctx.run(ctx.on.config_changed(), state)
    assert out.unit_status == testing.BlockedStatus(
        "node-secret: the secret has no key node-secret"
    )


def test_api_url_alone_still_needs_the_relation_or_node_secret(ctx, binary, host):
    state = full_state(binary, config={"api-url": "http://o:5000"}, orchestra=None)
    state = dataclasses.replace(
        state, relations={r for r in state.relations if r.endpoint != "orchestra"}
    )
    out = ctx.run(ctx.on.config_changed(), state)
    assert out.unit_status == testing.BlockedStatus(
        "needs an orchestra relation or api-url + node-secret"
    )


# -- the amqp relation --------------------------------------------------------------------------


@pytest.mark.parametrize("leader", [True, False])
def test_amqp_joined_asks_for_a_user_and_vhost(ctx, binary, host, leader):
    rel = rabbitmq(password=None)
    out = ctx.run(
        ctx.on.relation_joined(rel, remote_unit=0),
        full_state(binary, leader=leader, amqp=rel),
    )
    assert out.unit_status == testing.WaitingStatus("waiting for rabbitmq to share its password")
    got = out.get_relation(rel.id)
    # rabbitmq-server reads each unit's bag; rabbitmq-k8s the app bag (leader only).
    assert got.local_unit_data["username"] == "transform"
    assert got.local_unit_data["vhost"] == "oscied"
    if leader:
        assert got.local_app_data == {"username": "transform", "vhost": "oscied"}
    else:
        assert got.local_app_data == {}


@pytest.mark.parametrize("in_app_bag", [False, True])
def test_amqp_changed_with_the_password_starts(ctx, binary, host, in_app_bag):
    rel = rabbitmq(in_app_bag=in_app_bag)
    out = ctx.run(ctx.on.relation_changed(rel, remote_unit=0), full_state(binary, amqp=rel))
    assert out.unit_status == testing.ActiveStatus("queues transform, concurrency 1")
    assert env_of(host)["OSCIED_AMQP_URI"] == "amqp://transform:mq-pw@10.0.0.9:5672/oscied"


def test_amqp_vhost_option_is_asked_for_and_used(ctx, binary, host):
    rel = rabbitmq()
    out = ctx.run(
        ctx.on.relation_changed(rel, remote_unit=0),
        full_state(binary, amqp=rel, config={"amqp-vhost": "media/prod"}),
    )
    assert out.get_relation(rel.id).local_unit_data["vhost"] == "media/prod"
    assert env_of(host)["OSCIED_AMQP_URI"].endswith("@10.0.0.9:5672/media%2Fprod")


def test_amqp_password_changing_restarts(ctx, binary, host):
    out = running(ctx, binary, host)
    rel = out.get_relations("amqp")[0]
    changed = dataclasses.replace(
        rel, remote_units_data={0: {"hostname": "10.0.0.9", "password": "rotated"}}
    )
    state = swap(out, rel, changed)
    ctx.run(ctx.on.relation_changed(changed, remote_unit=0), state)
    assert env_of(host)["OSCIED_AMQP_URI"] == "amqp://transform:rotated@10.0.0.9:5672/oscied"
    assert host.calls.count(("restart", UNIT)) == 1


def test_amqp_relation_broken_stops_the_service(ctx, binary, host):
    out = running(ctx, binary, host)
    out = ctx.run(ctx.on.relation_broken(out.get_relations("amqp")[0]), out)
    assert out.unit_status == testing.BlockedStatus(
        "needs an amqp relation (rabbitmq-server) or amqp-uri"
    )
    assert ("stop", UNIT) in host.calls


# -- the storage relation -----------------------------------------------------------------------


def test_storage_joined_before_the_export_waits(ctx, binary, host):
    rel = nfs_storage(endpoint=None)
    out = ctx.run(ctx.on.relation_joined(rel, remote_unit=0), full_state(binary, storage=rel))
    assert out.unit_status == testing.WaitingStatus("waiting for storage to publish its export")
    assert not (host.root / "etc/systemd/system" / MOUNT).exists()


def test_storage_changed_mounts_then_starts(ctx, binary, host):
    rel = nfs_storage(endpoint="nfs://(10.0.0.8:2049)/exports/oscied")
    out = ctx.run(ctx.on.relation_changed(rel, remote_unit=0), full_state(binary, storage=rel))
    assert out.unit_status.name == "active"
    mount = (host.root / "etc/systemd/system" / MOUNT).read_text()
    assert "\nWhat=10.0.0.8:/exports/oscied\n" in mount
    assert "port=2049" in mount
    assert env_of(host)["OSCIED_STORAGE_ROOT"] == "/srv/oscied"


def test_storage_export_moving_remounts(ctx, binary, host):
    out = running(ctx, binary, host)
    rel = out.get_relations("storage")[0]
    moved = dataclasses.replace(rel, remote_app_data={"endpoint": "nfs://(10.0.0.40)/srv/oscied"})
    state = swap(out, rel, moved)
    ctx.run(ctx.on.relation_changed(moved, remote_unit=0), state)
    assert "What=10.0.0.40:/srv/oscied" in (host.root / "etc/systemd/system" / MOUNT).read_text()
    assert host.calls.count(("restart", MOUNT)) == 1


def test_storage_relation_broken_stops_the_service(ctx, binary, host):
    out = running(ctx, binary, host)
    out = ctx.run(ctx.on.relation_broken(out.get_relations("storage")[0]), out)
    assert out.unit_status == testing.BlockedStatus(
        "needs a storage relation or the storage-uri option"
    )
    assert ("stop", UNIT) in host.calls


def test_an_unsupported_export_blocks(ctx, binary, host):
    rel = nfs_storage(endpoint="cephfs://fs@(10.0.0.1)/x?fsid=1&name=fs&auth=plain:k")
    out = ctx.run(ctx.on.relation_changed(rel, remote_unit=0), full_state(binary, storage=rel))
    assert out.unit_status.name == "blocked"
    assert out.unit_status.message.startswith("storage relation: storage URI must be nfs://")


def test_storage_uri_override_over_the_relation(ctx, binary, host):
    state = full_state(binary, config={"storage-uri": "nfs://nas.example.net/media"})
    out = ctx.run(ctx.on.config_changed(), state)
    assert out.unit_status.name == "active"
    mount = (host.root / "etc/systemd/system" / MOUNT).read_text()
    assert "\nWhat=nas.example.net:/media\n" in mount


def test_a_file_storage_that_is_not_there_blocks(ctx, binary, host):
    out = ctx.run(
        ctx.on.config_changed(), full_state(binary, config={"storage-uri": "file:///nowhere"})
    )
    assert out.unit_status == testing.BlockedStatus(
        "storage-uri: /nowhere is not a directory on this machine"
    )


def test_nfs_in_an_lxd_container_blocks(ctx, binary, host):
    container = host.root / "run/systemd/container"
    container.parent.mkdir(parents=True)
    container.write_text("lxc\n")
    out = ctx.run(ctx.on.install(), full_state(binary))
    assert out.unit_status.message.startswith("cannot mount NFS in an LXD container")
    assert host.restarts(UNIT) == 0


def test_a_failing_mount_blocks(ctx, binary, host):
    host.failing.add(("restart", MOUNT))
    out = ctx.run(ctx.on.install(), full_state(binary))
    assert out.unit_status == testing.BlockedStatus(
        "cannot mount 10.0.0.4:/srv/oscied: see journalctl -u srv-oscied.mount"
    )
    assert host.restarts(UNIT) == 0
    # The server answers again: the next update-status mounts and starts.
    host.failing.clear()
    out = ctx.run(ctx.on.update_status(), out)
    assert out.unit_status == testing.ActiveStatus("queues transform, concurrency 1")
    assert host.calls.index(("start", MOUNT)) < host.calls.index(("restart", UNIT))


# -- leadership ---------------------------------------------------------------------------------


@pytest.mark.parametrize("leader", [True, False])
def test_leader_and_non_leader_both_run(ctx, binary, host, leader):
    out = ctx.run(ctx.on.install(), full_state(binary, leader=leader))
    assert out.unit_status == testing.ActiveStatus("queues transform, concurrency 1")
    assert host.restarts(UNIT) == 1


def test_becoming_leader_writes_the_amqp_app_bag(ctx, binary, host):
    out = ctx.run(ctx.on.install(), full_state(binary, leader=False))
    assert out.get_relations("amqp")[0].local_app_data == {}
    out = ctx.run(ctx.on.leader_elected(), dataclasses.replace(out, leader=True))
    assert out.get_relations("amqp")[0].local_app_data["username"] == "transform"
    assert host.calls.count(("restart", UNIT)) == 1


# -- the service's own state ----------------------------------------------------------------------


def test_a_failed_service_blocks_naming_the_journal(ctx, binary, host):
    out = running(ctx, binary, host)
    host.failed_units.add(UNIT)
    host.active.discard(UNIT)
    with ctx(ctx.on.update_status(), out) as mgr:
        # Only collect-status: the fake's start would make it run again.
        statuses = mgr.charm.worker.statuses()
        mgr.run()
    assert statuses == [
        ops.BlockedStatus(f"{UNIT} failed: see journalctl -u {UNIT}"),
    ]


def test_a_failing_start_blocks(ctx, binary, host):
    host.failing.add(("restart", UNIT))
    out = ctx.run(ctx.on.install(), full_state(binary))
    assert out.unit_status == testing.BlockedStatus(
        f"{UNIT} did not start: see journalctl -u {UNIT}"
    )


# -- drain and resume ---------------------------------------------------------------------------


def test_drain_stops_and_stays_stopped_until_resume(ctx, binary, host):
    out = running(ctx, binary, host)
    out = ctx.run(ctx.on.action("drain"), out)
    assert ctx.action_results == {"result": f"{UNIT} stopped: the unit takes no job until resume"}
    assert host.calls == [("stop", UNIT), ("disable", UNIT)]
    assert out.unit_status == testing.ActiveStatus("drained: not taking jobs (run resume)")

    # Hooks go on converging files, but never start the drained service.
    host.calls.clear()
    out = ctx.run(ctx.on.config_changed(), dataclasses.replace(out, config={"concurrency": 2}))
    assert env_of(host)["OSCIED_CONCURRENCY"] == "2"
    assert not [c for c in host.calls if c[0] in ("start", "restart", "enable") and UNIT in c]
    assert out.unit_status == testing.ActiveStatus("drained: not taking jobs (run resume)")
    out = ctx.run(ctx.on.upgrade_charm(), out)
    assert UNIT not in host.active

    out = ctx.run(ctx.on.action("resume"), out)
    assert ctx.action_results == {"result": f"{UNIT} started"}
    assert ("enable", UNIT) in host.calls
    assert UNIT in host.active
    assert out.unit_status == testing.ActiveStatus("queues transform, concurrency 2")


def test_drain_logs_what_it_waits_for(ctx, binary, host):
    out = running(ctx, binary, host)
    ctx.run(ctx.on.action("drain"), out)
    assert any("running jobs may finish" in line for line in ctx.action_logs)


def test_drain_before_anything_runs(ctx, binary, host):
    out = ctx.run(ctx.on.action("drain"), testing.State(resources={binary}))
    assert ctx.action_results == {"result": f"{UNIT} not installed: stays stopped until resume"}
    state = dataclasses.replace(full_state(binary), stored_states=out.stored_states)
    out = ctx.run(ctx.on.install(), state)
    assert UNIT not in host.active
    assert out.unit_status == testing.ActiveStatus("drained: not taking jobs (run resume)")


def test_drain_failing_to_stop_fails_the_action(ctx, binary, host):
    out = running(ctx, binary, host)
    host.failing.add(("stop", UNIT))
    with pytest.raises(testing.ActionFailed) as failed:
        ctx.run(ctx.on.action("drain"), out)
    assert failed.value.message == f"cannot stop {UNIT}: see journalctl -u {UNIT}"


def test_resume_says_why_it_did_not_start(ctx, binary, host):
    out = ctx.run(ctx.on.action("drain"), testing.State(resources={binary}))
    out = ctx.run(ctx.on.action("resume"), out)
    assert ctx.action_results == {
        "result": f"resumed; {UNIT} is not running: needs an orchestra relation or api-url "
        "+ node-secret"
    }


def test_actions_take_no_parameters(ctx, binary, host):
    out = running(ctx, binary, host)
    # charmcraft.yaml says additionalProperties: false; ops.testing enforces the spec.
    with pytest.raises(RuntimeError, match="not a valid parameter for drain"):
        ctx.run(ctx.on.action("drain", params={"force": True}), out)


# -- leaving ------------------------------------------------------------------------------------


def test_stop_drains_and_remove_cleans_up(ctx, binary, host):
    out = running(ctx, binary, host)
    out = ctx.run(ctx.on.stop(), out)
    assert host.calls == [("stop", UNIT)]
    ctx.run(ctx.on.remove(), out)
    assert not (host.root / "etc/systemd/system" / UNIT).exists()
    assert not (host.root / "etc/oscied/transform.env").exists()
    assert not (host.root / "etc/systemd/system" / MOUNT).exists()


def test_remove_keeps_the_mount_another_oscied_service_uses(ctx, binary, host):
    out = running(ctx, binary, host)
    other = host.root / "etc/systemd/system/oscied-orchestra.service"
    other.write_text("[Unit]\n")
    ctx.run(ctx.on.remove(), out)
    assert (host.root / "etc/systemd/system" / MOUNT).exists()


def test_the_env_file_never_reaches_the_log(ctx, binary, host):
    ctx.run(ctx.on.install(), full_state(binary))
    logs = " ".join(str(entry.message) for entry in ctx.juju_log)
    assert "n0de-s3cret" not in logs
    assert "mq-pw" not in logs
    assert service.env_path("transform").exists()
