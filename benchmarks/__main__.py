"""`make bench` = `python -m benchmarks [NAME ...] [--results FILE]`: every figure with its goal and PASS/FAIL.

The benches are listed here, in the order they run; each lives in its module and returns `report.Row`s.
"""

from __future__ import annotations

import sys

from benchmarks import workspace  # noqa: F401 - first: the private Airflow home, before Airflow is imported
from benchmarks import listing, scale, singles
from benchmarks.report import run

BENCHES = {
    **singles.BENCHES,  # parse, push, deploy, rerun, swap: dag.test() on the stand-ins
    **scale.BENCHES,  # scale-local, scale-celery: 50 models under a real scheduler
    **listing.BENCHES,  # listing: deployments and history over 2,000 Atlas entities
}

if __name__ == "__main__":
    sys.exit(run(BENCHES))
