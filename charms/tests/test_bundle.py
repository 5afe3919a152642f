# Copyright 2026 OSCIED contributors.
# Licensed under the Apache License, Version 2.0.

"""bundle.yaml against every charm's charmcraft.yaml: what `juju deploy` would refuse.

No Juju here, so this is the deployment's metadata check: every relation names endpoints that
exist on both sides, with the same interface, one side providing and the other requiring, and
within each endpoint's limit; every resource and option given is declared; every required
endpoint of our charms is related. Run: `python -m pytest charms/tests` (pyyaml, pytest).
"""

from collections import Counter
from pathlib import Path

import pytest
import yaml

CHARMS = Path(__file__).resolve().parents[1]
BUNDLE = CHARMS / "bundle.yaml"
OURS = {
    "orchestra": "oscied-orchestra",
    "transform": "oscied-transform",
    "publisher": "oscied-publisher",
    "storage": "oscied-storage",
}

# The Charmhub charms' endpoints we use (charms.md §4: mongodb-operator metadata.yaml,
# openstack/charm-rabbitmq-server metadata.yaml); their metadata is not in this repo.
CHARMHUB = {
    "mongodb": {"database": ("provides", "mongodb_client", None)},
    "rabbitmq-server": {"amqp": ("provides", "rabbitmq", None)},
}


def load_yaml(path: Path) -> dict:
    if not path.is_file():
        pytest.fail(f"{path.relative_to(CHARMS.parent)} is missing")
    with path.open() as f:
        return yaml.safe_load(f)


def bundle() -> dict:
    return load_yaml(BUNDLE)


def metadata(charm_dir: str) -> dict:
    return load_yaml(CHARMS / charm_dir / "charmcraft.yaml")


def endpoints_of(meta: dict) -> dict[str, tuple[str, str, int | None]]:
    """Endpoint -> (role, interface, limit) from a charmcraft.yaml."""
    found = {}
    for role in ("provides", "requires", "peers"):
        for name, spec in (meta.get(role) or {}).items():
            assert name not in found, f"endpoint {name} declared twice"
            found[name] = (role, spec["interface"], spec.get("limit"))
    return found


def app_endpoints(app: str) -> dict[str, tuple[str, str, int | None]]:
    spec = bundle()["applications"][app]
    charm = spec["charm"]
    if charm in CHARMHUB:
        return CHARMHUB[charm]
    return endpoints_of(metadata(local_charm_dir(charm)))


def local_charm_dir(charm: str) -> str:
    """`./orchestra/oscied-orchestra_amd64.charm` -> `orchestra`."""
    path = Path(charm)
    assert charm.startswith("./") and len(path.parts) == 2, f"{charm}: expected ./<dir>/<file>"
    return path.parts[0]


def relations() -> list[tuple[str, str]]:
    return [tuple(pair) for pair in bundle()["relations"]]


def split(side: str) -> tuple[str, str]:
    app, sep, endpoint = side.partition(":")
    assert sep and app and endpoint, f"{side!r}: relations must name app:endpoint"
    return app, endpoint


def test_applications():
    apps = bundle()["applications"]
    assert set(apps) == {*OURS, "mongodb", "rabbitmq"}
    assert apps["orchestra"]["num_units"] == 2
    assert apps["transform"]["num_units"] == 2
    assert apps["publisher"]["num_units"] == 1
    assert apps["storage"]["num_units"] == 1
    assert apps["mongodb"]["charm"] == "mongodb"
    assert apps["rabbitmq"]["charm"] == "rabbitmq-server"
    for app in ("mongodb", "rabbitmq"):
        assert "/" in apps[app].get("channel", ""), f"{app}: give a <track>/<risk> channel"


@pytest.mark.parametrize("app", sorted(OURS))
def test_local_charm_matches_its_charmcraft_yaml(app):
    spec = bundle()["applications"][app]
    directory = local_charm_dir(spec["charm"])
    meta = metadata(directory)
    assert meta["name"] == OURS[app]
    name, _, platform = Path(spec["charm"]).stem.partition("_")
    assert name == meta["name"], f"{spec['charm']}: charmcraft pack names it {meta['name']}_..."
    assert platform in (meta.get("platforms") or {}), f"{platform} is not in platforms"
    assert meta.get("base") == bundle().get("default-base", spec.get("base"))


@pytest.mark.parametrize("app", sorted(OURS))
def test_resources_are_declared_and_all_given(app):
    spec = bundle()["applications"][app]
    declared = metadata(local_charm_dir(spec["charm"])).get("resources") or {}
    given = spec.get("resources") or {}
    assert set(given) == set(declared), (
        f"{app}: resources given {set(given)}, declared {set(declared)}"
    )
    for name, path in given.items():
        assert declared[name]["type"] == "file"
        assert Path(path).parts[:3] == ("..", "target", "release"), path
        assert Path(path).name == declared[name]["filename"], f"{name}: {path}"


@pytest.mark.parametrize("app", sorted(OURS))
def test_options_are_declared(app):
    spec = bundle()["applications"][app]
    declared = (metadata(local_charm_dir(spec["charm"])).get("config") or {}).get("options") or {}
    types = {"string": str, "int": int, "float": (int, float), "boolean": bool}
    for option, value in (spec.get("options") or {}).items():
        assert option in declared, f"{app}: option {option} is not in charmcraft.yaml"
        expected = types.get(declared[option]["type"])
        if expected:
            assert isinstance(value, expected), f"{app}: {option}={value!r}"


@pytest.mark.parametrize("pair", relations(), ids=lambda p: " ".join(p) if len(p) == 2 else p)
def test_relation_endpoints_exist_and_agree(pair):
    assert len(pair) == 2
    (app_a, ep_a), (app_b, ep_b) = split(pair[0]), split(pair[1])
    apps = bundle()["applications"]
    assert app_a in apps and app_b in apps
    a, b = app_endpoints(app_a), app_endpoints(app_b)
    assert ep_a in a, f"{app_a} has no endpoint {ep_a} (it has {sorted(a)})"
    assert ep_b in b, f"{app_b} has no endpoint {ep_b} (it has {sorted(b)})"
    (role_a, iface_a, _), (role_b, iface_b, _) = a[ep_a], b[ep_b]
    assert iface_a == iface_b, f"{pair}: interfaces {iface_a} and {iface_b} differ"
    assert {role_a, role_b} == {"provides", "requires"}, f"{pair}: roles {role_a}, {role_b}"


def test_limits_are_respected_and_no_relation_is_repeated():
    sides = Counter()
    seen = set()
    for pair in relations():
        key = frozenset(pair)
        assert key not in seen, f"{pair} is listed twice"
        seen.add(key)
        sides.update(pair)
    for side, count in sides.items():
        app, endpoint = split(side)
        _, _, limit = app_endpoints(app)[endpoint]
        if limit is not None:
            assert count <= limit, f"{side} has {count} relations, limit {limit}"


@pytest.mark.parametrize("app", sorted(OURS))
def test_every_required_endpoint_is_related(app):
    meta = metadata(local_charm_dir(bundle()["applications"][app]["charm"]))
    related = {split(side)[1] for pair in relations() for side in pair if split(side)[0] == app}
    for role in ("requires", "provides"):
        for endpoint, spec in (meta.get(role) or {}).items():
            assert "optional" in spec, f"{app}:{endpoint} must say optional: true|false"
            if role == "requires" and not spec["optional"]:
                assert endpoint in related, f"{app}:{endpoint} is required but not related"


@pytest.mark.parametrize("app", sorted(OURS))
def test_actions_close_their_params(app):
    meta = metadata(local_charm_dir(bundle()["applications"][app]["charm"]))
    for action, spec in (meta.get("actions") or {}).items():
        assert spec.get("additionalProperties") is False, f"{app}: {action}"
