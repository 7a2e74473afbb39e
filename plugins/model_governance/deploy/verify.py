"""The checks a deployment must pass, and the facts it records: the sample LeapFrame scores, with one row
per sample row and the expected output fields; bundle names MLeap can open."""

from __future__ import annotations

import json
import posixpath
from typing import Any

from model_governance.exceptions import BundleError, ModelVerificationError

SAMPLE_REQUEST = "samples/leapframe.json"  # optional: a LeapFrame the deploy step scores to verify the model


def require_zip_name(executable: str) -> None:
    """MLeap (bundle-ml's BundleFile) opens a bundle as a zip only when its name ends in `.zip`; any other
    name is read as a folder and fails on the server with an obscure error."""
    name = posixpath.basename(executable)
    if not name.endswith(".zip"):
        raise BundleError(
            f"{executable}: MLeap reads a bundle as a zip only when its name ends in .zip: rename {name!r}"
        )


def parse_sample(raw: bytes) -> dict[str, Any]:
    """The staged sample request as a LeapFrame; `BundleError` when it is not one."""
    problem = f'{SAMPLE_REQUEST}: not a LeapFrame ({{"schema": {{"fields": [...]}}, "rows": [...]}})'
    try:
        frame = json.loads(raw)
    except ValueError:
        raise BundleError(problem) from None
    schema = frame.get("schema") if isinstance(frame, dict) else None
    if (
        not isinstance(schema, dict)
        or not isinstance(schema.get("fields"), list)
        or not isinstance(frame.get("rows"), list)
    ):
        raise BundleError(problem)
    if not frame["rows"]:  # nothing to score would verify nothing
        raise BundleError(f"{SAMPLE_REQUEST}: rows is empty; give at least one row to score")
    return frame


def check_scoring(
    answer: dict[str, Any], sample: dict[str, Any], expected: list[str] | None
) -> list[dict[str, Any]]:
    """The answer must be a LeapFrame with a row per sample row and the expected output fields; returns the
    fields scoring added (the output schema)."""
    try:
        fields = answer["schema"]["fields"]
        names = [f["name"] for f in fields]
        rows = answer["rows"]
    except (KeyError, TypeError):
        raise ModelVerificationError(
            f"scoring the sample returned no LeapFrame: {json.dumps(answer)[:300]}"
        ) from None
    if not rows or len(rows) != len(sample["rows"]):
        raise ModelVerificationError(f"scoring {len(sample['rows'])} sample rows returned {len(rows)}")
    inputs = {f["name"] for f in sample["schema"]["fields"]}
    missing = [name for name in expected or [] if name not in names]
    if missing:
        raise ModelVerificationError(f"scoring the sample returned no field(s) {', '.join(missing)}")
    added = [f for f in fields if f["name"] not in inputs]
    if not added:
        raise ModelVerificationError("scoring the sample added no output field to the LeapFrame")
    return added


def legacy_facts(base_url: str, schema: dict[str, Any], outputs: list[dict[str, Any]]) -> dict[str, Any]:
    """Scoring URL and schemas on legacy serving. `GET /model` answers the transformer's whole schema,
    inputs and outputs together: the fields the sample scoring added are the outputs; without a sample,
    all of them stand as the input schema."""
    produced = {f["name"] for f in outputs}
    inputs = [f for f in schema.get("fields", []) if f["name"] not in produced]
    return {"scoring_url": f"{base_url}/transform", "input_schema": inputs, "output_schema": outputs}


def spring_boot_facts(base_url: str, name: str, meta: dict[str, Any]) -> dict[str, Any]:
    """Scoring URL and schemas of a model named `name` on spring-boot serving, from its `/meta` answer."""
    return {
        "scoring_url": f"{base_url}/models/{name}/transform",
        "input_schema": list(meta.get("inputSchema", {}).get("fields", [])),
        "output_schema": list(meta.get("outputSchema", {}).get("fields", [])),
    }


def output_names(facts: dict[str, Any]) -> list[str]:
    return [f["name"] for f in facts["output_schema"]]
