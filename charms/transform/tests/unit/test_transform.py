# Copyright 2026 OSCIED contributors.
# Licensed under the Apache License, Version 2.0.

"""The transform unit's own module (ffmpeg) and the charm's declared contract."""

from pathlib import Path

import yaml
from charmlibs import apt

import transform

CHARMCRAFT = Path(__file__).resolve().parents[2] / "charmcraft.yaml"


def test_ffmpeg_is_installed_once(host):
    assert transform.install_ffmpeg(fresh=False) is None
    assert host.calls == [("apt", "ffmpeg")]
    assert transform.ffmpeg_installed()
    # There: nothing to do, unless on install/upgrade.
    assert transform.install_ffmpeg(fresh=False) is None
    assert host.calls == [("apt", "ffmpeg")]
    assert transform.install_ffmpeg(fresh=True) is None
    assert host.calls == [("apt", "ffmpeg"), ("apt", "ffmpeg")]


def test_apt_errors_become_a_reason(host):
    host.apt_error = apt.PackageNotFoundError("Package ffmpeg not found")
    assert (
        transform.install_ffmpeg(fresh=True) == "cannot install ffmpeg: Package ffmpeg not found"
    )


def test_apt_that_installs_nothing_is_noticed(host, monkeypatch):
    monkeypatch.setattr(host, "PACKAGE_FILES", {})
    assert transform.install_ffmpeg(fresh=True).startswith("cannot install ffmpeg: apt installed")


def test_charmcraft_yaml_declares_the_contract():
    meta = yaml.safe_load(CHARMCRAFT.read_text())
    assert meta["name"] == "oscied-transform"
    assert meta["base"] == "ubuntu@24.04"
    assert meta["resources"] == {
        "worker-transform-binary": {
            "type": "file",
            "filename": "worker-transform",
            "description": meta["resources"]["worker-transform-binary"]["description"],
        }
    }
    assert meta["requires"] == {
        "orchestra": {"interface": "oscied_node", "limit": 1, "optional": False},
        "amqp": {"interface": "rabbitmq", "limit": 1, "optional": False},
        "storage": {"interface": "filesystem_info", "limit": 1, "optional": False},
    }
    assert "provides" not in meta and "peers" not in meta
    assert set(meta["actions"]) == {"drain", "resume"}
    for action in meta["actions"].values():
        assert action["additionalProperties"] is False
    options = meta["config"]["options"]
    assert options["node-secret"]["type"] == "secret"
    assert set(options) == {
        "queues", "concurrency", "drain-secs", "task-max-secs", "max-output-bytes",
        "log-format", "verbose", "api-url", "node-secret", "amqp-uri", "amqp-vhost",
        "storage-uri",
    }  # fmt: skip
