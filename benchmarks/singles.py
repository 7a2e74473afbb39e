"""Single-deployment benches on the stand-ins with `dag.test()`: parse, push, deploy, rerun, swap.

They run against the stand-ins on loopback (started here, stopped at the end), with the private Airflow
home on SQLite of `benchmarks.workspace`, as `make test` does; nothing is left running.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

from benchmarks.workspace import MIB, PROJECT, WORK  # first: sets the Airflow home
from benchmarks.report import Row, at_least, at_most, equals
from tests.helpers import NO_APPROVAL, EXAMPLE_STAGING, stage_variant

ONE_TASK_DAG = """
from airflow.sdk import DAG, task
with DAG(dag_id="one_task", schedule=None):
    @task
    def hello():
        return 1
    hello()
"""


def human_rate(nbytes: int, seconds: float) -> str:
    return f"{nbytes / MIB / seconds:.0f} MiB/s"


# -- 1. DAG parse time -------------------------------------------------------------------------------------
def parse_seconds(dag_file: Path, repeats: int) -> float:
    """Median wall time to parse one DAG file in a fresh interpreter, Airflow itself already imported."""
    code = textwrap.dedent(
        f"""
        import time, airflow.sdk
        from airflow.dag_processing.dagbag import DagBag
        start = time.perf_counter()
        bag = DagBag(dag_folder={str(dag_file)!r})
        assert not bag.import_errors, bag.import_errors
        print(time.perf_counter() - start)
        """
    )
    times = []
    for _ in range(repeats):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=os.environ)
        if out.returncode:
            raise RuntimeError(f"parsing {dag_file} failed:\n{out.stderr[-3000:]}")
        times.append(float(out.stdout.strip().splitlines()[-1]))
    return statistics.median(times)


def bench_parse(repeats: int = 5) -> Iterator[Row]:
    """Every file in dags/ against a one-task DAG, each the median of `repeats` fresh interpreters."""
    baseline = WORK / "one_task_dag.py"
    baseline.write_text(ONE_TASK_DAG)
    base = parse_seconds(baseline, repeats)
    yield Row("parse: one-task DAG", f"{base * 1000:.0f} ms")
    for dag_file in sorted((PROJECT / "dags").glob("*.py")):
        took = parse_seconds(dag_file, repeats)
        yield at_most(f"parse: {dag_file.name} / one-task DAG", took / base, 1.1, "{:.2f}x", f"{took * 1000:.0f} ms")


# -- 2. registry push of a 1 GiB training-data file --------------------------------------------------------
PUSH_CHILD = """
import json, resource, sys, time
from pathlib import Path
sys.path.insert(0, {plugins!r})
mode, folder, url = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
from hdfs import InsecureClient
if mode == "product":
    from model_governance.registry import Registry, WebHDFSStore
    from model_governance.staging import build_manifest
imported_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # what the imports cost, before any data
start = time.perf_counter()
if mode == "product":
    manifest = build_manifest(folder)
    hashed = time.perf_counter()
    registry = Registry(WebHDFSStore(InsecureClient(url, user="hdfs"), "hdfs://bench:8020"), "/bench-product")
    uploaded = registry.upload_pending("bench", folder, manifest)
    sent = time.perf_counter()
    registry.verify(registry.pending_path("bench"), manifest)
    verified = time.perf_counter()
    phases = {{"hash": hashed - start, "upload": sent - hashed, "verify": verified - sent}}
else:
    InsecureClient(url, user="hdfs").upload("/bench-client", str(folder), n_threads=4)
    uploaded, phases = None, {{"upload": time.perf_counter() - start}}
print(json.dumps({{"phases": phases, "uploaded": uploaded, "imported_kib": imported_kib, "peak_rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}}))
"""


def bench_push(size_mib: int = 1024) -> Iterator[Row]:
    from hdfs import InsecureClient

    from model_governance_devstack.webhdfs import WebHDFSStandIn

    folder = WORK / "big-model"
    shutil.copytree(EXAMPLE_STAGING, folder)
    block = os.urandom(MIB)
    with open(folder / "trainingdata" / "big.bin", "wb") as out:
        for _ in range(size_mib):
            out.write(block)
    total = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    staged = f"{total / MIB:.0f} MiB staged"
    script = PUSH_CHILD.format(plugins=str(PROJECT / "plugins"))
    results: dict[str, list[dict]] = {"client": [], "product": []}
    with WebHDFSStandIn(WORK / "webhdfs-push", port=0) as webhdfs:
        # alternating, three times each: the page cache and disk write-back favour whoever goes first
        for mode in ("client", "product") * 3:
            out = subprocess.run([sys.executable, "-c", script, mode, str(folder), webhdfs.url], capture_output=True, text=True, env=os.environ)
            if out.returncode:
                raise RuntimeError(out.stderr[-3000:])
            results[mode].append(json.loads(out.stdout.strip().splitlines()[-1]))
            for path in ("/bench-client", "/bench-product"):  # every upload starts from an empty file system
                InsecureClient(webhdfs.url, user="hdfs").delete(path, recursive=True)
    shutil.rmtree(folder)
    median = {mode: statistics.median(r["phases"]["upload"] for r in runs) for mode, runs in results.items()}
    each = {mode: ", ".join(f"{r['phases']['upload']:.1f}" for r in runs) for mode, runs in results.items()}
    yield at_least("push 1 GiB (WebHDFS stand-in): registry upload_pending / hdfs upload(n_threads=4)",
                   median["client"] / median["product"], 0.9, "{:.2f}x",
                   f"{human_rate(total, median['product'])} vs {human_rate(total, median['client'])}; {staged}; "
                   f"runs {each['product']} s vs {each['client']} s")
    growth = max(r["peak_rss_kib"] - r["imported_kib"] for r in results["product"]) / 1024
    peak = max(r["peak_rss_kib"] for r in results["product"]) / 1024
    yield at_most("push 1 GiB: RSS growth above the process after its imports", growth, 150, "{:.0f} MiB", f"peak {peak:.0f} MiB")
    for phase, label in (("hash", "push: registry sha256 of the staged files"), ("verify", "push: registry verify (read back, sha256)")):
        took = statistics.median(r["phases"][phase] for r in results["product"])
        yield Row(label, f"median {took:.1f} s ({human_rate(total, took)})")


# -- 3-5. deployments through the real DAGs with dag.test() ------------------------------------------------
class Stack:
    """Stand-ins on free ports, their connections in the environment, a fresh Airflow database."""

    def __enter__(self):
        from airflow.utils.db import resetdb

        from model_governance_devstack.launcher import start_devstack

        self.folder = Path(tempfile.mkdtemp(dir=WORK))
        self.devstack = start_devstack(self.folder / "devstack", atlas_port=0, mleap_port=0, webhdfs_port=0)
        os.environ.update(self.devstack.env())
        resetdb()
        return self

    def __exit__(self, *exc):
        self.devstack.stop()


def load_dag(dag_id: str):
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(PROJECT / "dags" / f"{dag_id}.py")).dags[dag_id]


def step_seconds(dag_run) -> dict[str, float]:
    return {ti.task_id: (ti.end_date - ti.start_date).total_seconds() for ti in dag_run.get_task_instances() if ti.start_date and ti.end_date}


def bench_deploy() -> Iterator[Row]:
    """Per step, for the first deployment in a fresh process (imports included, as a worker's first task
    pays them) and for a second one (another version) in the same process."""
    with Stack() as stack:
        dag = load_dag("model_deployment")
        runs = [("cold", str(stage_variant(stack.folder / "staging", version="1.0"))), ("warm", str(EXAMPLE_STAGING))]
        for label, staging in runs:
            start = time.perf_counter()
            run = dag.test(run_conf={**NO_APPROVAL, "staging": staging})
            total = time.perf_counter() - start
            assert run.state == "success", run.state
            steps = step_seconds(run)
            yield Row(f"deploy ({label}): whole run (dag.test)", f"{total:.2f} s", "", None)
            yield Row(f"deploy ({label}): steps", ", ".join(f"{task} {steps[task] * 1000:.0f} ms" for task in
                                                            ("fetch_staging", "push_to_registry", "deploy_model", "register_in_atlas", "clean_up")))


def bench_rerun() -> Iterator[Row]:
    """A first deploy of the example, then the same model again: bytes uploaded and task time."""
    with Stack() as stack:
        dag = load_dag("model_deployment")
        # a warm-up deploy of another version first: the first task of a dag.test() process pays its start
        warm_up = dag.test(run_conf={**NO_APPROVAL, "staging": str(stage_variant(stack.folder / "staging", version="1.0"))})
        assert warm_up.state == "success", warm_up.state
        measured = {}
        for label in ("first deploy", "unchanged redeploy"):
            run = dag.test(run_conf={**NO_APPROVAL, "staging": str(EXAMPLE_STAGING)})
            assert run.state == "success", run.state
            doc = run.get_task_instance("push_to_registry").xcom_pull(task_ids="push_to_registry")
            measured[label] = (sum(step_seconds(run).values()), doc["registry"]["uploaded_bytes"])
        (first, first_bytes), (again, again_bytes) = measured["first deploy"], measured["unchanged redeploy"]
        yield equals("rerun: bytes uploaded by an unchanged redeploy", again_bytes, 0, f"first deploy {first_bytes:,}")
        yield at_most("rerun: unchanged redeploy task time / first deploy's", again / first, 0.25, "{:.0%}",
                      f"{again:.2f} s vs {first:.2f} s")


def bench_swap(load_delay: float = 0.5) -> Iterator[Row]:
    """How long a spring-boot redeploy leaves `/models/<name>/transform` unserved: a probe scores the sample
    every 2 ms while version 1.1 replaces 1.0. The stand-in takes `load_delay` seconds to load a bundle."""
    import threading

    import requests

    from model_governance_devstack.mleap import MLeapStandIn

    with Stack() as stack:
        models_dir = stack.folder / "spring-models"
        models_dir.mkdir()
        with MLeapStandIn(stack.folder / "spring", api="spring-boot", mounts={"/models": models_dir}, load_delay=load_delay) as spring:
            os.environ["AIRFLOW_CONN_MLEAP_SPRING"] = json.dumps(
                {"conn_type": "http", "host": "127.0.0.1", "port": spring.port, "extra": {"api": "spring-boot", "models_dir": str(models_dir)}})
            dag = load_dag("model_deployment")
            conf = {"mleap_conn_id": "mleap_spring"}
            assert dag.test(run_conf={**NO_APPROVAL, **conf, "staging": str(stage_variant(stack.folder / "staging", version="1.0"))}).state == "success"
            sample = (EXAMPLE_STAGING / "samples" / "leapframe.json").read_bytes()
            gaps, latencies, failed, done = [], [], [0], threading.Event()

            def probe() -> None:
                session, down_since = requests.Session(), None
                while not done.is_set():
                    asked = time.perf_counter()
                    answer = session.post(f"{spring.url}/models/target/transform", data=sample, headers={"Content-Type": "application/json"})
                    served = answer.status_code == 200 and answer.json().get("status") != "STATUS_ERROR"
                    now = time.perf_counter()
                    latencies.append(now - asked)
                    failed[0] += not served
                    if not served and down_since is None:
                        down_since = now
                    elif served and down_since is not None:
                        gaps.append(now - down_since)
                        down_since = None
                    time.sleep(0.002)

            watcher = threading.Thread(target=probe)
            watcher.start()
            try:
                assert dag.test(run_conf={**NO_APPROVAL, **conf, "staging": str(EXAMPLE_STAGING)}).state == "success"
                time.sleep(0.2)
            finally:
                done.set()
                watcher.join()
    yield Row("swap: bundle load time (spring-boot stand-in)", f"{load_delay * 1000:.0f} ms")
    yield equals("swap: probe requests not served during a spring-boot redeploy", failed[0], 0, f"of {len(latencies)}")
    yield Row("swap: unserved windows (404 between unload and load)", ", ".join(f"{gap * 1000:.1f} ms" for gap in gaps) or "none")
    yield Row("swap: longest probe answer (waiting on the load)", f"{max(latencies) * 1000:.0f} ms")


BENCHES = {"parse": bench_parse, "push": bench_push, "deploy": bench_deploy, "rerun": bench_rerun, "swap": bench_swap}
