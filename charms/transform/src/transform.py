# Copyright 2026 OSCIED contributors.
# Licensed under the Apache License, Version 2.0.

"""What is the transform unit's own: its binary's names and ffmpeg (no `ops` here).

Everything a worker shares with the publisher (relations, env file, systemd unit, drain) is
in `charms.oscied_orchestra.v0.worker`; this module says what sets the transform unit apart.
"""

from __future__ import annotations

from charms.oscied_orchestra.v0 import service

NAME = "transform"
BINARY = "worker-transform"
DESCRIPTION = "OSCIED transform unit"
# ffmpeg and ffprobe, from the Ubuntu archive: the unit runs both (sandboxed).
PACKAGES = ("ffmpeg",)
TOOLS = ("/usr/bin/ffmpeg", "/usr/bin/ffprobe")


def ffmpeg_installed() -> bool:
    """Whether ffmpeg and ffprobe are on the host."""
    return all(service.host_path(tool).exists() for tool in TOOLS)


def install_ffmpeg(fresh: bool) -> str | None:
    """Install ffmpeg through apt (charmlibs-apt) on install/upgrade, or while it is missing.

    Returns None once it is there, else why not (apt's words), for a Blocked status.
    """
    if not fresh and ffmpeg_installed():
        return None
    from charmlibs import apt

    try:
        service.install_packages(*PACKAGES)
    except apt.Error as e:
        return f"cannot install ffmpeg: {e}"
    if not ffmpeg_installed():
        return "cannot install ffmpeg: apt installed it, yet ffmpeg or ffprobe is missing"
    return None
