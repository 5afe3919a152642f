# Copyright 2026 OSCIED contributors.
# Licensed under the Apache License, Version 2.0.

"""The publisher unit's own module (port, public URL) and the charm's declared contract."""

from pathlib import Path

import pytest
import yaml

import publisher

CHARMCRAFT = Path(__file__).resolve().parents[2] / "charmcraft.yaml"


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        ("http://cdn1.example.net:5080", "http://cdn1.example.net:5080"),
        (" https://cdn.example.com/oscied/ ", "https://cdn.example.com/oscied"),
        ("http://[fd00::1]:8080", "http://[fd00::1]:8080"),
    ],
)
def test_public_urls_as_the_binary_keeps_them(given, kept):
    assert publisher.parse_public_url(given) == kept


@pytest.mark.parametrize(
    "bad",
    ["ftp://example.com", "example.com", "http://", "http:///x", "http://h/?a=1", "http://h/#x"],
)
def test_public_urls_the_binary_refuses(bad):
    with pytest.raises(ValueError, match="^public-url "):
        publisher.parse_public_url(bad)


def test_settings_default_and_given():
    got = publisher.settings({"port": 5080, "public-url": ""}, "10.0.0.7")
    assert got == {
        "env": {"OSCIED_LISTEN": "0.0.0.0:5080", "OSCIED_PUBLIC_URL": "http://10.0.0.7:5080"},
        "facts": {"public-url": "http://10.0.0.7:5080"},
        "ports": (5080,),
        "summary": "serving http://10.0.0.7:5080",
    }
    got = publisher.settings({"port": 8080, "public-url": "https://cdn/"}, "10.0.0.7")
    assert got["env"]["OSCIED_PUBLIC_URL"] == "https://cdn"
    assert got["env"]["OSCIED_LISTEN"] == "0.0.0.0:8080"


@pytest.mark.parametrize("port", [0, 65536, -1, True, "80"])
def test_bad_ports(port):
    with pytest.raises(ValueError, match="^port must be a whole number from 1 to 65535"):
        publisher.parse_port(port)


def test_charmcraft_yaml_declares_the_contract():
    meta = yaml.safe_load(CHARMCRAFT.read_text())
    assert meta["name"] == "oscied-publisher"
    assert set(meta["resources"]) == {"worker-publisher-binary"}
    assert meta["resources"]["worker-publisher-binary"]["filename"] == "worker-publisher"
    assert meta["requires"] == {
        "orchestra": {"interface": "oscied_node", "limit": 1, "optional": False},
        "amqp": {"interface": "rabbitmq", "limit": 1, "optional": False},
        "storage": {"interface": "filesystem_info", "limit": 1, "optional": False},
    }
    assert set(meta["actions"]) == {"drain", "resume"}
    for action in meta["actions"].values():
        assert action["additionalProperties"] is False
    options = meta["config"]["options"]
    assert options["port"]["default"] == publisher.DEFAULT_PORT
    # worker-publisher takes no task limits.
    assert "task-max-secs" not in options and "max-output-bytes" not in options
