"""Independent validation as data: the optional `model.validation.*` and `model.risk.tier` keys.

Model-risk practice (SR 11-7) wants a model validated before use, with who validated it and until when.
When an owner records that in `modelMetadata.txt`, a deployment whose validation is not `approved`, or
has expired, is refused before anything is uploaded, naming the key. A model without these keys deploys
as before, with a warning that its validation is not recorded.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date

from model_governance.exceptions import MetadataError

STATUS_KEY = "model.validation.status"
BY_KEY = "model.validation.by"
VALID_UNTIL_KEY = "model.validation.valid.until"
RISK_TIER_KEY = "model.risk.tier"
KEYS = (STATUS_KEY, BY_KEY, VALID_UNTIL_KEY, RISK_TIER_KEY)
APPROVED = "approved"
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f\u2028\u2029]")


@dataclass(frozen=True)
class Validation:
    status: str
    by: str
    valid_until: str  # ISO date
    risk_tier: str | None = None


def check_validation(props: Mapping[str, str], source: str, today: date) -> Validation | None:
    """The recorded validation, checked; None when the staged model records none. A partial record, a
    status other than `approved` or a date in the past is a MetadataError naming the key and value."""
    given = {key: props[key].strip() for key in KEYS if key in props}
    if not given:
        return None
    for key, value in given.items():  # shown in logs and the CLI's tables: one line each
        if _CONTROL_RE.search(value):
            raise MetadataError(f"{source}: {key} {value!r} holds a line break or control character")
    required = (STATUS_KEY, BY_KEY, VALID_UNTIL_KEY)
    missing = [key for key in required if not given.get(key)]
    if missing:
        raise MetadataError(
            f"{source}: validation is recorded in part: set {', '.join(missing)} too "
            f"(or none of {', '.join(required)})"
        )
    status = given[STATUS_KEY].lower()
    if status != APPROVED:
        raise MetadataError(
            f"{source}: {STATUS_KEY} is {given[STATUS_KEY]!r}: "
            f"only an '{APPROVED}' validation may be deployed"
        )
    try:
        until = date.fromisoformat(given[VALID_UNTIL_KEY])
    except ValueError:
        raise MetadataError(
            f"{source}: {VALID_UNTIL_KEY} {given[VALID_UNTIL_KEY]!r} is not an ISO date (e.g. 2027-06-30)"
        ) from None
    if until < today:
        raise MetadataError(
            f"{source}: {VALID_UNTIL_KEY} {until.isoformat()} has passed: the validation expired; "
            "have the model validated again before deploying"
        )
    return Validation(APPROVED, given[BY_KEY], until.isoformat(), given.get(RISK_TIER_KEY) or None)
