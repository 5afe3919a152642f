# Copyright 2026 OSCIED contributors.
# Licensed under the Apache License, Version 2.0.

"""The amqp (rabbitmq interface) requirer library on its own, with a minimal charm."""

import ops
import pytest
from charms.oscied_orchestra.v0.amqp import AmqpRequires
from ops import testing

META = {"name": "worker", "requires": {"amqp": {"interface": "rabbitmq", "limit": 1}}}


class Requirer(ops.CharmBase):
    def __init__(self, framework):
        super().__init__(framework)
        self.amqp = AmqpRequires(self)
        framework.observe(self.on.amqp_relation_changed, self._go)

    def _go(self, _):
        self.amqp.request(username=self.app.name, vhost="oscied/prod")
        self.uri = self.amqp.uri()
        self.credentials = self.amqp.credentials()


def run(rel, leader):
    ctx = testing.Context(Requirer, meta=META, app_name="worker")
    with ctx(
        ctx.on.relation_changed(rel, remote_unit=0), testing.State(leader=leader, relations={rel})
    ) as mgr:
        out = mgr.run()
        return mgr.charm, out.get_relation(rel.id)


@pytest.mark.parametrize("leader", [True, False])
def test_request_goes_to_the_unit_bag_and_the_app_bag_from_the_leader(leader):
    rel = testing.Relation("amqp", remote_units_data={0: {}})
    charm, out = run(rel, leader)
    assert out.local_unit_data["username"] == "worker"
    assert out.local_unit_data["vhost"] == "oscied/prod"
    assert out.local_app_data == ({"username": "worker", "vhost": "oscied/prod"} if leader else {})
    assert charm.uri is None and charm.credentials is None


def test_the_app_bag_wins_over_the_unit_bags():
    rel = testing.Relation(
        "amqp",
        remote_app_data={"hostname": "mq-k8s", "password": "app-pw"},
        remote_units_data={0: {"hostname": "10.0.0.9", "password": "unit-pw"}},
    )
    charm, _ = run(rel, leader=False)
    assert charm.uri == "amqp://worker:app-pw@mq-k8s:5672/oscied%2Fprod"


def test_the_first_unit_having_both_keys_answers():
    rel = testing.Relation(
        "amqp",
        remote_app_data={"hostname": "only-a-host"},
        remote_units_data={
            0: {"hostname": "10.0.0.8"},
            1: {"hostname": "fd00::9", "password": "p w", "ssl_port": "5671"},
        },
    )
    charm, _ = run(rel, leader=False)
    assert charm.credentials == {"hostname": "fd00::9", "password": "p w", "ssl_port": "5671"}
    assert charm.uri == "amqp://worker:p%20w@[fd00::9]:5672/oscied%2Fprod"
