"""Step 2d: register the deployment as a `model` entity in Apache Atlas."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from model_governance.connections import ATLAS_CONN_ID
from model_governance.links import AtlasEntityLink
from model_governance.operators._args import as_document

if TYPE_CHECKING:
    from model_governance.hooks.atlas import AtlasHook


class AtlasCreateModelEntityOperator(BaseOperator):
    """Make sure the `model` type exists (create or upgrade it), then create or update the deployment's
    entity.

    The entity's identity is its qualifiedName (`<name>-v<version>@<host:port>`): Atlas's bulk API updates
    an entity with the same qualifiedName, so a rerun never makes a second one. The archived files are
    registered as `hdfs_path` entities linked from it, and the deployment it replaces at the same target
    is marked superseded (see `model_governance.atlas.register`). Returns the entity's guid,
    qualifiedName and web page.

    :param document: the deployment document the deploy step returned (XCom).
    :param atlas_conn_id: the Atlas connection (templated).
    """

    template_fields: Sequence[str] = ("document", "atlas_conn_id")
    operator_extra_links = (AtlasEntityLink(),)
    ui_color = "#f3e8fa"

    def __init__(self, *, document: Any, atlas_conn_id: str = ATLAS_CONN_ID, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.document = document
        self.atlas_conn_id = atlas_conn_id

    @cached_property
    def hook(self) -> AtlasHook:
        from model_governance.hooks.atlas import AtlasHook

        return AtlasHook(self.atlas_conn_id)

    def execute(self, context: Any) -> dict[str, Any]:
        from model_governance.atlas.register import register_deployment

        return register_deployment(self.hook, as_document(self.document))
