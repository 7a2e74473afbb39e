"""Who a run acts for: the lifecycle records it on every event and Atlas entity (issue 15)."""

from __future__ import annotations

from typing import Any

SCHEDULER = "scheduler"  # a run the schedule (or an asset event) started: no person asked for it


def requested_by(context: Any) -> str:
    """The Airflow user who triggered the run (UI, REST API, CLI), or "scheduler" for scheduled runs."""
    dag_run = context.get("dag_run") if hasattr(context, "get") else None
    user = getattr(dag_run, "triggering_user_name", None)
    if user:
        return str(user)
    run_type = getattr(dag_run, "run_type", None)
    run_type = str(getattr(run_type, "value", run_type) or "")
    return SCHEDULER if run_type.endswith(("scheduled", "asset_triggered", "backfill")) else "unknown"
