"""50 models in one `model_redeploy` run under a real scheduler: LocalExecutor and CeleryExecutor.

Each executor gets a fresh stack: the stand-ins (Atlas, WebHDFS, and a spring-boot MLeap stand-in, which
serves named models, so 50 models can serve at once), a private PostgreSQL (and Redis for Celery) started
like the tests do (`tests/databases.py`), and Airflow's api-server, scheduler and dag-processor (and 2
Celery workers of concurrency 2) from `tests/airflow_processes.AirflowStack`, parallelism 4.

First one model alone (its own manifest, same stack): its task group's time, first task start to last task
end, is "one model's time". Then 50 other models in one run: the run's wall time (the scheduler's start to
end) against 1.3 × 50 × one model's time / 4. Afterwards: every model loaded once under its name at the
MLeap stand-in, 50 serving, 50 deployed Atlas entities of the run, 50 registry versions.

To say where the time goes, the bench also measures the CPU seconds every process of the stack used
(scheduler, executor workers and their task processes, api-server, PostgreSQL, the stand-ins in this
process) and how busy the machine's cores were, in the same runs.
"""

from __future__ import annotations

import json
import os
import statistics
import time
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import datetime
from pathlib import Path
from typing import Any

from benchmarks.workspace import WORK  # first: the private Airflow home
from benchmarks.report import Row, at_most, equals

MODELS = int(os.environ.get("MG_BENCH_MODELS", "50"))  # fewer only to try the bench out
PARALLELISM = 4  # AirflowStack's AIRFLOW__CORE__PARALLELISM; Celery: 2 workers × concurrency 2
SPRING_CONN = "mleap_spring"
DAG_ID = "model_redeploy"
STEPS = ("fetch_staging", "push_to_registry", "deploy_model", "register_in_atlas", "clean_up")


# -- CPU accounting -------------------------------------------------------------------------------------------
def _stat(pid: str) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None


def session_cpu(sessions: set[int]) -> float:
    """CPU seconds used by every live process of these sessions, with their waited-for children (a task
    process that ended counts in its executor worker's cutime)."""
    ticks = 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        fields = _stat(pid)
        if fields and int(fields[3]) in sessions:
            ticks += sum(int(v) for v in fields[11:15])  # utime, stime, cutime, cstime
    return ticks / os.sysconf("SC_CLK_TCK")


def machine_busy() -> tuple[float, float]:
    """(busy, total) jiffies of all cores since boot, from /proc/stat."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


class CpuMeter:
    """CPU used by the stack's sessions and by this process (the stand-ins), and the machine's busy cores."""

    def __init__(self, sessions: set[int]):
        self.sessions = sessions

    def _now(self) -> tuple[float, float, float, float]:
        own = os.times()
        busy, total = machine_busy()
        return session_cpu(self.sessions), own.user + own.system, busy, total

    def __enter__(self) -> CpuMeter:
        self.start, self.wall = self._now(), time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        end = self._now()
        self.seconds = time.perf_counter() - self.wall
        self.stack_cpu = end[0] - self.start[0]
        self.stand_in_cpu = end[1] - self.start[1]
        self.machine_cores = (end[2] - self.start[2]) / (end[3] - self.start[3]) * (os.cpu_count() or 1)


# -- Airflow's REST API ---------------------------------------------------------------------------------------
def when(value: str | None) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() if value else float("nan")


def task_instances(airflow: Any, run_id: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    while True:
        page = airflow.api("GET", f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances",
                           params={"limit": 100, "offset": len(found)}).json()["task_instances"]
        found += page
        if len(page) < 100:
            return found


def trigger_and_wait(airflow: Any, timeout: float) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    from tests.helpers import NO_APPROVAL  # 50 new versions and no second person: no approval asked, visibly

    answer = airflow.api("POST", f"/dags/{DAG_ID}/dagRuns", json={"logical_date": None, "conf": NO_APPROVAL})
    assert answer.status_code == 200, answer.text
    run = airflow.wait_run(DAG_ID, answer.json()["dag_run_id"], timeout=timeout)
    tis = task_instances(airflow, run["dag_run_id"])
    if run["state"] != "success":
        failed = sorted(f"{t['task_id']}[{t['map_index']}]={t['state']}" for t in tis if t["state"] != "success")
        raise RuntimeError(f"run {run['dag_run_id']} {run['state']}: {', '.join(failed[:10])}\n{airflow.logs()[-3000:]}")
    return run, tis


def group_seconds(tis: list[dict[str, Any]], map_index: int) -> float:
    mine = [t for t in tis if t["map_index"] == map_index and t["task_id"].startswith("redeploy.")]
    return max(when(t["end_date"]) for t in mine) - min(when(t["start_date"]) for t in mine)


def task_seconds(tis: list[dict[str, Any]]) -> list[float]:
    return [when(t["end_date"]) - when(t["start_date"]) for t in tis if t["start_date"] and t["end_date"]]


def start_latency(tis: list[dict[str, Any]]) -> list[float]:
    """Queued to running, per task: the executor's share of a task's start."""
    return [when(t["start_date"]) - when(t["queued_when"]) for t in tis if t.get("queued_when") and t["start_date"]]


# -- what the run left behind -----------------------------------------------------------------------------------
def atlas_entities(stack: Any, run_id: str) -> list[dict[str, Any]]:
    import requests

    conn = stack.connections["atlas_default"]
    query = {"typeName": "model", "excludeDeletedEntities": True, "limit": 1000,
             "attributes": ["deployStatus", "dagRunId"],
             "entityFilters": {"attributeName": "dagRunId", "operator": "=", "attributeValue": run_id}}
    answer = requests.post(f"http://{conn['host']}:{conn['port']}/api/atlas/v2/search/basic", json=query,
                           auth=(conn["login"], conn["password"]), timeout=60)
    answer.raise_for_status()
    return answer.json().get("entities") or []


def registry_versions(stack: Any) -> dict[str, list[str]]:
    """model slug -> its published versions in the registry on the WebHDFS stand-in."""
    from hdfs import InsecureClient

    client = InsecureClient(stack.webhdfs.url, user="hdfs")
    return {slug: [v for v in client.list(f"/model-registry/{slug}") if not v.startswith(".")]
            for slug in client.list("/model-registry") if not slug.startswith(".")}


# -- the bench ---------------------------------------------------------------------------------------------------
def _patient_stack() -> type:
    from tests.airflow_processes import AirflowStack

    class PatientStack(AirflowStack):
        """The tests' stack, given 10 minutes to become healthy: a Celery stack on 2 cores that other work
        keeps busy has taken more than the tests' 2."""

        def wait_healthy(self, timeout: float = 600) -> None:
            super().wait_healthy(timeout)

    return PatientStack


def redeploy_at_scale(executor: str, label: str) -> Iterator[Row]:
    from model_governance_devstack.launcher import start_devstack
    from model_governance_devstack.mleap import MLeapStandIn
    from tests.databases import PostgresServer, RedisServer
    from tests.helpers import stage_variant

    PatientStack = _patient_stack()
    folder = WORK / f"scale-{label}"
    staging = folder / "staging"
    solo = stage_variant(staging, f"{label} solo model", "1.0", microservice_endpoint=f"{label}-solo")
    fleet = [stage_variant(staging, f"{label} model {i}", "1.0", microservice_endpoint=f"{label}-m{i}") for i in range(MODELS)]
    manifest = folder / "redeploy.json"

    def write_manifest(models: list[Path]) -> None:
        manifest.write_text(json.dumps({"defaults": {"mleap_conn_id": SPRING_CONN}, "models": [{"staging": str(m)} for m in models]}))

    with ExitStack() as cleanup:
        postgres = PostgresServer().start()
        cleanup.callback(postgres.stop)
        devstack = cleanup.enter_context(start_devstack(folder / "devstack", atlas_port=0, mleap_port=0, webhdfs_port=0))
        models_dir = folder / "spring-models"
        models_dir.mkdir()
        spring = cleanup.enter_context(MLeapStandIn(folder / "spring", api="spring-boot", mounts={"/models": models_dir}))
        env = {
            **devstack.env(),
            f"AIRFLOW_CONN_{SPRING_CONN.upper()}": json.dumps(
                {"conn_type": "mleap", "host": "127.0.0.1", "port": spring.port,
                 "extra": {"api": "spring-boot", "models_dir": str(models_dir), "models_mount": "/models"}}),
            "MODEL_GOVERNANCE_REDEPLOY_MANIFEST": str(manifest),
            "MODEL_GOVERNANCE_REDEPLOY_SCHEDULE": "0 3 1 1 *",  # no scheduled run during the bench
            # Airflow's own defaults (the tests' stack re-parses every 5 s, which costs CPU on 2 cores)
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "300",
            "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "30",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
        }
        workers = 0
        if executor == "CeleryExecutor":
            redis = RedisServer().start()
            cleanup.callback(redis.stop)
            env |= {"AIRFLOW__CELERY__BROKER_URL": f"{redis.url}/0", "AIRFLOW__CELERY__WORKER_CONCURRENCY": "2"}
            workers = 2
        write_manifest([solo])
        airflow = cleanup.enter_context(PatientStack(folder / "airflow", env, postgres, executor=executor, workers=workers))
        airflow.wait_dag(DAG_ID)
        sessions = {process.pid for _, process in airflow.processes}
        if postgres.server.process is not None:
            sessions.add(postgres.server.process.pid)

        with CpuMeter(sessions) as idle:  # the stack doing nothing: scheduler loop, heartbeats, re-parses
            time.sleep(20)
        with CpuMeter(sessions) as solo_cpu:
            solo_run, solo_tis = trigger_and_wait(airflow, timeout=600)
        one = group_seconds(solo_tis, 0)
        solo_wall = when(solo_run["end_date"]) - when(solo_run["start_date"])
        loads_before = spring.loads_requested

        write_manifest(fleet)
        with CpuMeter(sessions) as fleet_cpu:
            run, tis = trigger_and_wait(airflow, timeout=3600)
        wall = when(run["end_date"]) - when(run["start_date"])
        goal = 1.3 * MODELS * one / PARALLELISM

        # what the run left behind
        names = [f"{label}-m{i}" for i in range(MODELS)]
        loads = {name: spring.loads_by_name[name] for name in names}
        serving = [n for n in names if (m := spring.models.get(n)) and m["ready"].is_set() and not m["error"]]
        entities = atlas_entities(devstack, run["dag_run_id"])
        deployed = {e["attributes"].get("qualifiedName") for e in entities if e["attributes"].get("deployStatus") == "deployed"}
        versions = registry_versions(devstack)
        fleet_versions = sum(len(v) for slug, v in versions.items() if "solo" not in slug)
        retried = sorted(f"{t['task_id']}[{t['map_index']}]" for t in tis if (t.get("try_number") or 1) > 1)

    idle_cores = (idle.stack_cpu + idle.stand_in_cpu) / idle.seconds
    solo_task_cpu = (solo_cpu.stack_cpu + solo_cpu.stand_in_cpu - idle_cores * solo_cpu.seconds) / len(solo_tis)
    fleet_used = fleet_cpu.stack_cpu + fleet_cpu.stand_in_cpu
    tasks = task_seconds(tis)
    solo_tasks = task_seconds([t for t in solo_tis if t["task_id"].startswith("redeploy.")])
    busy = sum(tasks) / wall  # tasks running at once, on average
    yield at_most(f"{label}: {MODELS} models, wall / ({MODELS} × one model / {PARALLELISM})", wall / (MODELS * one / PARALLELISM),
                  1.3, "{:.2f}x", f"{wall:.0f} s vs {MODELS * one / PARALLELISM:.0f} s; goal {goal:.0f} s")
    yield Row(f"{label}: one model alone", f"{one:.1f} s group ({len(solo_tasks)} tasks, mean {statistics.mean(solo_tasks):.1f} s each); "
              f"run {solo_wall:.1f} s with read_manifest; {solo_cpu.stack_cpu + solo_cpu.stand_in_cpu:.0f} CPU s")
    yield equals(f"{label}: loads at the MLeap stand-in, per model name", sorted(set(loads.values())), [1],
                 f"{spring.loads_requested - loads_before} loads in all, candidates included")
    yield equals(f"{label}: models serving after the run", len(serving), MODELS)
    yield equals(f"{label}: deployed Atlas entities of the run (distinct)", len(deployed), MODELS, f"{len(entities)} entities")
    yield equals(f"{label}: registry versions published", fleet_versions, MODELS, f"{len(versions) - 1} model folders")
    yield Row(f"{label}: tasks retried", str(len(retried)) + (f" ({', '.join(retried[:5])})" if retried else ""))
    run_start = when(solo_run["start_date"])
    steps = sorted(solo_tis, key=lambda t: when(t["start_date"]))
    yield Row(f"{label}: one model alone, per task (queued, started, ended; s after the run started)",
              "; ".join(f"{t['task_id'].removeprefix('redeploy.')} {when(t.get('queued_when')) - run_start:.1f}/"
                        f"{when(t['start_date']) - run_start:.1f}/{when(t['end_date']) - run_start:.1f}" for t in steps))
    latency = start_latency(tis)
    yield Row(f"{label}: where the time goes",
              f"{len(tasks)} tasks, mean {statistics.mean(tasks):.1f} s each (alone: {statistics.mean(solo_tasks):.1f} s); "
              f"{busy:.1f} running at once on average; queued→running median {statistics.median(latency):.1f} s; "
              f"stack CPU {fleet_cpu.stack_cpu:.0f} s + stand-ins {fleet_cpu.stand_in_cpu:.0f} s = "
              f"{fleet_used / fleet_cpu.seconds:.2f} cores busy of {os.cpu_count()}; "
              f"machine {fleet_cpu.machine_cores:.2f} cores busy (other work included)")
    # the floor CPU sets: every task's CPU over the 2 cores, with the stack's idle cost on top
    floor = len(tis) * solo_task_cpu / (os.cpu_count() or 1) / (1 - idle_cores / (os.cpu_count() or 1))
    yield Row(f"{label}: CPU per task and the floor it sets",
              f"{solo_task_cpu:.2f} CPU s a task alone (stack idle: {idle_cores:.2f} cores); "
              f"{len(tis)} tasks on {os.cpu_count()} cores need ≥ {floor:.0f} s; "
              f"measured {fleet_used / len(tis):.2f} CPU s a task in the {MODELS}-model run")


def bench_local() -> Iterator[Row]:
    yield from redeploy_at_scale("LocalExecutor", "local")


def bench_celery() -> Iterator[Row]:
    yield from redeploy_at_scale("CeleryExecutor", "celery")


BENCHES = {"scale-local": bench_local, "scale-celery": bench_celery}
