"""The params the deployment DAGs share, written once: each has a title, a description and a default that
works with the connections `model-governance devstack` prints."""

from __future__ import annotations

from typing import Any

from model_governance.connections import ATLAS_CONN_ID, WEBHDFS_CONN_ID

SOURCES = (
    "a folder (absolute, or relative to the staging root $MODEL_GOVERNANCE_STAGING_ROOT), a git repository "
    "at a branch, tag or commit (git+https://host/repo.git@ref), an archive URL (GitHub zipball, "
    "GitLab archive, .zip, "
    ".tar.gz) or github:owner/repo@ref / gitlab:group/repo@ref. Credentials: the staging_default connection."
)


def staging_param(default: str, holds: str = "") -> Any:
    from airflow.sdk import Param

    return Param(
        default,
        type="string",
        minLength=1,
        # no user:password@ (or token@) in a URL: it would show in the run's conf and rendered fields
        pattern=r"^(?![A-Za-z][A-Za-z0-9+.-]*://[^/?#]*@)",
        title="Staged model",
        description=f"Where the owner staged the model{holds}: {SOURCES}",
        examples=[
            default,
            f"/srv/staging/{default}",
            "git+https://git.example.com/pricing/rental.git@v1.1",
            "github:acme/rental-pricing@v1.1",
        ],
    )


def conn_param(default: str, title: str, description: str) -> Any:
    """An Airflow connection id the run uses."""
    from airflow.sdk import Param

    return Param(default, type="string", minLength=1, title=title, description=description)


def registry_params() -> dict[str, Any]:
    """registry_root, force, and the WebHDFS and Atlas connections."""
    from airflow.sdk import Param

    return {
        "registry_root": Param(
            "hdfs:///model-registry",
            type="string",
            pattern=r"^(hdfs://[^/]*/|file:///|/)",
            title="Model registry root",
            description=(
                "hdfs:///<path> stores versions in HDFS through the WebHDFS connection; an absolute local "
                "folder (or file:///<path>) is dev mode, for one machine or a shared mount."
            ),
            examples=["hdfs:///model-registry", "/srv/model-registry"],
        ),
        "force": Param(
            False,
            type="boolean",
            title="Replace a conflicting registry version",
            description=(
                "Publish even if the registry holds this model version with different content (replaces it)."
            ),
        ),
        "webhdfs_conn_id": conn_param(
            WEBHDFS_CONN_ID,
            "WebHDFS connection",
            "Airflow connection of the HDFS namenode(s), used when the registry is on HDFS.",
        ),
        "atlas_conn_id": conn_param(
            ATLAS_CONN_ID,
            "Atlas connection",
            "Airflow connection of Apache Atlas (type atlas, or http; basic auth).",
        ),
    }


def approval_params() -> dict[str, Any]:
    """approval_required: whether a person must approve the deployment before it serves."""
    from airflow.sdk import Param

    return {
        "approval_required": Param(
            True,
            type="boolean",
            title="Require approval",
            description=(
                "A person other than the one who triggers the run approves the deployment (Required "
                "Actions) before it serves. Off: no approval is asked; the run logs a warning and records "
                "in Atlas and the model's event log that none was required."
            ),
        )
    }


def step_arguments() -> dict[str, str]:
    """`deployment_steps` arguments as templates of the params `staging_param`, `registry_params` and
    `approval_params` make."""
    names = ("staging", "registry_root", "force", "webhdfs_conn_id", "atlas_conn_id", "approval_required")
    return {name: f"{{{{ params.{name} }}}}" for name in names}


def action_arguments() -> dict[str, str]:
    """A rollback's or retirement's plan-step arguments as templates of the params `action_params` and
    `action_registry_params` make."""
    names = ("target", "reason", "registry_root", "webhdfs_conn_id", "atlas_conn_id")
    return {name: f"{{{{ params.{name} }}}}" for name in names}


def action_params(action: str) -> dict[str, Any]:
    """target and reason, for an operator action on a deployment (`rollback`, `retire`)."""
    from airflow.sdk import Param

    return {
        "target": Param(
            type="string",
            minLength=1,
            title="Deployment target",
            description=(
                f"Where to {action}, as Atlas records it in deployTarget: a legacy MLeap server's host:port, "
                "host:port/models/<name> on spring-boot, or spark:<models_root>/<model> "
                "(`model-governance deployments --json` lists them)."
            ),
            examples=["mleap.example.com:65327", "mleap.example.com:65327/models/rental"],
        ),
        "reason": Param(
            type="string",
            minLength=1,
            maxLength=1000,
            pattern=r"\S",
            title="Reason",
            description=f"Why you {action} it: recorded in Atlas and the model's event log, with your user.",
        ),
    }


def action_registry_params() -> dict[str, Any]:
    """registry_params without `force`: an operator action never replaces a registry version."""
    params = registry_params()
    del params["force"]
    return params
