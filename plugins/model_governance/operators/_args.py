"""Argument checks shared by the operators: templated values arrive as strings or native objects."""

from __future__ import annotations

from typing import Any

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
    if isinstance(value, str):
        import json

        value = json.loads(value)
    return DeploymentDocument.from_json(value)
