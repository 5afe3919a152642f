# Copyright 2026 OSCIED contributors.
# Licensed under the Apache License, Version 2.0.

"""The files the charms render run the real OSCIED binaries: no mock of the workload.

Each of the orchestra, transform and publisher charms runs as its real code under
ops.testing (render_charm.py, one process per charm) on a "machine" of its own: a temp dir
that is its `OSCIED_CHARM_ROOT`. The relations carry what the other applications would
write: MongoDB's credentials (NX-27017 on loopback), RabbitMQ's hostname and password (the
user and vhost the charm asks for are then created with rabbitmqctl, as rabbitmq-server
does), and for the workers what the orchestra run itself published (API URLs, the node
secret it created and granted). The only fake is the host seam `service.system` (systemd,
apt, users).

Then this test plays systemd: it reads the rendered unit file (ExecStart, Environment=,
EnvironmentFile=, StateDirectory= with `%S`) and env file, and starts each binary the charm
installed with exactly that environment plus what systemd itself sets (PATH, LANG, HOME,
USER, LOGNAME, INVOCATION_ID, STATE_DIRECTORY). What it does not play: User= (the processes
run as the caller), the sandboxing directives and RequiresMountsFor= (the storage is a
local directory).

Through the real HTTP API: a user, an upload, the transform unit registered in GET /units,
a transform task to SUCCESS with an output of the right height, its publication to SUCCESS
and the publisher serving the stored bytes.

Needs NX-27017, RabbitMQ on 127.0.0.1:5672 with rabbitmqctl, ffmpeg, and the three debug
binaries (tests/tests/charms.rs passes them); a missing one fails saying how to get it.
"""

from __future__ import annotations

import base64
import contextlib
import filecmp
import json
import os
import random
import re
import shlex
import shutil
import signal
import socket
import string
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
HELPER = Path(__file__).with_name("render_charm.py")
LOOPBACK = "127.0.0.1"
# systemd's default PATH for services.
SYSTEMD_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin"
BUILD = "cargo build -p orchestra -p worker-transform -p worker-publisher"
BINARIES = {
    "orchestra": "OSCIED_ORCHESTRA_BIN",
    "worker-transform": "OSCIED_WORKER_TRANSFORM_BIN",
    "worker-publisher": "OSCIED_WORKER_PUBLISHER_BIN",
}
# Debug binaries on a 2-core machine: generous, each wait says what it waited for.
START_TIMEOUT = 60
TASK_TIMEOUT = 300
STOP_TIMEOUT = 20


# -- tools ------------------------------------------------------------------------------------


def _binary(name: str) -> Path:
    var = BINARIES[name]
    given = os.environ.get(var)
    path = Path(given) if given else REPO / "target" / "debug" / name
    if not path.is_file():
        pytest.fail(
            f"{path} not found: set {var} to the {name} binary, or build it with `{BUILD}` "
            f"in {REPO}"
        )
    return path


def _nx() -> Path:
    given = os.environ.get("OSCIED_NX27017")
    for path in (given, REPO / ".venv/bin/nx-27017", shutil.which("nx-27017")):
        if path and Path(path).is_file():
            return Path(path)
    pytest.fail(
        "nx-27017 not found: set OSCIED_NX27017 to its path, or install it with "
        f"`python3 -m venv .venv && .venv/bin/pip install nx-27017==0.8.1` in {REPO}"
    )


def _tool(name: str, how: str) -> str:
    found = shutil.which(name, path=SYSTEMD_PATH) or shutil.which(name)
    if found is None:
        pytest.fail(f"{name} not found: {how}")
    return found


@pytest.fixture
def tools() -> dict[str, Path | str]:
    found: dict[str, Path | str] = {name: _binary(name) for name in BINARIES}
    found["nx"] = _nx()
    found["rabbitmqctl"] = _tool(
        "rabbitmqctl", "install RabbitMQ (`apt-get install rabbitmq-server`), listening on 5672"
    )
    for name in ("ffmpeg", "ffprobe"):
        # The units run ffmpeg from systemd's PATH.
        if shutil.which(name, path=SYSTEMD_PATH) is None:
            pytest.fail(f"{name} not on {SYSTEMD_PATH}: `apt-get install ffmpeg`")
        found[name] = shutil.which(name, path=SYSTEMD_PATH)
    return found


def free_port() -> int:
    # The services listen on 0.0.0.0 (as rendered): find a port free there.
    with socket.socket() as s:
        s.bind(("0.0.0.0", 0))
        return s.getsockname()[1]


class Hidden(str):
    """A secret: a plain string whose repr (in pytest's tracebacks) shows nothing of it."""

    def __repr__(self) -> str:
        return "'<secret>'"


def token(n: int = 24) -> Hidden:
    alphabet = string.ascii_letters + string.digits
    return Hidden("".join(random.SystemRandom().choice(alphabet) for _ in range(n)))


def rabbitmqctl(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run(
        ["rabbitmqctl", *args], capture_output=True, text=True, stdin=subprocess.DEVNULL
    )
    if check and done.returncode != 0:
        # The command, without its arguments: add_user's second one is a password.
        pytest.fail(f"rabbitmqctl {args[0]} failed:\n{done.stdout}{done.stderr}")
    return done


# -- systemd's side ---------------------------------------------------------------------------


def parse_unit(text: str) -> dict[str, dict[str, list[str]]]:
    """Parse a unit file: its sections, each key with every value it was given, in order."""
    sections: dict[str, dict[str, list[str]]] = {}
    current = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        assert not line.endswith("\\"), f"line continuations are not handled: {raw!r}"
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        key, sep, value = line.partition("=")
        assert sep and current is not None, f"not a unit file line: {raw!r}"
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def expand(value: str, specifiers: dict[str, str]) -> str:
    """Expand systemd's `%X` specifiers (only the ones given, and `%%`)."""

    def one(match: re.Match) -> str:
        letter = match.group(1)
        if letter == "%":
            return "%"
        assert letter in specifiers, f"specifier %{letter} is not handled here: {value!r}"
        return specifiers[letter]

    return re.sub(r"%(.)", one, value)


def parse_env_file(text: str) -> dict[str, str]:
    """Read an EnvironmentFile as systemd does (comments, quotes and their escapes)."""
    env = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        key, sep, value = line.partition("=")
        key, value = key.strip(), value.lstrip()
        # Only the key in the message: values may be secrets.
        assert sep and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key), f"line {number}: bad key"
        if value[:1] in ('"', "'"):
            quote, out, i, rest = value[0], [], 1, None
            while i < len(value):
                c = value[i]
                if quote == '"' and c == "\\" and i + 1 < len(value):
                    nxt = value[i + 1]
                    out.append(nxt if nxt in '"\\`$' else c + nxt)
                    i += 2
                    continue
                if c == quote:
                    rest = value[i + 1 :]
                    break
                out.append(c)
                i += 1
            assert rest is not None and not rest.strip(), f"line {number} ({key}): bad quoting"
            env[key] = "".join(out)
        else:
            env[key] = value.rstrip()
    return env


@dataclass
class Machine:
    """One charm's unit on a host of its own: `root` is its `/`."""

    charm: str
    app: str
    root: Path
    # It holds the secrets the charm made: never in a traceback.
    result: dict = field(default_factory=dict, repr=False)

    def path(self, absolute: str) -> Path:
        return self.root / absolute.lstrip("/")

    def relation(self, endpoint: str) -> dict:
        (rel,) = [r for r in self.result["relations"] if r["endpoint"] == endpoint]
        return rel

    def service_file(self) -> str:
        return f"/etc/systemd/system/oscied-{self.charm}.service"


@dataclass
class Service:
    """A binary started as systemd would start the machine's rendered unit."""

    name: str
    process: subprocess.Popen
    log: Path
    state_directory: Path
    env: dict[str, str] = field(repr=False)

    def log_tail(self, size: int = 6000) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return text[-size:]

    def check_running(self) -> None:
        code = self.process.poll()
        if code is not None:
            pytest.fail(f"{self.name} exited ({code}):\n{self.log_tail()}")

    def stop(self) -> None:
        # systemctl stop with KillMode=mixed: SIGTERM to the main process (it drains), then
        # SIGKILL to whatever is left in its group.
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                pass
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()


def start_service(machine: Machine, binary: Path, stack: contextlib.ExitStack) -> Service:
    """Start the machine's unit: its ExecStart with exactly the environment systemd gives it."""
    unit = parse_unit(machine.path(machine.service_file()).read_text())
    svc = unit["Service"]
    (state_name,) = svc["StateDirectory"]
    (mode,) = svc.get("StateDirectoryMode", ["0755"])
    # %S is /var/lib for a system service; STATE_DIRECTORY its StateDirectory= under it.
    state_root = machine.path("/var/lib")
    state_directory = state_root / state_name
    state_directory.mkdir(parents=True, exist_ok=True)
    state_directory.chmod(int(mode, 8))
    specifiers = {"S": str(state_root)}
    env = {
        "PATH": SYSTEMD_PATH,
        "LANG": "C.UTF-8",
        # The oscied user's home (charms' ensure_user): there is none.
        "HOME": str(machine.path("/nonexistent")),
        "USER": "oscied",
        "LOGNAME": "oscied",
        "INVOCATION_ID": uuid.uuid4().hex,
        "STATE_DIRECTORY": str(state_directory),
    }
    for value in svc.get("Environment", []):
        for word in shlex.split(value):
            key, sep, val = word.partition("=")
            assert sep, f"Environment={value!r}"
            env[key] = expand(val, specifiers)
    # EnvironmentFile= settings override Environment= ones (systemd.exec(5)).
    for value in svc.get("EnvironmentFile", []):
        optional = value.startswith("-")
        path = machine.path(expand(value.removeprefix("-"), specifiers))
        if optional and not path.exists():
            continue
        env.update(parse_env_file(path.read_text()))
    (exec_start,) = svc["ExecStart"]
    assert exec_start[:1] not in "-@+!:", f"ExecStart prefixes are not handled: {exec_start!r}"
    argv = [expand(word, specifiers) for word in shlex.split(exec_start)]
    # The binary the charm installed from its resource, at ExecStart's path on this machine.
    executable = machine.path(argv[0])
    assert executable.is_file() and os.access(executable, os.X_OK), f"{argv[0]} not installed"
    # filecmp, not ==: a failing == would print both binaries.
    assert filecmp.cmp(executable, binary, shallow=False), f"{argv[0]} is not the resource"
    log = machine.root / "journal.log"
    with log.open("ab") as out:
        process = subprocess.Popen(
            [str(executable), *argv[1:]],
            env=env,
            # systemd's default working directory: the machine's /.
            cwd=machine.root,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    service = Service(machine.charm, process, log, state_directory, env)
    stack.callback(service.stop)
    return service


# -- the charms -------------------------------------------------------------------------------


def render(machine: Machine, spec: dict) -> dict:
    """Run the charm (render_charm.py) on its machine; its result."""
    spec_path = machine.root.parent / f"{machine.charm}-spec.json"
    result_path = machine.root.parent / f"{machine.charm}-result.json"
    spec_path.write_text(json.dumps(spec))
    env = dict(os.environ, OSCIED_CHARM_ROOT=str(machine.root), PYTHONDONTWRITEBYTECODE="1")
    done = subprocess.run(
        [sys.executable, str(HELPER), machine.charm, str(spec_path), str(result_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if done.returncode != 0:
        pytest.fail(f"the {machine.charm} charm failed:\n{done.stdout}\n{done.stderr}")
    machine.result = json.loads(result_path.read_text())
    return machine.result


def amqp_answer(password: str) -> dict:
    # rabbitmq-server answers in its unit bag.
    return {
        "endpoint": "amqp",
        "remote_app": "rabbitmq",
        "remote_units_data": {"0": {"hostname": LOOPBACK, "password": password}},
    }


def started(machine: Machine) -> None:
    """Check the charm ended Active and asked systemd to enable and start its service."""
    unit = f"oscied-{machine.charm}.service"
    status = machine.result["status"]
    assert status["name"] == "active", (machine.charm, machine.result["hooks"])
    calls = machine.result["calls"]
    assert ["enable", unit] in calls, calls
    assert any(c[0] in ("start", "restart") and c[1:] == [unit] for c in calls), calls


# -- the API ----------------------------------------------------------------------------------


class Api:
    def __init__(self, base: str, user: str | None = None, secret: str | None = None):
        self.base = base
        self.auth = None
        if user is not None:
            pair = f"{user}:{secret}".encode()
            self.auth = "Basic " + base64.b64encode(pair).decode()
        # Straight to loopback, never through a proxy the caller's environment names.
        self.opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def call(self, method: str, path: str, body=None, headers=None) -> tuple[int, bytes]:
        headers = dict(headers or {})
        if self.auth:
            headers["Authorization"] = self.auth
        if body is not None and not isinstance(body, bytes):
            body = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        request = urllib.request.Request(
            self.base + path, data=body, method=method, headers=headers
        )
        try:
            with self.opener.open(request, timeout=30) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def json(self, method: str, path: str, body=None, expect=(200,), headers=None):
        status, data = self.call(method, path, body, headers)
        assert status in expect, f"{method} {path}: {status} {data[:500]!r}"
        return json.loads(data)

    def get(self, path: str):
        return self.json("GET", path)


def multipart(fields: dict[str, str], file_field: str, path: Path) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    parts = []
    for name, value in fields.items():
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'
            f"{value}\r\n".encode()
        )
    parts.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{file_field}"; '
        f'filename="{path.name}"\r\nContent-Type: video/mp4\r\n\r\n'.encode()
        + path.read_bytes()
        + b"\r\n"
    )
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def wait_for(what: str, check, timeout: float, services=(), every: float = 0.5):
    """`check()` until it returns something truthy; fails naming `what` (and a dead service)."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        for service in services:
            service.check_running()
        try:
            last = check()
        except (OSError, AssertionError) as e:
            last = e
        else:
            if last:
                return last
        time.sleep(every)
    pytest.fail(f"{what}: not within {timeout} s (last: {last!r})")


def wait_healthy(url: str, service: Service) -> None:
    def healthy():
        status, _ = Api(url).call("GET", "")
        return status == 200

    wait_for(f"{url} answering 200", healthy, START_TIMEOUT, [service])


def height_of(ffprobe: str, path: Path) -> int:
    out = subprocess.run(
        [ffprobe, "-v", "error", "-select_streams", "v:0", "-show_entries", "stream=height"]
        + ["-of", "csv=p=0", str(path)],
        capture_output=True,
        text=True,
        check=True,
    )
    return int(out.stdout.strip())


def finished(api: Api, path: str):
    def done():
        task = api.get(path)
        if task["status"] in ("FAILURE", "REVOKED"):
            pytest.fail(f"{path} ended {task['status']}: {task.get('error')}")
        return task if task["status"] == "SUCCESS" else None

    return done


# -- the test ---------------------------------------------------------------------------------


def test_the_charms_rendered_units_run_the_real_binaries(tools):
    with contextlib.ExitStack() as stack:
        tmp = Path(tempfile.mkdtemp(prefix="oscied-charms-"))
        stack.callback(shutil.rmtree, tmp, ignore_errors=True)
        services: list[Service] = []
        try:
            run(tools, tmp, stack, services)
        except BaseException:
            for service in services:
                print(f"--- {service.name} log (tail) ---\n{service.log_tail()}")
            raise


def start_nx(nx: Path, tmp: Path, stack: contextlib.ExitStack) -> int:
    for _ in range(3):
        port = free_port()
        data = tmp / "nx" / str(port)
        data.mkdir(parents=True)
        log = tmp / "nx" / f"{port}.console"
        with log.open("wb") as out:
            process = subprocess.Popen(
                [str(nx), "--host", LOOPBACK, "-p", str(port), "--data-dir", str(data)]
                + ["--log-file", str(data / "nx.log"), "--pid-file", str(data / "nx.pid")],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        stack.callback(lambda p=process: (p.kill(), p.wait()))
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and process.poll() is None:
            with contextlib.suppress(OSError), socket.create_connection((LOOPBACK, port), 0.2):
                return port
            time.sleep(0.05)
    pytest.fail(f"nx-27017 did not start:\n{log.read_text(errors='replace')[-3000:]}")


def run(tools: dict, tmp: Path, stack: contextlib.ExitStack, services: list[Service]) -> None:
    tag = "".join(random.SystemRandom().choice(string.ascii_lowercase) for _ in range(8))
    vhost = f"oscied-charms-{tag}"
    apps = {name: f"{name}-{tag}" for name in ("orchestra", "transform", "publisher")}
    machines = {name: Machine(name, app, tmp / f"{name}-machine") for name, app in apps.items()}
    for machine in machines.values():
        machine.root.mkdir()
    # NFS cannot be mounted here (no NFS server, and mounting needs privileges a test should
    # not take): the storage is the storage-uri option's file:// form, a directory every
    # machine sees at the same path, as a mount would be.
    storage = tmp / "storage"
    storage.mkdir()
    storage_uri = f"file://{storage}"
    for name in ("transform", "publisher"):
        # What a worker's charm checks for a file:// tree: the directory on its machine.
        seen = machines[name].path(str(storage))
        seen.parent.mkdir(parents=True)
        seen.symlink_to(storage)
    nx_port = start_nx(tools["nx"], tmp, stack)
    passwords = {name: token() for name in apps}

    orchestra, transform, publisher = (
        machines[n] for n in ("orchestra", "transform", "publisher")
    )
    api_port, publisher_port = free_port(), free_port()
    render_orchestra(orchestra, apps, tools, vhost, storage_uri, nx_port, api_port, passwords)
    node = node_relation(orchestra, "transform", apps["transform"])
    render_worker(
        transform, "TransformCharm", tools, vhost, storage_uri, orchestra, node, passwords
    )
    assert transform.result["status"]["message"] == "queues transform, concurrency 1"
    node = node_relation(orchestra, "publisher", apps["publisher"])
    render_worker(
        publisher,
        "PublisherCharm",
        tools,
        vhost,
        storage_uri,
        orchestra,
        node,
        passwords,
        config={"port": publisher_port},
    )
    public_url = f"http://{LOOPBACK}:{publisher_port}"
    assert publisher.result["status"]["message"] == f"serving {public_url}, queues publisher"

    for machine in machines.values():
        check_sandbox_paths(machine, storage)
    broker_users(machines, passwords, vhost, stack)

    orchestra_service = start_service(orchestra, tools["orchestra"], stack)
    services.append(orchestra_service)
    api_url = f"http://{LOOPBACK}:{api_port}/api/v1"
    wait_healthy(f"{api_url}/health", orchestra_service)
    transform_service = start_service(transform, tools["worker-transform"], stack)
    services.append(transform_service)
    publisher_service = start_service(publisher, tools["worker-publisher"], stack)
    services.append(publisher_service)
    wait_healthy(f"{public_url}/health", publisher_service)

    exercise(orchestra, api_url, public_url, tools, services, tmp)


def render_orchestra(machine, apps, tools, vhost, storage_uri, nx_port, port, passwords):
    db_secret = {
        "id": "secret:" + str(token(20)).lower(),
        # NX-27017 has no accounts: the URI carries none; the other keys are MongoDB's.
        "content": {
            "username": "relation-1",
            "password": token(),
            "uris": f"mongodb://{LOOPBACK}:{nx_port}/oscied",
        },
    }
    spec = {
        "charm_class": "OrchestraCharm",
        "app": apps["orchestra"],
        "leader": True,
        "address": LOOPBACK,
        "bindings": ["orchestra-peers", "database", "amqp", "storage", "transform", "publisher"],
        "config": {"port": port, "storage-uri": storage_uri, "amqp-vhost": vhost},
        "resource": {"name": "orchestra-binary", "path": str(tools["orchestra"])},
        "relations": [
            {
                "endpoint": "database",
                "remote_app": "mongodb",
                "remote_app_data": {
                    "database": "oscied",
                    "endpoints": f"{LOOPBACK}:{nx_port}",
                    "secret-user": db_secret["id"],
                },
                "remote_units_data": {"0": {}},
            },
            amqp_answer(passwords["orchestra"]),
            {"endpoint": "orchestra-peers", "peer": True},
            # The workers as they join, before they register anything.
            *(
                {"endpoint": kind, "remote_app": apps[kind], "remote_units_data": {"0": {}}}
                for kind in ("transform", "publisher")
            ),
        ],
        "secrets": [db_secret],
        "actions": ["get-root-secret"],
    }
    result = render(machine, spec)
    started(machine)
    assert result["status"]["message"] == (
        f"API on :{port}, 1 orchestra, 1 transform and 1 publisher units"
    )
    assert machine.relation("orchestra-peers")["local_unit_data"]["api-url"] == (
        f"http://{LOOPBACK}:{port}"
    )


def node_relation(orchestra: Machine, endpoint: str, worker_app: str) -> dict:
    """Return the worker's orchestra relation as the orchestra run left it, and the secret."""
    rel = orchestra.relation(endpoint)
    assert rel["remote_app"] == worker_app
    bag = rel["local_app_data"]
    (secret,) = [s for s in orchestra.result["secrets"] if s["id"] == bag["node-secret-id"]]
    # The worker reads it because the orchestra granted it to this relation.
    assert secret["grants"].get(str(rel["id"])) == [worker_app], secret["grants"]
    return {
        "relation": {
            "endpoint": "orchestra",
            "remote_app": orchestra.app,
            "remote_app_data": bag,
            "remote_units_data": {"0": rel["local_unit_data"]},
        },
        "secret": {
            "id": secret["id"],
            "content": {k: Hidden(v) for k, v in secret["content"].items()},
        },
    }


def render_worker(
    machine, charm_class, tools, vhost, storage_uri, orchestra, node, passwords, config=None
):
    binary = {"transform": "worker-transform", "publisher": "worker-publisher"}[machine.charm]
    spec = {
        "charm_class": charm_class,
        "app": machine.app,
        "leader": True,
        "address": LOOPBACK,
        "bindings": ["orchestra", "amqp", "storage"],
        "config": {"storage-uri": storage_uri, "amqp-vhost": vhost, **(config or {})},
        "resource": {"name": f"{binary}-binary", "path": str(tools[binary])},
        "relations": [node["relation"], amqp_answer(passwords[machine.charm])],
        "secrets": [node["secret"]],
    }
    render(machine, spec)
    started(machine)
    facts = machine.relation("orchestra")["local_unit_data"]
    assert facts["queues"] == machine.charm and facts["concurrency"] == "1", facts


def check_sandbox_paths(machine: Machine, storage: Path) -> None:
    """Check the unit waits for the storage tree, and may write it unless it is the publisher."""
    svc_unit = parse_unit(machine.path(machine.service_file()).read_text())
    assert svc_unit["Unit"]["RequiresMountsFor"] == [str(storage)], svc_unit["Unit"]
    writes = svc_unit["Service"].get("ReadWritePaths", [])
    assert writes == ([] if machine.charm == "publisher" else [str(storage)]), writes


def broker_users(machines: dict, passwords: dict, vhost: str, stack) -> None:
    """Do what rabbitmq-server does with each charm's request: its user, on its vhost."""
    requests = {name: m.relation("amqp")["local_unit_data"] for name, m in machines.items()}
    for name, request in requests.items():
        assert request["username"] == machines[name].app, request
        assert request["vhost"] == vhost, request
    rabbitmqctl("add_vhost", vhost)
    stack.callback(rabbitmqctl, "delete_vhost", vhost, check=False)
    for name, request in requests.items():
        user = request["username"]
        rabbitmqctl("add_user", user, passwords[name])
        stack.callback(rabbitmqctl, "delete_user", user, check=False)
        rabbitmqctl("set_permissions", "-p", vhost, user, ".*", ".*", ".*")


def exercise(orchestra: Machine, api_url, public_url, tools, services, tmp: Path) -> None:
    orchestra_service, transform_service, _ = services
    env = parse_env_file(orchestra.path("/etc/oscied/orchestra.env").read_text())
    root_secret = orchestra.result["actions"]["get-root-secret"]["results"]["root-secret"]
    if env["OSCIED_ROOT_SECRET"] != root_secret:
        pytest.fail("get-root-secret does not answer the secret the env file holds")
    root = Api(api_url, "root", root_secret)
    mail, secret = "ada@example.com", token()
    root.json(
        "POST",
        "/users",
        {"first_name": "Ada", "last_name": "Lovelace", "mail": mail, "secret": secret},
        expect=(201,),
    )
    ada = Api(api_url, mail, secret)

    clip = tmp / "clip.mp4"
    subprocess.run(
        [tools["ffmpeg"], "-nostdin", "-v", "error", "-y"]
        + ["-f", "lavfi", "-i", "testsrc=size=320x180:rate=25:duration=2"]
        + ["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000:duration=2"]
        + ["-ac", "2", "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"]
        + ["-c:a", "aac", "-shortest", str(clip)],
        check=True,
    )
    body, content_type = multipart({"title": "Charm clip"}, "file", clip)
    media = ada.json(
        "POST", "/medias", body, expect=(201,), headers={"Content-Type": content_type}
    )
    assert media["status"] == "READY", media

    # The transform unit registered, with the id it keeps in the STATE_DIRECTORY systemd gives.
    unit_id = (transform_service.state_directory / "unit_id").read_text().strip()

    def registered():
        units = {u["id"]: u for u in ada.get("/units")["items"]}
        return units.get(unit_id, {}).get("online") and units[unit_id]

    unit = wait_for("the transform unit in GET /units", registered, START_TIMEOUT, services)
    assert unit["kind"] == "transform", unit
    publisher_service = services[2]
    www_root = Path(publisher_service.env["OSCIED_WWW_ROOT"])
    assert www_root.is_relative_to(publisher_service.state_directory), www_root
    publisher_id = (www_root / ".oscied" / "unit_id").read_text().strip()

    (profile,) = ada.get("/transform/profiles?q=force%20720p")["items"]
    task = ada.json(
        "POST",
        "/transform/tasks",
        {
            "media_in_id": media["id"],
            "profile_id": profile["id"],
            "filename": "clip-720p.mp4",
            "metadata": {"title": "Charm clip, 720p"},
        },
        expect=(201,),
    )
    task = wait_for(
        "the transform task SUCCESS",
        finished(ada, f"/transform/tasks/{task['id']}"),
        TASK_TIMEOUT,
        services,
        every=1,
    )
    assert task["unit_id"] == unit_id, task
    out = ada.get(f"/medias/{task['media_out_id']}")
    assert out["status"] == "READY", out
    assert out["probe"]["streams"][0]["height"] == 720, out["probe"]
    status, stored = ada.call("GET", f"/medias/{out['id']}/download")
    assert status == 200
    downloaded = tmp / "out.mp4"
    downloaded.write_bytes(stored)
    assert height_of(tools["ffprobe"], downloaded) == 720

    publication = ada.json("POST", "/publisher/tasks", {"media_id": out["id"]}, expect=(201,))
    publication = wait_for(
        "the publication SUCCESS",
        finished(ada, f"/publisher/tasks/{publication['id']}"),
        TASK_TIMEOUT,
        services,
    )
    assert publication["unit_id"] == publisher_id, publication
    uri = publication["publish_uri"]
    assert uri.startswith(public_url + "/"), uri
    status, played = Api(uri).call("GET", "")
    assert status == 200, status
    assert played == stored, "the publisher serves other bytes than the stored media"
    orchestra_service.check_running()
