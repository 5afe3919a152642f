#!/usr/bin/env python3
# Copyright 2026 OSCIED contributors.
# Licensed under the Apache License, Version 2.0.

"""Run one OSCIED charm's real code under ops.testing and report what it did.

Used by test_real_binaries.py, one process per charm: every charm's module is `charm`, so
two charms cannot be imported into one interpreter.

    python render_charm.py <charm dir name> <spec.json> <result.json>

The spec (JSON) gives the application name, leadership, config, the resource file, the
unit's address, the relations (remote data as the other application would write it) and the
secrets the unit can see. The charm then goes through a first deploy's hooks (install,
relation-created, leader-elected, config-changed, start, relation-joined/changed,
update-status), each hook's output state feeding the next, then the spec's actions. Its
files land under `$OSCIED_CHARM_ROOT` (set by the caller). The only fake is the host seam
`service.system` (systemd, apt, users): the unit tests' recorder (charms/testing/
oscied_testing.py), whose apt "installs" ffmpeg by linking the host's own.

The result (JSON): the final status, every relation's local bags, the secrets the charm
owns (with content and grants), the action results, the host calls and opened ports.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

CHARMS = Path(__file__).resolve().parents[1]
# The charms' shared test support (imports no charm library at module level).
sys.path.insert(0, str(CHARMS / "testing"))

import oscied_testing  # noqa: E402


class Recorder(oscied_testing.FakeSystem):
    """The unit tests' recorded host, whose apt "installs" ffmpeg by linking the host's own."""

    def install_files(self, package):
        if package != "ffmpeg":
            raise RuntimeError(f"this test installs no {package}")
        # The binaries run the host's ffmpeg (PATH): "installing" it links that one where
        # the charm looks for it.
        for tool in ("ffmpeg", "ffprobe"):
            found = shutil.which(tool)
            if found is None:
                raise RuntimeError(f"{tool} not found: apt-get install ffmpeg")
            dest = self.root / "usr/bin" / tool
            dest.parent.mkdir(parents=True, exist_ok=True)
            if not dest.exists():
                dest.symlink_to(found)


def _relation(testing, spec: dict):
    units = {int(k): v for k, v in spec.get("remote_units_data", {}).items()}
    if spec.get("peer"):
        return testing.PeerRelation(spec["endpoint"], peers_data=units)
    return testing.Relation(
        spec["endpoint"],
        remote_app_name=spec["remote_app"],
        remote_app_data=spec.get("remote_app_data", {}),
        remote_units_data=units,
    )


def _state(testing, spec: dict):
    address = spec["address"]
    networks = {
        testing.Network(
            endpoint,
            bind_addresses=[testing.BindAddress([testing.Address(address)])],
            ingress_addresses=[address],
            egress_subnets=[f"{address}/32"],
        )
        for endpoint in spec["bindings"]
    }
    resource = spec["resource"]
    return testing.State(
        leader=spec["leader"],
        config=spec["config"],
        relations={_relation(testing, r) for r in spec["relations"]},
        networks=networks,
        secrets={
            testing.Secret(s["content"], id=s["id"], owner=None) for s in spec.get("secrets", ())
        },
        resources={testing.Resource(name=resource["name"], path=resource["path"])},
    )


def _hooks(ctx, state, leader: bool):
    """Yield a first deploy's hooks in Juju's order, each taking the state the last one left."""
    yield "install", lambda s: ctx.on.install()
    for rel in sorted(state.relations, key=lambda r: r.id):
        yield f"{rel.endpoint}-relation-created", _on_relation(ctx, "relation_created", rel)
    if leader:
        yield "leader-elected", lambda s: ctx.on.leader_elected()
    yield "config-changed", lambda s: ctx.on.config_changed()
    yield "start", lambda s: ctx.on.start()
    for rel in sorted(state.relations, key=lambda r: r.id):
        if getattr(rel, "remote_units_data", None):
            for kind in ("relation_joined", "relation_changed"):
                name = f"{rel.endpoint}-{kind.replace('_', '-')}"
                yield name, _on_relation(ctx, kind, rel, remote_unit=0)
    yield "update-status", lambda s: ctx.on.update_status()


def _on_relation(ctx, kind: str, rel, **kwargs):
    def event(state):
        (current,) = [r for r in state.relations if r.id == rel.id]
        return getattr(ctx.on, kind)(current, **kwargs)

    return event


def _status(status) -> dict:
    return {"name": status.name, "message": status.message}


def _result(state, recorder: Recorder, hooks: list, actions: dict) -> dict:
    return {
        "status": _status(state.unit_status),
        "hooks": hooks,
        "relations": [
            {
                "endpoint": rel.endpoint,
                "id": rel.id,
                "remote_app": getattr(rel, "remote_app_name", None),
                "local_app_data": dict(rel.local_app_data),
                "local_unit_data": dict(rel.local_unit_data),
            }
            for rel in sorted(state.relations, key=lambda r: r.id)
        ],
        "secrets": [
            {
                "id": s.id,
                "label": s.label,
                "owner": s.owner,
                "content": dict(s.latest_content),
                "grants": {str(k): sorted(v) for k, v in s.remote_grants.items()},
            }
            for s in state.secrets
            if s.owner is not None
        ],
        "actions": actions,
        "calls": recorder.calls,
        "opened_ports": sorted(p.port for p in state.opened_ports),
    }


def main(argv: list[str]) -> int:
    if len(argv) != 4:
        print(__doc__, file=sys.stderr)
        return 2
    name, spec_path, result_path = argv[1], Path(argv[2]), Path(argv[3])
    spec = json.loads(spec_path.read_text())
    root = Path(os.environ["OSCIED_CHARM_ROOT"])
    charm_dir = CHARMS / name
    sys.path[:0] = [str(charm_dir / "src"), str(charm_dir / "lib")]

    import charm
    from charms.oscied_orchestra.v0 import service
    from ops import testing

    recorder = Recorder(root)
    service.system = recorder
    charm_type = getattr(charm, spec["charm_class"])
    ctx = testing.Context(charm_type, app_name=spec["app"])
    state = _state(testing, spec)
    hooks = []
    for hook, event in list(_hooks(ctx, state, spec["leader"])):
        state = ctx.run(event(state), state)
        hooks.append({"hook": hook, "status": _status(state.unit_status)})
    actions = {}
    for action in spec.get("actions", ()):
        try:
            state = ctx.run(ctx.on.action(action), state)
            actions[action] = {"results": ctx.action_results}
        except testing.ActionFailed as e:
            actions[action] = {"failed": e.message}
    result_path.write_text(json.dumps(_result(state, recorder, hooks, actions), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
