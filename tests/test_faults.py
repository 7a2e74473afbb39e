"""Fault injection: the DAG run through each fault the stand-ins can throw, the invariants checked after
the faulty run and after a rerun. Figures (tried, survived in the run, recovered by a rerun, lost) are
printed at the end of the session.

Invariants: no partial registry version and an empty pending area; the endpoint serves an archived
version, never nothing; an Atlas entity only for a version that serves (or served) and is archived; after
the rerun, version 1.1 serves, is registered once, and 1.0 is superseded.
"""

from __future__ import annotations

import hashlib
import json
import time
from datetime import timedelta

import pytest
import requests

from tests import helpers
from tests.helpers import NO_APPROVAL, EXAMPLE_STAGING, atlas_search, load_dag, rebundle, stage_variant

SAMPLE = json.loads((EXAMPLE_STAGING / "samples/leapframe.json").read_text())
RESULTS: list[tuple[str, str]] = []  # (fault, outcome): read by conftest's terminal summary
ROOT = "/model-registry/rental-pricing-prediction"
DOWN = 10_000  # requests: "down" for the whole run


FAULTS = {
    "WebHDFS answers 503 twice": (lambda s: s.webhdfs.fail_next(2, 503), "survived"),
    "WebHDFS upload connection drops once": (lambda s: s.webhdfs.break_upload_after(50_000), "survived"),
    "WebHDFS down": (lambda s: s.webhdfs.fail_next(DOWN, 503), "rerun"),
    "MLeap answers 503 twice": (lambda s: s.mleap.fail_next(2, 503), "survived"),
    "MLeap hangs past the client timeout once": (lambda s: s.mleap.hang(4), "survived"),
    "MLeap down": (lambda s: s.mleap.fail_next(DOWN, 503), "rerun"),
    # after the load: the deploy step also scores the sample before it, to see the new model show up
    "MLeap scoring fails after the load": (lambda s: s.mleap.fail_transform_next(1, after_load=True), "rerun"),
    "Atlas answers 503 twice": (lambda s: s.atlas.fail_next(2, 503), "survived"),
    "Atlas hangs past the client timeout once": (lambda s: s.atlas.hang(4), "survived"),
    "Atlas down": (lambda s: s.atlas.fail_next(DOWN, 503), "rerun"),
}


# Faults that need the run's staged model or the previous run: inject(stack, tmp_path) -> the staging of the
# faulty run (None: the example). The rerun stages the example, as the owner fixing the input would.
LAST_RUN: dict[str, str] = {}


def hdfs_client(stack):
    """A client of the stack's WebHDFS (the stand-in or a real NameNode), as its connection names it."""
    from hdfs import InsecureClient

    conn = stack.connections["webhdfs_default"]
    return InsecureClient(f"http://{conn['host'].split(',')[0]}:{conn['port']}", user="hdfs")


def _lock(stack, run_id):
    """A lock left in the registry by `run_id` (a worker killed before any clean-up could run)."""
    holder = {"run_id": run_id, "since": time.time(), "dag_id": "model_deployment", "dag_run_id": run_id}
    client = hdfs_client(stack)
    client.write("/model-registry/.locks/rental-pricing-prediction.lock", data=json.dumps(holder), overwrite=True)


def _broken_bundle(stack, tmp_path):
    staged = stage_variant(tmp_path / "broken", version="1.1")
    rebundle(EXAMPLE_STAGING / "executable/airbnb.model.lr.zip", staged / "executable/airbnb.model.lr.zip", drop="root/")
    return staged


def _broken_sample(stack, tmp_path):
    staged = stage_variant(tmp_path / "bad-sample", version="1.1")
    frame = json.loads((staged / "samples/leapframe.json").read_text())
    frame["schema"]["fields"] = [{"name": "no_such_feature", "type": "double"}]
    frame["rows"] = [[1.0]]
    (staged / "samples/leapframe.json").write_text(json.dumps(frame))
    return staged


STAGED_FAULTS = {
    "A lock left by a run that ended (worker killed)": (lambda s, t: _lock(s, LAST_RUN["id"]), "survived"),
    "A lock left by a run that no longer exists": (lambda s, t: _lock(s, "manual__2020-01-01T00:00:00+00:00"), "survived"),
    "Staged bundle is not an MLeap bundle (fixed, rerun)": (_broken_bundle, "rerun"),
    "Sample request fails to score (fixed, rerun: the never-served version is replaced)": (_broken_sample, "rerun"),
}

FAULTS.update({
    "WebHDFS StandbyException twice": (lambda s: s.webhdfs.fail_next(2, 403, exception="StandbyException"), "survived"),
    "WebHDFS RetriableException on CREATE twice": (lambda s: s.webhdfs.fail_next(2, 403, op="CREATE", exception="RetriableException"), "survived"),
    "WebHDFS RENAME fails (publish)": (lambda s: s.webhdfs.fail_next(DOWN, 500, op="RENAME"), "rerun"),
    "WebHDFS OPEN fails (publish's read-back, deploy)": (lambda s: s.webhdfs.fail_next(DOWN, 503, op="OPEN"), "rerun"),
    "MLeap answers 500 to the load": (lambda s: s.mleap.fail_next(1, 500, method="PUT"), "rerun"),
    "MLeap answers 502 twice": (lambda s: s.mleap.fail_next(2, 502), "survived"),
    "Atlas answers 500 once": (lambda s: s.atlas.fail_next(1, 500), "survived"),
})


def clear_faults(stack):
    if hasattr(stack.webhdfs, "fail_next"):  # a real HDFS has no fault switches
        stack.webhdfs.fail_next(0)
    stack.mleap.fail_next(0)
    stack.mleap.fail_transform_next(0)
    stack.atlas.fail_next(0)


@pytest.fixture
def dag(airflow_db):
    dag = load_dag("model_deployment")
    for task in dag.tasks:  # the DAG's own retries, without waiting minutes between them
        task.retry_delay = timedelta(seconds=0.2)
        task.retry_exponential_backoff = 0
    return dag


@pytest.fixture
def stack(devstack, monkeypatch):
    """The stand-ins, with 2-second client timeouts so that a hang is a timeout."""
    for conn_id in ("mleap_default", "atlas_default"):
        conn = json.loads(json.dumps(devstack.connections[conn_id]))
        conn.setdefault("extra", {})["timeout"] = 2
        monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(conn))
    return devstack


def predict(stack):
    """What the endpoint predicts for the sample, through the stack's serving API; None when nothing serves."""
    return helpers.predict(stack, SAMPLE)


def entities(stack):
    found = atlas_search(stack.connections["atlas_default"], attributes=["modelVersion", "deployStatus"])
    return [e["attributes"] for e in found]


def _locks(stack):
    client = hdfs_client(stack)
    found = client.list("/model-registry/.locks") if client.status("/model-registry/.locks", strict=False) else []
    return [name for name in found if name.endswith(".lock")]  # .held.<run>.<model>: a run's note of its lock


def check_invariants(stack, predictions):
    client = hdfs_client(stack)
    archived = set()
    for version in client.list(ROOT):
        files = {f"{root}/{name}"[len(f"{ROOT}/{version}/"):]: client.status(f"{root}/{name}")["length"]
                 for root, _, names in client.walk(f"{ROOT}/{version}") for name in names}
        with client.read(f"{ROOT}/{version}/MANIFEST.json") as reader:  # no version without its manifest
            manifest = {e["path"]: e for e in json.load(reader)["files"]}
        assert {**{k: v["size"] for k, v in manifest.items()}, "MANIFEST.json": files["MANIFEST.json"]} == files, version
        with client.read(f"{ROOT}/{version}/executable/airbnb.model.lr.zip") as reader:
            assert hashlib.sha256(reader.read()).hexdigest() == manifest["executable/airbnb.model.lr.zip"]["sha256"]
        archived.add(version)
    assert client.list("/model-registry/.pending") == []
    serving = next((v for v, p in predictions.items() if p == pytest.approx(predict(stack))), None) if predict(stack) is not None else None
    assert serving in archived, f"serving {serving}, archived {archived}"
    for entity in entities(stack):
        assert entity["modelVersion"] in archived
        if entity["deployStatus"] == "deployed" and entity["modelVersion"] == "1.1":
            assert serving == "1.1"
    return serving


@pytest.mark.parametrize("fault", list(FAULTS) + list(STAGED_FAULTS))
def test_fault(fault, dag, stack, tmp_path):
    if fault in FAULTS:
        inject, expected = FAULTS[fault]
        run_fault(fault, dag, stack, tmp_path, lambda: inject(stack) or None, {expected})
    else:
        inject_staged, expected = STAGED_FAULTS[fault]
        run_fault(fault, dag, stack, tmp_path, lambda: inject_staged(stack, tmp_path), {expected})


def deploy_first_version(dag, stack, tmp_path):
    """Version 1.0 (its intercept moved) deployed and serving; what each version predicts."""
    first = stage_variant(tmp_path / "staging", version="1.0")
    rebundle(EXAMPLE_STAGING / "executable/airbnb.model.lr.zip", first / "executable/airbnb.model.lr.zip", intercept_shift=1000.0)
    first_run = dag.test(run_conf={**NO_APPROVAL, "staging": str(first)})
    assert first_run.state == "success"
    LAST_RUN["id"] = first_run.run_id
    predictions = {"1.0": predict(stack)}
    predictions["1.1"] = predictions["1.0"] - 1000.0
    return predictions


def settle(fault, expected, run, dag, stack, predictions, registered=entities):
    """The faulty run's outcome recorded in RESULTS: the invariants checked after it and after a rerun."""
    outcome = "survived" if run.state == "success" else "rerun"
    try:
        check_invariants(stack, predictions)
        assert _locks(stack) == [], "the run ended holding the model's lock"
        if outcome == "rerun":
            rerun = dag.test(run_conf={**NO_APPROVAL, "staging": str(EXAMPLE_STAGING)})
            assert rerun.state == "success", {ti.task_id: ti.state for ti in rerun.get_task_instances()}
        assert check_invariants(stack, predictions) == "1.1"
        assert sorted((e["modelVersion"], e["deployStatus"]) for e in registered(stack)) == [("1.0", "superseded"), ("1.1", "deployed")]
    except AssertionError:
        RESULTS.append((fault, "lost"))
        raise
    RESULTS.append((fault, outcome))
    assert outcome in ((expected,) if isinstance(expected, str) else expected), {ti.task_id: ti.state for ti in run.get_task_instances()}


def run_fault(fault, dag, stack, tmp_path, inject, expected, after_run=lambda: None):
    """Deploy 1.0, inject the fault (which may return the faulty run's staging), run 1.1, check the
    invariants, rerun if the run failed, check again; the outcome joins the session's table."""
    predictions = deploy_first_version(dag, stack, tmp_path)
    staging = inject()
    started = time.monotonic()
    run = dag.test(run_conf={**NO_APPROVAL, "staging": str(staging or EXAMPLE_STAGING)})
    assert time.monotonic() - started < 120, "the run waited on a lock"
    after_run()
    clear_faults(stack)
    settle(fault, expected, run, dag, stack, predictions)


def test_wrong_atlas_credentials_fail_at_once_with_a_clear_error(dag, stack, monkeypatch, capfd):
    """No retry storm: the 401 is an answer, so neither the hook nor Airflow asks again; nothing changes."""
    conn = {**stack.connections["atlas_default"], "password": "not-the-password"}
    monkeypatch.setenv("AIRFLOW_CONN_ATLAS_DEFAULT", json.dumps(conn))
    before = stack.atlas.requests_received
    run = dag.test(run_conf={**NO_APPROVAL, "staging": str(EXAMPLE_STAGING)})
    states = {ti.task_id: (ti.state, ti.try_number) for ti in run.get_task_instances()}
    # the deploy step asks Atlas what serves now before it changes anything: it stops there, at once
    assert run.state == "failed" and states["deploy_model"] == ("failed", 1) and states["register_in_atlas"][0] == "upstream_failed"
    assert stack.atlas.requests_received - before == 1
    assert predict(stack) is None  # nothing was deployed
    logged = "".join(capfd.readouterr())
    assert "answered 401: authentication failed: check the Atlas connection's login and password" in logged
    assert "not-the-password" not in logged


# -- faults on a real HDFS (Hadoop 3.5's MiniDFSCluster): the NameNode and the DataNode go away mid-upload ------
@pytest.fixture(scope="module")
def fault_hdfs(tmp_path_factory):
    """A real HDFS of this module's own (its faults break it), started once; each test leaves it up and empty."""
    from model_governance_devstack.real.hdfs import RealHDFS

    hdfs = RealHDFS(tmp_path_factory.mktemp("fault-hdfs")).start()
    yield hdfs
    hdfs.stop()


@pytest.fixture
def real_hdfs_stack(fault_hdfs, tmp_path, monkeypatch):
    """Stand-in Atlas and MLeap (2-second client timeouts, as `stack`), the registry on the real HDFS."""
    from model_governance_devstack.launcher import start_devstack

    from tests.real_services import empty_hdfs

    with start_devstack(tmp_path / "devstack", atlas_port=0, mleap_port=0, webhdfs_port=0, running={"hdfs": fault_hdfs}) as devstack:
        for name, value in devstack.env().items():
            monkeypatch.setenv(name, value)
        for conn_id in ("mleap_default", "atlas_default"):
            conn = json.loads(json.dumps(devstack.connections[conn_id]))
            conn.setdefault("extra", {})["timeout"] = 2
            monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(conn))
        try:
            yield devstack
        finally:
            info = fault_hdfs.status()
            if info["namenodes"][0]["state"] == "down":
                fault_hdfs.restart_namenode(0)
            if info.get("datanode") != "running":
                fault_hdfs.restart_datanode()
            empty_hdfs(fault_hdfs)


def fault_mid_upload(monkeypatch, fault):
    """Call fault() once, while the first model file of the run's upload is half sent."""
    from model_governance import registry

    write_file, fired = registry.WebHDFSStore.write_file, []

    def write_file_with_fault(self, path, stream, size):
        if fired or "/.pending/" not in path or size < 4096:
            return write_file(self, path, stream, size)
        data = stream.read()

        def halves():
            yield data[: len(data) // 2]
            fired.append(time.monotonic())
            fault()
            yield data[len(data) // 2 :]

        return write_file(self, path, halves(), size)

    monkeypatch.setattr(registry.WebHDFSStore, "write_file", write_file_with_fault)
    return fired


def test_real_namenode_killed_during_the_upload_and_restarted(dag, real_hdfs_stack, fault_hdfs, tmp_path, monkeypatch):
    """The NameNode dies with a file half sent, and comes back (same ports, same data) a second later."""
    import threading

    restarted = []

    def kill_and_restart():
        fault_hdfs.kill_namenode(0)

        def restart():
            time.sleep(1)
            restarted.append(fault_hdfs.restart_namenode(0))

        restarted.append(threading.Thread(target=restart, daemon=True))
        restarted[0].start()

    def inject():
        fault_mid_upload(monkeypatch, kill_and_restart)

    def after_run():
        restarted[0].join(120)
        assert len(restarted) == 2, "the NameNode did not restart"

    run_fault("HDFS (real): NameNode killed during the upload, restarted", dag, real_hdfs_stack, tmp_path, inject,
              {"survived", "rerun"}, after_run)


def test_real_datanode_gone_during_the_upload(dag, real_hdfs_stack, fault_hdfs, tmp_path, monkeypatch):
    """The only DataNode stops with a file half sent and stays down for the whole run; back for the rerun."""

    def inject():
        fault_mid_upload(monkeypatch, fault_hdfs.stop_datanode)

    run_fault("HDFS (real): DataNode gone during the upload (back for the rerun)", dag, real_hdfs_stack, tmp_path, inject,
              {"rerun"}, fault_hdfs.restart_datanode)


# -- a fault on the real MLeap runtime: its JVM killed mid-load ---------------------------------------------


REAL_MLEAP_KILLED = "MLeap JVM killed while loading the new model, restarted (real MLeap, Atlas, HDFS)"


def kill_during_the_swap(host, version: str, errors: list, timeout: float = 180) -> None:
    """Wait until the endpoint's name is loading `version` (the old model already unloaded), then SIGKILL
    the host's JVM and start it again, as a supervisor would: it comes back with no model loaded."""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            try:
                answer = requests.get(f"{host.url}/models/target", timeout=2)
            except requests.RequestException:
                answer = None
            if answer is not None and answer.status_code == 200 and f"/{version}/" in answer.json()["uri"]:
                host.kill()
                host.start()
                return
            time.sleep(0.02)
        errors.append(f"the endpoint never loaded {version} within {timeout} s")
    except Exception as exc:  # noqa: BLE001 - reported by the test
        errors.append(repr(exc))


def test_fault_mleap_jvm_killed_during_a_load(dag, tmp_path, monkeypatch, request):
    """The real MLeap runtime's JVM killed while the endpoint loads 1.1 (its 1.0 already unloaded: the swap),
    then restarted empty. Each load takes 2 s (the host's load delay) so the kill lands mid-load. Survived in
    the run (the deploy step's retry finds the restarted server and deploys again) or by a rerun (the step
    restored 1.0, registered nothing); either way nothing half-done and no lock left."""
    import threading

    from model_governance_devstack.launcher import start_devstack
    from model_governance_devstack.real.mleap import MLeapRuntimeHost
    from tests.real_services import empty_hdfs, purge_atlas

    atlas, hdfs = request.getfixturevalue("real_atlas"), request.getfixturevalue("real_hdfs")
    host = MLeapRuntimeHost(tmp_path / "real-mleap", load_delay=2.0, stop_delay=0.3).start()
    running = {"atlas": atlas, "hdfs": hdfs, "mleap": host}
    try:
        with start_devstack(tmp_path / "devstack", atlas_port=0, mleap_port=0, webhdfs_port=0, running=running) as stack:
            for name, value in stack.env().items():
                monkeypatch.setenv(name, value)
            predictions = deploy_first_version(dag, stack, tmp_path)
            errors: list[str] = []
            killer = threading.Thread(target=kill_during_the_swap, args=(host, "1.1", errors), daemon=True)
            killer.start()
            run = dag.test(run_conf={**NO_APPROVAL, "staging": str(EXAMPLE_STAGING)})
            killer.join(timeout=60)
            assert not killer.is_alive() and errors == [], errors
            settle(REAL_MLEAP_KILLED, ("survived", "rerun"), run, dag, stack, predictions, registered=searched_soon)
    finally:
        host.stop()
        empty_hdfs(hdfs)
        purge_atlas(atlas)


def searched_soon(stack, timeout: float = 15):
    """`entities`, asked again for a moment until the final pair shows: real Atlas's search index is
    eventually consistent (the supersede is an update it may not have indexed yet)."""
    final = [("1.0", "superseded"), ("1.1", "deployed")]
    deadline = time.monotonic() + timeout
    while True:
        found = entities(stack)
        if sorted((e["modelVersion"], e["deployStatus"]) for e in found) == final or time.monotonic() > deadline:
            return found
        time.sleep(0.5)
