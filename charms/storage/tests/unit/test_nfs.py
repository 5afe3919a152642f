# Copyright 2026 OSCIED contributors.
# Licensed under the Apache License, Version 2.0.

"""Unit tests of the storage workload module (fake host)."""

import stat
import subprocess

import pytest

import nfs


@pytest.mark.parametrize(
    "value, expected",
    [
        ("/srv/oscied", "/srv/oscied"),
        (" /srv//oscied/ ", "/srv/oscied"),
        ("/var/lib/oscied", "/var/lib/oscied"),
        ("/etcetera", "/etcetera"),
    ],
)
def test_validate_path(value, expected):
    assert nfs.validate_path(value) == expected


@pytest.mark.parametrize(
    "value, message",
    [
        ("relative", "path must be an absolute directory, got 'relative'"),
        ("x" * 60, "got '" + "x" * 37 + "...'"),
        ("/srv/o'q", "may hold only"),
        ("/srv/%s", "may hold only"),
        ("/srv/a\nb", "may hold only"),
        ("/srv/./x", ". or .. segments"),
        ("//", "path may not be /"),
        ("/usr/local/oscied", "path may not be in /usr"),
        ("/proc", "path may not be in /proc"),
        ("/var/lib/juju/x", "path may not be in /var/lib/juju"),
    ],
)
def test_validate_path_refuses(value, message):
    with pytest.raises(ValueError) as err:
        nfs.validate_path(value)
    assert message in str(err.value)


def test_parse_clients():
    assert nfs.parse_clients("") == []
    assert nfs.parse_clients(" 10.0.0.5/24,10.0.0.0/24  fd00::1/64, Host-1.lan.,10.2.3.4") == [
        "10.0.0.0/24",
        "fd00::/64",
        "host-1.lan.",
        "10.2.3.4/32",
    ]


@pytest.mark.parametrize("entry", ["*", "10.0.0.0/40", "-x", "a_b", "1.2.3.400", "x(rw)", "@g"])
def test_parse_clients_refuses(entry):
    with pytest.raises(ValueError, match="is not a CIDR, an IP address or a host name"):
        nfs.parse_clients(f"10.0.0.0/24,{entry}")


def test_render_exports():
    text = nfs.render_exports("/srv/oscied", ["10.0.0.0/24", "nas"])
    assert text.splitlines()[1] == (
        "/srv/oscied 10.0.0.0/24(rw,sync,no_subtree_check,root_squash,anonuid=990,anongid=990) "
        "nas(rw,sync,no_subtree_check,root_squash,anonuid=990,anongid=990)"
    )
    with pytest.raises(ValueError):
        nfs.render_exports("/srv/oscied", [])


def test_apply_and_remove_exports(host, tmp_path):
    assert nfs.apply_exports("/srv/oscied", ["10.0.0.0/24"]) is True
    assert nfs.apply_exports("/srv/oscied", ["10.0.0.0/24"]) is False
    assert host.reloads == 1
    exports = tmp_path / nfs.EXPORTS_FILE.lstrip("/")
    assert stat.S_IMODE(exports.stat().st_mode) == 0o644
    assert nfs.apply_exports("/srv/oscied", ["10.0.0.0/16"]) is True
    assert host.reloads == 2
    assert nfs.remove_exports() is True
    assert nfs.remove_exports() is False
    assert host.reloads == 3
    assert not exports.exists()


def test_exportfs_failure_is_a_host_error(host):
    host.exportfs_error = "exportfs: bad\nmore"
    with pytest.raises(nfs.HostError, match="^exportfs -ra failed: exportfs: bad$"):
        nfs.apply_exports("/srv/oscied", ["10.0.0.0/24"])


def test_ensure_export_dir(host, tmp_path):
    nfs.ensure_export_dir("/srv/oscied")
    directory = tmp_path / "srv/oscied"
    assert stat.S_IMODE(directory.stat().st_mode) == 0o750
    assert host.chowns == [(str(directory), 990, 990)]


def test_install_only_what_is_missing(host):
    nfs.install()
    assert host.packages == {"nfs-kernel-server"}
    host.apt_error = RuntimeError("should not be called")
    nfs.install()


def test_install_failure_is_a_host_error(host):
    host.apt_error = subprocess.CalledProcessError(100, ["apt-get"])
    with pytest.raises(nfs.HostError, match="failed to install nfs-kernel-server"):
        nfs.install()


def test_start_server(host):
    assert nfs.start_server() is True
    host.server_active = False
    host.server_broken = True
    assert nfs.start_server() is False


@pytest.mark.parametrize(
    "returncode, stdout, expected",
    [(0, "lxc\n", "lxc"), (0, "docker\n", "docker"), (1, "none\n", ""), (0, "none\n", "")],
)
def test_host_container_reads_systemd_detect_virt(monkeypatch, returncode, stdout, expected):
    seen = []

    def run(args, **kwargs):
        seen.append(args)
        return subprocess.CompletedProcess(args, returncode, stdout=stdout, stderr="")

    monkeypatch.setattr(nfs.subprocess, "run", run)
    assert nfs.Host().container() == expected
    assert seen == [["/usr/bin/systemd-detect-virt", "--container"]]
