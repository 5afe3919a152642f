#!/usr/bin/env python3
# Copyright 2026 OSCIED contributors.
# Licensed under the Apache License, Version 2.0.

"""The OSCIED publisher unit charm: worker-publisher as a sandboxed systemd service.

The charm class, the reconcile, the statuses and the drain/resume actions are the workers'
shared library (`charms.oscied_orchestra.v0.worker`); `publisher` holds what is this unit's
own (its port, public URL and web root).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import ops
from charms.oscied_orchestra.v0 import worker

import publisher


def _extra(config: Mapping[str, Any], address: str) -> worker.Extra:
    return worker.Extra(**publisher.settings(config, address))


WORKLOAD = worker.Workload(
    name=publisher.NAME,
    binary=publisher.BINARY,
    description=publisher.DESCRIPTION,
    # It only reads the storage tree; it writes its web root, in its StateDirectory.
    writes_storage=False,
    unit_environment=publisher.UNIT_ENVIRONMENT,
    extra=_extra,
)


class PublisherCharm(worker.WorkerCharm):
    """Publishes medias into its web root and serves them."""

    WORKLOAD = WORKLOAD


if __name__ == "__main__":  # pragma: nocover
    ops.main(PublisherCharm)
