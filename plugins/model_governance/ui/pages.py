"""The view's HTML, rendered on the server: the deployments table, a deployment's trace, the error pages.

Every value shown comes from Atlas, that is from a model owner's `modelMetadata.txt`: hostile input. Each
one goes through `esc` (HTML-escaped, quotes included), and a value is a link only when it is an http(s)
URL (`href`), so no metadata can add markup, script or a `javascript:` link.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

from model_governance.atlas import schema as s

TITLE = "Model deployments"
STATUSES = (s.DEPLOYED, *s.ENDED_STATUSES)
HOST_TYPES = ("microservice", "spark")
# the filter form (the filters of `model-governance deployments`): query parameter, label, what it compares
TEXT_FILTERS = (
    ("name", "Model", "model.name"),
    ("version", "Version", "model.version"),
    ("owner", "Owner", "model.owner"),
    ("lob", "Line of business", "model.owner.lob"),
    ("endpoint", "Endpoint", "the scoring URL"),
)
DATE_FILTERS = (("since", "Deployed since"), ("until", "Deployed until"))

STYLE = """
:root { color-scheme: light; --ink: #1f2933; --muted: #616e7c; --line: #d9e2ec; --head: #f0f4f8;
        --accent: #0b63a6; --ok: #17753a; --ended: #7b8794; --bad: #b42318; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif;
       color: var(--ink); margin: 0; padding: 20px 24px; background: #fff; }
h1 { font-size: 22px; margin: 0 0 4px; } h2 { font-size: 17px; margin: 24px 0 8px; }
p.lead { color: var(--muted); margin: 0 0 16px; }
a { color: var(--accent); text-decoration: none; } a:hover { text-decoration: underline; }
table { border-collapse: collapse; width: 100%; margin: 4px 0 12px; } .scroll { overflow-x: auto; }
th, td { border-bottom: 1px solid var(--line); padding: 6px 10px; text-align: left; vertical-align: top; }
th { background: var(--head); font-weight: 600; white-space: nowrap; }
td.mono, code { font-family: "DejaVu Sans Mono", Menlo, Consolas, monospace; font-size: 13px; }
td.sha { word-break: break-all; }
table.facts th { width: 200px; background: none; color: var(--muted); font-weight: 500; }
table.deployments td { white-space: nowrap; } table.deployments td.wrap { white-space: normal; }
.status { display: inline-block; padding: 0 8px; border-radius: 10px; font-weight: 600;
          color: var(--ended); background: #f5f7fa; border: 1px solid var(--ended); }
.status.deployed { color: var(--ok); background: #edf9f0; border-color: var(--ok); }
form.filters { display: flex; flex-wrap: wrap; gap: 8px 14px; align-items: flex-end; margin: 0 0 14px;
               padding: 12px; background: var(--head); border-radius: 6px; }
form.filters label { display: flex; flex-direction: column; font-size: 12px; color: var(--muted); }
form.filters input, form.filters select { font: inherit; padding: 3px 6px; min-width: 120px; }
button { font: inherit; padding: 4px 14px; background: var(--accent); color: #fff; border: 0;
         border-radius: 4px; }
.links a { margin-right: 18px; font-weight: 600; }
.error { border-left: 4px solid var(--bad); background: #fef3f2; padding: 12px 16px; }
.empty { color: var(--muted); padding: 12px 0; }
"""

# A link marked target="_top" or "_blank" inside the Airflow UI's iframe (sandboxed without top navigation
# or pop-ups): followed through a link in Airflow's own page, which may navigate; a plain page, as usual.
FRAME_LINKS = """
document.addEventListener("click", function (event) {
  var link = event.target.closest("a[target]");
  if (!link || window.top === window) return;
  try {
    var proxy = window.top.document.createElement("a");
    proxy.href = link.href; proxy.target = link.target; proxy.rel = "noopener noreferrer";
    window.top.document.body.appendChild(proxy); proxy.click(); proxy.remove();
    event.preventDefault();
  } catch (error) { /* Airflow's page is not reachable from here: the browser's own handling */ }
});
"""


def esc(value: object) -> str:
    """A value as HTML text: escaped, quotes included; None as empty."""
    return "" if value is None else html.escape(str(value), quote=True)


def href(url: object) -> str | None:
    """The URL, escaped for an attribute, when it is http(s); None for anything else (`javascript:`...)."""
    text = str(url or "").strip()
    try:
        parts = urlsplit(text)
    except ValueError:
        return None
    return esc(text) if parts.scheme in ("http", "https") and parts.netloc else None


def link(url: object, text: object, *, target: str | None = None) -> str:
    """A link to an http(s) URL or an app path, else the text alone."""
    url_text = str(url or "")
    safe = esc(url_text) if url_text.startswith("/") and not url_text.startswith("//") else href(url_text)
    if safe is None:
        return esc(text)
    extra = f' target="{target}" rel="noopener noreferrer"' if target else ""
    return f'<a href="{safe}"{extra}>{esc(text)}</a>'


def when(value: object) -> str:
    """Atlas's epoch milliseconds (a `date` attribute) or an ISO string, as ISO-8601 UTC to the second."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(value / 1000, tz=UTC).isoformat(timespec="seconds")
    return "" if value is None else str(value)


def status_badge(value: object) -> str:
    text = str(value or s.DEPLOYED)
    css = "deployed" if text == s.DEPLOYED else "ended"
    return f'<span class="status {css}">{esc(text.replace("_", " "))}</span>'


def page(title: str, body: str) -> str:
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<meta name="referrer" content="no-referrer"><title>{esc(title)}</title>'
        f"<style>{STYLE}</style><script>{FRAME_LINKS}</script></head>"
        f"<body>{body}</body></html>"
    )


def table(header: Iterable[str], rows: Iterable[Iterable[str]], css: str = "") -> str:
    """A table whose cells are already HTML (each built with `esc`/`link`)."""
    head = "".join(f"<th>{esc(title)}</th>" for title in header)
    body = "".join("<tr>" + "".join(_td(cell) for cell in row) + "</tr>" for row in rows)
    return (
        f'<div class="scroll"><table class="{css}"><thead><tr>{head}</tr></thead>'
        f"<tbody>{body}</tbody></table></div>"
    )


class Wrap(str):
    """A cell whose text may wrap in a table that otherwise keeps each row on one line."""


def _td(cell: str) -> str:
    return f'<td class="wrap">{cell}</td>' if isinstance(cell, Wrap) else f"<td>{cell}</td>"


class Urls:
    """Where the view's links go: its own pages under `prefix`, Airflow's run pages under `airflow_root`,
    and Atlas's entity pages (`atlas_entity`, from the hook)."""

    def __init__(self, prefix: str, airflow_root: str, atlas_entity: Any) -> None:
        self.prefix = prefix.rstrip("/")
        self.airflow_root = airflow_root.rstrip("/")
        self.atlas_entity = atlas_entity

    def deployments(self, **filters: str) -> str:
        query = urlencode({k: v for k, v in filters.items() if v})
        return f"{self.prefix}/deployments" + (f"?{query}" if query else "")

    def deployment(self, ref: str) -> str:
        return f"{self.prefix}/deployments/{quote(ref, safe='')}"

    def run(self, dag_id: object, run_id: object) -> str | None:
        if not dag_id or not run_id:
            return None
        return f"{self.airflow_root}/dags/{quote(str(dag_id), safe='')}/runs/{quote(str(run_id), safe='')}"


def deployment_link(urls: Urls, row: Mapping[str, Any]) -> str:
    return link(urls.deployment(str(row["guid"])), row.get(s.QUALIFIED_NAME) or row["guid"])


def run_link(urls: Urls, row: Mapping[str, Any], text: object | None = None) -> str:
    url = urls.run(row.get(s.DAG_ID), row.get(s.DAG_RUN_ID))
    label = text if text is not None else row.get(s.DAG_RUN_ID)
    return link(url, label, target="_top") if url else esc(label)


def filter_form(urls: Urls, filters: Mapping[str, str | None], limit: int) -> str:
    fields = []
    for key, label, hint in TEXT_FILTERS:
        fields.append(
            f'<label>{esc(label)}<input name="{key}" value="{esc(filters.get(key))}" '
            f'title="{esc(hint)}"></label>'
        )

    def select(key: str, label: str, values: Iterable[str], any_label: str) -> str:
        chosen = filters.get(key) or ""
        options = [f'<option value="">{esc(any_label)}</option>']
        for value in values:
            mark = " selected" if value == chosen else ""
            options.append(f'<option value="{esc(value)}"{mark}>{esc(value.replace("_", " "))}</option>')
        return f'<label>{esc(label)}<select name="{key}">{"".join(options)}</select></label>'

    fields.append(select("host_type", "Host type", HOST_TYPES, "any"))
    fields.append(select("status", "Status", STATUSES, "all"))
    for key, label in DATE_FILTERS:
        fields.append(
            f'<label>{esc(label)} (UTC)<input name="{key}" value="{esc(filters.get(key))}" '
            f'placeholder="2026-11-25 or 2026-11-25T17:00"></label>'
        )
    fields.append(
        f'<label>At most<input name="limit" type="number" min="1" max="1000" value="{limit}"></label>'
    )
    return (
        f'<form class="filters" method="get" action="{esc(urls.deployments())}">{"".join(fields)}'
        f'<button type="submit">Filter</button> <a href="{esc(urls.deployments())}">Clear</a></form>'
    )


def deployments_page(
    urls: Urls,
    rows: list[dict[str, Any]],
    filters: Mapping[str, str | None],
    limit: int,
    heading: str = TITLE,
    form: bool = True,
) -> str:
    # the model's name is in the deployment's (as in the CLI's table): one column less to fit the frame
    header = ["Deployed (UTC)", "Deployment", "Version", "Owner", "Line of business", "Host type"]
    header += ["Endpoint", "Status", "Requested by", "Approved by", "Airflow run"]
    cells = [
        [
            esc(when(first(row, (s.DEPLOY_DATETIME, s.DEPLOY_TIME)))),
            deployment_link(urls, row),
            esc(row.get(s.MODEL_VERSION) or row.get(s.MODEL_VERSION_SEED)),
            esc(row.get(s.OWNER) or row.get(s.MODEL_OWNER)),
            esc(row.get(s.OWNER_LOB) or row.get(s.MODEL_OWNER_LOB)),
            esc(row.get(s.HOST_TYPE) or row.get(s.DEPLOY_HOST_TYPE)),
            link(row.get(s.ENDPOINT_URL), row.get(s.ENDPOINT_URL), target="_blank"),
            status_badge(row.get(s.DEPLOY_STATUS)),
            esc(row.get(s.REQUESTED_BY)),
            Wrap(esc(row.get(s.APPROVED_BY))),
            Wrap(run_link(urls, row)),
        ]
        for row in rows
    ]
    active = {k: v for k, v in filters.items() if v}
    said = "; ".join(f"{k.replace('_', ' ')} {v}" for k, v in active.items())
    summary = f"{len(rows)} deployment{'s' if len(rows) != 1 else ''}" + (f" matching {said}" if said else "")
    body = (
        f"<h1>{esc(heading)}</h1><p class='lead'>What serves where, from Apache Atlas, newest first. "
        f"{esc(summary)}.</p>{filter_form(urls, filters, limit) if form else ''}"
    )
    body += table(header, cells, "deployments") if rows else '<p class="empty">No deployments match.</p>'
    return page(TITLE, body)


# the trace's facts: label, attribute names in order of preference (the project's, then the seed's)
FACTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Model", (s.MODEL_NAME, s.MODEL_NAME_SEED)),
    ("Version", (s.MODEL_VERSION, s.MODEL_VERSION_SEED)),
    ("Type", (s.MODEL_KIND, s.MODEL_TYPE_SEED)),
    ("Description", (s.MODEL_DESCRIPTION, s.DESCRIPTION)),
    ("Owner", (s.OWNER, s.MODEL_OWNER)),
    ("Line of business", (s.OWNER_LOB, s.MODEL_OWNER_LOB)),
    ("Deployed (UTC)", (s.DEPLOY_DATETIME, s.DEPLOY_TIME)),
    ("Host type", (s.HOST_TYPE, s.DEPLOY_HOST_TYPE)),
    ("Target", (s.DEPLOY_TARGET,)),
    ("Host detail", (s.DEPLOY_HOST_DETAIL,)),
    ("Serialized object", (s.DEPLOY_OBJ_SOURCE,)),
    ("Serialized object sha256", (s.SERIALIZED_OBJECT_SHA256,)),
    ("Registry", (s.REGISTRY_URL, s.MODEL_REGISTRY_URL)),
    ("Source", (s.SOURCE_LOCATION,)),
    ("Source revision", (s.SOURCE_REVISION,)),
    ("Requested by", (s.REQUESTED_BY,)),
    ("Approved by", (s.APPROVED_BY,)),
    ("Approved at (UTC)", (s.APPROVED_AT,)),
    ("Approval comment", (s.APPROVAL_COMMENT,)),
    ("Validation", (s.VALIDATION_STATUS,)),
    ("Validated by", (s.VALIDATED_BY,)),
    ("Valid until", (s.VALID_UNTIL,)),
    ("Risk tier", (s.RISK_TIER,)),
    ("Rollback of", (s.ROLLBACK_OF,)),
    ("Reason", (s.DEPLOY_REASON,)),
    ("Superseded by", (s.SUPERSEDED_BY,)),
    ("Ended at (UTC)", (s.ENDED_AT,)),
    ("Ended by", (s.ENDED_BY,)),
    ("End reason", (s.END_REASON,)),
    ("Event-log head", (s.EVENT_LOG_HEAD,)),
    ("Atlas guid", ("guid",)),
)


# Atlas `date` attributes: an unset one reads back as 0 (the type's default), not as missing
DATES = frozenset({s.DEPLOY_TIME, s.APPROVED_AT, s.ENDED_AT})


def first(row: Mapping[str, Any], keys: Iterable[str]) -> Any:
    """The first of the attributes that is set."""
    for key in keys:
        value = row.get(key)
        if value not in (None, "") and not (key in DATES and value == 0):
            return value
    return None


def trace_page(
    urls: Urls,
    deployment: dict[str, Any],
    artifacts: list[dict[str, Any]],
    history: list[dict[str, Any]],
) -> str:
    d = deployment
    name = d.get(s.QUALIFIED_NAME) or d["guid"]
    facts = []
    for label, keys in FACTS:
        value = first(d, keys)
        if value is None:
            continue
        text = when(value)
        mono = keys[0] in (s.SERIALIZED_OBJECT_SHA256, s.SOURCE_REVISION, s.EVENT_LOG_HEAD, "guid")
        facts.append((label, f'<code class="sha">{esc(text)}</code>' if mono else esc(text)))
    scoring = d.get(s.ENDPOINT_URL)
    if scoring:
        facts.insert(8, ("Scoring URL", link(scoring, scoring, target="_blank")))
    links = [
        link(urls.atlas_entity(d["guid"]), "Atlas entity", target="_blank"),
        run_link(urls, d, text="Airflow run") if d.get(s.DAG_RUN_ID) else "",
        link(urls.deployments(), "All deployments"),
    ]
    body = (
        f"<h1>{esc(name)} {status_badge(d.get(s.DEPLOY_STATUS))}</h1>"
        f"<p class='lead'>One deployment as Apache Atlas records it: who asked and who approved, what it "
        f"serves and the archived artifacts it came from.</p>"
        f'<p class="links">{" ".join(x for x in links if x)}</p>'
    )
    body += table(["", ""], ([f"<b>{esc(k)}</b>", v] for k, v in facts), "facts").replace(
        "<thead><tr><th></th><th></th></tr></thead>", ""
    )
    body += "<h2>Artifacts (archived in the registry)</h2>"
    if artifacts:
        body += table(
            ["Role", "Location", "sha256", "In Atlas"],
            (
                [
                    esc(a["role"]),
                    f'<span class="mono">{esc(a["location"])}</span>',
                    f'<code class="sha">{esc(a["sha256"])}</code>',
                    "linked" if a.get("linked_in_atlas") else "not linked",
                ]
                for a in artifacts
            ),
            "artifacts",
        )
    else:
        body += '<p class="empty">Atlas records no artifact checksums for this deployment.</p>'
    body += f"<h2>History at its target {esc(d.get(s.DEPLOY_TARGET) or '')}</h2>"
    if history:
        body += table(
            ["Deployed (UTC)", "Deployment", "Version", "Status", "Superseded by", "Airflow run"],
            (
                [
                    esc(when(first(h, (s.DEPLOY_DATETIME, s.DEPLOY_TIME)))),
                    esc(h.get(s.QUALIFIED_NAME)) + " (this one)"
                    if h.get("guid") == d["guid"]
                    else deployment_link(urls, h),
                    esc(h.get(s.MODEL_VERSION) or h.get(s.MODEL_VERSION_SEED)),
                    status_badge(h.get(s.DEPLOY_STATUS)),
                    esc(h.get(s.SUPERSEDED_BY)),
                    run_link(urls, h),
                ]
                for h in history
            ),
            "history",
        )
    else:
        body += '<p class="empty">No other deployment at this target.</p>'
    return page(f"{name} · {TITLE}", body)


def run_page(urls: Urls, dag_id: str, run_id: str, rows: list[dict[str, Any]]) -> str:
    """The deployments one DAG run registered (a redeploy run registers one per model)."""
    title = f"Deployments of run {run_id}"
    if not rows:
        body = (
            f"<h1>{esc(title)}</h1><p class='empty'>Atlas has no deployment registered by the run "
            f"{esc(run_id)} of {esc(dag_id)}: it has not reached <code>register_in_atlas</code>, it failed "
            f"before, or {esc(dag_id)} is not a deployment DAG.</p>"
            f"<p>{link(urls.deployments(), 'All deployments')}</p>"
        )
        return page(title, body)
    return deployments_page(urls, rows, {"dag": dag_id, "run": run_id}, len(rows), heading=title, form=False)


def error_page(title: str, message: str, hint: str = "") -> str:
    body = f'<h1>{esc(title)}</h1><div class="error"><p>{esc(message)}</p>'
    body += f"<p>{esc(hint)}</p>" if hint else ""
    return page(title, body + "</div>")
