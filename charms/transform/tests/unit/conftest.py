# Copyright 2026 OSCIED contributors.
# Licensed under the Apache License, Version 2.0.

"""The host the charm runs on, faked: a temp root for its files and a recording systemd/apt."""

from pathlib import Path

import pytest
from charmlibs import systemd
from charms.oscied_orchestra.v0 import service


class FakeSystem(service.System):
    """Records the host calls instead of making them; apt "installs" the files it would."""

    PACKAGE_FILES = {
        "ffmpeg": ("/usr/bin/ffmpeg", "/usr/bin/ffprobe"),
        "nfs-common": ("/usr/sbin/mount.nfs",),
    }

    def __init__(self, root: Path):
        self.root = root
        self.calls: list[tuple[str, ...]] = []
        self.active: set[str] = set()
        self.failed_units: set[str] = set()
        self.failing: set[tuple[str, str]] = set()
        self.apt_error: Exception | None = None

    def _call(self, *call: str) -> None:
        self.calls.append(call)
        if call in self.failing:
            raise systemd.SystemdError(f"systemctl {' '.join(call)} failed")

    def daemon_reload(self):
        self._call("daemon-reload")

    def enable(self, unit):
        self._call("enable", unit)

    def disable(self, unit):
        self._call("disable", unit)

    def start(self, unit):
        self._call("start", unit)
        self.active.add(unit)

    def stop(self, unit):
        self._call("stop", unit)
        self.active.discard(unit)

    def restart(self, unit):
        self._call("restart", unit)
        self.active.add(unit)

    def running(self, unit):
        return unit in self.active

    def failed(self, unit):
        return unit in self.failed_units

    def apt_install(self, *packages):
        self.calls.append(("apt", *packages))
        if self.apt_error is not None:
            raise self.apt_error
        for package in packages:
            for path in self.PACKAGE_FILES.get(package, ()):
                dest = self.root / path.lstrip("/")
                dest.parent.mkdir(parents=True, exist_ok=True)
                dest.write_text("")

    def ensure_user(self, name, uid, gid):
        self.calls.append(("user", name, str(uid), str(gid)))

    def chown(self, path, uid, gid):
        self.calls.append(("chown", str(path)))

    def restarts(self, unit: str) -> int:
        """How many times `unit` was restarted or started."""
        return sum(1 for c in self.calls if c[0] in ("restart", "start") and c[1] == unit)


@pytest.fixture
def host(tmp_path, monkeypatch) -> FakeSystem:
    """The charm's files go under tmp_path/root; systemd and apt are recorded."""
    root = tmp_path / "root"
    root.mkdir()
    monkeypatch.setenv("OSCIED_CHARM_ROOT", str(root))
    fake = FakeSystem(root)
    monkeypatch.setattr(service, "system", fake)
    return fake
