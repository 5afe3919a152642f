# Copyright 2026 OSCIED contributors.
# Licensed under the Apache License, Version 2.0.

"""Unit tests of the shared lib charms.oscied_orchestra.v0.storage (no systemd)."""

import pytest
from charms.filesystem_client.v0.filesystem_info import NfsInfo
from charms.oscied_orchestra.v0 import service, storage
from charms.oscied_orchestra.v0.storage import Storage, parse_storage_uri

# --- parse_storage_uri: accepted forms --------------------------------------------------------


@pytest.mark.parametrize(
    "uri, expected",
    [
        ("nfs://10.0.0.5/srv/oscied", Storage("nfs", "/srv/oscied", "10.0.0.5")),
        ("nfs://10.0.0.5:2049/srv/oscied", Storage("nfs", "/srv/oscied", "10.0.0.5", 2049)),
        ("nfs://(10.0.0.5)/export", Storage("nfs", "/export", "10.0.0.5")),
        ("nfs://(10.0.0.5:65535)/export", Storage("nfs", "/export", "10.0.0.5", 65535)),
        # filesystem_info percent-encodes the `:` of host:port inside the parentheses.
        ("nfs://(10.0.0.5%3A2049)/export", Storage("nfs", "/export", "10.0.0.5", 2049)),
        ("NFS://nas.example.net/media/", Storage("nfs", "/media", "nas.example.net")),
        ("nfs://nas/", Storage("nfs", "/", "nas")),
        ("nfs://[fe80::1]:2049/x", Storage("nfs", "/x", "fe80::1", 2049)),
        ("nfs://([fe80::0:1])/x", Storage("nfs", "/x", "fe80::1")),
        ("nfs://(%5Bfe80%3A%3A1%5D%3A2049)/x", Storage("nfs", "/x", "fe80::1", 2049)),
        ("nfs://h/a%2Bb", Storage("nfs", "/a+b", "h")),
        ("nfs://h/export?ro=true", Storage("nfs", "/export", "h")),
        ("  file:///mnt/oscied  ", Storage("file", "/mnt/oscied")),
        ("file://localhost/mnt/oscied/", Storage("file", "/mnt/oscied")),
    ],
)
def test_parse_accepts(uri, expected):
    assert parse_storage_uri(uri) == expected


def test_roots_and_sources():
    nfs = parse_storage_uri("nfs://(10.0.0.5:2049)/export")
    assert nfs.is_nfs and nfs.root == "/srv/oscied"
    assert nfs.source == "10.0.0.5:/export"
    assert nfs.uri == "nfs://(10.0.0.5%3A2049)/export"
    assert str(nfs) == nfs.uri
    v6 = parse_storage_uri("nfs://[fe80::1]/x")
    assert v6.source == "[fe80::1]:/x"
    assert v6.uri == "nfs://(%5Bfe80%3A%3A1%5D)/x"
    local = parse_storage_uri("file:///mnt/oscied")
    assert not local.is_nfs and local.root == "/mnt/oscied"
    assert local.uri == "file:///mnt/oscied"
    with pytest.raises(ValueError, match="no mount source"):
        _ = local.source


@pytest.mark.parametrize(
    "info",
    [
        NfsInfo(hostname="10.0.0.5", port=None, path="/srv/oscied"),
        NfsInfo(hostname="10.0.0.5", port=2049, path="/srv/oscied"),
        NfsInfo(hostname="fe80::1", port=2049, path="/a/b"),
        NfsInfo(hostname="nas.example.net", port=None, path="/media"),
    ],
)
def test_parse_reads_what_the_filesystem_info_provider_writes(info):
    uri = info.to_uri(None)
    parsed = parse_storage_uri(uri)
    assert (parsed.host, parsed.port, parsed.path) == (info.hostname, info.port, info.path)
    # ... and our canonical form is one the requirer side of the lib parses back.
    assert NfsInfo.from_uri(parsed.uri, None) == info


# --- parse_storage_uri: refused, with a reason ------------------------------------------------


@pytest.mark.parametrize(
    "uri, message",
    [
        ("", "storage URI is empty"),
        ("   ", "storage URI is empty"),
        (None, "storage URI is empty"),
        ("/srv/oscied", "must be nfs://host/path or file:///path"),
        ("http://h/x", r"scheme http is not supported"),
        ("cephfs://(h)/x", r"scheme cephfs is not supported"),
        ("nfs://h/a b", "may not contain spaces"),
        ("nfs://h/a\tb", "may not contain spaces"),
        ("nfs:///srv", "needs a host"),
        ("nfs://()/srv", "needs a host"),
        ("nfs://h", "needs an absolute path"),
        ("nfs://a,b/x", "takes one host"),
        ("nfs://(a,b)/x", "takes one host"),
        ("nfs://user@h/x", "takes no user"),
        ("nfs://h:/x", "empty port"),
        ("nfs://[fe80::1]:/x", "empty port"),
        ("nfs://h:0/x", "port must be a number from 1 to 65535"),
        ("nfs://h:65536/x", "port must be a number from 1 to 65535"),
        ("nfs://h:2049x/x", "port must be a number from 1 to 65535"),
        ("nfs://h:-1/x", "port must be a number from 1 to 65535"),
        ("nfs://[fe80::1/x", "malformed"),
        ("nfs://[fe80::1]x/x", "malformed"),
        ("nfs://[nothex]/x", "invalid IPv6"),
        ("nfs://-bad-/x", "host name or an IP address"),
        ("nfs://a..b/x", "host name or an IP address"),
        ("nfs://999.1.1.1/x", "host name or an IP address"),
        ("nfs://h_x/x", "host name or an IP address"),
        ("nfs://h/../etc", r"empty, \. or \.\. segments"),
        ("nfs://h/a//b", r"empty, \. or \.\. segments"),
        ("nfs://h/a/./b", r"empty, \. or \.\. segments"),
        ("nfs://h/a%20b", "may hold only"),
        ("nfs://h/a%0AExecStart=x", "may hold only"),
        ("nfs://h/a%25b", "may hold only"),
        ('nfs://h/a"b', "may hold only"),
        ("file://host/x", "takes no host"),
        ("file://x", "needs an absolute path"),
        ("file:///x?y=1", "takes no options"),
    ],
)
def test_parse_refuses(uri, message):
    with pytest.raises(ValueError, match=message):
        parse_storage_uri(uri)


def test_refusal_does_not_echo_a_long_scheme():
    with pytest.raises(ValueError) as err:
        parse_storage_uri("x" * 100 + "://h/x")
    assert "x" * 20 not in str(err.value)


# --- the mount unit ---------------------------------------------------------------------------


def test_render_mount_unit():
    text = storage.render_mount_unit(parse_storage_uri("nfs://(10.0.0.5)/export"))
    lines = text.splitlines()
    for line in (
        "[Mount]",
        "What=10.0.0.5:/export",
        "Where=/srv/oscied",
        "Type=nfs",
        "Options=hard,noatime,_netdev",
        "WantedBy=remote-fs.target",
    ):
        assert line in lines
    assert storage.MOUNT_UNIT == "srv-oscied.mount"


def test_render_mount_unit_with_port_and_ipv6():
    text = storage.render_mount_unit(parse_storage_uri("nfs://[fe80::1]:2050/x"))
    assert "What=[fe80::1]:/x\n" in text
    assert "Options=hard,noatime,_netdev,port=2050\n" in text


def test_render_mount_unit_refuses_local_storage():
    with pytest.raises(ValueError, match="needs no mount unit"):
        storage.render_mount_unit(parse_storage_uri("file:///mnt"))


def test_apply_mount_mounts_then_converges(fake, tmp_path):
    nfs = parse_storage_uri("nfs://10.0.0.5/export")
    assert storage.apply_mount(nfs) is True
    unit = tmp_path / "etc/systemd/system/srv-oscied.mount"
    assert unit.read_text() == storage.render_mount_unit(nfs)
    assert (tmp_path / "srv/oscied").is_dir()
    assert fake.calls == [
        ("daemon-reload",),
        ("enable", "srv-oscied.mount"),
        ("restart", "srv-oscied.mount"),
    ]
    assert storage.mounted()
    fake.calls.clear()
    assert storage.apply_mount(nfs) is False
    assert fake.calls == [("enable", "srv-oscied.mount")]


def test_apply_mount_remounts_on_change_and_mounts_when_down(fake):
    storage.apply_mount(parse_storage_uri("nfs://10.0.0.5/export"))
    fake.calls.clear()
    assert storage.apply_mount(parse_storage_uri("nfs://10.0.0.6/export")) is True
    assert ("restart", "srv-oscied.mount") in fake.calls
    fake.active.clear()
    fake.calls.clear()
    assert storage.apply_mount(parse_storage_uri("nfs://10.0.0.6/export")) is True
    assert fake.calls == [("enable", "srv-oscied.mount"), ("start", "srv-oscied.mount")]


def test_local_storage_removes_an_earlier_mount(fake, tmp_path):
    assert storage.apply_mount(parse_storage_uri("file:///mnt/media")) is False
    assert fake.calls == []
    storage.apply_mount(parse_storage_uri("nfs://10.0.0.5/export"))
    fake.calls.clear()
    assert storage.apply_mount(parse_storage_uri("file:///mnt/media")) is False
    assert fake.calls == [
        ("stop", "srv-oscied.mount"),
        ("disable", "srv-oscied.mount"),
        ("daemon-reload",),
    ]
    assert not (tmp_path / "etc/systemd/system/srv-oscied.mount").exists()
    assert not storage.mounted()


def test_apply_mount_failure_is_a_service_error(fake):
    def refuse(unit):
        raise RuntimeError("mount.nfs: Connection timed out")

    fake.restart = refuse
    with pytest.raises(service.ServiceError) as err:
        storage.apply_mount(parse_storage_uri("nfs://10.0.0.5/export"))
    assert str(err.value) == "cannot mount 10.0.0.5:/export: see journalctl -u srv-oscied.mount"
