# Copyright 2026 OSCIED contributors.
# Licensed under the Apache License, Version 2.0.

"""Unit tests of the shared lib charms.oscied_orchestra.v0.service (no ops, no systemd)."""

import grp
import pwd
import re
import stat
from pathlib import Path

import pytest
from charms.oscied_orchestra.v0 import service
from oscied_testing import FakeSystem

README = Path(__file__).resolve().parents[4] / "README.md"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# --- render_env -------------------------------------------------------------------------------


def test_render_env_sorts_and_quotes():
    text = service.render_env({"OSCIED_B": "two words", "OSCIED_A": "x", "OSCIED_C": ""})
    assert text == 'OSCIED_A="x"\nOSCIED_B="two words"\nOSCIED_C=""\n'


def test_render_env_escapes_what_systemd_unescapes():
    text = service.render_env({"K": 'a"b\\c$d`e#f'})
    assert text == 'K="a\\"b\\\\c\\$d\\`e#f"\n'


@pytest.mark.parametrize("key", ["", "1ABC", "A-B", "A B", "A=B", "A\nB"])
def test_render_env_rejects_bad_keys(key):
    with pytest.raises(ValueError, match="invalid environment variable name"):
        service.render_env({key: "x"})


@pytest.mark.parametrize("value", ["a\nb", "a\rb", "a\0b"])
def test_render_env_rejects_multiline_values_without_echoing_them(value):
    with pytest.raises(ValueError) as err:
        service.render_env({"OSCIED_NODE_SECRET": "s3cr3t" + value})
    assert "OSCIED_NODE_SECRET must be a single line" in str(err.value)
    assert "s3cr3t" not in str(err.value)


def test_render_env_rejects_non_strings():
    with pytest.raises(ValueError, match="OSCIED_CONCURRENCY must be a string"):
        service.render_env({"OSCIED_CONCURRENCY": 2})


# --- render_unit vs the README ----------------------------------------------------------------


def readme_unit(name: str) -> list[str]:
    """Return the directives of the README's `oscied-<name>.service` block (comments dropped)."""
    text = README.read_text()
    match = re.search(
        rf"`/etc/systemd/system/oscied-{name}\.service`:\n\n```ini\n(.*?)```", text, re.S
    )
    assert match, f"README has no oscied-{name}.service block"
    return [ln for ln in match.group(1).splitlines() if ln and not ln.startswith("#")]


def directives(text: str) -> list[str]:
    return [ln for ln in text.splitlines() if ln and not ln.startswith("#")]


def test_orchestra_unit_is_the_readme_unit():
    text = service.render_unit(
        "orchestra",
        binary="orchestra",
        description="OSCIED orchestra",
        state_directory="oscied",
        environment={"OSCIED_DATA_DIR": "%S/oscied"},
        timeout_stop_secs=30,
    )
    assert directives(text) == readme_unit("orchestra")


def test_transform_unit_is_the_readme_unit():
    text = service.render_unit(
        "transform",
        binary="worker-transform",
        description="OSCIED transform unit",
        timeout_stop_secs=330,
    )
    assert directives(text) == readme_unit("transform")


def test_publisher_unit_is_the_readme_unit_and_cannot_write_storage():
    text = service.render_unit(
        "publisher",
        binary="worker-publisher",
        description="OSCIED publisher unit",
        environment={"OSCIED_WWW_ROOT": "%S/oscied-publisher/www"},
        writes_storage=False,
        timeout_stop_secs=90,
    )
    assert directives(text) == readme_unit("publisher")
    assert "ReadWritePaths" not in text
    assert "RequiresMountsFor=/srv/oscied" in text


def test_unit_follows_a_local_storage_path():
    text = service.render_unit(
        "transform", binary="worker-transform", description="x", storage_path="/mnt/media"
    )
    assert "RequiresMountsFor=/mnt/media\n" in text
    assert "ReadWritePaths=/mnt/media\n" in text


def test_unit_description_percent_is_not_a_specifier():
    text = service.render_unit("transform", binary="worker-transform", description="100%")
    assert "Description=100%%\n" in text


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"binary": "../bin/sh"}, "invalid service or binary name"),
        ({"state_directory": "a/b"}, "invalid service or binary name"),
        ({"description": "a\nExecStartPre=/bin/sh"}, "description must be a single line"),
        ({"storage_path": "relative"}, "must be an absolute path"),
        ({"storage_path": "/srv/a b"}, "must be an absolute path"),
        ({"environment": {"OSCIED_X": "a b"}}, "may not contain spaces"),
        ({"environment": {"OSCIED_X": "a\nb"}}, "OSCIED_X must be a single line"),
        ({"environment": {"bad key": "a"}}, "invalid environment variable name"),
        ({"timeout_stop_secs": 0}, "timeout_stop_secs must be a whole number >= 1"),
    ],
)
def test_render_unit_rejects_what_would_change_the_unit(kwargs, message):
    args = {"binary": "worker-transform", "description": "OSCIED transform unit"} | kwargs
    with pytest.raises(ValueError, match=message):
        service.render_unit("transform", **args)


def test_render_unit_rejects_bad_service_name():
    with pytest.raises(ValueError, match="invalid service or binary name"):
        service.render_unit("Trans form", binary="x", description="x")


# --- paths and root ---------------------------------------------------------------------------


def test_paths_are_under_the_charm_root(fake, tmp_path):
    assert service.root() == tmp_path
    assert service.env_path("transform") == tmp_path / "etc/oscied/transform.env"
    assert service.unit_path("transform") == (
        tmp_path / "etc/systemd/system/oscied-transform.service"
    )
    assert service.binary_path("worker-transform") == tmp_path / "usr/local/bin/worker-transform"
    assert service.unit_name("orchestra") == "oscied-orchestra.service"


def test_root_defaults_to_slash(monkeypatch):
    monkeypatch.delenv("OSCIED_CHARM_ROOT", raising=False)
    assert service.root() == Path("/")


# --- install_binary ---------------------------------------------------------------------------


def test_install_binary_reports_changes_only(fake, tmp_path):
    src = tmp_path / "resource"
    src.write_bytes(b"\x7fELF v1")
    assert service.install_binary(src, "orchestra") is True
    dest = tmp_path / "usr/local/bin/orchestra"
    assert dest.read_bytes() == b"\x7fELF v1"
    assert mode(dest) == 0o755
    assert service.install_binary(src, "orchestra") is False
    src.write_bytes(b"\x7fELF v2")
    assert service.install_binary(src, "orchestra") is True
    assert dest.read_bytes() == b"\x7fELF v2"
    dest.chmod(0o700)
    assert service.install_binary(src, "orchestra") is True
    assert mode(dest) == 0o755
    assert [p.name for p in dest.parent.iterdir()] == ["orchestra"]  # no temp file left


def test_install_binary_rejects_a_path_as_name(fake, tmp_path):
    src = tmp_path / "resource"
    src.write_bytes(b"x")
    with pytest.raises(ValueError):
        service.install_binary(src, "../../etc/passwd")


def test_install_binary_missing_source_raises(fake, tmp_path):
    with pytest.raises(FileNotFoundError):
        service.install_binary(tmp_path / "absent", "orchestra")


# --- apply ------------------------------------------------------------------------------------


def files(env='OSCIED_A="1"\n', unit="[Unit]\n", binary_changed=False):
    return service.ServiceFiles(env=env, unit=unit, binary_changed=binary_changed)


def test_apply_first_time_writes_enables_and_restarts(fake, tmp_path):
    assert service.apply("transform", files()) is True
    env = tmp_path / "etc/oscied/transform.env"
    unit = tmp_path / "etc/systemd/system/oscied-transform.service"
    assert env.read_text() == 'OSCIED_A="1"\n'
    assert mode(env) == 0o600
    assert mode(env.parent) == 0o700
    assert unit.read_text() == "[Unit]\n"
    assert mode(unit) == 0o644
    assert fake.calls == [
        ("daemon-reload",),
        ("enable", "oscied-transform.service"),
        ("restart", "oscied-transform.service"),
    ]


def test_apply_unchanged_and_running_does_nothing(fake):
    service.apply("transform", files())
    fake.calls.clear()
    assert service.apply("transform", files()) is False
    assert fake.calls == [("enable", "oscied-transform.service")]


def test_apply_env_change_restarts_without_daemon_reload(fake):
    service.apply("transform", files())
    fake.calls.clear()
    assert service.apply("transform", files(env='OSCIED_A="2"\n')) is True
    assert fake.calls == [
        ("enable", "oscied-transform.service"),
        ("restart", "oscied-transform.service"),
    ]


def test_apply_unit_change_reloads_and_restarts(fake):
    service.apply("transform", files())
    fake.calls.clear()
    assert service.apply("transform", files(unit="[Unit]\nDescription=x\n")) is True
    assert ("daemon-reload",) in fake.calls
    assert ("restart", "oscied-transform.service") in fake.calls


def test_apply_binary_change_restarts(fake):
    service.apply("transform", files())
    fake.calls.clear()
    assert service.apply("transform", files(binary_changed=True)) is True
    assert ("restart", "oscied-transform.service") in fake.calls


def test_apply_starts_a_stopped_service_without_restart(fake):
    service.apply("transform", files())
    fake.active.clear()
    fake.calls.clear()
    assert service.apply("transform", files()) is True
    assert fake.calls == [
        ("enable", "oscied-transform.service"),
        ("start", "oscied-transform.service"),
    ]


def test_apply_fixes_a_loosened_env_mode(fake, tmp_path):
    service.apply("transform", files())
    env = tmp_path / "etc/oscied/transform.env"
    env.chmod(0o644)
    assert service.apply("transform", files()) is True
    assert mode(env) == 0o600


def test_apply_not_running_stops_and_disables(fake):
    service.apply("transform", files())
    fake.calls.clear()
    assert service.apply("transform", files(env='OSCIED_A="3"\n'), running=False) is False
    assert fake.calls == [
        ("stop", "oscied-transform.service"),
        ("disable", "oscied-transform.service"),
    ]
    assert not service.running("transform")


def test_stop_and_remove(fake, tmp_path):
    service.stop("transform")  # nothing installed: nothing to do
    assert fake.calls == []
    service.apply("transform", files())
    fake.calls.clear()
    service.stop("transform")
    assert fake.calls == [("stop", "oscied-transform.service")]
    service.apply("transform", files())
    fake.calls.clear()
    service.remove("transform")
    assert fake.calls == [
        ("stop", "oscied-transform.service"),
        ("disable", "oscied-transform.service"),
        ("daemon-reload",),
    ]
    assert not (tmp_path / "etc/oscied/transform.env").exists()
    assert not (tmp_path / "etc/systemd/system/oscied-transform.service").exists()
    fake.calls.clear()
    service.remove("transform")  # idempotent
    assert fake.calls == []


def test_the_shared_fake_covers_every_host_call():
    # The fake does not inherit from System: a host call it lacked would fail, not run.
    wanted = {name for name in vars(service.System) if not name.startswith("_")}
    assert wanted, "service.System lost its methods"
    missing = [name for name in wanted if not callable(vars(FakeSystem).get(name))]
    assert not missing, f"oscied_testing.FakeSystem lacks {missing}"


def test_install_packages_goes_through_system(fake):
    service.install_packages("ffmpeg", "nfs-common")
    service.install_packages()
    assert fake.calls == [("apt", "ffmpeg", "nfs-common")]


def test_write_file_reports_changes(tmp_path):
    path = tmp_path / "a/b/file"
    assert service.write_file(path, "x", mode=0o600) is True
    assert service.write_file(path, "x", mode=0o600) is False
    assert service.write_file(path, "y", mode=0o600) is True
    assert path.read_text() == "y"
    assert sorted(p.name for p in path.parent.iterdir()) == ["file"]


# --- the service user (charmlibs-passwd replaced) ---------------------------------------------


class FakePasswd:
    def __init__(self, users=(), groups=()):
        self.users = dict(users)
        self.groups = dict(groups)
        self.added: list[tuple[str, object]] = []

    def user_exists(self, user):
        for name, uid in self.users.items():
            if user in (name, uid):
                return pwd.struct_passwd((name, "x", uid, uid, "", "/", "/bin/false"))
        return None

    def group_exists(self, group):
        for name, gid in self.groups.items():
            if group in (name, gid):
                return grp.struct_group((name, "x", gid, []))
        return None

    def add_group(self, name, system_group=False, gid=None):
        self.added.append(("group", (name, gid, system_group)))
        self.groups[name] = gid

    def add_user(self, name, **kwargs):
        self.added.append(("user", (name, kwargs["uid"], kwargs["primary_group"])))
        self.users[name] = kwargs["uid"]


@pytest.fixture
def fake_passwd(monkeypatch):
    from charmlibs import passwd

    def install(**kwargs):
        fake = FakePasswd(**kwargs)
        for attr in ("user_exists", "group_exists", "add_group", "add_user"):
            monkeypatch.setattr(passwd, attr, getattr(fake, attr))
        return fake

    return install


def test_ensure_user_creates_oscied_990(fake_passwd):
    fake = fake_passwd()
    service.System().ensure_user("oscied", 990, 990)
    assert fake.added == [("group", ("oscied", 990, True)), ("user", ("oscied", 990, "oscied"))]
    fake.added.clear()
    service.System().ensure_user("oscied", 990, 990)
    assert fake.added == []


@pytest.mark.parametrize(
    "users, groups, message",
    [
        ([("postgres", 990)], [("oscied", 990)], "uid 990 is taken by user postgres"),
        ([], [("docker", 990)], "gid 990 is taken by group docker"),
        ([("oscied", 1001)], [("oscied", 990)], "user oscied exists with uid 1001"),
        ([], [("oscied", 1001)], "group oscied exists with gid 1001"),
    ],
)
def test_ensure_user_refuses_clashing_ids(fake_passwd, users, groups, message):
    fake_passwd(users=users, groups=groups)
    with pytest.raises(ValueError, match=message):
        service.System().ensure_user("oscied", 990, 990)


def test_module_ensure_user_uses_the_fixed_ids(fake, monkeypatch):
    seen = []
    monkeypatch.setattr(fake, "ensure_user", lambda *a: seen.append(a), raising=False)
    service.ensure_user()
    assert seen == [("oscied", 990, 990)]


def test_apply_turns_a_refused_start_into_service_error(fake):
    def refuse(unit):
        raise RuntimeError("Job for oscied-transform.service failed")

    fake.restart = refuse
    with pytest.raises(service.ServiceError) as err:
        service.apply("transform", files())
    assert str(err.value) == (
        "oscied-transform.service did not start: see journalctl -u oscied-transform.service"
    )


def test_apply_tightens_an_existing_env_dir(fake, tmp_path):
    (tmp_path / "etc/oscied").mkdir(parents=True, mode=0o755)
    service.apply("transform", files())
    assert mode(tmp_path / "etc/oscied") == 0o700


def test_start_and_restart_reset_the_start_limit_first(monkeypatch):
    seen = []
    monkeypatch.setattr(service.subprocess, "run", lambda args, **kw: seen.append(args))
    from charmlibs import systemd

    monkeypatch.setattr(systemd, "service_start", lambda unit: seen.append(["start", unit]))
    monkeypatch.setattr(systemd, "service_restart", lambda unit: seen.append(["restart", unit]))
    service.System().start("oscied-transform.service")
    service.System().restart("oscied-transform.service")
    assert seen == [
        ["/usr/bin/systemctl", "reset-failed", "oscied-transform.service"],
        ["start", "oscied-transform.service"],
        ["/usr/bin/systemctl", "reset-failed", "oscied-transform.service"],
        ["restart", "oscied-transform.service"],
    ]


def test_service_error_is_a_systemd_error():
    from charmlibs import systemd

    assert issubclass(service.ServiceError, systemd.SystemdError)
