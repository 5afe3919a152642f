# Copyright 2026 OSCIED contributors.
# Licensed under the Apache License, Version 2.0.

"""The workload module: config checks, the env, and create_user against a real HTTP server."""

import base64
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

import orchestra

DEFAULTS = {
    "port": 5000,
    "log-format": "human",
    "verbose": False,
    "task-lease-secs": 30,
    "task-max-attempts": 3,
    "max-upload-bytes": "16GiB",
    "mongodb-uri": "",
    "amqp-uri": "",
    "amqp-vhost": "oscied",
    "storage-uri": "",
}


@pytest.mark.parametrize(
    "text, expected",
    [("1048576", 1 << 20), ("500M", 500 << 20), ("2GiB", 2 << 30), ("16gb", 16 << 30), ("7", 7)],
)
def test_sizes_as_the_binary_takes_them(text, expected):
    assert orchestra.parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "G", "1.5G", "12 parsecs", "-1", "99999999999T"])
def test_sizes_the_binary_refuses(text):
    with pytest.raises(ValueError):
        orchestra.parse_size(text)


def test_defaults_validate_and_render():
    settings = orchestra.validate(DEFAULTS)
    env = orchestra.environment(
        settings,
        mongodb_uri="mongodb://m/oscied",
        amqp_uri="amqp://a/oscied",
        storage_root="/srv/oscied",
        root_secret="r" * 20,
        node_secret="n" * 20,
    )
    assert env["OSCIED_LISTEN"] == "0.0.0.0:5000"
    assert "RUST_LOG" not in env and "OSCIED_ROTATE_ROOT_SECRET" not in env
    assert "OSCIED_DATA_DIR" not in env  # the unit file sets it


def test_booleans_are_not_whole_numbers():
    with pytest.raises(orchestra.ConfigError, match="port must be a whole number"):
        orchestra.validate({**DEFAULTS, "port": True})


def test_secrets_fit_the_env_file():
    assert orchestra.check_secret("x", "a" * 16) == "a" * 16
    for bad in ("a" * 15, "a" * 1025, "a" * 15 + "\n", "tab\there-and-long-enough"):
        with pytest.raises(orchestra.ConfigError):
            orchestra.check_secret("x", bad)
    assert orchestra.new_secret() != orchestra.new_secret()


# --- create_user against a real server ---------------------------------------------------------


class Api(BaseHTTPRequestHandler):
    """A stand-in for POST /api/v1/users: root:<secret> only, 409 for a known mail."""

    root = "the-root-secret-of-tests"
    mails: set = set()

    def do_POST(self):  # noqa: N802 (http.server's name)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        expected = "Basic " + base64.b64encode(f"root:{self.root}".encode()).decode()
        if self.path != "/api/v1/users":
            return self._answer(404, {"error": {"code": "not_found", "message": "no route"}})
        if self.headers["Authorization"] != expected:
            return self._answer(401, {"error": {"code": "unauthorized", "message": "who?"}})
        if body["mail"] in self.mails:
            return self._answer(409, {"error": {"code": "conflict", "message": "mail taken"}})
        self.mails.add(body["mail"])
        name = f"{body['first_name']} {body['last_name']}"
        self._answer(201, {"id": "u-1", "mail": body["mail"], "name": name})

    def _answer(self, status, data):
        raw = json.dumps(data).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def log_message(self, *args):
        pass


@pytest.fixture
def api():
    Api.mails = set()
    server = ThreadingHTTPServer(("127.0.0.1", 0), Api)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def test_create_user_over_http(api, monkeypatch):
    # A proxy in the hook's environment must not catch a call to 127.0.0.1.
    monkeypatch.setenv("http_proxy", "http://192.0.2.1:3128")
    user = orchestra.create_user(api, Api.root, mail=" ada@example.com ", admin=True)
    assert (user.id, user.mail, user.name) == ("u-1", "ada@example.com", "ada example.com")
    assert len(user.secret) >= 32

    with pytest.raises(orchestra.ApiError, match="answered 409: mail taken"):
        orchestra.create_user(api, Api.root, mail="ada@example.com")
    with pytest.raises(orchestra.ApiError, match="answered 401: who"):
        orchestra.create_user(api, "wrong-root-secret-here", mail="bob@example.com")


def test_create_user_refuses_a_mail_without_a_domain(api):
    with pytest.raises(orchestra.ApiError, match="mail must look like name@domain"):
        orchestra.create_user(api, Api.root, mail="ada")


def test_create_user_on_a_closed_port():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Api)
    port = server.server_address[1]
    server.server_close()
    with pytest.raises(orchestra.ApiError, match=f"127.0.0.1:{port} is not answering"):
        orchestra.create_user(port, "x" * 20, mail="ada@example.com", timeout=5)
