"""The Atlas stand-in against real Apache Atlas (2.1.0, the newest server on Maven Central): the requests the
product makes, sent to both, answer with the same status and the same body shape (and, for errors, the same
code and message). Where the two differ because the stand-in follows Atlas 2.4.0 as atlas-rest.md states it
explicitly, the test says so and checks each server's own answer.

Shapes: a dict compares by its keys (its guid or negative-guid keys as one key "<guid>" holding the set of
their values' shapes), a list by the set of its elements' shapes (Atlas does not promise an order), a scalar by its JSON type.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests

from model_governance_devstack.atlas import AtlasStandIn

from tests.helpers import PROJECT

PASSWORD = "s3cret-for-parity"
SEED_TYPEDEF = PROJECT / "tests" / "data" / "seed_model_typedef.json"
GUID = re.compile(r"-?[0-9]+|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def shape(value: Any) -> Any:
    if isinstance(value, dict):
        named = {k: shape(v) for k, v in value.items() if not GUID.fullmatch(str(k))}
        by_guid = sorted({json.dumps(shape(v), sort_keys=True) for k, v in value.items() if GUID.fullmatch(str(k))})
        return {**named, "<guid>": by_guid} if by_guid else named
    if isinstance(value, list):
        return sorted({json.dumps(shape(v), sort_keys=True) for v in value})
    return type(value).__name__


def without_guids(text: str) -> str:
    return GUID.sub("<guid>", text)


@dataclass
class Side:
    name: str
    url: str
    auth: tuple[str, str]
    ids: dict[str, str] = field(default_factory=dict)  # names a test gives guids, for paths like /entity/guid/{model}

    def call(self, method: str, path: str, **kwargs) -> requests.Response:
        kwargs.setdefault("headers", {"Accept": "application/json"})
        kwargs.setdefault("auth", self.auth)
        return requests.request(method, f"{self.url}/api/atlas/v2{path.format(**self.ids)}", timeout=60, **kwargs)


@dataclass
class Pair:
    stand_in: Side
    real: Side

    def call(self, method: str, path: str, status: int = 200, compare: bool = True, **kwargs) -> tuple[Any, Any]:
        """The same request to both: the same status and Content-Type; for an error, the same body; else the
        same shape (unless compare=False). The two bodies back."""
        answers = [side.call(method, path, **kwargs) for side in (self.stand_in, self.real)]
        (s, r) = answers
        assert (s.status_code, r.status_code) == (status, status), (method, path, s.text[:500], r.text[:500])
        assert s.headers.get("Content-Type") == r.headers.get("Content-Type"), (method, path)
        bodies = [a.json() if a.content else None for a in answers]
        if status >= 400 and bodies[1] is not None:
            assert without_guids(json.dumps(bodies[0])) == without_guids(json.dumps(bodies[1])), (method, path)
        elif compare:
            assert shape(bodies[0]) == shape(bodies[1]), (method, path, json.dumps(bodies[0])[:1500], json.dumps(bodies[1])[:1500])
        return bodies[0], bodies[1]

    def remember(self, name: str, bodies: tuple[Any, Any], pick) -> None:
        for side, body in zip((self.stand_in, self.real), bodies):
            side.ids[name] = pick(body)


@pytest.fixture
def pair(tmp_path, real_atlas):
    from tests.real_services import purge_atlas

    try:
        with AtlasStandIn(tmp_path / "atlas", users={"admin": PASSWORD}) as stand_in:
            yield Pair(Side("stand-in", stand_in.url, ("admin", PASSWORD)), Side("real", real_atlas.url, (real_atlas.user, real_atlas.password)))
    finally:
        purge_atlas(real_atlas)


def hdfs_path(path: str, **attributes) -> dict:
    return {"typeName": "hdfs_path", "attributes": {"qualifiedName": f"hdfs://nn:8020{path}@primary", "name": path.rsplit("/", 1)[-1],
                                                    "path": f"hdfs://nn:8020{path}", "clusterName": "primary", **attributes}}


def ref(path: str) -> dict:
    return {"typeName": "hdfs_path", "uniqueAttributes": {"qualifiedName": f"hdfs://nn:8020{path}@primary"}}


SEED_VALUES = {name: "x" for name in ("deploy.datetime", "deploy.host.type", "deploy.host.detail", "deploy.obj.source", "model.name",
                                      "model.version", "model.type", "model.description", "model.owner", "model.owner.lob", "model.registry.url")}


def model(name: str, when: int, target: str = "host:65327", **attributes) -> dict:
    return {"typeName": "model", "attributes": {**SEED_VALUES, "qualifiedName": f"{name}@{target}", "name": name, "owner": "Greg",
                                                "deployTime": when, "deployStatus": "deployed", "deployTarget": target, **attributes}}


def created(body: dict, qualified_name: str) -> str:
    return next(h["guid"] for h in body["mutatedEntities"]["CREATE"] if h["attributes"]["qualifiedName"] == qualified_name)


# -- types ----------------------------------------------------------------------------------------------------
def test_typedef_create_get_update_and_refusals(pair):
    from model_governance.atlas.schema import TYPE_VERSION, artifacts_relationshipdef, model_typedef

    pair.call("GET", "/types/typedef/name/fs_path")
    pair.call("GET", "/types/typedef/name/no_such_type", status=404)
    pair.call("POST", "/types/typedefs", json={"entityDefs": [model_typedef()], "relationshipDefs": [artifacts_relationshipdef()]})
    pair.call("POST", "/types/typedefs", status=409, json={"entityDefs": [model_typedef()]})
    stand_in, real = pair.call("GET", "/types/typedef/name/model")
    assert stand_in["typeVersion"] == real["typeVersion"] == TYPE_VERSION and stand_in["superTypes"] == real["superTypes"] == ["Process"]
    assert {a["name"] for a in stand_in["relationshipAttributeDefs"]} == {a["name"] for a in real["relationshipAttributeDefs"]}
    pair.call("GET", "/types/typedefs", params={"name": "model"})
    pair.call("GET", "/types/typedef/name/model_artifacts")
    pair.call("POST", "/types/typedefs", status=400, json={"entityDefs": [{"name": "mg_x", "superTypes": ["NoSuchType"]}]})
    pair.call("POST", "/types/typedefs", status=400, json={"entityDefs": [{"name": "mg_x", "superTypes": ["DataSet"],
                                                                          "attributeDefs": [{"name": "a", "typeName": "array<Nope>"}]}]})
    pair.call("PUT", "/types/typedefs", status=404, json={"entityDefs": [{"name": "mg_none", "superTypes": ["DataSet"]}]})
    mandatory = dict(real, attributeDefs=real["attributeDefs"] + [{"name": "extra", "typeName": "string", "isOptional": False}])
    pair.call("PUT", "/types/typedefs", status=400, json={"entityDefs": [mandatory]})
    for side in (pair.stand_in, pair.real):  # each side PUTs what its own GET gave, as ensure_model_type does
        current = side.call("GET", "/types/typedef/name/model").json()
        optional = dict(current, typeVersion="2.1", attributeDefs=current["attributeDefs"] + [{"name": "extra", "typeName": "string", "isOptional": True}])
        assert side.call("PUT", "/types/typedefs", json={"entityDefs": [optional]}).status_code == 200
    stand_in, real = pair.call("GET", "/types/typedef/name/model")
    assert (stand_in["version"], stand_in["typeVersion"]) == (real["version"], real["typeVersion"]) == (2, "2.1")


def test_the_seed_typedef_as_written_is_a_2_4_refusal(pair):
    """The seed's typedef redeclares qualifiedName, name, inputs and outputs. Atlas 2.3+ refuses it with
    ATLAS-400-00-09E (ATLAS-4522; atlas-rest.md states it): the stand-in follows that. Atlas 2.1.0, the newest
    server this machine can run, has no such check and accepts it."""
    seed = json.loads(SEED_TYPEDEF.read_text())
    answer = pair.stand_in.call("POST", "/types/typedefs", json=seed)
    assert answer.status_code == 400 and answer.json()["errorCode"] == "ATLAS-400-00-09E"
    answer = pair.real.call("POST", "/types/typedefs", json=seed)
    assert answer.status_code == 200, answer.text
    assert {a["name"] for a in answer.json()["entityDefs"][0]["attributeDefs"]} >= {"qualifiedName", "name", "inputs", "outputs"}


def test_the_product_ensures_its_type_on_both(pair, monkeypatch):
    from model_governance.atlas.schema import ensure_model_type
    from model_governance.hooks.atlas import AtlasHook

    older = json.loads(SEED_TYPEDEF.read_text())["entityDefs"][0]
    older["attributeDefs"] = [a for a in older["attributeDefs"] if a["name"] not in ("qualifiedName", "name", "inputs", "outputs")]
    pair.call("POST", "/types/typedefs", json={"entityDefs": [older]})
    for side in (pair.stand_in, pair.real):
        host, port = side.url.removeprefix("http://").split(":")
        conn = {"conn_type": "http", "host": host, "port": int(port), "login": side.auth[0], "password": side.auth[1]}
        monkeypatch.setenv("AIRFLOW_CONN_ATLAS_PARITY", json.dumps(conn))
        hook = AtlasHook("atlas_parity", retry_backoff=0.01)
        assert [ensure_model_type(hook), ensure_model_type(hook)] == ["upgraded", "current"], side.name
    stand_in, real = pair.call("GET", "/types/typedef/name/model")
    assert [a["name"] for a in stand_in["attributeDefs"]] == [a["name"] for a in real["attributeDefs"]]
    assert {a["name"]: a["isOptional"] for a in stand_in["attributeDefs"]} == {a["name"]: a["isOptional"] for a in real["attributeDefs"]}


# -- entities -------------------------------------------------------------------------------------------------
def test_upsert_read_relationships_lineage_and_audit(pair):
    from model_governance.atlas.schema import TYPE_VERSION, artifacts_relationshipdef, model_typedef

    pair.call("POST", "/types/typedefs", json={"entityDefs": [model_typedef()], "relationshipDefs": [artifacts_relationshipdef()]})
    files = [hdfs_path("/r/m"), hdfs_path("/r/m/README.md", isFile=True, fileSize=12), hdfs_path("/in"), hdfs_path("/out")]
    bodies = pair.call("POST", "/entity/bulk", json={"entities": files})
    pair.remember("readme", bodies, lambda b: created(b, "hdfs://nn:8020/r/m/README.md@primary"))
    stand_in, real = pair.call("POST", "/entity/bulk", json={"entities": files[1:2]})  # unchanged: nothing mutated
    assert "mutatedEntities" not in stand_in and "mutatedEntities" not in real
    stand_in, real = pair.call("POST", "/entity/bulk", json={"entities": [hdfs_path("/r/m/README.md", isFile=True, fileSize=13)]})
    assert [h["guid"] for h in stand_in["mutatedEntities"]["UPDATE"]] == [pair.stand_in.ids["readme"]]
    assert [h["guid"] for h in real["mutatedEntities"]["UPDATE"]] == [pair.real.ids["readme"]]

    deployment = model("m v1", 1000, inputs=[ref("/in")], outputs=[ref("/out")])
    deployment["relationshipAttributes"] = {"artifacts": [ref("/r/m"), ref("/r/m/README.md")]}
    bodies = pair.call("POST", "/entity/bulk", json={"entities": [deployment], "referredEntities": {}})
    pair.remember("model", bodies, lambda b: created(b, "m v1@host:65327"))
    for side, body in zip((pair.stand_in, pair.real), bodies):  # the linked files are reported updated
        assert len(body["mutatedEntities"]["UPDATE"]) == 4, side.name

    stand_in, real = pair.call("GET", "/entity/guid/{model}")
    for body in (stand_in, real):
        links = body["entity"]["relationshipAttributes"]["artifacts"]
        assert sorted(link["displayText"] for link in links) == ["README.md", "m"]
        assert body["entity"]["attributes"]["deployTime"] == 1000 and body["entity"]["status"] == "ACTIVE"
    pair.call("GET", "/entity/uniqueAttribute/type/model", params={"attr:qualifiedName": "m v1@host:65327"})
    stand_in, real = pair.call("GET", "/entity/guid/{readme}")
    for side, body in zip((pair.stand_in, pair.real), (stand_in, real)):
        assert [d["guid"] for d in body["entity"]["relationshipAttributes"]["modelDeployments"]] == [side.ids["model"]]
    stand_in, real = pair.call("GET", "/lineage/{model}", params={"direction": "BOTH", "depth": 3})
    for body in (stand_in, real):
        names = {g: h["attributes"]["qualifiedName"] for g, h in body["guidEntityMap"].items()}
        edges = {(names[r["fromEntityId"]], names[r["toEntityId"]]) for r in body["relations"]}
        assert edges == {("hdfs://nn:8020/in@primary", "m v1@host:65327"), ("m v1@host:65327", "hdfs://nn:8020/out@primary")}
    # a re-post with one artifact fewer: the model and the unlinked file are updated
    deployment["relationshipAttributes"] = {"artifacts": [ref("/r/m")]}
    stand_in, real = pair.call("POST", "/entity/bulk", json={"entities": [deployment]})
    for side, body in zip((pair.stand_in, pair.real), (stand_in, real)):
        assert {h["guid"] for h in body["mutatedEntities"]["UPDATE"]} == {side.ids["model"], side.ids["readme"]}, side.name

    # audits: newest first. The real server's in-memory audit repository (the test configuration) also
    # returns the event's `entity`; Atlas's HBase repository and the stand-in do not: compared without it.
    answers = [side.call("GET", "/entity/{model}/audit", params={"count": 100}) for side in (pair.stand_in, pair.real)]
    events = [[{k: v for k, v in e.items() if k != "entity"} for e in a.json()] for a in answers]
    assert shape(events[0]) == shape(events[1])
    assert [e["action"] for e in events[0]] == [e["action"] for e in events[1]] == ["ENTITY_UPDATE", "ENTITY_CREATE"]
    for event in events[0] + events[1]:
        details = json.loads(event["details"].split(": ", 1)[1])
        assert details["attributes"]["qualifiedName"] == "m v1@host:65327"


def test_entity_refusals(pair):
    pair.call("POST", "/entity/bulk", status=400, json={"entities": []})
    pair.call("POST", "/entity/bulk", status=400, json={"entities": [{"typeName": "no_such_type", "attributes": {}}]})
    no_path = hdfs_path("/x")
    del no_path["attributes"]["path"]
    pair.call("POST", "/entity/bulk", status=404, json={"entities": [no_path]})
    pair.call("POST", "/entity/bulk", status=404, json={"entities": [hdfs_path("/x", fileSize="big")]})
    process = {"typeName": "Process", "attributes": {"qualifiedName": "p", "name": "p", "inputs": [ref("/missing")]}}
    pair.call("POST", "/entity/bulk", status=404, json={"entities": [process]})
    pair.call("GET", "/entity/guid/0000", status=404)
    pair.call("GET", "/entity/uniqueAttribute/type/hdfs_path", status=404, params={"attr:qualifiedName": "nope"})
    pair.call("GET", "/entity/uniqueAttribute/type/hdfs_path", status=400, params={"attr:name": "x"})
    pair.call("GET", "/entity/uniqueAttribute/type/no_such_type", status=400, params={"attr:qualifiedName": "x"})
    pair.call("GET", "/lineage/0000", status=404, params={"direction": "BOTH", "depth": 3})
    pair.call("GET", "/entity/0000/audit", status=404, params={"count": 10})


# -- search ---------------------------------------------------------------------------------------------------
def test_basic_search_as_the_product_asks(pair):
    from model_governance.atlas.queries import search_body
    from model_governance.atlas.schema import model_typedef

    pair.call("POST", "/types/typedefs", json={"entityDefs": [model_typedef()]})
    rows = [model("a v1", 1000, owner="Ana"), model("b v1", 2000, target="other:1"), model("c v2", 3000, owner="Ana"),
            model("d v1", 4000, deployStatus="superseded")]
    pair.call("POST", "/entity/bulk", json={"entities": rows})

    def search(criteria, **more) -> list[str]:
        bodies = pair.call("POST", "/search/basic", json={**search_body(criteria), **more})
        names = [[e["attributes"]["name"] for e in body.get("entities", [])] for body in bodies]
        assert names[0] == names[1], names
        return names[0]

    assert search([]) == ["d v1", "c v2", "b v1", "a v1"]  # newest first
    assert search([("owner", "=", "Ana")]) == ["c v2", "a v1"]
    assert search([("deployTarget", "=", "host:65327"), ("deployStatus", "=", "deployed")]) == ["c v2", "a v1"]
    assert search([("deployTime", ">=", "2000"), ("deployTime", "<=", "3000")]) == ["c v2", "b v1"]
    assert search([("model.version", "=", "x"), ("name", "=", "b v1")]) == ["b v1"]  # a dotted attribute name
    assert search([("qualifiedName", "=", "a v1@host:65327")]) == ["a v1"]
    assert search([("name", "=", "zz")]) == []
    assert search([], limit=2, offset=1) == ["c v2", "b v1"]
    assert search([], sortOrder="ASCENDING", limit=1) == ["a v1"]
    pair.call("GET", "/search/basic", params={"typeName": "model", "sortBy": "deployTime", "sortOrder": "DESCENDING", "limit": 1})
    pair.call("GET", "/search/dsl", params={"query": 'model where name = "b v1"'})


def test_basic_search_refusals(pair):
    from model_governance.atlas.schema import model_typedef

    pair.call("POST", "/types/typedefs", json={"entityDefs": [model_typedef()]})
    leaf = {"attributeName": "nope", "operator": "=", "attributeValue": "x"}
    pair.call("POST", "/search/basic", status=400, json={"typeName": "model", "entityFilters": leaf})
    pair.call("POST", "/search/basic", status=400, json={"typeName": "model", "sortBy": "nope"})
    pair.call("POST", "/search/basic", status=400, json={"typeName": "no_such_type"})
    pair.call("POST", "/search/basic", status=400, json={"limit": 10})
    pair.call("POST", "/search/basic", status=400, json={"typeName": "model", "limit": -1})
    pair.call("POST", "/search/basic", json={"typeName": "model", "attributes": ["nope"]})  # not returned, not refused
    # filters without a typeName: 400 both, but 2.1.0 words it "NULL: Unknown/invalid typename" (ATLAS-400-00-00A);
    # the stand-in answers ATLAS-400-00-029, the code atlas-rest.md names for this case (2.4.0)
    filters = {"entityFilters": dict(leaf, attributeName="name")}
    answers = [side.call("POST", "/search/basic", json=filters) for side in (pair.stand_in, pair.real)]
    assert [a.status_code for a in answers] == [400, 400]
    assert [a.json()["errorCode"] for a in answers] == ["ATLAS-400-00-029", "ATLAS-400-00-00A"]


# -- transport ------------------------------------------------------------------------------------------------
def test_bad_credentials(pair):
    for auth in (None, ("admin", "wrong"), ("nobody", "wrong")):
        for accept in ({"Accept": "application/json"}, {}):
            answers = [side.call("GET", "/types/typedef/name/DataSet", auth=auth, headers=accept) for side in (pair.stand_in, pair.real)]
            assert [a.status_code for a in answers] == [401, 401]
            assert [a.headers.get("Content-Type") for a in answers][0] == [a.headers.get("Content-Type") for a in answers][1]
            assert ["WWW-Authenticate" in a.headers for a in answers] == [False, False]
            if accept:
                assert [a.content for a in answers] == [b"", b""]
            else:
                titles = [re.search(r"<title>(.*)</title>", a.text)[1] for a in answers]
                assert titles[0] == titles[1], titles
