#!/usr/bin/env python3
# Copyright 2026 OSCIED contributors.
# Licensed under the Apache License, Version 2.0.

"""The OSCIED transform unit charm: worker-transform as a sandboxed systemd service.

The reconcile, the statuses and the drain/resume actions are the workers' shared library
(`charms.oscied_orchestra.v0.worker`); `transform` holds what is this unit's own (ffmpeg).
"""

from __future__ import annotations

import ops
from charms.oscied_orchestra.v0 import worker

import transform

WORKLOAD = worker.Workload(
    name=transform.NAME,
    binary=transform.BINARY,
    description=transform.DESCRIPTION,
    task_limits=True,
    # ffmpeg writes tmp/<task>/<attempt>/ in the storage tree, outputs go to medias/.
    writes_storage=True,
    install=transform.install_ffmpeg,
)


class TransformCharm(ops.CharmBase):
    """Runs ffmpeg jobs from the orchestra's queues."""

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
    ops.main(TransformCharm)
