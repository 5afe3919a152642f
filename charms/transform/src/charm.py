#!/usr/bin/env python3
# Copyright 2026 OSCIED contributors.
# Licensed under the Apache License, Version 2.0.

"""The OSCIED transform unit charm: worker-transform as a sandboxed systemd service.

The charm class, the reconcile, the statuses and the drain/resume actions are the workers'
shared library (`charms.oscied_orchestra.v0.worker`); `transform` holds what is this unit's
own (ffmpeg).
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


class TransformCharm(worker.WorkerCharm):
    """Runs ffmpeg jobs from the orchestra's queues."""

    WORKLOAD = WORKLOAD


if __name__ == "__main__":  # pragma: nocover
    ops.main(TransformCharm)
