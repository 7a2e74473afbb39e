"""docker-compose.yaml is a valid Compose file (checked by docker-compose itself, no engine needed) and wired right."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest
import yaml

from tests.helpers import PROJECT

AIRFLOW_SERVICES = {"airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-worker", "airflow-triggerer", "airflow-init"}


@pytest.fixture(scope="module")
def compose():
    binary = shutil.which("docker-compose")
    assert binary, "docker-compose (Debian package) is installed by scripts/install-system-packages"
    result = subprocess.run([binary, "-f", str(PROJECT / "docker-compose.yaml"), "config"], capture_output=True, text=True, cwd=PROJECT)
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


def test_the_stack_has_every_service(compose):
    assert set(compose["services"]) == AIRFLOW_SERVICES | {"postgres", "redis", "mleap-serving", "atlas", "namenode", "datanode"}


def test_airflow_services_share_secrets_and_connections(compose):
    envs = {name: compose["services"][name]["environment"] for name in AIRFLOW_SERVICES}
    assert len({env["AIRFLOW__API_AUTH__JWT_SECRET"] for env in envs.values()}) == 1
    for name, env in envs.items():
        assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor", name
        atlas = json.loads(env["AIRFLOW_CONN_ATLAS_DEFAULT"])
        mleap = json.loads(env["AIRFLOW_CONN_MLEAP_DEFAULT"])
        webhdfs = json.loads(env["AIRFLOW_CONN_WEBHDFS_DEFAULT"])
        assert (atlas["conn_type"], atlas["host"], atlas["port"]) == ("http", "atlas", 21000)
        assert (mleap["host"], mleap["port"], mleap["extra"]["api"]) == ("mleap-serving", 65327, "legacy")
        assert (webhdfs["conn_type"], webhdfs["host"], webhdfs["port"]) == ("webhdfs", "namenode", 9870)


def test_the_deploy_step_and_mleap_share_the_models_volume(compose):
    def mounts(service):  # docker-compose 1.x prints the short form source:target:mode
        return {tuple(v.split(":")[:2]) if isinstance(v, str) else (v["source"], v["target"]) for v in compose["services"][service]["volumes"]}

    worker_env = json.loads(compose["services"]["airflow-worker"]["environment"]["AIRFLOW_CONN_MLEAP_DEFAULT"])["extra"]
    assert ("mleap-models", worker_env["models_dir"]) in mounts("airflow-worker")
    assert ("mleap-models", worker_env["models_mount"]) in mounts("mleap-serving")
