"""The runtime wheel: the product package only. The stand-ins, the real-server launchers and their data
live in the development package (devstack/), which `.[test]` and `make setup` install beside it."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile

from tests.helpers import PROJECT


def test_the_runtime_wheel_holds_no_stand_in_and_declares_the_provider(tmp_path):
    # Built from a copy of the checkout, so that the build's own folders (build/, *.egg-info) are not left
    # in it, nor shared with another build running at the same time.
    source = tmp_path / "source"
    skip = (".git", ".venv", ".devstack", ".airflow", "build", "dist", "*.egg-info", "__pycache__", ".*_cache")
    shutil.copytree(PROJECT, source, ignore=shutil.ignore_patterns(*skip))
    wheels = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(wheels), str(source)],
        check=True,
        capture_output=True,
        timeout=600,
    )
    (wheel,) = wheels.glob("model_governance-*.whl")
    with zipfile.ZipFile(wheel) as opened:
        names = opened.namelist()
        entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
        declared = opened.read(entry_points).decode()

    assert "model_governance/hooks/atlas.py" in names  # the product is there
    assert not [n for n in names if n.startswith("model_governance_devstack")]
    assert not [n for n in names if "atlas_models/" in n]
    assert not [n for n in names if n.split("/")[0] in ("tests", "devstack", "examples", "dags")]
    assert "[apache_airflow_provider]" in declared
    assert "provider_info = model_governance.provider:get_provider_info" in declared
