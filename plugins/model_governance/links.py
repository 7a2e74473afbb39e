"""Operator extra links: a button on the register task that opens the deployment's entity in Atlas."""

from __future__ import annotations

from typing import TYPE_CHECKING

from airflow.sdk import BaseOperatorLink

if TYPE_CHECKING:
    from airflow.sdk import BaseOperator
    from airflow.sdk.types import TaskInstanceKey


class AtlasEntityLink(BaseOperatorLink):
    """The Atlas entity page the register task returned (computed by the worker, kept in XCom by Airflow)."""

    name = "Atlas entity"

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        from airflow.sdk.execution_time.xcom import XCom

        value = XCom.get_value(ti_key=ti_key, key="return_value")
        return value.get("url", "") if isinstance(value, dict) else ""
