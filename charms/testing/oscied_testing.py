# Copyright 2026 OSCIED contributors.
# Licensed under the Apache License, Version 2.0.

"""What the charms' tests share: a recorded host and the temp root the charm writes under.

On every charm's pytest `pythonpath` ("../testing" in its pyproject.toml) and imported by
charms/tests/render_charm.py. It imports no charm library at module level: the storage charm
has no `charms.oscied_orchestra`, and render_charm.py sets its path up before importing one.

The charm code touches the host at one seam, `service.system` (a `service.System`):
`FakeSystem` records every call instead and "installs" the files a package would bring under
the temp root, so the charm's own checks for them see what a real install leaves.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest


class FakeSystem:
    """`service.System` recorded: systemd, apt and user calls go to `calls`, in order.

    A test makes the host misbehave with `failing` (systemctl calls, as recorded, that raise
    SystemdError), `failed_units` (units systemd gave up on) and `apt_error` (raised by apt).
    It implements every method of `service.System` (test_service.py checks) rather than
    inheriting them, so a new host call cannot reach the real host from a test.
    """

    # What the charms look for after an apt install, by package (a test may empty it).
    PACKAGE_FILES = {
        "ffmpeg": ("/usr/bin/ffmpeg", "/usr/bin/ffprobe"),
        "nfs-common": ("/usr/sbin/mount.nfs",),
    }

    def __init__(self, root: Path):
        self.root = root
        self.calls: list[tuple[str, ...]] = []
        self.active: set[str] = set()
        self.failed_units: set[str] = set()
        self.failing: set[tuple[str, ...]] = set()
        self.apt_error: Exception | None = None

    def _call(self, *call: str) -> None:
        self.calls.append(call)
        if call in self.failing:
            from charmlibs import systemd

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
            self.install_files(package)

    def install_files(self, package: str) -> None:
        """Leave under the root what installing `package` would (empty files)."""
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
        return sum(1 for c in self.calls if c[0] in ("restart", "start") and c[1:] == (unit,))


def install_fake(
    monkeypatch: pytest.MonkeyPatch, root: Path, target: Any, name: str, fake: Any
) -> Any:
    """Point OSCIED_CHARM_ROOT at `root` (made if missing) and `target.name` at `fake`."""
    root.mkdir(parents=True, exist_ok=True)
    monkeypatch.setenv("OSCIED_CHARM_ROOT", str(root))
    monkeypatch.setattr(target, name, fake)
    return fake


def fake_system(monkeypatch: pytest.MonkeyPatch, root: Path) -> FakeSystem:
    """Install a FakeSystem as `service.system`, the charm's files under `root`."""
    from charms.oscied_orchestra.v0 import service

    return install_fake(monkeypatch, root, service, "system", FakeSystem(root))


@pytest.fixture
def host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeSystem:
    """Put the charm's files under tmp_path/root; record systemd, apt and users."""
    return fake_system(monkeypatch, tmp_path / "root")
