# Copyright 2026 OSCIED contributors.
# Licensed under the Apache License, Version 2.0.

"""A fake host for the storage charm's tests: no apt, systemd or exportfs is touched."""

import subprocess

import oscied_testing
import pytest

import nfs


class FakeHost(nfs.Host):
    """Records what the workload asks of the host."""

    def __init__(self):
        self.packages: set[str] = set()
        self.apt_error: Exception | None = None
        self.container_name = ""
        self.reloads = 0
        self.exportfs_error = ""
        self.server_active = False
        self.server_broken = False
        self.chowns: list[tuple[str, int, int]] = []

    def apt_install(self, *packages):
        if self.apt_error:
            raise self.apt_error
        self.packages.update(packages)

    def installed(self, package):
        return package in self.packages

    def container(self):
        return self.container_name

    def exportfs_reload(self):
        if self.exportfs_error:
            raise subprocess.CalledProcessError(
                1, ["exportfs", "-ra"], stderr=self.exportfs_error.encode()
            )
        self.reloads += 1

    def enable_server(self):
        if self.server_broken:
            raise RuntimeError("systemctl enable --now nfs-server failed")
        self.server_active = True

    def server_running(self):
        return self.server_active

    def chown(self, path, uid, gid):
        self.chowns.append((str(path), uid, gid))


@pytest.fixture
def host(tmp_path, monkeypatch):
    return oscied_testing.install_fake(monkeypatch, tmp_path, nfs, "host", FakeHost())
