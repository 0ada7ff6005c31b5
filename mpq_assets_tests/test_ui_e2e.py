"""End to end through the UI's own paths.

A real ``dagster dev`` (webserver + daemon) runs on a free loopback port against a temp ``DAGSTER_HOME`` and
``MPQ_HOME``; its code location is a study folder outside the repository (``mpq init``, one ``defs.yaml``
declaring a tiny image experiment through the ``MpqExperiment`` component), loaded as any Dagster components
project is. The test

1. launches ``e2e_tiny/dataset``, then the partition ``20x|jpeg`` of ``compressed`` + ``quality``, exactly as
   the UI does (``ConfigPartitionForAssetJobQuery`` for the partition's tags, then the
   ``LaunchPipelineExecution`` mutation on the implicit asset job), waits for success and finds the rows in
   DuckDB;
2. ``pip install``s the example codec plugin (``jpeg-half``, an ``mpq.codecs`` entry point) into a folder
   on the server's ``PYTHONPATH`` while it runs; the codec sensor adds it as a partition, the automation
   sensor's ``on_missing`` emits ONE backfill for its six ratios, which runs as one run (single-run backfill
   policy); the test waits for every partition and for the ``compressed`` and ``quality`` rows in DuckDB;
3. loads the asset group's lineage page in headless Chromium (Debian's ``chromium``): the DOM must show the
   asset graph's nodes and no error, the screenshot goes to ``.test-artifacts/ui_e2e/``;
4. stops ``dagster dev`` by its process group and checks that none of its processes survive.

Runtime: 3-4 minutes on 2 busy cores, most of it the sensors' 30 s intervals and run-process start-up.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import psutil
import pytest
from PIL import Image

from mpq_assets.codecs import RATIOS
from mpq_assets.defs.partitions import partition_key
from mpq_assets.defs.study import init_study
from mpq_assets.settings import REPO_ROOT
from mpq_assets.store import ResultsStore
from mpq_assets_tests.test_dagster_dev import free_port, wait_for
from mpq_assets_tests.test_study import AUDIO_YAML

pytestmark = pytest.mark.slow

ARTIFACTS = REPO_ROOT / ".test-artifacts" / "ui_e2e"
LOCATION = "e2e"
# no tasks and only PSNR, so every partition costs well under a second; everything else (sensors, automation
# conditions, backfill policy, nightly schedule, resource) is what every deployment gets
STUDY_YAML = """type: mpq_assets.defs.study.MpqExperiment
attributes:
  name: e2e_tiny
  modality: image
  dataset: image_folder
  dataset_args: {{root: {images}}}
  description: a few tiny images written by the end-to-end test
  quality_metrics: [psnr]
"""
REPOSITORY = "__repository__"  # a Definitions object's implicit repository
ASSET_JOB = "__ASSET_JOB"  # the implicit asset job the UI launches materialisations on
EXPERIMENT = "e2e_tiny"
ASSETS = ("dataset", "compressed", "quality", "rate_curves", "report")
PLUGIN = REPO_ROOT / "examples" / "mpq_example_codec"
NEW_CODEC = "jpeg-half"
TERMINAL_RUN = {"SUCCESS", "FAILURE", "CANCELED"}
BACKFILL_FAILED = {"FAILED", "COMPLETED_FAILED", "CANCELED", "CANCELING", "FAILING"}
# What Dagster's UI renders when a page or region fails (ErrorBoundary: "Sorry, graph can't be displayed.",
# NonIdealState titles, the Apollo error toast, the code-location error states)
UI_ERRORS = ("be displayed", "Query Error", "Query error", "GraphQL Error", "Unexpected GraphQL error",
             "An unexpected error", "An error occurred", "Error loading", "failed to load", "Could not load")

# The UI's own operations (dagster-ui: launchpad/ConfigFetch.tsx, runs/RunUtils.tsx), with error branches
# spelled out so a failure says why.
PARTITION_TAGS_QUERY = """
query ConfigPartitionForAssetJobQuery($repositoryName: String!, $repositoryLocationName: String!,
                                      $jobName: String!, $partitionName: String!, $assetKeys: [AssetKeyInput!]!) {
  pipelineOrError(params: {pipelineName: $jobName, repositoryName: $repositoryName,
                           repositoryLocationName: $repositoryLocationName}) {
    __typename
    ... on Pipeline {
      partition(partitionName: $partitionName, selectedAssetKeys: $assetKeys) {
        name
        runConfigOrError { __typename ... on PartitionRunConfig { yaml } ... on PythonError { message } }
        tagsOrError { __typename ... on PartitionTags { results { key value } } ... on PythonError { message } }
      }
    }
    ... on PythonError { message }
  }
}"""

LAUNCH_MUTATION = """
mutation LaunchPipelineExecution($executionParams: ExecutionParams!) {
  launchPipelineExecution(executionParams: $executionParams) {
    __typename
    ... on LaunchRunSuccess { run { id pipelineName } }
    ... on PipelineNotFoundError { message }
    ... on InvalidSubsetError { message }
    ... on RunConfigValidationInvalid { errors { message } }
    ... on PythonError { message stack }
  }
}"""

RUN_QUERY = """
query Run($runId: ID!) {
  runOrError(runId: $runId) {
    __typename
    ... on Run { id status tags { key value } assetSelection { path } }
    ... on PythonError { message }
  }
}"""

RUN_ERRORS_QUERY = """
query RunErrors($runId: ID!) {
  logsForRun(runId: $runId, limit: 1000) {
    __typename
    ... on EventConnection {
      events {
        __typename
        ... on MessageEvent { message level stepKey }
        ... on ExecutionStepFailureEvent { error { message stack } }
        ... on RunFailureEvent { error { message } }
      }
    }
  }
}"""

RUNS_QUERY = """
{ runsOrError { __typename ... on Runs { results { id status tags { key value } assetSelection { path } } } } }"""

BACKFILLS_QUERY = """
{ partitionBackfillsOrError { __typename ... on PartitionBackfills { results {
    id status isAssetBackfill partitionNames tags { key value } assetSelection { path }
    runs(limit: 100) { id status tags { key value } assetSelection { path } } } } } }"""

CODEC_KEYS_QUERY = """
query CodecKeys($assetKey: AssetKeyInput!) {
  assetNodeOrError(assetKey: $assetKey) {
    ... on AssetNode { partitionKeysByDimension { name partitionKeys } }
  }
}"""

ASSET_KEYS_QUERY = """
{ assetNodes { assetKey { path } } }"""

MATERIALIZATIONS_QUERY = """
query Materialized($assetKey: AssetKeyInput!, $partitions: [String!]) {
  assetNodeOrError(assetKey: $assetKey) {
    ... on AssetNode { assetMaterializations(partitions: $partitions) { partition runId } }
  }
}"""

SENSOR_TICKS_QUERY = """
query SensorTicks($selector: SensorSelector!) { sensorOrError(sensorSelector: $selector) {
  __typename ... on Sensor { sensorState { ticks(limit: 5) { timestamp status } } } } }"""
LOCATIONS_QUERY = """
{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus
    locationOrLoadError { __typename ... on PythonError { message } } } } } }"""


def gql(port: int, query: str, **variables: object) -> dict:
    """POST one GraphQL operation to the webserver; GraphQL-level errors raise with their messages."""
    body = json.dumps({"query": query, "variables": variables}).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{port}/graphql", data=body,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as resp:
        got = json.loads(resp.read())
    if got.get("errors"):
        raise AssertionError(f"GraphQL errors: {[e.get('message') for e in got['errors']]}")
    return got["data"]


def asset_key(name: str) -> dict:
    return {"path": [EXPERIMENT, name]}


def tags_of(obj: dict) -> dict[str, str]:
    return {t["key"]: t["value"] for t in obj.get("tags") or []}


# -- the server ---------------------------------------------------------------------------------------------------

class DagsterDev:
    """``dagster dev`` in its own session (process group); stopped by PID, survivors reported."""

    def __init__(self, root: Path, env: dict[str, str], study: Path) -> None:
        self.root = root
        self.port = free_port()
        self.log_path = root / "dagster_dev.log"
        workspace = root / "workspace.yaml"
        workspace.write_text(
            f"load_from:\n  - python_module:\n      module_name: {study.name}.definitions\n"
            f"      location_name: {LOCATION}\n      working_directory: {study}\n")
        self._log = self.log_path.open("w")
        # SIGINT back to the default handler: a shell without job control (CI, `make test &`) starts children
        # with SIGINT ignored, and dagster dev maps SIGTERM onto the SIGINT handler, so it would ignore SIGTERM.
        self.proc = subprocess.Popen(
            [str(Path(sys.executable).with_name("dagster")), "dev", "-w", str(workspace),
             "-h", "127.0.0.1", "-p", str(self.port)],
            cwd=root, env=env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        self.pgid = self.proc.pid  # start_new_session: the leader's pid is the group id
        self.stopped = False

    def group_members(self) -> list[psutil.Process]:
        members = []
        for p in psutil.process_iter(["pid", "cmdline"]):
            try:
                if os.getpgid(p.pid) == self.pgid:
                    members.append(p)
            except (ProcessLookupError, psutil.Error):
                continue
        return members

    def stop(self, grace_s: float = 60) -> list[str]:
        """SIGTERM to the process group, wait, SIGKILL what is left; returns what survived the SIGTERM."""
        if self.stopped:
            return []
        self.stopped = True
        tracked = {p.pid: p for p in self.group_members()}
        with contextlib.suppress(psutil.NoSuchProcess):
            tracked.update({c.pid: c for c in psutil.Process(self.proc.pid).children(recursive=True)})
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pgid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=grace_s)
        _, alive = psutil.wait_procs(list(tracked.values()), timeout=10)
        alive += [p for p in self.group_members() if p.pid not in {a.pid for a in alive}]
        survivors = []
        for p in alive:
            try:
                survivors.append(f"{p.pid}: {' '.join(p.cmdline())[:160]}")
                p.kill()
            except psutil.NoSuchProcess:
                continue
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pgid, signal.SIGKILL)
        self.proc.wait()
        self._log.close()
        return survivors

    def log_tail(self, lines: int = 60) -> str:
        self._log.flush()
        text = self.log_path.read_text(errors="replace").splitlines()
        noise = ("BetaWarning", "return fn(", "waits for:")
        return "\n".join([ln for ln in text if not any(n in ln for n in noise)][-lines:])


@pytest.fixture()
def e2e_env(tmp_path: Path) -> dict:
    """Temp DAGSTER_HOME, MPQ_HOME, three tiny PNGs and an empty plugin folder on the server's PYTHONPATH."""
    home, mpq, images, plugins = (tmp_path / d for d in ("dagster_home", "mpq", "images", "plugins"))
    for d in (home, images, plugins):
        d.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    rng = np.random.default_rng(6)
    y, x = np.mgrid[0:48, 0:64]
    for i in range(3):
        img = np.stack([(x * 4 + 40 * i) % 256, (y * 5) % 256, ((x + y) * 3 + 20 * i) % 256], -1)
        img = np.clip(img + rng.integers(-12, 12, img.shape), 0, 255).astype(np.uint8)
        Image.fromarray(img).save(images / f"tile{i}.png")
    study = tmp_path / "e2e_study"
    init_study(study, "e2e_tiny")
    defs = study / "e2e_study" / "defs"
    (defs / "e2e_tiny" / "defs.yaml").write_text(STUDY_YAML.format(images=images))
    # the study folder of test_study (an image and an audio experiment): its audio one loads here too
    (defs / "my_tones").mkdir()
    (defs / "my_tones" / "defs.yaml").write_text(AUDIO_YAML)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MPQ_", "DAGSTER_"))}
    env.update(DAGSTER_HOME=str(home), MPQ_HOME=str(mpq), MPQ_OFFLINE="1", HF_HUB_OFFLINE="1", MPQ_DEVICE="cpu",
               PYTHONPATH=os.pathsep.join(p for p in (str(plugins), env.get("PYTHONPATH", "")) if p))
    return {"root": tmp_path, "env": env, "plugins": plugins, "db": mpq / "mpq.duckdb", "study": study}


@pytest.fixture()
def dagster_dev(e2e_env: dict) -> Iterator[DagsterDev]:
    server = DagsterDev(e2e_env["root"], e2e_env["env"], e2e_env["study"])
    try:
        yield server
    finally:
        server.stop(grace_s=30)
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        shutil.copy(server.log_path, ARTIFACTS / "dagster_dev.log")


# -- helpers ------------------------------------------------------------------------------------------------------

def run_events(port: int, run_id: str, last: int = 15) -> str:
    """The run's last events, for a run that does not finish."""
    events = gql(port, RUN_ERRORS_QUERY, runId=run_id)["logsForRun"].get("events", [])
    return "\n".join(f"  {e['__typename']} {e.get('stepKey') or ''}: {e.get('message', '')[:200]}"
                     for e in events[-last:])


def run_errors(port: int, run_id: str) -> str:
    events = gql(port, RUN_ERRORS_QUERY, runId=run_id)["logsForRun"].get("events", [])
    out = []
    for e in events:
        if e.get("error"):
            out.append(f"{e['__typename']}: {e['error']['message']}")
        elif e.get("level") == "ERROR":
            out.append(f"{e.get('stepKey') or ''}: {e['message']}")
    return "\n".join(out) or "(no error events)"


def wait_run(server: DagsterDev, run_id: str, timeout: float) -> dict:
    """Poll the run like the UI's run page until it ends; anything but SUCCESS fails with its errors."""
    def done() -> dict | None:
        run = gql(server.port, RUN_QUERY, runId=run_id)["runOrError"]
        return run if run.get("status") in TERMINAL_RUN else None

    try:
        run = wait_for(done, timeout, f"run {run_id} finished")
    except TimeoutError as exc:
        pytest.fail(f"{exc}\n--- its last events ---\n{run_events(server.port, run_id)}\n"
                    f"--- dagster dev log ---\n{server.log_tail()}")
    if run["status"] != "SUCCESS":
        pytest.fail(f"run {run_id} ended {run['status']}:\n{run_errors(server.port, run_id)}")
    return run


def launch(port: int, assets: list[str], tags: list[dict], run_config: str = "{}") -> str:
    """The UI's LaunchPipelineExecution on the implicit asset job (LaunchAssetExecutionButton's params)."""
    params = {
        "mode": "default",
        "executionMetadata": {"tags": tags},
        "runConfigData": run_config,
        "selector": {"repositoryLocationName": LOCATION, "repositoryName": REPOSITORY, "pipelineName": ASSET_JOB,
                     "assetSelection": [asset_key(a) for a in assets], "assetCheckSelection": []},
    }
    result = gql(port, LAUNCH_MUTATION, executionParams=params)["launchPipelineExecution"]
    assert result["__typename"] == "LaunchRunSuccess", result
    return result["run"]["id"]


def partition_tags(port: int, assets: list[str], key: str) -> tuple[list[dict], str]:
    """What the UI's partition dialog fetches before a single-run launch: the partition's tags and config."""
    data = gql(port, PARTITION_TAGS_QUERY, repositoryName=REPOSITORY, repositoryLocationName=LOCATION,
               jobName=ASSET_JOB, partitionName=key, assetKeys=[asset_key(a) for a in assets])["pipelineOrError"]
    assert data["__typename"] == "Pipeline", data
    partition = data["partition"]
    assert partition["tagsOrError"]["__typename"] == "PartitionTags", partition
    assert partition["runConfigOrError"]["__typename"] == "PartitionRunConfig", partition
    return partition["tagsOrError"]["results"], partition["runConfigOrError"]["yaml"]


def image_codecs(port: int) -> list[str]:
    node = gql(port, CODEC_KEYS_QUERY, assetKey=asset_key("compressed"))["assetNodeOrError"]
    dims = {d["name"]: d["partitionKeys"] for d in node.get("partitionKeysByDimension") or []}
    return dims.get("codec", [])


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        pytest.fail("headless Chromium is needed to check the UI renders: run `make test` (installs Debian's "
                    "chromium) or `apt-get install chromium`")
    return found


def browse(url: str, profile: Path, *args: str, budget_ms: int = 20_000) -> subprocess.CompletedProcess:
    """Headless Chromium on ``url``; the virtual time budget lets the page's queries finish before the output."""
    cmd = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
           "--hide-scrollbars", "--no-first-run", f"--user-data-dir={profile}", "--window-size=1400,900",
           f"--virtual-time-budget={budget_ms}", *args, url]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=180, check=True)


def visible_text(html: str) -> str:
    html = re.sub(r"<(script|style)\b[^>]*>.*?</\1>", " ", html, flags=re.S | re.I)
    return " ".join(re.sub(r"<[^>]+>", " ", html).replace("&apos;", "'").split())


def check_asset_graph_page(port: int, profile: Path) -> Path:
    """Headless Chromium on the group's lineage page: graph nodes for every asset, no error state, a screenshot."""
    url = f"http://127.0.0.1:{port}/locations/{LOCATION}/asset-groups/{EXPERIMENT}"
    # what the community dialog's "Skip" sends (its flag lives in the temp DAGSTER_HOME): otherwise the
    # dialog covers the graph on a fresh instance
    assert gql(port, "mutation SetNuxSeen { setNuxSeen }")["setNuxSeen"] is True
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for budget_ms in (20_000, 60_000):  # a second, longer look only when a busy machine was slow to draw
        dom = browse(url, profile, "--dump-dom", budget_ms=budget_ms).stdout
        (ARTIFACTS / "asset_graph.html").write_text(dom)
        text = visible_text(dom)
        shown_errors = [e for e in UI_ERRORS if e in text]
        assert not shown_errors, f"the UI shows an error ({shown_errors}): {text[:2000]}"
        # the lineage graph draws each asset node as HTML inside an SVG foreignObject
        nodes = {w for fo in re.findall(r"<foreignObject\b.*?</foreignObject>", dom, flags=re.S)
                 for w in visible_text(fo).split()}
        if set(ASSETS) <= nodes:
            break
    assert set(ASSETS) <= nodes, f"asset graph nodes {sorted(nodes)} lack {sorted(set(ASSETS) - nodes)}: {text[:2000]}"

    shot = ARTIFACTS / "asset_graph.png"
    shot.unlink(missing_ok=True)
    browse(url, profile, f"--screenshot={shot}")
    assert shot.exists() and shot.stat().st_size > 10_000, f"no screenshot at {shot}"
    with Image.open(shot) as im:
        assert im.size == (1400, 900), im.size
        rgb = np.asarray(im.convert("RGB")).reshape(-1, 3)
    colours, counts = np.unique(rgb, axis=0, return_counts=True)
    assert len(colours) > 200, f"screenshot has only {len(colours)} colours: a blank page?"
    assert counts.max() / counts.sum() < 0.95, "screenshot is nearly one colour: a blank page?"
    # materialised nodes are drawn green (the graph's status colours): the graph, not just the chrome, is there
    r, g, b = rgb[:, 0].astype(int), rgb[:, 1].astype(int), rgb[:, 2].astype(int)
    assert ((g - r > 40) & (g - b > 20)).sum() > 500, "no green (materialised) asset nodes in the screenshot"
    return shot


def store_rows(db: Path, sql: str, *params: object) -> list[tuple]:
    return list(ResultsStore(db, lock_timeout_s=120).query(sql, list(params)).itertuples(index=False, name=None))


# -- the test's steps ---------------------------------------------------------------------------------------------

class StepTimes:
    """Seconds since the test started at each step, printed as they happen so a slow step shows in the log."""

    def __init__(self) -> None:
        self.t0 = time.monotonic()
        self.timings: dict[str, float] = {}

    def mark(self, step: str) -> None:
        self.timings[step] = round(time.monotonic() - self.t0, 1)
        print(f"[ui_e2e] {self.timings[step]:6.1f}s {step}", flush=True)


def wait_server_ready(server: DagsterDev) -> None:
    """Up: the webserver answers, the location loads, the codec sensor fills the built-in codec partitions."""
    port = server.port
    try:
        wait_for(lambda: urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=5).status == 200,
                 240, "webserver up")
        entries = wait_for(lambda: [e for e in gql(port, LOCATIONS_QUERY)["workspaceOrError"]["locationEntries"]
                                    if e["loadStatus"] == "LOADED"], 240, "code location loaded")
        assert entries[0]["name"] == LOCATION
        assert entries[0]["locationOrLoadError"]["__typename"] == "RepositoryLocation", entries
        wait_for(lambda: "jpeg" in image_codecs(port), 120, "codec sensor added jpeg")
    except TimeoutError as exc:
        pytest.fail(f"{exc}\n--- dagster dev log ---\n{server.log_tail()}")
    assert NEW_CODEC not in image_codecs(port), (
        f"{NEW_CODEC} is already registered before the test installs it: mpq-example-codec is installed in this "
        "environment (`pip uninstall mpq-example-codec`)")


def wait_automation_tick(port: int) -> None:
    """Wait for an automation sensor tick that starts after now.

    The automation sensor sees the world once per tick: partitions that appear and a dataset that is
    materialised between two ticks look like "appeared while the dataset exists" and would be swept.
    A person clicking later than 30 s after start-up is the normal case; wait for that tick here.
    """
    added = time.time()
    selector = {"repositoryLocationName": LOCATION, "repositoryName": "__repository__",
                "sensorName": "mpq_automation_sensor"}

    def ticked_since_added() -> bool:
        ticks = gql(port, SENSOR_TICKS_QUERY, selector=selector)["sensorOrError"]["sensorState"]["ticks"]
        return any(t["timestamp"] > added and t["status"] in ("SUCCESS", "SKIPPED") for t in ticks)

    wait_for(ticked_since_added, 120, "an automation tick after the codec partitions were added")


def materialise_dataset(server: DagsterDev, db: Path) -> list[str]:
    """The UI's "Materialize" on the dataset; returns its items, as DuckDB holds them."""
    wait_run(server, launch(server.port, ["dataset"], []), 300)
    items = [r[0] for r in store_rows(db, "SELECT item_id FROM items WHERE experiment = ? ORDER BY item_id",
                                      EXPERIMENT)]
    assert items == ["tile0", "tile1", "tile2"]
    return items


def materialise_partition(server: DagsterDev, db: Path, sweep: list[str], items: list[str]) -> None:
    """The UI's "Materialize" on the partition 20x|jpeg of the sweep assets: its tags, its run, its rows."""
    port = server.port
    key = partition_key("jpeg", "20x")
    tags, run_config = partition_tags(port, sweep, key)
    assert {t["key"]: t["value"] for t in tags} == {
        "dagster/partition": key, "dagster/partition/codec": "jpeg", "dagster/partition/bitrate": "20x"}
    run = wait_run(server, launch(port, sweep, tags, run_config), 300)
    assert tags_of(run)["dagster/partition"] == key
    assert sorted(a["path"][-1] for a in run["assetSelection"]) == sweep
    rows = store_rows(db, "SELECT item_id, bytes, achieved_ratio FROM compressed WHERE experiment = ? AND codec = ? "
                      "AND bitrate = ? ORDER BY item_id", EXPERIMENT, "jpeg", "20x")
    assert [r[0] for r in rows] == items and all(r[1] > 0 and r[2] > 1 for r in rows), rows
    psnr = store_rows(db, "SELECT item_id, value FROM quality WHERE experiment = ? AND codec = 'jpeg' AND "
                      "bitrate = '20x' AND metric = 'psnr' ORDER BY item_id", EXPERIMENT)
    assert [r[0] for r in psnr] == items and all(r[1] > 15 for r in psnr), psnr


def install_plugin(e2e_env: dict) -> None:
    """Register a codec while the server runs: pip install the plugin package into a folder on its PYTHONPATH."""
    src = e2e_env["root"] / "plugin_src"  # a copy, so pip's build folders never land in the repository
    shutil.copytree(PLUGIN, src, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--no-index",
                    "--target", str(e2e_env["plugins"]), str(src)], check=True, capture_output=True, text=True)


def materialised(port: int, name: str, keys: set[str]) -> list[dict]:
    """The materialisations of asset ``name`` in the partitions ``keys``."""
    return gql(port, MATERIALIZATIONS_QUERY, assetKey=asset_key(name),
               partitions=sorted(keys))["assetNodeOrError"]["assetMaterializations"]


def assets_of(obj: dict) -> set[str]:
    """The asset names a run or backfill selects."""
    return {a["path"][-1] for a in obj.get("assetSelection") or []}


def sweep_runs(backfill: dict, sweep: list[str]) -> list[dict]:
    """The backfill's runs of compressed / quality (it may also hold the analyses, requested on the same
    tick when their dependencies were idle; those run afterwards)."""
    return [r for r in backfill["runs"] if assets_of(r) & set(sweep)]


def new_codec_backfill(port: int, new_keys: set[str], sweep: list[str]) -> list[dict] | None:
    """The backfills requesting the new codec's partitions, once their compressed / quality runs ended and
    (unless one failed) every partition of both is materialised. The backfill's own status turns
    COMPLETED_SUCCESS on the backfill daemon's next iteration (up to 30 s later): not waited for."""
    mine = [b for b in gql(port, BACKFILLS_QUERY)["partitionBackfillsOrError"]["results"]
            if new_keys & set(b["partitionNames"] or [])]
    runs = [r for b in mine for r in sweep_runs(b, sweep)]
    if any(b["status"] in BACKFILL_FAILED for b in mine) or any(r["status"] in ("FAILURE", "CANCELED")
                                                                 for r in runs):
        return mine
    if not runs or any(r["status"] != "SUCCESS" for r in runs):
        return None
    return mine if all({m["partition"] for m in materialised(port, n, new_keys)} == new_keys for n in sweep) else None


def wait_new_codec_backfill(server: DagsterDev, new_keys: set[str], sweep: list[str],
                            mark: Callable[[str], None]) -> dict:
    """The codec sensor adds the plugin's codec, the automation sensor backfills all its ratios: that ONE
    backfill, once its sweep runs ended."""
    port = server.port
    try:
        wait_for(lambda: NEW_CODEC in image_codecs(port), 180, f"codec sensor added {NEW_CODEC}")
        mark(f"{NEW_CODEC} added to image_codecs by the sensor")
        backfills = wait_for(lambda: new_codec_backfill(port, new_keys, sweep), 420,
                             f"{NEW_CODEC} partitions materialised by a backfill")
    except TimeoutError as exc:
        pytest.fail(f"{exc}\n--- dagster dev log ---\n{server.log_tail()}")
    assert len(backfills) == 1, f"the new codec's partitions must be requested as ONE backfill: {backfills}"
    return backfills[0]


def check_backfill(port: int, backfill: dict, new_keys: set[str], sweep: list[str]) -> None:
    """The backfill succeeded, came from the automation sensor, and ran the sweep over all ratios in ONE run."""
    failed = [f"{r['id']}: {run_errors(port, r['id'])}" for r in backfill["runs"]
              if r["status"] in ("FAILURE", "CANCELED")]
    assert not failed and backfill["status"] not in BACKFILL_FAILED, (backfill["status"], failed)
    assert tags_of(backfill).get("dagster/sensor_name") == "mpq_automation_sensor", backfill["tags"]
    assert backfill["isAssetBackfill"] and new_keys <= set(backfill["partitionNames"]), backfill["partitionNames"]
    assert all(k.endswith(f"|{NEW_CODEC}") for k in backfill["partitionNames"]), backfill["partitionNames"]
    assert set(sweep) <= assets_of(backfill) <= set(sweep) | {"rate_curves", "report"}, backfill["assetSelection"]
    # single-run backfill policy: compressed and quality over all six ratios in ONE run (models load once)
    runs = sweep_runs(backfill, sweep)
    assert len(runs) == 1, [(r["id"], assets_of(r), tags_of(r)) for r in backfill["runs"]]
    run = runs[0]
    assert assets_of(run) == set(sweep), run
    assert tags_of(run)["dagster/backfill"] == backfill["id"], run
    for name in sweep:
        assert {m["runId"] for m in materialised(port, name, new_keys)} == {run["id"]}, name


def check_new_codec_rows(db: Path, items: list[str]) -> None:
    """Every ratio x item of the new codec has compressed and quality rows in DuckDB, and nothing failed."""
    got = store_rows(db, "SELECT bitrate, item_id, bytes FROM compressed WHERE experiment = ? AND codec = ?",
                     EXPERIMENT, NEW_CODEC)
    assert {(b, i) for b, i, _ in got} == {(r, i) for r in RATIOS for i in items} and len(got) == 18, got
    assert all(n > 0 for _, _, n in got), got
    psnr = store_rows(db, "SELECT bitrate, item_id, value FROM quality WHERE experiment = ? AND codec = ? AND "
                      "metric = 'psnr'", EXPERIMENT, NEW_CODEC)
    assert {(b, i) for b, i, _ in psnr} == {(r, i) for r in RATIOS for i in items} and len(psnr) == 18, psnr
    assert all(v is not None and v > 5 for _, _, v in psnr), psnr
    errors = store_rows(db, "SELECT stage, codec, bitrate, item_id, error FROM errors WHERE experiment = ?",
                        EXPERIMENT)
    assert not errors, errors


def check_no_failed_runs(port: int) -> None:
    """No run of this server failed (the automation's other runs included: built-in backfills, analyses);
    the runs are saved under the artifacts."""
    runs = gql(port, RUNS_QUERY)["runsOrError"]["results"]
    bad = [f"{r['id']} {[a['path'][-1] for a in r['assetSelection'] or []]} {r['status']}: "
           f"{run_errors(port, r['id'])}" for r in runs if r["status"] in ("FAILURE", "CANCELED")]
    assert not bad, "\n".join(bad)
    (ARTIFACTS / "runs.json").write_text(json.dumps(
        [{"id": r["id"], "status": r["status"], "assets": [a["path"][-1] for a in r["assetSelection"] or []],
          "tags": tags_of(r)} for r in runs], indent=1))


# -- the test -----------------------------------------------------------------------------------------------------

def test_ui_launch_plugin_backfill_and_asset_graph(e2e_env: dict, dagster_dev: DagsterDev) -> None:
    server, port, db = dagster_dev, dagster_dev.port, e2e_env["db"]
    steps = StepTimes()
    wait_server_ready(server)
    keys = {"/".join(n["assetKey"]["path"]) for n in gql(port, ASSET_KEYS_QUERY)["assetNodes"]}
    assert {f"{EXPERIMENT}/compressed", "my_tones/compressed", "my_tones/quality", "my_tones/report"} <= keys
    steps.mark("server up, location loaded (both defs.yaml experiments in the graph), codec partitions added")
    wait_automation_tick(port)
    steps.mark("automation ticked once with the built-in codec partitions")

    # -- the UI's "Materialize" on the dataset, then on one partition of the sweep assets
    items = materialise_dataset(server, db)
    steps.mark("dataset materialised")
    sweep = ["compressed", "quality"]
    materialise_partition(server, db, sweep, items)
    steps.mark("partition 20x|jpeg launched through GraphQL and in DuckDB")

    install_plugin(e2e_env)
    steps.mark(f"{NEW_CODEC} plugin installed")

    # -- the UI renders the asset graph (while the daemon picks up the plugin)
    check_asset_graph_page(port, e2e_env["root"] / "chromium-profile")
    steps.mark("asset graph rendered in headless Chromium")

    # -- the codec sensor adds the plugin's codec, the automation sensor backfills all its ratios
    new_keys = {partition_key(NEW_CODEC, r) for r in RATIOS}
    backfill = wait_new_codec_backfill(server, new_keys, sweep, steps.mark)
    steps.mark(f"{NEW_CODEC} partitions materialised by backfill {backfill['id']} ({backfill['status']})")
    check_backfill(port, backfill, new_keys, sweep)
    check_new_codec_rows(db, items)
    steps.mark(f"{NEW_CODEC}: every partition materialised, rows in DuckDB")
    check_no_failed_runs(port)

    # -- shut down by PID: nothing of the process group may outlive it
    survivors = server.stop()
    steps.mark("dagster dev stopped")
    (ARTIFACTS / "timings.json").write_text(json.dumps(steps.timings, indent=1))
    assert not survivors, f"processes outlived SIGTERM to dagster dev's process group: {survivors}"
    assert server.proc.returncode is not None
    assert not server.group_members()
