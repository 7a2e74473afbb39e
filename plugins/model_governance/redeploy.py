"""The redeploy manifest: which models `model_redeploy` keeps deployed, from an Airflow Variable or a file."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from model_governance.connections import ATLAS_CONN_ID, MLEAP_CONN_ID, WEBHDFS_CONN_ID
from model_governance.exceptions import InvalidInputError

VARIABLE = "model_redeploy_manifest"
FILE_ENV = "MODEL_GOVERNANCE_REDEPLOY_MANIFEST"
DEFAULTS = {
    "registry_root": "hdfs:///model-registry",
    "mleap_conn_id": MLEAP_CONN_ID,
    "webhdfs_conn_id": WEBHDFS_CONN_ID,
    "atlas_conn_id": ATLAS_CONN_ID,
}
KEYS = {"staging", *DEFAULTS}


def read_source() -> tuple[str, str]:
    """(where, text): the Variable when set, else the file $MODEL_GOVERNANCE_REDEPLOY_MANIFEST."""
    from airflow.sdk import Variable

    try:
        value = Variable.get(VARIABLE, default=None)
    except Exception:  # no metadata database or API at hand: the file is the source
        value = None
    if value:
        return f"Airflow Variable {VARIABLE}", value if isinstance(value, str) else json.dumps(value)
    path = os.environ.get(FILE_ENV)
    if not path:
        raise InvalidInputError(f"no redeploy manifest: set the Airflow Variable {VARIABLE} or ${FILE_ENV}")
    try:
        return path, Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise InvalidInputError(f"redeploy manifest {path}: {exc.strerror}") from None


def parse_manifest(text: str, where: str) -> list[dict[str, str]]:
    """Validate the manifest and complete every model with the defaults; errors name the entry and key."""
    import yaml

    try:
        data: Any = yaml.safe_load(text)  # YAML is a superset of JSON: one parser for both
    except yaml.YAMLError as exc:
        raise InvalidInputError(f"{where}: not JSON or YAML ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("models"), list):
        raise InvalidInputError(f"{where}: expected a mapping with a list 'models'")
    defaults = {**DEFAULTS, **(data.get("defaults") or {})}
    unknown = set(defaults) - set(DEFAULTS)
    if unknown:
        raise InvalidInputError(f"{where}: unknown default(s) {', '.join(sorted(unknown))}")
    models = []
    for index, entry in enumerate(data["models"]):
        if not isinstance(entry, dict) or not str(entry.get("staging") or "").strip():
            raise InvalidInputError(f"{where}: models[{index}] has no 'staging'")
        unknown = set(entry) - KEYS
        if unknown:
            raise InvalidInputError(
                f"{where}: models[{index}] has unknown key(s) {', '.join(sorted(unknown))}"
            )
        models.append({**defaults, **{key: str(value) for key, value in entry.items()}})
    stagings = [m["staging"] for m in models]
    duplicates = sorted({s for s in stagings if stagings.count(s) > 1})
    if duplicates:
        raise InvalidInputError(f"{where}: listed twice: {', '.join(duplicates)}")
    return models


def load_manifest() -> list[dict[str, str]]:
    where, text = read_source()
    return parse_manifest(text, where)
