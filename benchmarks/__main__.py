"""`make bench` = `python -m benchmarks [NAME ...] [--results FILE]`: every figure with its goal and PASS/FAIL.

The benches are listed here, in the order they run; each lives in its module and returns rows
(`report.Row`, or plain (figure, measured, goal, pass/FAIL) tuples).
"""

from __future__ import annotations

import sys

from benchmarks import workspace  # noqa: F401 - first: the private Airflow home, before Airflow is imported
from benchmarks import listing, roundtrips, scale, singles
from benchmarks.report import run

# The round-trip, push and ratio rows run on the stand-ins and on these real servers (issue 17's goals).
REAL = frozenset({"hdfs", "mleap"})

BENCHES = {
    "parse": lambda: roundtrips.bench_parse(workspace.WORK),  # every file in dags/ against a one-task DAG
    "push": lambda: roundtrips.bench_push(workspace.WORK, REAL),  # 1 GiB against hdfs Client.upload
    "roundtrips": lambda: roundtrips.bench_roundtrips(workspace.WORK, REAL),  # Atlas calls, WebHDFS requests
    **singles.BENCHES,  # deploy, rerun, swap: dag.test() on the stand-ins
    **scale.BENCHES,  # scale-local, scale-celery: 50 models under a real scheduler
    **listing.BENCHES,  # listing: deployments and history over 2,000 Atlas entities
}

if __name__ == "__main__":
    sys.exit(run(BENCHES))
