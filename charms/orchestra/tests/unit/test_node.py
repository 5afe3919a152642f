"""The oscied_node library on its own, both sides, with minimal charms."""

import ops
from charms.oscied_orchestra.v0.node import NodeProvides, NodeRequires
from ops import testing

PROVIDER_META = {
    "name": "orchestra",
    "provides": {
        "transform": {"interface": "oscied_node"},
        "publisher": {"interface": "oscied_node"},
    },
}
REQUIRER_META = {
    "name": "transform",
    "requires": {"orchestra": {"interface": "oscied_node", "limit": 1}},
}


class Provider(ops.CharmBase):
    def __init__(self, framework):
        super().__init__(framework)
        self.nodes = NodeProvides(self)
        framework.observe(self.on.update_status, self._go)

    def _go(self, _):
        try:
            secret = self.model.get_secret(label="node-secret")
        except ops.SecretNotFoundError:
            if not self.unit.is_leader():
                return
            secret = self.app.add_secret({"node-secret": "s" * 32}, label="node-secret")
        self.nodes.publish(["http://b:5000", "http://a:5000", "http://a:5000"], secret)
        self.seen = self.nodes.units("transform")


class Requirer(ops.CharmBase):
    def __init__(self, framework):
        super().__init__(framework)
        self.orchestra = NodeRequires(self)
        framework.observe(self.on.update_status, self._go)
        framework.observe(self.on.secret_changed, self._changed)

    def _go(self, _):
        self.got = (self.orchestra.api_urls(), self.orchestra.node_secret())
        self.orchestra.register(
            hostname="h1", queues="transform,gpu", concurrency=2, public_url=None
        )

    def _changed(self, _):
        self.got = (self.orchestra.api_urls(), self.orchestra.node_secret(refresh=True))


def test_provider_publishes_and_grants_on_leader_only():
    t = testing.Relation(
        "transform", remote_app_name="transform", remote_units_data={1: {"hostname": "x"}, 0: {}}
    )
    p = testing.Relation("publisher", remote_app_name="publisher")
    ctx = testing.Context(Provider, meta=PROVIDER_META)
    with ctx(ctx.on.update_status(), testing.State(leader=True, relations={t, p})) as mgr:
        out = mgr.run()
        assert [u["unit"] for u in mgr.charm.seen] == ["transform/0", "transform/1"]
        assert mgr.charm.seen[1]["hostname"] == "x"
    (secret,) = out.secrets
    assert secret.remote_grants == {t.id: {"transform"}, p.id: {"publisher"}}
    for rel in (t, p):
        bag = out.get_relation(rel.id).local_app_data
        assert bag == {"api-urls": "http://a:5000,http://b:5000", "node-secret-id": secret.id}

    out = ctx.run(ctx.on.update_status(), testing.State(leader=False, relations={t}))
    assert out.secrets == frozenset()
    assert out.get_relation(t.id).local_app_data == {}


def test_units_leaves_out_the_departing_unit():
    t = testing.Relation("transform", remote_units_data={0: {}, 1: {}})
    ctx = testing.Context(Provider, meta=PROVIDER_META)
    with ctx(ctx.on.update_status(), testing.State(relations={t})) as mgr:
        mgr.run()
        departing = mgr.charm.model.get_unit("remote/1")
        assert [u["unit"] for u in mgr.charm.nodes.units("transform", departing=departing)] == [
            "remote/0"
        ]


def test_requirer_reads_urls_and_secret_then_follows_rotation():
    secret = testing.Secret({"node-secret": "old"}, latest_content={"node-secret": "new"})
    rel = testing.Relation(
        "orchestra",
        remote_app_name="orchestra",
        remote_app_data={"api-urls": "http://a:5000, http://b:5000,", "node-secret-id": secret.id},
    )
    ctx = testing.Context(Requirer, meta=REQUIRER_META)
    state = testing.State(relations={rel}, secrets={secret})
    with ctx(ctx.on.update_status(), state) as mgr:
        out = mgr.run()
        assert mgr.charm.got == (["http://a:5000", "http://b:5000"], "old")
    bag = out.get_relation(rel.id).local_unit_data
    assert (bag["hostname"], bag["queues"], bag["concurrency"]) == ("h1", "transform,gpu", "2")
    assert "public-url" not in bag
    with ctx(ctx.on.secret_changed(out.get_secret(id=secret.id)), out) as mgr:
        mgr.run()
        assert mgr.charm.got[1] == "new"


def test_requirer_before_the_orchestra_answers():
    rel = testing.Relation("orchestra", remote_app_data={"node-secret-id": "secret:nothere"})
    ctx = testing.Context(Requirer, meta=REQUIRER_META)
    with ctx(ctx.on.update_status(), testing.State(relations={rel})) as mgr:
        mgr.run()
        assert mgr.charm.got == ([], None)
    with ctx(ctx.on.update_status(), testing.State()) as mgr:
        mgr.run()
        assert mgr.charm.got == ([], None)
