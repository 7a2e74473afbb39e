"""Validation as data: recorded validations are checked, with errors naming the key and value."""

from __future__ import annotations

from datetime import date

import pytest

from model_governance.exceptions import MetadataError
from model_governance.validation import Validation, check_validation

TODAY = date(2026, 12, 1)
VALID = {
    "model.validation.status": "approved",
    "model.validation.by": "Model Risk Office (J. Doe)",
    "model.validation.valid.until": "2027-06-30",
    "model.risk.tier": "2",
}


def test_no_validation_keys_is_no_record():
    assert check_validation({"model.name": "rental"}, "modelMetadata.txt", TODAY) is None


def test_an_approved_current_validation_is_recorded():
    assert check_validation(VALID, "modelMetadata.txt", TODAY) == Validation(
        "approved", "Model Risk Office (J. Doe)", "2027-06-30", "2"
    )
    # valid through its last day
    assert check_validation({**VALID, "model.validation.valid.until": "2026-12-01"}, "m", TODAY) is not None


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"model.validation.status": "pending"}, "model.validation.status is 'pending'"),
        ({"model.validation.valid.until": "2026-11-30"}, "model.validation.valid.until 2026-11-30 has passed"),
        ({"model.validation.valid.until": "next year"}, "'next year' is not an ISO date"),
        ({"model.validation.by": " "}, "set model.validation.by too"),
    ],
)
def test_refusals_name_the_key_and_value(change, message):
    with pytest.raises(MetadataError, match=message) as refused:
        check_validation({**VALID, **change}, "/srv/staging/rental/modelMetadata.txt", TODAY)
    assert str(refused.value).startswith("/srv/staging/rental/modelMetadata.txt: ")


def test_a_risk_tier_alone_asks_for_the_validation():
    with pytest.raises(MetadataError, match="recorded in part"):
        check_validation({"model.risk.tier": "1"}, "m", TODAY)
