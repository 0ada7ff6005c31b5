"""A real ``dagster dev`` (webserver + daemon) loads the code location, binds to loopback only,
and its daemon runs the codec sensor, which fills the codec partitions from the registry."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from mpq_assets.codecs import codec_names
from mpq_assets.defs.sensors import not_ready_reason
from mpq_assets.settings import REPO_ROOT


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def graphql(port: int, query: str) -> dict:
    req = urllib.request.Request(f"http://127.0.0.1:{port}/graphql", data=json.dumps({"query": query}).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


def wait_for(predicate, timeout: float, what: str):  # noqa: ANN001, ANN201
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:  # not up yet
            last = exc
        time.sleep(0.5)
    raise TimeoutError(f"{what} not reached in {timeout}s (last error: {last})")


@pytest.fixture()
def dagster_dev(tmp_path: Path):
    port = free_port()
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    env = dict(os.environ, DAGSTER_HOME=str(home), MPQ_HOME=str(tmp_path / "mpq"))
    log = (tmp_path / "dagster_dev.log").open("w")
    proc = subprocess.Popen([str(Path(sys.executable).with_name("dagster")), "dev", "-w", "workspace.yaml",
                             "-p", str(port)], cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        yield port, home, proc
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


def test_dagster_dev_loads_binds_loopback_and_sensor_adds_codecs(dagster_dev) -> None:
    port, home, proc = dagster_dev
    wait_for(lambda: urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=2).status == 200,
             120, "webserver up")
    entries = wait_for(lambda: [e for e in graphql(port, """{ workspaceOrError { ... on Workspace {
        locationEntries { name loadStatus locationOrLoadError { __typename ... on PythonError { message } } } } } }""")
        ["data"]["workspaceOrError"]["locationEntries"] if e["loadStatus"] == "LOADED"], 120, "location loaded")
    assert entries[0]["name"] == "mpq_assets"
    assert entries[0]["locationOrLoadError"]["__typename"] == "RepositoryLocation"
    # the UI listens on loopback only: no other local address answers
    out = subprocess.run(["ss", "-ltnH", f"sport = :{port}"], capture_output=True, text=True).stdout
    if out.strip():  # ss is present
        assert all(line.split()[3].startswith(("127.0.0.1:", "[::1]:")) for line in out.strip().splitlines()), out
    env = dict(os.environ, DAGSTER_HOME=str(home))
    probe = ("from dagster import DagsterInstance; import json; i = DagsterInstance.get(); "
             "print(json.dumps({n: sorted(i.get_dynamic_partitions(n)) for n in ('image_codecs', 'audio_codecs')}))")

    def partitions() -> dict | None:
        got = json.loads(subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True,
                                        check=True).stdout)
        return got if got["image_codecs"] and got["audio_codecs"] else None

    got = wait_for(partitions, 120, "codec partitions added by the sensor")
    ready = {m: [c for c in codec_names(m) if not_ready_reason(c) is None] for m in ("image", "audio")}
    assert got == {"image_codecs": ready["image"], "audio_codecs": ready["audio"]}
    assert proc.poll() is None
