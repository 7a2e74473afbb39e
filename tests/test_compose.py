"""docker-compose.yaml is a valid Compose file (checked by docker-compose itself, no engine needed) and wired right."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path, PurePosixPath

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
        assert (atlas["conn_type"], atlas["host"], atlas["port"]) == ("atlas", "atlas", 21000)
        assert (mleap["conn_type"], mleap["host"], mleap["port"]) == ("mleap", "mleap-serving", 65327)
        assert mleap["extra"]["api"] == "legacy"
        assert (webhdfs["conn_type"], webhdfs["host"], webhdfs["port"]) == ("webhdfs", "namenode", 9870)


def test_the_deploy_step_and_mleap_share_the_models_volume(compose):
    def mounts(service):  # docker-compose 1.x prints the short form source:target:mode
        return {tuple(v.split(":")[:2]) if isinstance(v, str) else (v["source"], v["target"]) for v in compose["services"][service]["volumes"]}

    worker_env = json.loads(compose["services"]["airflow-worker"]["environment"]["AIRFLOW_CONN_MLEAP_DEFAULT"])["extra"]
    assert ("mleap-models", worker_env["models_dir"]) in mounts("airflow-worker")
    assert ("mleap-models", worker_env["models_mount"]) in mounts("mleap-serving")


# -- what the images really do ------------------------------------------------------------------------------
# Each constant below is read from the image's own build definition; a change of image must come with a re-read.

# sburn/docker-apache-atlas, Dockerfile (master = branch ATLAS-2.3.0; tag built by build/build-2.3.0.sh):
# `tar ... -C /apache-atlas`, and CMD ["/bin/bash", "-c", "/apache-atlas/bin/atlas_start.py; tail -fF
# /apache-atlas/logs/application.log"]. The data folder: README "Data persistency" (-v ...:/apache-atlas/data)
# and apache/atlas distro/src/bin/atlas_config.py, dataDir() = <atlas home>/data (HBase, ZooKeeper, Solr).
ATLAS_IMAGE = "sburn/apache-atlas"
ATLAS_HOME = "/apache-atlas"
ATLAS_DATA = "/apache-atlas/data"

# apache/hadoop, branch docker-hadoop-runner: Dockerfile `VOLUME /data`, `USER hadoop`, ENTRYPOINT
# dumb-init -- /opt/starter.sh; scripts/starter.sh: `sudo chmod o+rwx /data`, then
# `if [ ! -d "$ENSURE_NAMENODE_DIR" ]; then hdfs namenode -format -force; fi`, then the command.
HADOOP_IMAGE = "apache/hadoop"
HADOOP_VOLUME = "/data"
# tags published from branch docker-hadoop-3: 3.3.6 (HADOOP-18769, apache/hadoop#5781), then 3.4.x
HADOOP_TAG = re.compile(r"3\.3\.6|3\.4\.\d+")

# combust/mleap v0.12.0: mleap-serving/build.sbt (JavaAppPackaging + DockerPlugin, so sbt-native-packager's
# entrypoint bin/mleap-serving), project/DockerConfig.scala (dockerExposedPorts 65327, daemonUser root),
# mleap-serving/src/main/resources/application.conf (bind 0.0.0.0:65327), README (`-v /tmp/models:/models`).
MLEAP_PORT = 65327

# apache/airflow, airflow-core/docs/howto/docker-compose/docker-compose.yaml (3.x): each service's command, the
# image's own /entrypoint kept (only airflow-init runs /bin/bash, as root, and calls /entrypoint itself).
OFFICIAL_AIRFLOW_COMMANDS = {
    "airflow-apiserver": "api-server",
    "airflow-scheduler": "scheduler",
    "airflow-dag-processor": "dag-processor",
    "airflow-worker": "celery worker",
    "airflow-triggerer": "triggerer",
}

DOCKERFILE = PROJECT / "docker" / "airflow.Dockerfile"


def mounts(compose, service) -> list[tuple[str, str]]:
    """(source, target) of each volume; docker-compose 1.x prints the short form source:target:mode, with bind
    sources made absolute."""
    out = []
    for v in compose["services"][service].get("volumes", []):
        if isinstance(v, str):
            source, target = v.split(":")[:2]
        else:
            source, target = v["source"], v["target"]
        out.append((source, target))
    return out


def is_under(path: str, folder: str) -> bool:
    return PurePosixPath(path) == PurePosixPath(folder) or PurePosixPath(folder) in PurePosixPath(path).parents


def host_path(compose, service, container_path: str) -> Path | None:
    """The host file a container path is, through a bind mount of `service`; None when no bind holds it."""
    for source, target in mounts(compose, service):
        if source.startswith("/") and is_under(container_path, target):
            return Path(source) / PurePosixPath(container_path).relative_to(target)
    return None


def test_atlas_runs_the_images_own_start_and_keeps_its_data_where_the_image_does(compose):
    atlas = compose["services"]["atlas"]
    assert atlas["image"].split(":")[0] == ATLAS_IMAGE
    # the image's CMD starts Atlas; an override pointing anywhere else (the old /opt/apache-atlas-2.3.0) left
    # the container "up" on tail -F with nothing listening on 21000
    assert "entrypoint" not in atlas
    command = atlas.get("command")
    if command is not None:
        text = command if isinstance(command, str) else " ".join(command)
        paths = re.findall(r"(/[\w./-]+)", text)
        assert paths and all(is_under(p, ATLAS_HOME) or p == "/bin/bash" for p in paths), text
    targets = [target for _, target in mounts(compose, "atlas")]
    assert all(is_under(t, ATLAS_HOME) for t in targets), targets
    assert ATLAS_DATA in targets
    data_source = dict((t, s) for s, t in mounts(compose, "atlas"))[ATLAS_DATA]
    # a named volume (not a bind): Docker fills it from the image's pre-initialized data on first use
    assert data_source in compose["volumes"], data_source
    assert {"published": 21000, "target": 21000} in atlas["ports"] or "21000:21000" in atlas["ports"]


def hadoop_conf(env: dict, key: str) -> str | None:
    return env.get(f"HDFS-SITE.XML_{key}")


def test_the_namenode_volume_is_a_parent_of_ENSURE_NAMENODE_DIR_so_the_first_start_formats(compose):
    namenode = compose["services"]["namenode"]
    env = namenode["environment"]
    ensure = env["ENSURE_NAMENODE_DIR"]
    targets = [target for _, target in mounts(compose, "namenode")]
    # starter.sh formats only when the folder does not exist: a volume mounted exactly there always exists
    assert ensure not in targets
    parents = [t for t in targets if PurePosixPath(t) in PurePosixPath(ensure).parents]
    assert parents, f"no volume holds {ensure}: its name table would be lost with the container"
    # the image's own volume, which starter.sh makes writable for its non-root user `hadoop`
    assert parents == [HADOOP_VOLUME]
    # the folder the starter checks is the one the NameNode uses (the default, /tmp/hadoop-${user.name}/dfs/name,
    # is /tmp/hadoop-hadoop/... for the image's user, never /tmp/hadoop-root/...)
    assert hadoop_conf(env, "dfs.namenode.name.dir") == ensure
    assert namenode["command"] == ["hdfs", "namenode"]
    assert "entrypoint" not in namenode and "user" not in namenode


def test_the_datanode_never_formats_and_keeps_its_blocks_in_the_images_volume(compose):
    datanode = compose["services"]["datanode"]
    env = datanode["environment"]
    assert "ENSURE_NAMENODE_DIR" not in env
    targets = [target for _, target in mounts(compose, "datanode")]
    assert targets == [HADOOP_VOLUME]
    assert PurePosixPath(HADOOP_VOLUME) in PurePosixPath(hadoop_conf(env, "dfs.datanode.data.dir")).parents
    assert datanode["command"] == ["hdfs", "datanode"]
    assert "entrypoint" not in datanode and "user" not in datanode


def test_the_hadoop_images_are_a_published_tag_and_agree_on_the_cluster(compose):
    for name in ("namenode", "datanode"):
        image, tag = compose["services"][name]["image"].split(":")
        assert image == HADOOP_IMAGE and HADOOP_TAG.fullmatch(tag), compose["services"][name]["image"]
    nn, dn = (compose["services"][n]["environment"] for n in ("namenode", "datanode"))
    assert nn["CORE-SITE.XML_fs.defaultFS"] == dn["CORE-SITE.XML_fs.defaultFS"] == "hdfs://namenode:8020"
    webhdfs = json.loads(compose["services"]["airflow-worker"]["environment"]["AIRFLOW_CONN_WEBHDFS_DEFAULT"])
    assert webhdfs["extra"]["default_fs"] == nn["CORE-SITE.XML_fs.defaultFS"]


def test_mleap_serving_runs_the_images_entrypoint_on_its_port(compose):
    mleap = compose["services"]["mleap-serving"]
    assert "command" not in mleap and "entrypoint" not in mleap
    assert {"published": MLEAP_PORT, "target": MLEAP_PORT} in mleap["ports"] or f"{MLEAP_PORT}:{MLEAP_PORT}" in mleap["ports"]
    conn = json.loads(compose["services"]["airflow-worker"]["environment"]["AIRFLOW_CONN_MLEAP_DEFAULT"])
    assert conn["port"] == MLEAP_PORT
    assert conn["extra"]["models_mount"] in [t for _, t in mounts(compose, "mleap-serving")]


def test_the_manifest_and_the_staging_root_are_files_of_the_repository_inside_a_bind(compose):
    for name in AIRFLOW_SERVICES:
        env = compose["services"][name]["environment"]
        manifest = host_path(compose, name, env["MODEL_GOVERNANCE_REDEPLOY_MANIFEST"])
        staging = host_path(compose, name, env["MODEL_GOVERNANCE_STAGING_ROOT"])
        assert manifest is not None and manifest.is_file(), (name, env["MODEL_GOVERNANCE_REDEPLOY_MANIFEST"])
        assert staging is not None and staging.is_dir(), (name, env["MODEL_GOVERNANCE_STAGING_ROOT"])
        for model in yaml.safe_load(manifest.read_text())["models"]:  # the manifest's staged models resolve
            assert (staging / model["staging"]).is_dir(), model


def test_airflow_services_start_as_the_official_compose_file_does(compose):
    for name, command in OFFICIAL_AIRFLOW_COMMANDS.items():
        service = compose["services"][name]
        assert service["command"] in (command, command.split()), name
        assert "entrypoint" not in service, name  # the image's /entrypoint (dumb-init, DB wait, then airflow)
        assert service["user"] == "50000:0", name  # ${AIRFLOW_UID:-50000}:0, group 0 as the image expects
        assert service["depends_on"]["airflow-init"]["condition"] == "service_completed_successfully", name
    init = compose["services"]["airflow-init"]
    assert init["entrypoint"] in ("/bin/bash", ["/bin/bash"]) and init["user"] == "0:0"
    script = init["command"][-1]
    assert "/entrypoint airflow version" in script  # migrations and the admin user are the entrypoint's work
    assert init["environment"]["_AIRFLOW_DB_MIGRATE"] == "true" and init["environment"]["_AIRFLOW_WWW_USER_CREATE"] == "true"
    # the folders the workers write, made theirs before they start
    worker_targets = [t for s, t in mounts(compose, "airflow-worker") if not s.startswith("/")]
    for target in worker_targets:
        assert target in script, f"airflow-init does not chown the volume {target}"


# -- docker/airflow.Dockerfile ------------------------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    lines, current = [], ""
    for raw in DOCKERFILE.read_text().splitlines():
        if not current and raw.lstrip().startswith("#"):
            continue
        if raw.rstrip().endswith("\\"):
            current += raw.rstrip()[:-1] + " "
            continue
        current += raw
        if current.strip():
            keyword, _, rest = current.strip().partition(" ")
            lines.append((keyword.upper(), rest.strip()))
        current = ""
    return lines


def test_the_airflow_image_installs_every_runtime_dependency_pyproject_names(compose):
    import tomllib

    project = tomllib.loads((PROJECT / "pyproject.toml").read_text())["project"]
    instructions = dockerfile_instructions()
    runs = [args for kind, args in instructions if kind == "RUN"]
    # the list is generated from the pyproject.toml the image copies, by this command: run it here on ours
    copies = [args.split()[-2:] for kind, args in instructions if kind == "COPY"]
    assert any(src == "pyproject.toml" for src, _ in copies)
    generate = next(r for r in runs if "tomllib" in r)
    code = re.search(r'python -c "([^"]+)"', generate).group(1)
    copied_to = next(dest for src, dest in copies if src == "pyproject.toml")
    result = subprocess.run(
        [sys.executable, "-c", code.replace(copied_to, str(PROJECT / "pyproject.toml"))], capture_output=True, text=True, check=True
    )
    assert result.stdout.split() == project["dependencies"]
    requirements = re.search(r"> (\S+)", generate).group(1)
    install = next(r for r in runs if "pip install" in r)
    assert f"-r {requirements}" in install
    assert '"apache-airflow==${AIRFLOW_VERSION}"' in install  # pip may not move the image's Airflow
    # the image's Airflow satisfies pyproject's pin
    from packaging.requirements import Requirement

    base = next(args for kind, args in instructions if kind == "FROM")
    image, tag = base.split(":")
    assert image == "apache/airflow"
    airflow = next(Requirement(d) for d in project["dependencies"] if Requirement(d).name == "apache-airflow")
    assert tag in airflow.specifier
    assert compose["services"]["airflow-worker"]["image"].endswith(f":{tag}")


def test_the_airflow_image_can_run_the_spark_host_type():
    instructions = dockerfile_instructions()
    apt = next(args for kind, args in instructions if kind == "RUN" and "apt-get install" in args)
    assert re.search(r"\b(default-jre-headless|openjdk-\d+-jre-headless)\b", apt), "spark-submit needs a Java runtime"
    assert any(kind == "ENV" and args.startswith("JAVA_HOME=") for kind, args in instructions)
    install = next(args for kind, args in instructions if kind == "RUN" and "pip install" in args)
    assert "pyspark==" in install  # spark-submit for a local master, at pyspark-client's version
    assert "git" in apt.split()  # staging from git repositories


def test_the_airflow_image_build_context_holds_what_it_copies(compose):
    context = Path(compose["services"]["airflow-worker"]["build"]["context"])
    ignored = {line.strip() for line in (context / ".dockerignore").read_text().splitlines() if line.strip() and not line.startswith("#")}
    for kind, args in dockerfile_instructions():
        if kind == "COPY":
            source = [a for a in args.split() if not a.startswith("--")][0]
            assert (context / source).exists(), source
            assert source not in ignored, source
