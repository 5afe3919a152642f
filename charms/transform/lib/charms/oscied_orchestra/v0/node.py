"""The ``oscied_node`` interface: the orchestra shares its API and node secret with units.

The orchestra application provides it (endpoints ``transform`` and ``publisher``); each worker
charm requires it (endpoint ``orchestra``, limit 1).

Wire format:

- provider app bag (written by the orchestra leader):
  ``api-urls``: the comma-separated, sorted API URLs of every orchestra unit (the binaries take
  them as ``OSCIED_API_URL`` and fail over between them);
  ``node-secret-id``: the id of an orchestra-owned Juju secret granted to the relation, whose
  content key ``node-secret`` is the secret units authenticate with as ``node``.
- requirer unit bag (written by every worker unit): ``hostname``, ``queues``, ``concurrency``
  and, for publishers, ``public-url``. The orchestra only reads them (status, counting units).

Rotation: the orchestra sets new content on the secret; workers get ``secret-changed`` and call
``node_secret(refresh=True)``.

Provider::

    self.nodes = NodeProvides(self, endpoints=("transform", "publisher"))
    self.nodes.publish(["http://10.0.0.5:5000"], secret)   # leader only
    self.nodes.units("transform")                          # [{"unit": "transform/0", ...}]

Requirer::

    self.orchestra = NodeRequires(self, endpoint="orchestra")
    self.orchestra.api_urls()                # ["http://10.0.0.5:5000"]
    self.orchestra.node_secret(refresh=True) # str | None
    self.orchestra.register(hostname="h", queues="transform", concurrency=2)

This library never sets a status and defines no events: charms observe the relation events
(and ``secret-changed``) themselves and reconcile.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

import ops

# The unique Charmhub library identifier, never change it.
LIBID = "da5f5ed359714992a06a0988ee733a85"

# Increment this major API version when introducing breaking changes.
LIBAPI = 0

# Increment this PATCH version before using `charmcraft publish-lib` or reset
# to 0 if you are raising the major API version.
LIBPATCH = 1

logger = logging.getLogger(__name__)

API_URLS_KEY = "api-urls"
NODE_SECRET_ID_KEY = "node-secret-id"
# Key of the node secret's content (Juju secret keys: lowercase, dashes, >= 3 characters).
NODE_SECRET_KEY = "node-secret"
# Label the requirer gives the granted secret, so `secret-changed` handlers can tell it apart.
NODE_SECRET_LABEL = "node-secret"


def _split_urls(value: str | None) -> list[str]:
    return [u.strip() for u in (value or "").split(",") if u.strip()]


def _set_if_changed(bag: ops.RelationDataContent, key: str, value: str | None) -> None:
    # Writing an unchanged value still costs a relation-set; an empty value deletes the key.
    if value is None or value == "":
        if key in bag:
            del bag[key]
    elif bag.get(key) != value:
        bag[key] = value


class NodeProvides(ops.Object):
    """The orchestra's side: publishes the API URLs and the node secret to worker relations."""

    def __init__(
        self, charm: ops.CharmBase, endpoints: Iterable[str] = ("transform", "publisher")
    ):
        super().__init__(charm, "oscied-node-provides")
        self._charm = charm
        self.endpoints = tuple(endpoints)

    def relations(self) -> list[ops.Relation]:
        """Every relation on the provided endpoints."""
        return [rel for ep in self.endpoints for rel in self.model.relations[ep]]

    def publish(self, api_urls: Iterable[str], node_secret: ops.Secret) -> None:
        """Leader only: write the app bag of every worker relation and grant the secret to it.

        Idempotent: call it from every reconcile; unchanged keys are not rewritten and
        granting twice is a no-op. A non-leader call does nothing (only the leader may write
        the app bag or grant an app secret).
        """
        if not self._charm.unit.is_leader():
            return
        urls = ",".join(sorted(set(api_urls)))
        secret_id = node_secret.id or node_secret.get_info().id
        for rel in self.relations():
            if rel.app is None:
                # The remote side is gone (a relation being torn down): nothing to grant.
                continue
            node_secret.grant(rel)
            bag = rel.data[self._charm.app]
            _set_if_changed(bag, API_URLS_KEY, urls)
            _set_if_changed(bag, NODE_SECRET_ID_KEY, secret_id)

    def units(self, endpoint: str, *, departing: ops.Unit | None = None) -> list[dict[str, str]]:
        """Every remote unit's bag on `endpoint` (plus ``unit``: its name), sorted by name.

        `departing`: a unit to leave out (in ``relation-departed`` it may still be listed).
        """
        out = []
        for rel in self.model.relations[endpoint]:
            for unit in sorted(rel.units, key=lambda u: u.name):
                if departing is not None and unit.name == departing.name:
                    continue
                bag = dict(rel.data[unit])
                bag["unit"] = unit.name
                out.append(bag)
        return out


class NodeRequires(ops.Object):
    """A worker's side: reads the orchestra's API URLs and node secret, registers its facts."""

    def __init__(self, charm: ops.CharmBase, endpoint: str = "orchestra"):
        super().__init__(charm, f"oscied-node-requires-{endpoint}")
        self._charm = charm
        self.endpoint = endpoint

    @property
    def relation(self) -> ops.Relation | None:
        """The relation to the orchestra (limit 1), or None."""
        return self.model.get_relation(self.endpoint)

    def _remote_app_bag(self) -> ops.RelationDataContent | None:
        rel = self.relation
        if rel is None or rel.app is None:
            return None
        return rel.data[rel.app]

    def api_urls(self) -> list[str]:
        """The orchestra units' API URLs, as the leader published them (empty if not yet)."""
        bag = self._remote_app_bag()
        return _split_urls(bag.get(API_URLS_KEY)) if bag is not None else []

    def node_secret_id(self) -> str | None:
        """The published id of the node secret, or None."""
        bag = self._remote_app_bag()
        return (bag.get(NODE_SECRET_ID_KEY) or None) if bag is not None else None

    def node_secret(self, refresh: bool = False) -> str | None:
        """The node secret's value, or None while it is not published or not granted yet.

        `refresh=True` moves to the latest revision (use it in ``secret-changed``).
        """
        secret_id = self.node_secret_id()
        if secret_id is None:
            return None
        try:
            try:
                secret = self.model.get_secret(id=secret_id, label=NODE_SECRET_LABEL)
            except ops.ModelError:
                # The label may still name a previous secret (the orchestra redeployed):
                # read by id alone rather than fail.
                secret = self.model.get_secret(id=secret_id)
            content = secret.get_content(refresh=refresh)
        except ops.SecretNotFoundError:
            return None
        except ops.ModelError as e:
            # Not granted yet: the grant and the bag can arrive in separate hooks.
            logger.debug("node secret %s not readable yet: %s", secret_id, type(e).__name__)
            return None
        return content.get(NODE_SECRET_KEY) or None

    def register(self, **facts: object) -> None:
        """Write this unit's facts into its bag: ``hostname``, ``queues``, ``concurrency``...

        Underscores in names become dashes (``public_url`` → ``public-url``); values are
        turned into strings; None or "" removes the key.
        """
        rel = self.relation
        if rel is None:
            return
        bag = rel.data[self._charm.unit]
        for name, value in facts.items():
            _set_if_changed(bag, name.replace("_", "-"), None if value is None else str(value))
