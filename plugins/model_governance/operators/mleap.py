"""Step 2b for the `microservice` host type: the archived bundle to MLeap serving, verified or rolled
back."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from model_governance.connections import ATLAS_CONN_ID, MLEAP_CONN_ID, WEBHDFS_CONN_ID
from model_governance.operators._args import as_bool, as_document
from model_governance.operators._lineage import DEPLOY, DeploymentLineageMixin

if TYPE_CHECKING:
    from model_governance.hooks.mleap import MLeapServingHook


class MLeapDeployOperator(DeploymentLineageMixin, BaseOperator):
    """Put the published bundle where the server reads it, load it, confirm it serves, and score the sample.

    The bundle comes from the registry (the archived bytes, checked against the manifest's sha256), not
    from the staging source: what serves is exactly what was archived. A failed load or check leaves the
    previous model serving (see `model_governance.deploy`). Returns the deployment document with the deploy
    facts added (host, endpoint, scoring URL, time in UTC, input and output schemas).

    :param document: the deployment document the publish step returned (XCom).
    :param mleap_conn_id: the MLeap serving connection (templated).
    :param webhdfs_conn_id: the WebHDFS connection, when the registry is on HDFS (templated).
    :param atlas_conn_id: where the deployment serving now is looked up, for a legacy rollback and for
        `skip_current`; None to look up nothing (templated).
    :param load_timeout: seconds a load may take before the deployment is given up and rolled back
        (templated).
    :param skip_current: verify and leave alone a model that already serves this exact bundle (templated).
    """

    template_fields: Sequence[str] = (
        "document",
        "mleap_conn_id",
        "webhdfs_conn_id",
        "atlas_conn_id",
        "load_timeout",
        "skip_current",
    )
    ui_color = "#e9f7ec"
    lineage_step = DEPLOY

    def __init__(
        self,
        *,
        document: Any,
        mleap_conn_id: str = MLEAP_CONN_ID,
        webhdfs_conn_id: str = WEBHDFS_CONN_ID,
        atlas_conn_id: str | None = ATLAS_CONN_ID,
        load_timeout: float | str = 120.0,
        skip_current: bool | str = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.document = document
        self.mleap_conn_id = mleap_conn_id
        self.webhdfs_conn_id = webhdfs_conn_id
        self.atlas_conn_id = atlas_conn_id
        self.load_timeout = load_timeout
        self.skip_current = skip_current

    @cached_property
    def hook(self) -> MLeapServingHook:
        from model_governance.hooks.mleap import MLeapServingHook

        return MLeapServingHook(self.mleap_conn_id)

    def execute(self, context: Any) -> dict[str, Any]:
        from model_governance.deploy.microservice import deploy_microservice
        from model_governance.hooks.atlas import AtlasHook

        doc = as_document(self.document)
        deploy = deploy_microservice(
            self.hook,
            doc,
            webhdfs_conn_id=self.webhdfs_conn_id,
            atlas=AtlasHook(self.atlas_conn_id) if self.atlas_conn_id else None,
            skip_current=as_bool(self.skip_current, "skip_current"),
            load_timeout=float(self.load_timeout),
        )
        verb = "Already serving, verified:" if deploy.unchanged else "Serving"
        self.log.info(
            "%s %s at %s (scoring: %s)", verb, doc.deploy_name, deploy.endpoint_url, deploy.scoring_url
        )
        deploy = replace(deploy, conn_id=self.mleap_conn_id)  # consumers of its Asset event score through it
        return self.lineage_output(doc.with_deploy(deploy).to_json())
