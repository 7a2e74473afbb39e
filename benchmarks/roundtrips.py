"""Round trips and ratios of one deployment (issue 17): Atlas calls, WebHDFS requests, what an unchanged
redeploy costs, the registry push against the `hdfs` client, DAG parse time.

Each bench returns rows (figure, measured, goal, pass/fail). Calls are counted at the HTTP layer of this
process (every `requests` adapter send: the hooks' sessions and the `hdfs` client's), classified by path:
`/api/atlas/...` is Atlas, `/webhdfs/v1/...` is WebHDFS (NameNode and DataNode requests alike), anything
else to the MLeap port is MLeap. `dag.test()` runs the real DAGs in this process, so nothing escapes.

Run by `python -m benchmarks` (which sets up a private Airflow home first); `--real hdfs,mleap` there runs
the service-dependent rows against the real servers as well as the stand-ins.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections import Counter
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

PROJECT = Path(__file__).resolve().parents[1]
MIB = 1024 * 1024
Row = tuple[str, str, str, str]


def verdict(ok: bool) -> str:
    return "pass" if ok else "FAIL"


# -- counting HTTP requests --------------------------------------------------------------------------------
class CallCounter:
    """Counts every HTTP request `requests` sends in this process, by service and by (method, path kind)."""

    def __init__(self, mleap_port: int | None = None) -> None:
        self.mleap_port = mleap_port
        self.calls: Counter[str] = Counter()
        self.detail: list[tuple[str, str, str]] = []
        self.uploaded = 0
        self.lock = threading.Lock()

    def service(self, url: str) -> str:
        parts = urlsplit(url)
        if parts.path.startswith("/api/atlas"):
            return "atlas"
        if parts.path.startswith("/webhdfs/v1"):
            return "webhdfs"
        if self.mleap_port and parts.port == self.mleap_port:
            return "mleap"
        return "other"

    def record(self, request: Any) -> None:
        service = self.service(request.url)
        query = urlsplit(request.url).query
        op = next((p.split("=", 1)[1] for p in query.split("&") if p.lower().startswith("op=")), "")
        with self.lock:
            self.calls[service] += 1
            self.detail.append((service, request.method, op or urlsplit(request.url).path))
            if os.environ.get("ROUNDTRIPS_TRACE"):
                print("TRACE", service, request.method, op, urlsplit(request.url).path, file=sys.stderr)

    def reset(self) -> None:
        with self.lock:
            self.calls.clear()
            self.detail.clear()

    def summary(self, service: str) -> str:
        ops = Counter(f"{m} {op}" for s, m, op in self.detail if s == service)
        return ", ".join(f"{k} x{v}" if v > 1 else k for k, v in ops.most_common())


@contextmanager
def counting(counter: CallCounter):
    import requests.adapters

    original = requests.adapters.HTTPAdapter.send

    def send(self: Any, request: Any, *args: Any, **kwargs: Any) -> Any:
        counter.record(request)
        return original(self, request, *args, **kwargs)

    requests.adapters.HTTPAdapter.send = send  # type: ignore[method-assign]
    try:
        yield counter
    finally:
        requests.adapters.HTTPAdapter.send = original  # type: ignore[method-assign]


# -- a stack: stand-ins, or real HDFS / MLeap (and Atlas) --------------------------------------------------
class Stack:
    """Services on free ports (the real ones named in `real`), their connections in the environment, a fresh
    Airflow database. With real MLeap the deployments use its spring-boot API."""

    def __init__(self, work: Path, real: frozenset[str] = frozenset()) -> None:
        self.work, self.real = work, real

    def __enter__(self) -> Stack:
        from airflow.utils.db import resetdb

        from model_governance_devstack.launcher import start_devstack

        self.folder = Path(tempfile.mkdtemp(dir=self.work))
        self.devstack = start_devstack(
            self.folder / "devstack", atlas_port=0, mleap_port=0, webhdfs_port=0, real=self.real
        )
        self.saved = {k: os.environ.get(k) for k in self.devstack.env()}
        os.environ.update(self.devstack.env())
        resetdb()
        return self

    @property
    def mleap_port(self) -> int:
        return int(self.devstack.connections["mleap_default"]["port"])

    def label(self) -> str:
        names = {"atlas": "atlas", "hdfs": "hdfs", "mleap": "mleap spring-boot"}
        real = [names[n] for n in ("atlas", "hdfs", "mleap") if n in self.real]
        return f"real {', '.join(real)}" if real else "stand-ins"

    def __exit__(self, *exc: object) -> None:
        self.devstack.stop()
        for key, value in self.saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def load_dag(dag_id: str) -> Any:
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(PROJECT / "dags" / f"{dag_id}.py")).dags[dag_id]


def task_seconds(run: Any) -> float:
    """The model's steps' task time (model_redeploy's `read_manifest` is the run's, not a deployment's)."""
    return sum(
        (ti.end_date - ti.start_date).total_seconds()
        for ti in run.get_task_instances()
        if ti.start_date and ti.end_date and ti.task_id != "read_manifest"
    )


def reloads(counter: CallCounter) -> int:
    """Model loads sent to MLeap: the legacy `PUT /model`, spring-boot's `POST /models`."""
    return sum(
        1
        for s, method, path in counter.detail
        if s == "mleap"
        and ((method == "PUT" and path == "/model") or (method == "POST" and path == "/models"))
    )


def deploy_counts(
    work: Path, real: frozenset[str] = frozenset(), dag_id: str = "model_deployment"
) -> dict[str, Any]:
    """Three runs of one DAG on a fresh stack: a new model (first deploy, type absent), a new version of it
    (type present), the same version again (unchanged redeploy). Counts and task times of each."""
    from tests.helpers import NO_APPROVAL, EXAMPLE_STAGING, stage_variant

    results: dict[str, Any] = {}
    with Stack(work, real) as stack:
        counter = CallCounter(stack.mleap_port)
        conf: dict[str, Any] = {}
        staging_dir = stack.folder / "staging"
        first = stage_variant(staging_dir, version="1.0")
        later = stage_variant(staging_dir, version="1.2")
        runs = [
            ("new model", first),
            ("new version", EXAMPLE_STAGING),
            ("unchanged", EXAMPLE_STAGING),
            ("new version, fresh process", later),
        ]
        if dag_id == "model_redeploy":
            manifest = stack.folder / "redeploy.json"
            os.environ["MODEL_GOVERNANCE_REDEPLOY_MANIFEST"] = str(manifest)
        dag = load_dag(dag_id)
        for label, staging in runs:
            if label.endswith("fresh process"):  # as a worker's new task process: the type not yet checked
                from model_governance.atlas import schema

                schema._CURRENT_AT.clear()
            counter.reset()
            with counting(counter):
                if dag_id == "model_redeploy":
                    manifest.write_text(json.dumps({"models": [{"staging": str(staging)}]}))
                    run = dag.test(run_conf=NO_APPROVAL)
                else:
                    run = dag.test(run_conf={**NO_APPROVAL, **conf, "staging": str(staging)})
            failed = [ti.task_id for ti in run.get_task_instances() if ti.state not in ("success", "skipped")]
            assert run.state == "success", (label, failed)
            publish = [ti for ti in run.get_task_instances() if ti.task_id.endswith("push_to_registry")][0]
            doc = publish.xcom_pull(task_ids=publish.task_id, map_indexes=publish.map_index)
            if isinstance(doc, list):
                doc = doc[0]
            if doc:
                uploaded = doc["registry"]["uploaded_bytes"]
            else:  # publish skipped (the model serves already): nothing uploaded if nothing was created
                creates = sum(1 for s, m, op in counter.detail if s == "webhdfs" and op in ("CREATE", "APPEND"))
                uploaded = 0 if creates == 0 else -1
            results[label] = {
                "atlas": counter.calls["atlas"],
                "webhdfs": counter.calls["webhdfs"],
                "mleap": counter.calls["mleap"],
                "reloads": reloads(counter),
                "uploaded": uploaded,
                "task_seconds": task_seconds(run),
                "steps": {
                    ti.task_id.rsplit(".", 1)[-1]: round((ti.end_date - ti.start_date).total_seconds(), 3)
                    for ti in run.get_task_instances()
                    if ti.start_date and ti.end_date
                },
                "atlas_detail": counter.summary("atlas"),
                "webhdfs_detail": counter.summary("webhdfs"),
                "mleap_detail": counter.summary("mleap"),
            }
        results["label"] = stack.label()
    return results


# -- the registry push of a 1 GiB staged file against the `hdfs` client ----------------------------------
PUSH_CHILD = """
import json, resource, sys, time
from pathlib import Path
sys.path.insert(0, {plugins!r})
mode, folder, url, threads = sys.argv[1], Path(sys.argv[2]), sys.argv[3], int(sys.argv[4])
from hdfs import InsecureClient
if mode == "product":
    from model_governance.registry import Registry, WebHDFSStore
    from model_governance.staging import build_manifest
    manifest = build_manifest(folder)  # the fetch step hashes before it uploads: not part of the upload
imported_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start = time.perf_counter()
if mode == "product":
    store = WebHDFSStore(InsecureClient(url, user="hdfs"), "hdfs://bench:8020")
    Registry(store, "/bench-product", parallelism=threads).upload_pending("bench", folder, manifest)
else:
    InsecureClient(url, user="hdfs").upload("/bench-client", str(folder), n_threads=threads)
took = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({{"seconds": took, "imported_kib": imported_kib, "peak_rss_kib": peak}}))
"""


def push_runs(work: Path, url: str, folder: Path, threads: int, rounds: int) -> dict[str, list[dict]]:
    from hdfs import InsecureClient

    script = PUSH_CHILD.format(plugins=str(PROJECT / "plugins"))
    results: dict[str, list[dict]] = {"client": [], "product": []}
    client = InsecureClient(url, user="hdfs")
    for index in range(rounds * 2):
        # alternating, each first in turn: the page cache and disk write-back favour whoever goes first
        mode = ("client", "product")[(index + index // 2) % 2]
        out = subprocess.run(
            [sys.executable, "-c", script, mode, str(folder), url, str(threads)],
            capture_output=True,
            text=True,
            env=os.environ,
        )
        if out.returncode:
            raise RuntimeError(out.stderr[-3000:])
        results[mode].append(json.loads(out.stdout.strip().splitlines()[-1]))
        for path in ("/bench-client", "/bench-product"):  # every upload starts from an empty file system
            client.delete(path, recursive=True)
    return results


def bench_push(work: Path, real: frozenset[str], size_mib: int = 1024, threads: int = 4, rounds: int = 3) -> list[Row]:
    """The fetch step's upload of a staged model holding a 1 GiB training-data file, against the `hdfs`
    client's own `upload(n_threads=N)` of the same folder, alternating in one run; RSS of each process."""
    from tests.helpers import NO_APPROVAL, EXAMPLE_STAGING

    folder = work / "big-model"
    shutil.copytree(EXAMPLE_STAGING, folder)
    block = os.urandom(MIB)
    with open(folder / "trainingdata" / "big.bin", "wb") as out:
        for _ in range(size_mib):
            out.write(block)
    total = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    rows: list[Row] = []
    try:
        for world in ["hdfs"] if "hdfs" in real else ["stand-in"]:  # the goal is on the real HDFS
            if world == "hdfs":
                from model_governance_devstack.real.hdfs import RealHDFS

                server: Any = RealHDFS(work / "push-hdfs").start()
                conn = server.connection()
                url = f"http://{conn['host'].split(',')[0]}:{conn['port']}"
                label = "real HDFS"
            else:
                from model_governance_devstack.webhdfs import WebHDFSStandIn

                server = WebHDFSStandIn(work / "push-webhdfs", port=0).start()
                url, label = server.url, "WebHDFS stand-in"
            try:
                results = push_runs(work, url, folder, threads, rounds)
            finally:
                server.stop()
            client = statistics.median(r["seconds"] for r in results["client"])
            product = statistics.median(r["seconds"] for r in results["product"])
            growth = max(r["peak_rss_kib"] - r["imported_kib"] for r in results["product"]) / 1024
            each = {m: "/".join(f"{r['seconds']:.1f}" for r in results[m]) for m in results}
            ratio = client / product
            rows.append((
                f"registry push of {total / MIB:.0f} MiB vs hdfs upload(n_threads={threads}), {label}",
                f"{ratio:.2f}x ({total / MIB / product:.0f} vs {total / MIB / client:.0f} MiB/s; "
                f"runs {each['product']} s vs {each['client']} s)",
                ">= 0.9x" if world == "hdfs" else ">= 0.9x (goal on real HDFS)",
                verdict(ratio >= 0.9),
            ))
            rows.append((
                f"registry push RSS growth, {label}",
                f"{growth:.0f} MiB above the process after its imports",
                "<= 150 MiB",
                verdict(growth <= 150),
            ))
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return rows


# -- DAG parse time ------------------------------------------------------------------------------------------
ONE_TASK_DAG = """
from airflow.sdk import DAG, task
with DAG(dag_id="one_task", schedule=None):
    @task
    def hello():
        return 1
    hello()
"""
# One parse as Airflow 3's DAG processor does it: its manager has `airflow.sdk` loaded and its heap frozen
# (`gc.freeze()` in DagFileProcessorManager.before_run), imports the `airflow.*` modules the file names
# (`_pre_import_airflow_modules`, `[dag_processor] parsing_pre_import_modules`, on by default) and forks a
# child that parses the file; the child's parse is timed.
PARSE_CHILD = """
import gc, importlib, sys, time, airflow.sdk
from airflow.dag_processing.dagbag import DagBag
from airflow.utils.file import iter_airflow_imports
gc.collect()
gc.freeze()
for module in iter_airflow_imports(sys.argv[1]):
    importlib.import_module(module)
start = time.perf_counter()
bag = DagBag(dag_folder=sys.argv[1])
assert not bag.import_errors, bag.import_errors
print(time.perf_counter() - start)
"""


def parse_seconds(dag_file: Path, env: dict[str, str]) -> float:
    """Wall time to parse one DAG file in a fresh interpreter set up as a DAG processor's child."""
    out = subprocess.run([sys.executable, "-c", PARSE_CHILD, str(dag_file)], capture_output=True, text=True, env=env)
    if out.returncode:
        raise RuntimeError(f"parsing {dag_file} failed:\n{out.stderr[-3000:]}")
    return float(out.stdout.strip().splitlines()[-1])


def bench_parse(work: Path, repeats: int = 7) -> list[Row]:
    """Every file in dags/ against a one-task DAG, interleaved so that machine load falls on all alike.

    Every module loads from bytecode, as Airflow's own do (pip compiled them at install, and a DAG
    processor writes `__pycache__` beside the project's files on its first parse): the project's modules
    and DAG files are compiled first, and the `__pycache__` folders made here removed at the end. On a
    machine that sets `PYTHONDONTWRITEBYTECODE` (this one does) nothing writes them, and every parse
    compiles this project's sources while Airflow's load compiled: that is measured first, as info.
    """
    import compileall

    baseline = work / "one_task_dag.py"
    baseline.write_text(ONE_TASK_DAG)
    files = [baseline, *sorted((PROJECT / "dags").glob("*.py"))]
    folders = (PROJECT / "plugins", PROJECT / "dags", work)
    made = [d for top in folders for d in (top, *top.rglob("*"))
            if d.is_dir() and d.name != "__pycache__" and not (d / "__pycache__").exists()]
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}  # the children neither write nor rewrite bytecode
    try:
        from_source = median_parse_seconds(files, 3, env) if not (set(folders) - set(made)) else None
        for folder in folders:
            compileall.compile_dir(folder, quiet=2)
        compiled = median_parse_seconds(files, repeats, env)
    finally:
        for folder in made:
            shutil.rmtree(folder / "__pycache__", ignore_errors=True)
    base = compiled[baseline]
    rows: list[Row] = [("DAG parse, one-task DAG", f"{base * 1000:.0f} ms", "(the baseline)", "")]
    for dag_file in files[1:]:
        rows.append((
            f"DAG parse, dags/{dag_file.name}",
            f"{compiled[dag_file] * 1000:.0f} ms, {compiled[dag_file] / base:.2f}x the one-task DAG",
            "<= 1.1x",
            verdict(compiled[dag_file] / base <= 1.1),
        ))
    if from_source:
        rows.append((
            "DAG parse, this project's files compiled in every parse (no __pycache__ written)",
            ", ".join(f"{f.stem} {from_source[f] / from_source[baseline]:.2f}x" for f in files[1:]),
            "-",
            "info",
        ))
    return rows


def median_parse_seconds(files: list[Path], repeats: int, env: dict[str, str]) -> dict[Path, float]:
    times: dict[Path, list[float]] = {f: [] for f in files}
    for _ in range(repeats):
        for dag_file in files:
            times[dag_file].append(parse_seconds(dag_file, env))
    return {f: statistics.median(t) for f, t in times.items()}


# -- the rows ------------------------------------------------------------------------------------------------
EMPTY_DAG = """
from airflow.sdk import DAG, task
with DAG(dag_id="five_empty_tasks", schedule=None):
    @task
    def a(): pass
    @task
    def b(): pass
    @task
    def c(): pass
    @task
    def d(): pass
    @task
    def e(): pass
    a() >> b() >> c() >> d() >> e()
"""


def empty_tasks_seconds(work: Path) -> float:
    """What `dag.test()` takes for five empty tasks, one after another: the floor of any five-step run."""
    from airflow.dag_processing.dagbag import DagBag

    from airflow.dag_processing.dagbag import sync_bag_to_db

    folder = work / "empty-dags"
    folder.mkdir(exist_ok=True)
    (folder / "five_empty_tasks.py").write_text(EMPTY_DAG)
    from airflow.dag_processing.bundles.manager import DagBundlesManager

    DagBundlesManager().sync_bundles_to_db()
    bag = DagBag(dag_folder=str(folder))
    sync_bag_to_db(bag, "dags-folder", None)  # dag.test() runs serialized DAGs only
    dag = bag.dags["five_empty_tasks"]
    dag.test()  # the first run pays dag.test()'s own start
    return task_seconds(dag.test())


def count_rows(work: Path, real: frozenset[str]) -> list[Row]:
    """Atlas calls, WebHDFS requests and what an unchanged redeploy costs, per world: the stand-ins, and the
    real servers named in `real` (real HDFS with real MLeap spring-boot; real Atlas when named)."""
    from model_governance.atlas import schema

    worlds = [frozenset()]
    if real:
        worlds.append(real)
    rows: list[Row] = []
    for world in worlds:
        schema._CURRENT_AT.clear()
        # the scheduled redeploy's DAG: the unchanged case is its everyday case (model_deployment makes the
        # same calls for a new model or version; it does not skip a version found serving)
        counts = deploy_counts(work, world, dag_id="model_redeploy")
        label = counts["label"]
        new, version, same = counts["new model"], counts["new version"], counts["unchanged"]
        fresh = counts["new version, fresh process"]
        rows += [
            (f"Atlas calls, first deploy of a new model ({label})", str(new["atlas"]), "<= 5",
             verdict(new["atlas"] <= 5)),
            (f"Atlas calls, new version, type present, checked in this process ({label})",
             f"{version['atlas']}: {version['atlas_detail']}", "<= 3", verdict(version["atlas"] <= 3)),
            (f"Atlas calls, new version, type present, fresh task process ({label})",
             f"{fresh['atlas']}: {fresh['atlas_detail']}", "<= 3", verdict(fresh["atlas"] <= 3)),
            (f"Atlas calls, unchanged redeploy ({label})", str(same["atlas"]), "<= 3",
             verdict(same["atlas"] <= 3)),
            (f"WebHDFS requests, first deploy of the example ({label})",
             f"{new['webhdfs']}: {new['webhdfs_detail']}", "<= 30", verdict(new["webhdfs"] <= 30)),
            (f"WebHDFS requests, unchanged redeploy ({label})",
             f"{same['webhdfs']}: {same['webhdfs_detail']}", "<= 8", verdict(same["webhdfs"] <= 8)),
            (f"unchanged redeploy, bytes uploaded and model loads ({label})",
             f"{same['uploaded']} bytes, {same['reloads']} loads (MLeap: {same['mleap_detail']})",
             "0 bytes, 0 loads", verdict(same["uploaded"] == 0 and same["reloads"] == 0)),
        ]
        ratio = same["task_seconds"] / version["task_seconds"]
        steps = ", ".join(f"{k} {v * 1000:.0f}" for k, v in sorted(same["steps"].items()))
        rows.append((
            f"unchanged redeploy task time / first deploy of that version ({label})",
            f"{ratio:.0%} ({same['task_seconds']:.2f} s / {version['task_seconds']:.2f} s; ms: {steps})",
            "<= 25%",
            verdict(ratio <= 0.25),
        ))
    floor = empty_tasks_seconds(work)
    rows.append((
        "the floor: five empty tasks under dag.test(), task time",
        f"{floor:.2f} s ({floor / version['task_seconds']:.0%} of that first deploy)",
        "(Airflow's own cost per task, for scale)",
        "",
    ))
    schema._CURRENT_AT.clear()
    return rows


def bench_roundtrips(work: Path, real: frozenset[str] = frozenset()) -> list[Row]:
    return count_rows(work, real)


def bench_ratios(work: Path, real: frozenset[str] = frozenset()) -> list[Row]:
    return bench_push(work, real) + bench_parse(work)
