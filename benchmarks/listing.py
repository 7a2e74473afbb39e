"""`model-governance deployments` (and `history`) over 2,000 deployment entities in Atlas.

The Atlas stand-in is filled through the bulk API (`POST /entity/bulk`, 100 entities a call) with `model`
entities shaped as the register step writes them: 100 targets × 20 versions, the newest at each target
`deployed`, the others `superseded` with `endedAt`. Then, in the same run:

- the reference: one `POST /search/basic` call of one page, the body the command sends (newest first,
  every attribute), timed with `requests` directly (median of 5);
- the command, in a child process that has imported it already, stdout to /dev/null (median of 3): the
  time of `main([...])`, the Atlas calls it made, and its peak RSS growth over the process after imports.

`deployments` lists all of them (`--limit 10000`): its page is compared to a single call that returns the
same entities in one page; a target's history (`deployments --endpoint URL`, and `history TARGET` once that
command exists) is compared to one call of one page of that target. Memory: the same listing with 200 and
with 2,000 entities in Atlas.
"""

from __future__ import annotations

import json
import os
import secrets
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

from benchmarks.workspace import PROJECT, WORK  # first: the private Airflow home
from benchmarks.report import Row, at_most

TARGETS, VERSIONS = 100, 20  # 2,000 entities
CONN_ID = "atlas_bench"

CHILD = """
import contextlib, json, os, resource, sys, time
start = time.perf_counter()
from model_governance.cli import main
from model_governance.hooks.atlas import AtlasHook
imported = time.perf_counter() - start
if os.environ.get("BENCH_PAGE"):  # for contrast only: the listing read in one page
    import model_governance.atlas.queries as queries
    queries.DEPLOYMENTS_PAGE = int(os.environ["BENCH_PAGE"])
calls = []
request = AtlasHook.request
def counted(self, method, path, *args, **kwargs):
    calls.append(path)
    return request(self, method, path, *args, **kwargs)
AtlasHook.request = counted
main(["deployments", "--limit", "1", "--atlas-conn-id", sys.argv[1]])  # the hook's and the CLI's first use
calls.clear()
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
times = []
with open(os.devnull, "w") as null, contextlib.redirect_stdout(null):
    for _ in range(int(sys.argv[2])):  # timed
        began = time.perf_counter()
        assert main([*sys.argv[3:], "--atlas-conn-id", sys.argv[1]]) == 0
        times.append(time.perf_counter() - began)
growth_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
import tracemalloc  # a last run for the Python heap's peak (tracemalloc slows what it watches)
tracemalloc.start()
with open(os.devnull, "w") as null, contextlib.redirect_stdout(null):
    main([*sys.argv[3:], "--atlas-conn-id", sys.argv[1]])
heap_peak = tracemalloc.get_traced_memory()[1]
print(json.dumps({"times": times, "calls": len(calls) // (len(times) + 1), "imported": imported,
                  "growth_kib": growth_kib, "heap_peak": heap_peak}))
"""


def entity(target: int, version: int, now_ms: int) -> dict[str, Any]:
    """One deployment as the register step writes it (every attribute a listing returns is set)."""
    from model_governance.atlas import schema as s

    name = f"bench model {target:03d}"
    host = f"serving-{target % 7}.example.com:65327/models/m{target:03d}"
    deployed = now_ms - (VERSIONS - version) * 3_600_000 - target * 1000
    latest = version == VERSIONS - 1
    qualified = f"{name}-v1.{version}@{host}"
    attributes = {
        s.QUALIFIED_NAME: qualified, s.NAME: f"{name} v1.{version}", s.OWNER: "ana@example.com",
        s.DESCRIPTION: "A gradient-boosted model of churn, retrained weekly on the last 90 days of events.",
        s.DEPLOY_DATETIME: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(deployed / 1000)),
        s.DEPLOY_HOST_TYPE: "microservice", s.DEPLOY_HOST_DETAIL: f"http://{host}/transform",
        s.DEPLOY_OBJ_SOURCE: "airbnb.model.lr.zip", s.MODEL_NAME_SEED: name, s.MODEL_VERSION_SEED: f"1.{version}",
        s.MODEL_TYPE_SEED: "linear regression", s.MODEL_DESCRIPTION: "Predicts the nightly price of a listing.",
        s.MODEL_OWNER: "ana@example.com", s.MODEL_OWNER_LOB: "pricing",
        s.MODEL_REGISTRY_URL: f"hdfs://namenode:8020/model-registry/bench-model-{target:03d}/1.{version}",
        s.DEPLOY_STATUS: s.DEPLOYED if latest else s.SUPERSEDED, s.DEPLOY_TIME: deployed,
        s.HOST_TYPE: "microservice", s.ENDPOINT_URL: f"http://{host}/transform", s.MODEL_NAME: name,
        s.MODEL_VERSION: f"1.{version}", s.MODEL_KIND: "linear regression", s.OWNER_LOB: "pricing",
        s.SOURCE_LOCATION: f"git+https://git.example.com/pricing/model-{target:03d}.git@v1.{version}",
        s.SOURCE_KIND: "git", s.SOURCE_REVISION: secrets.token_hex(20),
        s.SERIALIZED_OBJECT_SHA256: secrets.token_hex(32),
        s.REGISTRY_URL: f"hdfs://namenode:8020/model-registry/bench-model-{target:03d}/1.{version}",
        s.DAG_ID: "model_deployment", s.DAG_RUN_ID: f"manual__2026-11-{1 + version:02d}T10:00:00+00:00",
        s.DEPLOY_TARGET: host, s.REQUESTED_BY: "ana", s.APPROVED_BY: "greg", s.APPROVED_AT: deployed - 60_000,
        s.ARTIFACT_CHECKSUMS: {f"/model-registry/bench-model-{target:03d}/1.{version}/{path}": secrets.token_hex(32)
                               for path in ("README.md", "modelMetadata.txt", "code/train_model.py",
                                            "trainingdata/listings_sample.csv", "executable/airbnb.model.lr.zip",
                                            "samples/leapframe.json")},
    }
    if not latest:
        attributes |= {s.SUPERSEDED_BY: f"{name}-v1.{version + 1}@{host}", s.ENDED_AT: deployed + 3_600_000,
                       s.ENDED_BY: f"manual__2026-11-{2 + version:02d}T10:00:00+00:00"}
    return {"typeName": s.MODEL_TYPE, "attributes": attributes}


def fill(session: Any, url: str, targets: range, now_ms: int) -> float:
    """Post every version at these targets, 100 entities a bulk call; the seconds it took."""
    batch, began = [], time.perf_counter()
    pending = [entity(t, v, now_ms) for t in targets for v in range(VERSIONS)]
    for i in range(0, len(pending), 100):
        batch = pending[i:i + 100]
        answer = session.post(f"{url}/api/atlas/v2/entity/bulk", json={"entities": batch}, timeout=600)
        answer.raise_for_status()
    return time.perf_counter() - began


def timed_search(session: Any, url: str, body: dict[str, Any], repeats: int = 5) -> tuple[float, int]:
    times, found = [], 0
    for _ in range(repeats):
        began = time.perf_counter()
        answer = session.post(f"{url}/api/atlas/v2/search/basic", json=body, timeout=600)
        answer.raise_for_status()
        found = len(answer.json().get("entities") or [])
        times.append(time.perf_counter() - began)
    return statistics.median(times), found


def command(env: dict[str, str], repeats: int, *args: str, page: int | None = None) -> dict[str, Any]:
    env = {**env, "BENCH_PAGE": str(page or "")}
    out = subprocess.run([sys.executable, "-c", CHILD, CONN_ID, str(repeats), *args], capture_output=True, text=True, env=env)
    if out.returncode:
        raise RuntimeError(f"model-governance {' '.join(args)} failed:\n{out.stderr[-3000:]}")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["median"] = statistics.median(result["times"])
    return result


def bench_listing() -> Iterator[Row]:
    import requests

    from model_governance.atlas.queries import search_body
    from model_governance.atlas.schema import ensure_model_type
    from model_governance.hooks.atlas import AtlasHook
    from model_governance_devstack.atlas import AtlasStandIn

    password = secrets.token_urlsafe(12)
    with AtlasStandIn(WORK / "atlas-listing", port=0, users={"admin": password}) as atlas:
        conn = {"conn_type": "atlas", "host": "127.0.0.1", "port": atlas.port, "login": "admin", "password": password}
        os.environ[f"AIRFLOW_CONN_{CONN_ID.upper()}"] = json.dumps(conn)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(PROJECT / "plugins"), str(PROJECT / "devstack")])}
        ensure_model_type(AtlasHook(CONN_ID))
        session = requests.Session()
        session.auth = ("admin", password)
        url, now_ms = atlas.url, int(time.time() * 1000)
        everything = ["deployments", "--json", "--status", "all", "--limit", "10000"]

        fill(session, url, range(0, 10), now_ms)  # 200 entities
        small = command(env, 3, *everything)
        took = fill(session, url, range(10, TARGETS), now_ms)  # 2,000
        yield Row("listing: 1,800 entities posted through the bulk API (100 a call)", f"{took:.1f} s on the Atlas stand-in")

        total = TARGETS * VERSIONS
        one_page, found = timed_search(session, url, search_body([], limit=total))
        assert found == total, found
        big = command(env, 3, *everything)
        yield at_most(f"listing: deployments of all {total:,} / one search call returning them in one page",
                      big["median"] / one_page, 2.0, "{:.2f}x",
                      f"{big['median'] * 1000:.0f} ms, {big['calls']} Atlas calls, vs {one_page * 1000:.0f} ms")
        page_100, _ = timed_search(session, url, search_body([], limit=100))
        yield Row("listing: one search call of one page of 100 (of 2,000)", f"{page_100 * 1000:.0f} ms")
        unpaged = command(env, 1, *everything, page=10_000)
        # 10x the entities: a paged listing holds one page (250 rows) at most, so it may grow until that page
        # is full and no further; read in one page it grows with every entity
        yield at_most("listing: deployments, peak Python heap with 2,000 entities / with 200", big["heap_peak"] / small["heap_peak"],
                      2.0, "{:.2f}x", f"{big['heap_peak'] / 2**20:.1f} vs {small['heap_peak'] / 2**20:.1f} MiB (tracemalloc); "
                      f"read in one page: {unpaged['heap_peak'] / 2**20:.1f} MiB, {unpaged['heap_peak'] / small['heap_peak']:.1f}x")
        yield Row("listing: deployments, peak RSS growth over the imported CLI, 2,000 vs 200 entities",
                  f"{big['growth_kib'] / 1024:.1f} vs {small['growth_kib'] / 1024:.1f} MiB (read in one page: {unpaged['growth_kib'] / 1024:.1f} MiB)")
        yield Row("listing: the CLI's imports (once per command, before any call)", f"{big['imported'] * 1000:.0f} ms")

        # one target's history: 20 deployments among 2,000
        endpoint = entity(42, 0, now_ms)["attributes"]["endpointUrl"]
        target = entity(42, 0, now_ms)["attributes"]["deployTarget"]
        ref, found = timed_search(session, url, search_body([("endpointUrl", "=", endpoint)], limit=100))
        assert found == VERSIONS, found
        history = command(env, 3, "deployments", "--json", "--endpoint", endpoint)
        yield at_most(f"listing: deployments --endpoint (one target, {VERSIONS} of {total:,}) / one search call of that page",
                      history["median"] / ref, 2.0, "{:.2f}x",
                      f"{history['median'] * 1000:.0f} ms, {history['calls']} Atlas calls, vs {ref * 1000:.0f} ms")
        try:
            from model_governance.cli import cmd_history  # noqa: F401 - the history engineer's command, once merged
        except ImportError:
            yield Row("listing: history TARGET", "not measured: the `history` command is not on this branch yet")
        else:
            body = search_body([("deployTarget", "=", target)], limit=100)
            body["sortOrder"] = "ASCENDING"
            ref, found = timed_search(session, url, body)
            history = command(env, 3, "history", "--json", target)
            yield at_most(f"listing: history TARGET ({VERSIONS} of {total:,}) / one search call of that page",
                          history["median"] / ref, 2.0, "{:.2f}x",
                          f"{history['median'] * 1000:.0f} ms, {history['calls']} Atlas calls, vs {ref * 1000:.0f} ms")


BENCHES = {"listing": bench_listing}
