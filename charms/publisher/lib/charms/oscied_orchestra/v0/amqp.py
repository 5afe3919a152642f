"""Requirer side of the ``rabbitmq`` interface (the ``amqp`` endpoint of rabbitmq-server).

There is no official library for the machine ``rabbitmq-server`` charm. Its wire format:

- the requirer asks for a user and a vhost: ``username`` and ``vhost``. rabbitmq-server reads
  them from each remote *unit* bag, rabbitmq-k8s from the remote *app* bag, so this library
  writes both (the app bag from the leader only);
- the provider answers ``hostname`` and ``password`` (plus ``ssl_port`` when TLS is on), in
  its unit bags (rabbitmq-server) or its app bag (rabbitmq-k8s). The app bag wins; else the
  first remote unit that has both.

Usage::

    self.amqp = AmqpRequires(self, endpoint="amqp")
    # in the reconcile handler:
    self.amqp.request(username=self.app.name, vhost=self.config["amqp-vhost"])
    uri = self.amqp.uri()   # "amqp://orchestra:pw@10.0.0.9:5672/oscied" or None

The library never sets a status and defines no events.
"""

from __future__ import annotations

import urllib.parse

import ops

# The unique Charmhub library identifier, never change it.
LIBID = "e2bd44c6e9c749c2b2b3efa2ad69dc3a"

# Increment this major API version when introducing breaking changes.
LIBAPI = 0

# Increment this PATCH version before using `charmcraft publish-lib` or reset
# to 0 if you are raising the major API version.
LIBPATCH = 1

AMQP_PORT = 5672


class AmqpRequires(ops.Object):
    """Asks RabbitMQ for a user and vhost; builds the AMQP URI from its answer."""

    def __init__(self, charm: ops.CharmBase, endpoint: str = "amqp"):
        super().__init__(charm, f"amqp-requires-{endpoint}")
        self._charm = charm
        self.endpoint = endpoint
        self._username: str | None = None
        self._vhost: str | None = None

    @property
    def relation(self) -> ops.Relation | None:
        """The relation to RabbitMQ (limit 1), or None."""
        return self.model.get_relation(self.endpoint)

    def request(self, username: str, vhost: str) -> None:
        """Write the request into the local unit bag and, on the leader, the local app bag."""
        self._username, self._vhost = username, vhost
        rel = self.relation
        if rel is None:
            return
        bags = [rel.data[self._charm.unit]]
        if self._charm.unit.is_leader():
            bags.append(rel.data[self._charm.app])
        for bag in bags:
            for key, value in (("username", username), ("vhost", vhost)):
                if bag.get(key) != value:
                    bag[key] = value

    def credentials(self) -> dict[str, str] | None:
        """The provider's ``hostname``, ``password`` (and ``ssl_port`` if given), or None."""
        rel = self.relation
        if rel is None:
            return None
        # Only the remote app bag and the remote unit bags: on a non-leader, touching the local
        # app bag raises RelationDataAccessError.
        candidates = []
        if rel.app is not None:
            candidates.append(rel.data[rel.app])
        candidates.extend(rel.data[unit] for unit in sorted(rel.units, key=lambda u: u.name))
        for bag in candidates:
            if bag.get("hostname") and bag.get("password"):
                found = {"hostname": bag["hostname"], "password": bag["password"]}
                if bag.get("ssl_port"):
                    found["ssl_port"] = bag["ssl_port"]
                return found
        return None

    def uri(self, username: str | None = None, vhost: str | None = None) -> str | None:
        """``amqp://user:pw@host:5672/<vhost>``, or None while RabbitMQ has not answered.

        `username`/`vhost` default to what `request` was given in this hook.
        """
        username = username or self._username
        vhost = vhost if vhost is not None else self._vhost
        creds = self.credentials()
        if creds is None or not username or vhost is None:
            return None
        host = creds["hostname"]
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"  # an IPv6 address
        quote = urllib.parse.quote
        return (
            f"amqp://{quote(username, safe='')}:{quote(creds['password'], safe='')}"
            f"@{host}:{AMQP_PORT}/{quote(vhost, safe='')}"
        )
