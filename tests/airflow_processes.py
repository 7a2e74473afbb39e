"""A real Airflow for tests: api-server, scheduler, dag-processor (and Celery workers) on PostgreSQL.

Every component runs in its own process group and is stopped by group, so the executor's forked workers
go with it; the PostgreSQL database is made for the stack and dropped after it.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path
from collections.abc import Callable
from typing import Any

import requests

from tests.databases import PostgresServer, free_port
from tests.helpers import DAGS, PLUGINS

BIN = Path(sys.executable).parent
USER, PASSWORD = "admin", "admin-" + secrets.token_hex(4)


class AirflowStack:
    def __init__(
        self, home: Path, env: dict[str, str], postgres: PostgresServer, executor: str = "LocalExecutor", workers: int = 0,
        users: dict[str, str] | None = None, triggerer: bool = False,
    ):
        """`users`: more SimpleAuthManager users, name -> role (viewer, user, op, admin), each with a password
        in `self.passwords`; `triggerer`: run `airflow triggerer` too."""
        self.home = home
        self.postgres = postgres
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.database = f"mg_test_{secrets.token_hex(4)}"
        self.executor = executor
        self.workers = workers
        self.processes: list[tuple[str, subprocess.Popen]] = []
        self._tokens: dict[str, str] = {}
        self.triggerer = triggerer
        roles = {USER: "admin", **(users or {})}
        self.passwords = {USER: PASSWORD, **{name: f"{name}-{secrets.token_hex(4)}" for name in users or {}}}
        home.mkdir(parents=True, exist_ok=True)
        (home / "passwords.json").write_text(json.dumps(self.passwords))
        self.env = {
            **os.environ,
            **env,
            "PATH": f"{BIN}:{os.environ['PATH']}",
            # this checkout's code before an editable install's (which may point at another checkout)
            "PYTHONPATH": os.pathsep.join([str(PLUGINS), str(PLUGINS.parent / "devstack")]),
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(PLUGINS),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__EXECUTOR": executor,
            "AIRFLOW__CORE__PARALLELISM": "4",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": ",".join(f"{name}:{role}" for name, role in roles.items()),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / "passwords.json"),
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.url}/execution/",
            "AIRFLOW__CORE__FERNET_KEY": "",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"{postgres.url}/{self.database}",
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(self.port),
            "AIRFLOW__API__BASE_URL": self.url,
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(32),
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "5",
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
            "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
            "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1",
            # the product's notes of checked Atlas types: this stack's own (each test has its own Atlas)
            "MODEL_GOVERNANCE_CACHE": str(home / "cache"),
            # on 2 busy cores the scheduler's own heartbeat has been seen 30-36 s late: past this threshold
            # (default 30) it declares itself dead and resets (kills) its running tasks, which then retry
            "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_THRESHOLD": "180",
        }
        if executor == "CeleryExecutor":  # Celery's results live in the stack's own PostgreSQL database
            self.env.setdefault("AIRFLOW__CELERY__RESULT_BACKEND", f"db+{postgres.url}/{self.database}")
        for key in ("AIRFLOW__CORE__UNIT_TEST_MODE",):
            self.env.pop(key, None)

    # -- processes -----------------------------------------------------------------------------------------
    def spawn(self, name: str, *args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.Popen:
        log = (self.home / f"{name}.log").open("ab")
        process = subprocess.Popen(
            [str(BIN / "airflow"), *args], env={**self.env, **(env or {})}, cwd=cwd or self.home,
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,  # its own process group
        )
        self.processes.append((name, process))
        return process

    def start(self) -> "AirflowStack":
        self.postgres.psql(f"CREATE DATABASE {self.database}")
        try:
            subprocess.run([str(BIN / "airflow"), "db", "migrate"], env=self.env, cwd=self.home, check=True, capture_output=True)
            self.spawn("api-server", "api-server")
            self.spawn("scheduler", "scheduler")
            self.spawn("dag-processor", "dag-processor")
            if self.triggerer:
                self.spawn("triggerer", "triggerer")
            for index in range(self.workers):
                folder = self.home / f"worker-{index}"
                folder.mkdir(exist_ok=True)
                # each worker in its own working folder and temp folder, with its own log server port
                self.spawn(
                    f"worker-{index}", "celery", "worker", "--concurrency", "2", "--celery-hostname", f"worker{index}@%h",
                    "--pid", str(folder / "worker.pid"),
                    env={"TMPDIR": str(folder), "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port())}, cwd=folder,
                )
            self.wait_healthy()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for _, process in self.processes:
            try:
                os.killpg(process.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 20
        for _, process in self.processes:
            try:
                process.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                pass
            try:  # whatever is left of the group, children included
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            process.wait()
        self.processes.clear()
        self.postgres.psql(f"DROP DATABASE IF EXISTS {self.database} WITH (FORCE)")

    def __enter__(self) -> "AirflowStack":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n" + p.read_text(errors="replace")[-4000:] for p in sorted(self.home.glob("*.log")))

    # -- REST API ------------------------------------------------------------------------------------------
    def wait_healthy(self, timeout: float = 300) -> None:
        """Until the api-server answers and the components report healthy. Measured: with the machine's load
        at 30 (several engineers' stacks on 2 cores) the api-server alone took over 120 s to start."""
        deadline = time.monotonic() + timeout
        health: Any = None
        while time.monotonic() < deadline:
            for name, process in self.processes:
                if process.poll() is not None:
                    raise RuntimeError(f"airflow {name} exited with {process.returncode}\n{self.logs()}")
            try:
                health = requests.get(f"{self.url}/api/v2/monitor/health", timeout=10).json()  # a busy machine answers slowly
                components = ("scheduler", "dag_processor", *(("triggerer",) if self.triggerer else ()))
                if all(health.get(name, {}).get("status") == "healthy" for name in components):
                    return
            except (requests.RequestException, ValueError):
                pass
            time.sleep(1)
        raise TimeoutError(f"Airflow did not become healthy in {timeout} s (last health: {health})\n{self.logs()}")

    def token(self, user: str = USER, password: str | None = None) -> str:
        """A bearer token, asked for once per user (tokens last far longer than a test)."""
        if user not in self._tokens:
            answer = requests.post(
                f"{self.url}/auth/token", json={"username": user, "password": password or self.passwords[user]}, timeout=60
            )
            answer.raise_for_status()
            self._tokens[user] = answer.json()["access_token"]
        return self._tokens[user]

    def api(self, method: str, path: str, user: str = USER, **kwargs: Any) -> requests.Response:
        """A REST API v2 call, as `user` (by default the admin)."""
        headers = {"Authorization": f"Bearer {self.token(user)}", **kwargs.pop("headers", {})}
        # generous: on 2 busy cores the api-server can take a while to answer
        return requests.request(method, f"{self.url}/api/v2{path}", headers=headers, timeout=60, **kwargs)

    def wait_until(self, answer: Callable[[], Any], timeout: float, failure: str) -> Any:
        """`answer()` as soon as it is not None, asked every half second: the API has no events to wait on."""
        deadline = time.monotonic() + timeout

        def asked() -> Any:
            try:
                return answer()
            except requests.RequestException:  # an api-server too busy to answer in time: ask again
                return None

        while (result := asked()) is None:
            if time.monotonic() >= deadline:
                raise TimeoutError(f"{failure} in {timeout} s\n{self.logs()}")
            time.sleep(0.5)
        return result

    def wait_dag(self, dag_id: str, timeout: float = 120) -> None:
        parsed = lambda: True if self.api("GET", f"/dags/{dag_id}").status_code == 200 else None  # noqa: E731
        self.wait_until(parsed, timeout, f"DAG {dag_id} was not parsed")

    def wait_run(self, dag_id: str, run_id: str, timeout: float = 300) -> dict[str, Any]:
        def finished() -> dict[str, Any] | None:
            run = self.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}").json()
            return run if run.get("state") in ("success", "failed") else None

        try:
            return self.wait_until(finished, timeout, f"run {run_id} did not finish")
        except TimeoutError as exc:  # what the run's tasks did first: the whole logs' tails come after
            raise TimeoutError(f"{self.run_summary(dag_id, run_id)}\n{exc}") from None

    def run_summary(self, dag_id: str, run_id: str) -> str:
        """The run's task states and the scheduler's lines about its tasks' ends, tries and state changes."""
        try:
            states = self.task_states(dag_id, run_id)
        except (requests.RequestException, ValueError, KeyError) as exc:
            states = {"unknown": str(exc)}
        telling = ("TaskInstance Finished", "state mismatch", "Pausing task", "up_for_retry", "UP_FOR_RETRY", "killed", "[error", "[warning")
        lines = [line[:400] for line in self.scheduler_lines(run_id) if any(word in line for word in telling)]
        return f"--- task states of {run_id}: {states}\n--- scheduler lines of the run\n" + "\n".join(lines[-60:])

    def scheduler_lines(self, run_id: str) -> list[str]:
        log = self.home / "scheduler.log"
        text = log.read_text(errors="replace") if log.exists() else ""
        return [line for line in text.splitlines() if run_id in line]

    def wait_for_answerable(self, dag_id: str, run_id: str, task_id: str, map_index: int = -1, timeout: float = 300) -> dict[str, Any]:
        """The open human-in-the-loop request of a task, once the scheduler has seen its try park.

        Airflow 3.3: a try that parks in `awaiting_input` exits, and the scheduler processes that exit a
        moment later. Answered before, the resumed task can meet the stale exit and be counted as killed
        externally; people answer slower than that, so a test waits for the scheduler's line about the
        latest park ("TaskInstance Finished ... state=awaiting_input") before it answers."""
        key = f"task_id={task_id}, run_id={run_id}, map_index={map_index},"
        park_key = (f"map_index={map_index} ", f"task_id={task_id} ")
        path = f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/{map_index}/hitlDetails"

        def parked_exit_seen() -> bool:
            lines = self.scheduler_lines(run_id)
            parks = [i for i, line in enumerate(lines) if "Pausing task as AWAITING_INPUT" in line and all(k in line for k in park_key)]
            seen = [i for i, line in enumerate(lines) if "TaskInstance Finished" in line and key in line and "state=awaiting_input" in line]
            return bool(parks) and bool(seen) and seen[-1] > parks[-1]

        def waiting() -> dict[str, Any] | None:
            states = self.task_states(dag_id, run_id)
            name = task_id if map_index < 0 else f"{task_id}[{map_index}]"
            if states.get(name) != "awaiting_input" or not parked_exit_seen():
                return None
            detail = self.api("GET", path)
            return detail.json() if detail.status_code == 200 and not detail.json()["response_received"] else None

        try:
            return self.wait_until(waiting, timeout, f"run {run_id}: no open request of {task_id}")
        except TimeoutError as exc:
            raise TimeoutError(f"{self.run_summary(dag_id, run_id)}\n{exc}") from None

    def wait_new_run(self, dag_id: str, run_type: str, timeout: float = 120) -> str:
        """The id of the DAG's first run of that type (`scheduled`: the scheduler's), once the API lists it."""
        def first() -> str | None:
            runs = self.api("GET", f"/dags/{dag_id}/dagRuns", params={"run_type": run_type, "order_by": "run_after"})
            found = runs.json()["dag_runs"]
            return found[0]["dag_run_id"] if found else None

        return self.wait_until(first, timeout, f"no {run_type} run of {dag_id} appeared")

    def task_log(self, dag_id: str, run_id: str, task_id: str, try_number: int | None = None, map_index: int = -1) -> str:
        """A task's log as text (the API answers JSON: one event per line here); by default its last try's."""
        base = f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}"
        if try_number is None:
            path = base if map_index < 0 else f"{base}/{map_index}"
            try_number = max(1, int(self.api("GET", path).json().get("try_number") or 1))
        answer = self.api("GET", f"{base}/logs/{try_number}", params={"map_index": map_index})
        assert answer.status_code == 200, (answer.status_code, answer.text[:500], self.logs()[-3000:])
        content = answer.json()["content"]
        return "\n".join(json.dumps(line) if isinstance(line, dict) else str(line) for line in content)

    def task_states(self, dag_id: str, run_id: str) -> dict[str, str]:
        answer = self.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances").json()
        return {f"{ti['task_id']}[{ti['map_index']}]" if ti["map_index"] >= 0 else ti["task_id"]: ti["state"] for ti in answer["task_instances"]}
