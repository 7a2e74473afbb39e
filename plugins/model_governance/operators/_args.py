"""Argument checks shared by the operators: templated values arrive as strings or native objects."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported when a task runs, not when a DAG file is parsed
    from model_governance.metadata import DeploymentDocument


def as_bool(value: Any, name: str) -> bool:
    """A flag from a Param or a template: a real bool, or the strings true/false (never "False" as truthy)."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes"):
        return True
    if text in ("false", "0", "no", ""):
        return False
    raise ValueError(f"{name} must be true or false, not {value!r}")


def as_document(value: Any) -> DeploymentDocument:
    """The deployment document an upstream task returned (XCom JSON)."""
    from model_governance.metadata import DeploymentDocument

    if isinstance(value, str):
        import json

        value = json.loads(value)
    return DeploymentDocument.from_json(value)


def run_key(context: Any) -> str:
    """The run's key in the registry's pending area and locks: the run id, plus the map index in a mapped
    task group (one model of a `model_redeploy` run), so that the groups of one run never share them."""
    index = getattr(context.get("ti"), "map_index", -1)
    return context["run_id"] if index is None or index < 0 else f"{context['run_id']}#{index}"
