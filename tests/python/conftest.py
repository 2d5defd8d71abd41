"""Starts a real Berth (apiserver + one hollow node agent) for the SDK tests, on free loopback ports in
a temp dir, and stops it afterwards. The binaries come from `cargo build` (target/debug)."""

import json
import os
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(os.environ.get("BERTH_BIN_DIR", ROOT / "target" / "debug"))
SUBSCRIPTION = "00000000-0000-0000-0000-0000000000c1"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Berth:
    def __init__(self, root: Path):
        self.root = root
        self.https_port = free_port()
        self.node_port = free_port()
        self.endpoint = f"https://localhost:{self.https_port}"
        self.data = root / "apiserver"
        self.ca_file = str(self.data / "ca.crt")
        self.procs = []

    def start(self):
        log = open(self.root / "apiserver.log", "w")
        self.procs.append(subprocess.Popen(
            [str(BIN / "berth-apiserver"), "--data-dir", str(self.data),
             "--listen", f"127.0.0.1:{self.https_port}", "--node-listen", f"127.0.0.1:{self.node_port}",
             "--dns-listen", "127.0.0.1:0"],
            stdout=log, stderr=subprocess.STDOUT))
        deadline = time.time() + 30
        while not (self.data / "operator.token").exists() or not self._ready():
            if time.time() > deadline or self.procs[0].poll() is not None:
                raise RuntimeError("apiserver did not start: " + (self.root / "apiserver.log").read_text())
            time.sleep(0.1)
        self.operator = (self.data / "operator.token").read_text().strip()
        join = self.call("POST", "/admin/v1/join-tokens", {"uses": 1}, self.operator)["token"]
        agent_log = open(self.root / "agent.log", "w")
        self.procs.append(subprocess.Popen(
            [str(BIN / "berth-node-agent"), "--server", f"https://127.0.0.1:{self.node_port}",
             "--state-dir", str(self.root / "agent"), "--name", "sdk-node", "--runtime", "hollow",
             "--cpu", "4", "--memory", "8", "--join-token", join],
            stdout=agent_log, stderr=subprocess.STDOUT))
        while not any(n["status"] == "Ready" for n in self.call("GET", "/admin/v1/nodes", None, self.operator)["value"]):
            if time.time() > deadline:
                raise RuntimeError("agent did not join: " + (self.root / "agent.log").read_text())
            time.sleep(0.1)
        self.token = self.call("POST", "/admin/v1/tokens", {"subscriptions": [SUBSCRIPTION]}, self.operator)["token"]
        return self

    def _ready(self):
        try:
            ctx = ssl.create_default_context(cafile=self.ca_file)
            with socket.create_connection(("127.0.0.1", self.https_port), timeout=1) as sock:
                with ctx.wrap_socket(sock, server_hostname="localhost"):
                    return True
        except (OSError, ssl.SSLError):
            return False

    def call(self, method, path, body, token):
        ctx = ssl.create_default_context(cafile=self.ca_file)
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.endpoint + path, data=data, method=method,
                                     headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
        with urllib.request.urlopen(req, context=ctx) as resp:
            return json.loads(resp.read() or b"null")

    def stop(self):
        for p in reversed(self.procs):
            p.terminate()
        for p in self.procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()


@pytest.fixture(scope="session")
def berth():
    with tempfile.TemporaryDirectory(prefix="berth-sdk-") as tmp:
        instance = Berth(Path(tmp)).start()
        try:
            yield instance
        finally:
            instance.stop()
