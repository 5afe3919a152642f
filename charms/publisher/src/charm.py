#!/usr/bin/env python3
# Copyright 2026 OSCIED contributors.
# Licensed under the Apache License, Version 2.0.

"""The OSCIED publisher unit charm: worker-publisher as a sandboxed systemd service.

The reconcile, the statuses and the drain/resume actions are the workers' shared library
(`charms.oscied_orchestra.v0.worker`); `publisher` holds what is this unit's own (its port,
public URL and web root).
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


class PublisherCharm(ops.CharmBase):
    """Publishes medias into its web root and serves them."""

    def __init__(self, framework: ops.Framework):
        super().__init__(framework)
        self.worker = worker.Worker(self, WORKLOAD, on_progress=self._progress)
        framework.observe(self.on.collect_unit_status, self._on_collect_status)

    def _progress(self, message: str) -> None:
        self.unit.status = ops.MaintenanceStatus(message)

    def _on_collect_status(self, event: ops.CollectStatusEvent) -> None:
        for status in self.worker.statuses():
            event.add_status(status)


if __name__ == "__main__":  # pragma: nocover
    ops.main(PublisherCharm)
