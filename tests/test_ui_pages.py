"""The view's pages rendered by its FastAPI app (in-process, Starlette's test client) from the stand-in Atlas
after real `dag.test()` deployments: hostile metadata is shown as text, never markup; the errors are pages.

Authentication is not exercised here (the dependency is lifted): `test_ui_view.py` tests it on a real
api-server, with Airflow's own tokens."""

from __future__ import annotations

import re

import pytest

from tests.helpers import NO_APPROVAL, load_dag, stage_variant

HOSTILE = {
    "owner": '<script>alert("owner")</script>',
    "owner_lob": '"><img src=x onerror=alert(1)>',
    "description": "</td></tr></table><h1>forged</h1>",
}


@pytest.fixture
def client(airflow_db):
    from fastapi.testclient import TestClient

    from model_governance.ui.app import create_app
    from model_governance.ui.auth import signed_in_user

    app = create_app()
    app.dependency_overrides[signed_in_user] = lambda: None
    with TestClient(app) as test_client:
        yield test_client


def test_link_is_made_only_for_http_urls_and_paths():
    from model_governance.ui.pages import link

    assert link("https://atlas.example.com/index.html#!/detailPage/1", "Atlas") == (
        '<a href="https://atlas.example.com/index.html#!/detailPage/1">Atlas</a>'
    )
    assert link("/model-governance/deployments/a%20b", "x") == '<a href="/model-governance/deployments/a%20b">x</a>'
    for url in ("javascript:alert(1)", " JavaScript:alert(1)", "data:text/html,<b>", "//evil.example.com/x", "http:/x", None, ""):
        assert link(url, "<b>t</b>") == "&lt;b&gt;t&lt;/b&gt;", url
    assert link('https://h/"onmouseover="alert(1)', "t") == '<a href="https://h/&quot;onmouseover=&quot;alert(1)">t</a>'


def test_hostile_metadata_is_shown_as_text(devstack, client, tmp_path):
    staged = stage_variant(tmp_path, **HOSTILE)
    run = load_dag("model_deployment").test(run_conf={"staging": str(staged), **NO_APPROVAL})
    assert run.state == "success"
    table = client.get("/deployments")
    assert table.status_code == 200
    guid = re.search(r'href="/model-governance/deployments/([0-9a-f-]{36})"', table.text).group(1)
    trace = client.get(f"/deployments/{guid}")
    assert trace.status_code == 200
    for body in (table.text, trace.text):
        assert "<script>alert" not in body and "<img src=x" not in body and "<h1>forged" not in body
        assert "&lt;script&gt;alert(&quot;owner&quot;)&lt;/script&gt;" in body
        assert "&quot;&gt;&lt;img src=x onerror=alert(1)&gt;" in body
        assert body.count("<script>") == 1  # the page's own (links out of Airflow's frame)
    assert "&lt;/td&gt;&lt;/tr&gt;&lt;/table&gt;&lt;h1&gt;forged&lt;/h1&gt;" in trace.text
    # the filter form shows a hostile filter value back as text too
    echoed = client.get("/deployments", params={"owner": HOSTILE["owner"]})
    assert "1 deployment matching" in echoed.text and "<script>alert" not in echoed.text
    missing = client.get("/deployments/<b>nothing</b>")
    assert missing.status_code == 404 and "&#x27;&lt;b&gt;nothing&lt;/b&gt;&#x27;" in missing.text


def test_a_run_without_a_deployment_and_an_unknown_deployment_are_said_so(devstack, client):
    answer = client.get("/runs/some_other_dag/manual__2026-12-01T00:00:00+00:00")
    assert answer.status_code == 200 and "Atlas has no deployment registered by the run" in answer.text
    assert "manual__2026-12-01T00:00:00+00:00" in answer.text
    empty = client.get("/deployments/<b>nothing</b>")  # before any registration: no `model` type in Atlas
    assert empty.status_code == 404 and "no deployment was ever registered" in empty.text


def test_no_atlas_connection_gives_a_page_naming_it(client, monkeypatch):
    monkeypatch.delenv("AIRFLOW_CONN_ATLAS_DEFAULT", raising=False)
    answer = client.get("/deployments")
    assert answer.status_code == 503, answer.text
    assert "Airflow has no connection &#x27;atlas_default&#x27;" in answer.text and "Traceback" not in answer.text


def test_loading_the_plugin_imports_no_web_framework():
    """Every Airflow process (each task too) loads plugins; only the api-server serves the view."""
    import os
    import subprocess
    import sys

    from tests.helpers import PLUGINS

    code = "import sys, model_governance_plugin; print([m for m in ('fastapi', 'starlette', 'model_governance.ui.app') if m in sys.modules])"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(PLUGINS), str(PLUGINS.parent / "devstack")])}
    answer = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert answer.returncode == 0, answer.stderr[-2000:]
    assert answer.stdout.strip().splitlines()[-1] == "[]"
