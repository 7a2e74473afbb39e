"""Single-deployment benches on the stand-ins with `dag.test()`: deploy, rerun, swap (parse and push: `roundtrips.py`).

They run against the stand-ins on loopback (started here, stopped at the end), with the private Airflow
home on SQLite of `benchmarks.workspace`, as `make test` does; nothing is left running.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from benchmarks.workspace import PROJECT, WORK  # first: sets the Airflow home
from benchmarks.report import Row, at_most, equals
from tests.helpers import NO_APPROVAL, EXAMPLE_STAGING, stage_variant

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


BENCHES = {"deploy": bench_deploy, "rerun": bench_rerun, "swap": bench_swap}  # parse and push: roundtrips.py
