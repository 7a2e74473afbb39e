"""Step 2d: register the deployment as a `model` entity in Apache Atlas."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property, partial
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from model_governance.connections import ATLAS_CONN_ID, WEBHDFS_CONN_ID
from model_governance.links import AtlasEntityLink
from model_governance.operators._args import as_document
from model_governance.operators._lineage import REGISTER, DeploymentLineageMixin

if TYPE_CHECKING:
    from model_governance.hooks.atlas import AtlasHook


class AtlasCreateModelEntityOperator(DeploymentLineageMixin, BaseOperator):
    """Make sure the `model` type exists (create or upgrade it), then create or update the deployment's
    entity.

    The entity's identity is its qualifiedName (`<name>-v<version>@<host:port>`): Atlas's bulk API updates
    an entity with the same qualifiedName, so a rerun never makes a second one. The archived files are
    registered as `hdfs_path` entities linked from it, and the deployment it replaces at the same target
    is marked superseded (see `model_governance.atlas.register`). With `DEPLOYMENTS_ALIAS` among its
    outlets, it then adds the deployment's Asset events (see `model_governance.assets`). Returns the
    entity's guid, qualifiedName and web page.

    Before the entity is written, the `deployed` event is appended to the model's event log in the
    registry (the run still holds the model's lock: it is released by `clean_up`, downstream of this
    step), and the line's sha256 is kept on the entity as `eventLogHead`.

    :param document: the deployment document the deploy step returned (XCom).
    :param atlas_conn_id: the Atlas connection (templated).
    :param registry_root: the registry holding the model's event log (templated); None writes no event.
    :param webhdfs_conn_id: the WebHDFS connection, when the registry is on HDFS (templated).
    """

    template_fields: Sequence[str] = ("document", "atlas_conn_id", "registry_root", "webhdfs_conn_id")
    operator_extra_links = (AtlasEntityLink(),)
    ui_color = "#f3e8fa"
    lineage_step = REGISTER

    def __init__(
        self,
        *,
        document: Any,
        atlas_conn_id: str = ATLAS_CONN_ID,
        registry_root: str | None = None,
        webhdfs_conn_id: str = WEBHDFS_CONN_ID,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.document = document
        self.atlas_conn_id = atlas_conn_id
        self.registry_root = registry_root
        self.webhdfs_conn_id = webhdfs_conn_id

    @cached_property
    def hook(self) -> AtlasHook:
        from model_governance.hooks.atlas import AtlasHook

        return AtlasHook(self.atlas_conn_id)

    def execute(self, context: Any) -> dict[str, Any]:
        from model_governance import eventlog
        from model_governance.assets import announce_deployment
        from model_governance.atlas.register import register_deployment
        from model_governance.registry import Registry

        doc = as_document(self.document)
        record_event = None
        if self.registry_root:
            registry = Registry.from_root(self.registry_root, self.webhdfs_conn_id)
            record_event = partial(eventlog.record_deployed, registry, doc)
        registered = register_deployment(self.hook, doc, record_event)
        if announce_deployment(context, self.outlets, doc, registered):
            self.log.info("Asset events added: %s deployed", doc.qualified_name)
        return registered
