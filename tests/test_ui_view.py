"""The "Model deployments" view inside a real Airflow 3.3 (api-server, scheduler, dag-processor on PostgreSQL),
after a real deployment by the `model_deployment` DAG against the stand-ins: Airflow's authentication on the
plugin's pages, and the pages as headless Chromium renders them (read back from the screenshot's pixels by OCR).

One Airflow stack and one deployment for the module; the last test stops the stand-in Atlas."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from types import SimpleNamespace
from urllib.parse import quote

import pytest
import requests

from tests.airflow_processes import PASSWORD, USER, AirflowStack
from tests.helpers import EXAMPLE_STAGING, NO_APPROVAL, atlas_call

pytestmark = pytest.mark.airflow_processes

PREFIX = "/model-governance"
VIEWER, VIEWER_PASSWORD = "stakeholder", "viewer-pw-4f2a"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def stack(postgres, tmp_path_factory):
    """Stand-ins, a real Airflow with an admin and a read-only user, and one deployment made by the real DAG."""
    from model_governance_devstack.launcher import start_devstack

    base = tmp_path_factory.mktemp("ui-view")
    with start_devstack(base / "devstack", atlas_port=0, mleap_port=0, webhdfs_port=0) as devstack:
        airflow = AirflowStack(base / "airflow", devstack.env(), postgres)
        airflow.env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"] = f"{USER}:admin,{VIEWER}:viewer"
        (airflow.home / "passwords.json").write_text(json.dumps({USER: PASSWORD, VIEWER: VIEWER_PASSWORD}))
        with airflow:
            airflow.wait_dag("model_deployment")
            answer = airflow.api("POST", "/dags/model_deployment/dagRuns",
                                 json={"logical_date": None, "conf": {"staging": str(EXAMPLE_STAGING), **NO_APPROVAL}})
            assert answer.status_code == 200, answer.text
            run_id = answer.json()["dag_run_id"]
            run = airflow.wait_run("model_deployment", run_id)
            assert run["state"] == "success", (airflow.task_states("model_deployment", run_id), airflow.logs())
            xcom = airflow.api("GET", f"/dags/model_deployment/dagRuns/{run_id}/taskInstances/register_in_atlas/xcomEntries/return_value").json()
            guid = xcom["value"]["guid"]
            entity = atlas_call(devstack.connections["atlas_default"], "GET", f"/entity/guid/{guid}").json()["entity"]
            yield SimpleNamespace(airflow=airflow, devstack=devstack, run_id=run_id, guid=guid, entity=entity,
                                  atlas_url=xcom["value"]["url"])


def get(stack, path, token=None, cookie=None, accept="text/html", **kwargs):
    headers = {"Accept": accept}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return requests.get(f"{stack.airflow.url}{PREFIX}{path}", headers=headers, cookies={"_token": cookie} if cookie else None,
                        allow_redirects=False, timeout=60, **kwargs)


def test_plugin_registers_the_app_and_its_two_external_views(stack):
    plugins = stack.airflow.api("GET", "/plugins").json()["plugins"]
    plugin = next(p for p in plugins if p["name"] == "model_governance")
    assert [(a["url_prefix"], a["name"]) for a in plugin["fastapi_apps"]] == [(PREFIX, "Model deployments")]
    views = {v["destination"]: v for v in plugin["external_views"]}
    assert views["nav"]["href"] == f"{PREFIX}/deployments" and views["nav"]["url_route"] == "model-deployments"
    assert views["nav"]["nav_top_level"] is True
    assert views["dag_run"]["href"] == f"{PREFIX}/runs/{{DAG_ID}}/{{RUN_ID}}"


def test_anonymous_requests_are_refused_and_signed_in_users_are_served(stack):
    qualified_name = stack.entity["attributes"]["qualifiedName"]
    pages = ["/deployments", f"/deployments/{stack.guid}", f"/runs/model_deployment/{quote(stack.run_id, safe='')}", "/"]
    for path in pages:
        # an API client without a token: 401; a browser: Airflow's login page, coming back here afterwards
        assert get(stack, path, accept="application/json").status_code == 401, path
        browser = get(stack, path)
        assert browser.status_code == 307, (path, browser.status_code, browser.text[:300])
        assert browser.headers["location"].startswith("/auth/login?next="), browser.headers["location"]
        assert quote(f"{PREFIX}{path}", safe="") in browser.headers["location"]
        # a forged or foreign token is no sign-in either (nothing of the page in the answer)
        forged = get(stack, path, token="eyJhbGciOiJIUzUxMiJ9.eyJzdWIiOiJhZG1pbiJ9.c2lnbmF0dXJl", accept="application/json")
        assert forged.status_code == 401 and qualified_name not in forged.text, path
        assert get(stack, path, cookie="not-a-jwt").status_code == 307, path
    # signed in: a bearer token (the REST way), or the `_token` cookie Airflow's login page sets
    admin = get(stack, "/deployments", token=stack.airflow.token())
    assert admin.status_code == 200 and qualified_name in admin.text
    viewer_token = stack.airflow.token(VIEWER, VIEWER_PASSWORD)
    viewer = get(stack, f"/deployments/{stack.guid}", cookie=viewer_token)  # the read-only role reads it too
    assert viewer.status_code == 200 and qualified_name in viewer.text
    assert viewer.headers["cache-control"] == "no-store"
    # the icon alone is public: the navigation bar shows it
    assert get(stack, "/icon.svg").status_code == 200


def test_filters_are_the_clis(stack):
    token = stack.airflow.token()
    qualified_name = stack.entity["attributes"]["qualifiedName"]
    matching = [{"owner": "Greg Keys"}, {"lob": "pricing", "status": "deployed"}, {"name": "rental pricing prediction", "version": "1.1"},
                {"host_type": "microservice"}, {"since": "2020-01-01", "until": "2999-12-31T23:59"},
                {"endpoint": stack.entity["attributes"]["endpointUrl"]}]
    for filters in matching:
        answer = get(stack, "/deployments", token=token, params=filters)
        assert answer.status_code == 200 and qualified_name in answer.text, filters
        assert "1 deployment matching" in answer.text, filters
    for filters in [{"owner": "Someone Else"}, {"status": "superseded"}, {"until": "2020-01-01"}, {"host_type": "spark"}]:
        answer = get(stack, "/deployments", token=token, params=filters)
        assert answer.status_code == 200 and "No deployments match." in answer.text and qualified_name not in answer.text, filters
    for filters, named in [({"since": "yesterday"}, "since: &#x27;yesterday&#x27; is not an ISO-8601"),
                           ({"status": "gone"}, "status: &#x27;gone&#x27; is not one of"), ({"limit": "0"}, "limit: &#x27;0&#x27;")]:
        answer = get(stack, "/deployments", token=token, params=filters)
        assert answer.status_code == 400 and named in answer.text, (filters, answer.text[-500:])
    missing = get(stack, "/deployments/no-such-model", token=token)
    assert missing.status_code == 404 and "no model deployment in Atlas" in missing.text


def ocr(png: bytes, tmp_path) -> str:
    """The text tesseract reads in a screenshot's pixels."""
    assert shutil.which("tesseract"), "tesseract-ocr is missing: scripts/install-system-packages installs it"
    image = tmp_path / "shot.png"
    image.write_bytes(png)
    return subprocess.run(["tesseract", str(image), "stdout", "--psm", "6"], capture_output=True, text=True, check=True).stdout


def sign_in(page, airflow, user, password):
    """Through Airflow's own login page, as a person would."""
    page.goto(f"{airflow.url}/")
    page.wait_for_url(re.compile(r".*/auth/login.*"), timeout=60_000)
    page.get_by_label(re.compile("username", re.I)).fill(user)
    page.get_by_label(re.compile("password", re.I)).fill(password)
    page.get_by_role("button", name=re.compile("sign in|log in|login", re.I)).click()
    page.wait_for_url(lambda url: "/auth/login" not in url, timeout=60_000)


@pytest.fixture
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


def test_the_view_in_chromium_shows_the_deployment_and_its_trace(stack, browser, tmp_path):
    attributes = stack.entity["attributes"]
    page = browser.new_page(viewport={"width": 1920, "height": 1000}, device_scale_factor=2)
    sign_in(page, stack.airflow, VIEWER, VIEWER_PASSWORD)
    # the button on Airflow's navigation bar opens the view inside Airflow's page
    page.get_by_role("link", name="Model deployments").first.click(timeout=90_000)  # the nav lists plugins once the API answers
    page.wait_for_url(re.compile(r".*/plugin/model-deployments.*"), timeout=60_000)
    frame = page.frame_locator("iframe[title='Model deployments']")
    row = frame.locator("table.deployments tbody tr")
    row.first.wait_for(timeout=60_000)
    assert row.count() == 1
    png = page.screenshot(full_page=True)
    (tmp_path / "deployments.png").write_bytes(png)
    text = ocr(png, tmp_path)
    # the row as the pixels show it: model, version, owner, line of business, host type, status, on one line
    lines = [line for line in text.splitlines() if "Greg Keys" in line]
    assert lines, text
    assert any(all(word in line for word in ("rental", "1.1", "pricing", "microservice", "deployed")) for line in lines), lines
    assert "Model deployments" in text  # the view's title (and Airflow's nav button)

    # the trace: a click on the deployment, inside Airflow's page
    frame.get_by_role("link", name=attributes["qualifiedName"]).click()
    artifacts = frame.locator("table.artifacts tbody tr")
    artifacts.first.wait_for(timeout=60_000)
    shown = {cells[2]: cells[1] for cells in (r.locator("td").all_inner_texts() for r in artifacts.all())}
    checksums = attributes["artifactChecksums"]
    assert set(shown) == set(checksums.values()) and len(shown) >= 4  # every archived file, with its sha256
    registry = attributes["registryUrl"]
    assert all(location.startswith(registry + "/") for location in shown.values())
    atlas = frame.get_by_role("link", name="Atlas entity")
    assert atlas.get_attribute("href") == stack.atlas_url and stack.guid in stack.atlas_url
    history = frame.locator("table.history tbody tr")
    assert history.count() == 1 and "(this one)" in history.first.inner_text()
    facts = frame.locator("table.facts").inner_text()
    assert "Greg Keys" in facts and attributes["serializedObjectSha256"] in facts
    assert "1970-01-01" not in facts  # Atlas's 0 for an unset date (approvedAt, endedAt) is not shown as a time
    if attributes.get("requestedBy"):  # the user who triggered the run, once the fetch step records it
        assert attributes["requestedBy"] in facts
    png = page.screenshot(full_page=True)
    (tmp_path / "trace.png").write_bytes(png)
    text = ocr(png, tmp_path)
    assert "Atlas entity" in text, text
    # the artifacts may sit below the frame's fold (the facts grew with the lifecycle): scrolled to, then read
    frame.locator("table.artifacts").scroll_into_view_if_needed()
    png = page.screenshot(full_page=True)
    (tmp_path / "trace-artifacts.png").write_bytes(png)
    text = ocr(png, tmp_path)
    assert "Artifacts" in text and "serialized model" in text, text
    # the run link leaves the frame: Airflow's own page of the run that deployed it
    frame.get_by_role("link", name="Airflow run").click()
    page.wait_for_url(re.compile(rf".*/dags/model_deployment/runs/{re.escape(quote(stack.run_id, safe=''))}$"), timeout=60_000)

    # the tab on the run's page shows the same deployment
    page.goto(f"{stack.airflow.url}/dags/model_deployment/runs/{quote(stack.run_id, safe='')}/plugin/model-deployment")
    tab = page.frame_locator("iframe[title='Model deployment']")
    tab.locator("table.artifacts tbody tr").first.wait_for(timeout=60_000)
    assert attributes["qualifiedName"] in tab.locator("h1").inner_text()


def test_atlas_failing_or_unreachable_gives_a_clear_page_not_a_traceback(stack):
    token = stack.airflow.token()
    stack.devstack.atlas.fail_next(8, status=503)  # every retry of the hook answered 503
    failing = get(stack, "/deployments", token=token)
    assert failing.status_code == 502, failing.text
    assert "Apache Atlas cannot answer" in failing.text and "answered 503" in failing.text
    assert "Traceback" not in failing.text and "atlas_default" in failing.text
    stack.devstack.atlas.stop()  # the last test of the module: Atlas is gone
    down = get(stack, f"/deployments/{stack.guid}", token=token)
    assert down.status_code == 502 and "cannot be reached" in down.text and "Traceback" not in down.text
    password = stack.devstack.connections["atlas_default"]["password"]
    assert password not in failing.text and password not in down.text
