"""The Atlas stand-in over real HTTP: raw answers with requests, then pyatlasclient, apache-atlas and the AtlasHook."""

from __future__ import annotations

import json

import pytest
import requests

from model_governance_devstack.atlas import AtlasStandIn

from tests.helpers import PROJECT

PASSWORD = "s3cret-for-tests"
SEED_TYPEDEF = PROJECT / "tests" / "data" / "seed_model_typedef.json"  # the seed's curl -d body, verbatim


@pytest.fixture
def atlas(tmp_path):
    with AtlasStandIn(tmp_path / "atlas", users={"admin": PASSWORD}) as server:
        yield server


@pytest.fixture
def api(atlas):
    """A requests session for Atlas's v2 API: api.post("/entity/bulk", json=...) etc."""

    class Api(requests.Session):
        def request(self, method, url, *args, **kwargs):
            kwargs.setdefault("timeout", 10)
            return super().request(method, f"{atlas.url}/api/atlas/v2{url}", *args, **kwargs)

    with Api() as session:
        session.auth = ("admin", PASSWORD)
        yield session


def error(response, status, code, message=None):
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"] == "application/json; charset=UTF-8"
    body = response.json()
    assert body["errorCode"] == code
    if message is not None:
        assert body["errorMessage"] == message
    return body["errorMessage"]


def seed_typedef() -> dict:
    """The seed's original `model` typedef (the JSON its script posts with curl -d)."""
    return json.loads(SEED_TYPEDEF.read_text())


THING = {  # a small DataSet subtype with the kinds of attributes the project uses, a dotted name among them
    "name": "mg_thing",
    "superTypes": ["DataSet"],
    "attributeDefs": [
        {"name": "model.version", "typeName": "string", "isOptional": True},
        {"name": "rank", "typeName": "int", "isOptional": True},
        {"name": "when", "typeName": "date", "isOptional": True},
        {"name": "flag", "typeName": "boolean", "isOptional": True},
        {"name": "tags", "typeName": "array<string>", "isOptional": True},
        {"name": "checksums", "typeName": "map<string,string>", "isOptional": True},
    ],
}


def thing(name, **attributes):
    return {"typeName": "mg_thing", "attributes": {"qualifiedName": f"thing/{name}", "name": name, **attributes}}


def hdfs_path(path, **attributes):
    return {"typeName": "hdfs_path", "attributes": {"qualifiedName": f"hdfs://nn:8020{path}@primary", "name": path.rsplit("/", 1)[-1],
                                                    "path": f"hdfs://nn:8020{path}", "clusterName": "primary", **attributes}}


def ref(path):
    return {"typeName": "hdfs_path", "uniqueAttributes": {"qualifiedName": f"hdfs://nn:8020{path}@primary"}}


# -- transport ------------------------------------------------------------------------------------------------
def test_basic_auth_on_every_call(atlas, api):
    reasons = ("Full authentication is required to access this resource", "Wrong password", "Username not found.nobody")
    for auth, reason in zip((None, ("admin", "wrong"), ("nobody", PASSWORD)), reasons):
        url = f"{atlas.url}/api/atlas/v2/types/typedef/name/DataSet"
        answer = requests.get(url, auth=auth, headers={"Accept": "application/json"}, timeout=10)
        assert answer.status_code == 401 and answer.content == b"" and "WWW-Authenticate" not in answer.headers
        page = requests.get(url, auth=auth, timeout=10)  # not a JSON client: Jetty's error page, as Atlas answers
        assert page.status_code == 401 and page.headers["Content-Type"] == "text/html;charset=iso-8859-1"
        assert f"<title>Error 401 {reason}</title>" in page.text
    assert api.get("/types/typedef/name/DataSet").status_code == 200


def test_fault_switches(atlas, api):
    atlas.fail_next(2)
    for _ in range(2):
        answer = api.get("/types/typedef/name/DataSet")
        assert answer.status_code == 503 and answer.headers["Content-Type"].startswith("text/plain")
    assert api.get("/types/typedef/name/DataSet").status_code == 200
    atlas.hang(1.0)
    with pytest.raises(requests.Timeout):
        api.get("/types/typedef/name/DataSet", timeout=0.2)
    assert api.get("/types/typedef/name/DataSet").status_code == 200


def test_malformed_json_is_a_plain_500(api):
    answer = api.post("/types/typedefs", data=json.dumps(json.dumps({"entityDefs": []})), headers={"Content-Type": "application/json"})
    assert answer.status_code == 500 and answer.text.startswith("There was an error processing your request")


# -- typedefs -------------------------------------------------------------------------------------------------
def test_base_models_are_preloaded_with_their_patches(api):
    fs_path = api.get("/types/typedef/name/fs_path").json()
    assert set(fs_path["superTypes"]) == {"DataSet", "Path"} and "hdfs_path" in fs_path["subTypes"]
    assert {"inputToProcesses", "outputFromProcesses"} <= {a["name"] for a in fs_path["relationshipAttributeDefs"]}
    assert api.get("/types/typedef/name/Referenceable").json()["serviceType"] == "atlas_core"
    error(api.get("/types/typedef/name/nope"), 404, "ATLAS-404-00-001", "Given typename nope was invalid")
    both = api.get("/types/typedefs", params={"name": "ml_project", "type": "entity"}).json()
    assert [d["name"] for d in both["entityDefs"]] == ["ml_project"] and both["relationshipDefs"] == [] and both["enumDefs"] == []
    taken = {"name": "ml_project", "superTypes": ["DataSet"], "attributeDefs": []}
    error(api.post("/types/typedefs", json={"entityDefs": [taken]}), 409, "ATLAS-409-00-001", "Given type ml_project already exists")


def test_typedef_create_update_and_refusals(api):
    created = api.post("/types/typedefs", json={"entityDefs": [THING]})
    assert created.status_code == 200
    (d,) = created.json()["entityDefs"]
    assert d["guid"] and d["createdBy"] == "admin" and d["version"] == 1 and d["typeVersion"] == "1.0"
    error(api.post("/types/typedefs", json={"entityDefs": [THING]}), 409, "ATLAS-409-00-001")
    unknown_super = {"name": "mg_x", "superTypes": ["NoSuchType"]}
    error(api.post("/types/typedefs", json={"entityDefs": [unknown_super]}), 400, "ATLAS-400-00-029", "Given typename NoSuchType was invalid")
    unknown_attr = {"name": "mg_x", "superTypes": ["DataSet"], "attributeDefs": [{"name": "a", "typeName": "array<Nope>"}]}
    error(api.post("/types/typedefs", json={"entityDefs": [unknown_attr]}), 400, "ATLAS-400-00-029", "Given typename Nope was invalid")
    redeclared = {"name": "mg_y", "superTypes": ["mg_thing"], "attributeDefs": [{"name": "rank", "typeName": "int"}]}
    error(api.post("/types/typedefs", json={"entityDefs": [redeclared]}), 400, "ATLAS-400-00-09E",
          "Invalid attribute name: mg_y.rank. Attribute already exists in another parent type: mg_thing")

    current = api.get("/types/typedef/name/mg_thing").json()  # PUT takes what GET gave, derived fields and all
    mandatory = dict(current, attributeDefs=current["attributeDefs"] + [{"name": "extra", "typeName": "string"}])
    error(api.put("/types/typedefs", json={"entityDefs": [mandatory]}), 400, "ATLAS-400-00-00C", "mg_thing.extra : can not add mandatory attribute")
    dropped = dict(current, attributeDefs=current["attributeDefs"][1:])
    error(api.put("/types/typedefs", json={"entityDefs": [dropped]}), 400, "ATLAS-400-00-00D")
    error(api.put("/types/typedefs", json={"entityDefs": [dict(THING, name="mg_none")]}), 404, "ATLAS-404-00-001")
    optional = dict(current, typeVersion="1.1", attributeDefs=current["attributeDefs"] + [{"name": "extra", "typeName": "string", "isOptional": True}])
    assert api.put("/types/typedefs", json={"entityDefs": [optional]}).status_code == 200
    after = api.get("/types/typedef/name/mg_thing").json()
    assert after["version"] == 2 and after["typeVersion"] == "1.1" and after["guid"] == current["guid"]
    assert after["attributeDefs"][-1] == dict(after["attributeDefs"][-1], name="extra", isOptional=True)


def test_the_seed_typedef_is_refused_with_09E(api):
    answer = api.post("/types/typedefs", json=seed_typedef())
    error(answer, 400, "ATLAS-400-00-09E", "Invalid attribute name: model.qualifiedName. Attribute already exists in another parent type: Referenceable")
    error(api.get("/types/typedef/name/model"), 404, "ATLAS-404-00-001")  # nothing of it was kept


def test_relationship_defs_put_attributes_on_both_ends(api):
    from model_governance.atlas.schema import artifacts_relationshipdef, model_typedef

    assert api.post("/types/typedefs", json={"entityDefs": [model_typedef()]}).status_code == 200
    assert api.post("/types/typedefs", json={"relationshipDefs": [artifacts_relationshipdef()]}).status_code == 200
    model = api.get("/types/entitydef/name/model").json()
    artifacts = next(a for a in model["relationshipAttributeDefs"] if a["name"] == "artifacts")
    assert artifacts["typeName"] == "array<fs_path>" and artifacts["relationshipTypeName"] == "model_artifacts"
    assert {"inputs", "outputs"} <= {a["name"] for a in model["relationshipAttributeDefs"]}  # inherited from Process
    for end in ("fs_path", "hdfs_path"):  # a subtype has its supertypes' ends
        names = {a["name"] for a in api.get(f"/types/typedef/name/{end}").json()["relationshipAttributeDefs"]}
        assert "modelDeployments" in names
    assert api.get("/types/relationshipdef/name/model_artifacts").json()["endDef2"]["type"] == "fs_path"


# -- entities -------------------------------------------------------------------------------------------------
def test_bulk_upsert_by_qualified_name(api):
    first = api.post("/entity/bulk", json={"entities": [hdfs_path("/r/m/1.0"), hdfs_path("/r/m/1.0/README.md", isFile=True, fileSize=12)]})
    assert first.status_code == 200
    created = first.json()["mutatedEntities"]["CREATE"]
    assert [h["attributes"]["qualifiedName"] for h in created] == ["hdfs://nn:8020/r/m/1.0@primary", "hdfs://nn:8020/r/m/1.0/README.md@primary"]
    assert created[1]["displayText"] == "README.md" and created[1]["status"] == "ACTIVE"
    guid = created[1]["guid"]
    assert guid in first.json()["guidAssignments"].values()

    same = api.post("/entity/bulk", json={"entities": [hdfs_path("/r/m/1.0/README.md", isFile=True, fileSize="12")]}).json()
    assert "mutatedEntities" not in same and list(same["guidAssignments"].values()) == [guid]
    # the supertype finds it too: qualifiedName is unique across fs_path and its subtypes
    changed = api.post("/entity", json={"entity": dict(hdfs_path("/r/m/1.0/README.md", fileSize=13), typeName="fs_path")}).json()
    assert [h["guid"] for h in changed["mutatedEntities"]["UPDATE"]] == [guid] and "CREATE" not in changed["mutatedEntities"]

    entity = api.get(f"/entity/guid/{guid}").json()["entity"]
    assert entity["typeName"] == "hdfs_path" and entity["attributes"]["fileSize"] == 13 and entity["attributes"]["isFile"] is True
    assert entity["version"] == 0 and entity["createdBy"] == "admin" and isinstance(entity["createTime"], int)
    audit = api.get(f"/entity/{guid}/audit", params={"count": 100}).json()
    assert [e["action"] for e in audit] == ["ENTITY_UPDATE", "ENTITY_CREATE"]  # newest first; the unchanged re-post left none
    assert audit[1]["details"].startswith("Created: {") and audit[0]["type"] == "ENTITY_AUDIT_V2" and audit[0]["user"] == "admin"


def test_entity_refusals(api):
    error(api.post("/entity/bulk", json={"entities": []}), 400, "ATLAS-400-00-01A", "invalid parameters: no entities to create/update.")
    error(api.post("/entity/bulk", json={"entities": [{"typeName": "foo", "attributes": {}}]}), 400, "ATLAS-400-00-014",
          "Type ENTITY with name foo does not exist")
    no_path = hdfs_path("/r/x")
    del no_path["attributes"]["path"]
    error(api.post("/entity/bulk", json={"entities": [no_path]}), 404, "ATLAS-404-00-007",
          "Invalid instance creation/updation parameters passed : hdfs_path.path: mandatory attribute value missing in type fs_path")
    error(api.post("/entity/bulk", json={"entities": [hdfs_path("/r/x", fileSize="big")]}), 404, "ATLAS-404-00-007",
          "Invalid instance creation/updation parameters passed : hdfs_path.fileSize=big: invalid value for type long")
    error(api.post("/entity/bulk", json={"entities": [hdfs_path("/r/x", isFile="maybe")]}), 404, "ATLAS-404-00-007")
    error(api.post("/entity/bulk", json={"entities": [hdfs_path("/r/x", extendedAttributes=["a"])]}), 404, "ATLAS-404-00-007",
          "Invalid instance creation/updation parameters passed : hdfs_path.extendedAttributes=[a]: invalid value for type map<string,string>")
    process = {"typeName": "Process", "attributes": {"qualifiedName": "p", "name": "p", "inputs": [ref("/missing")]}}
    error(api.post("/entity/bulk", json={"entities": [process]}), 404, "ATLAS-404-00-00A",
          "Referenced entity AtlasObjectId{guid='null', typeName='hdfs_path', uniqueAttributes={qualifiedName:hdfs://nn:8020/missing@primary}} is not found")
    process["attributes"]["inputs"] = [{"guid": "-7"}]
    error(api.post("/entity/bulk", json={"entities": [process]}), 404, "ATLAS-404-00-00A", "Referenced entity -7 is not found")
    error(api.get("/entity/guid/0000"), 404, "ATLAS-404-00-005", "Given instance guid 0000 is invalid/not found")
    error(api.get("/entity/uniqueAttribute/type/hdfs_path", params={"attr:qualifiedName": "nope"}), 404, "ATLAS-404-00-009",
          "Instance hdfs_path with unique attribute {qualifiedName=nope} does not exist")
    error(api.get("/entity/uniqueAttribute/type/hdfs_path", params={"attr:name": "x"}), 400, "ATLAS-400-00-013")
    # unknown attributes are dropped, not refused
    odd = api.post("/entity/bulk", json={"entities": [hdfs_path("/r/x", noSuchAttribute=1)]}).json()
    guid = odd["mutatedEntities"]["CREATE"][0]["guid"]
    assert "noSuchAttribute" not in api.get(f"/entity/guid/{guid}").json()["entity"]["attributes"]


def test_attribute_values_and_relationships(api):
    from model_governance.atlas.schema import artifacts_relationshipdef, model_typedef

    api.post("/types/typedefs", json={"entityDefs": [model_typedef(), THING], "relationshipDefs": [artifacts_relationshipdef()]}).raise_for_status()
    api.post("/entity/bulk", json={"entities": [hdfs_path("/r/m"), hdfs_path("/r/m/README.md")]}).raise_for_status()
    attributes = {"qualifiedName": "m-v1@host:65327", "name": "m v1", "owner": "Greg", "deployTime": 1764000000000,
                  "artifactChecksums": {"/r/m/README.md": "ab12"}, "unknown.attr": "dropped",
                  **{name: "x" for name in ("deploy.datetime", "deploy.host.type", "deploy.host.detail", "deploy.obj.source", "model.name",
                                            "model.version", "model.type", "model.description", "model.owner", "model.owner.lob", "model.registry.url")}}
    posted = api.post("/entity/bulk", json={"entities": [{"typeName": "model", "attributes": attributes,
                                                          "relationshipAttributes": {"artifacts": [ref("/r/m"), ref("/r/m/README.md")]}}]})
    assert posted.status_code == 200, posted.text
    found = api.get("/entity/uniqueAttribute/type/model", params={"attr:qualifiedName": "m-v1@host:65327"}).json()
    model = found["entity"]
    assert model["attributes"]["deployTime"] == 1764000000000 and model["attributes"]["artifactChecksums"] == {"/r/m/README.md": "ab12"}
    assert model["attributes"]["description"] is None and "unknown.attr" not in model["attributes"] and found["referredEntities"] == {}
    links = model["relationshipAttributes"]["artifacts"]
    assert sorted(link["displayText"] for link in links) == ["README.md", "m"]
    assert {link["relationshipType"] for link in links} == {"model_artifacts"} and all(link["relationshipGuid"] for link in links)
    readme = api.get(f"/entity/guid/{next(link['guid'] for link in links if link['displayText'] == 'README.md')}").json()["entity"]
    assert [d["guid"] for d in readme["relationshipAttributes"]["modelDeployments"]] == [model["guid"]]

    again = api.post("/entity/bulk", json={"entities": [{"typeName": "model", "attributes": attributes,
                                                         "relationshipAttributes": {"artifacts": [ref("/r/m/README.md"), ref("/r/m")]}}]}).json()
    assert "mutatedEntities" not in again  # same artifacts, another order: unchanged
    fewer = api.post("/entity/bulk", json={"entities": [{"typeName": "model", "attributes": attributes,
                                                         "relationshipAttributes": {"artifacts": [ref("/r/m")]}}]}).json()
    readme_guid = next(link["guid"] for link in links if link["displayText"] == "README.md")
    # the file that lost its link is reported updated too, as Atlas does (a plain header, no classifications)
    assert [h["guid"] for h in fewer["mutatedEntities"]["UPDATE"]] == [model["guid"], readme_guid]
    assert "classifications" in fewer["mutatedEntities"]["UPDATE"][0] and "classifications" not in fewer["mutatedEntities"]["UPDATE"][1]
    assert len(api.get(f"/entity/guid/{model['guid']}").json()["entity"]["relationshipAttributes"]["artifacts"]) == 1

    values = thing("v", **{"rank": "7", "when": "2026-01-02T03:04:05.000Z", "flag": "TRUE", "tags": ["a", 1], "checksums": {"k": 2}})
    guid = api.post("/entity/bulk", json={"entities": [values]}).json()["mutatedEntities"]["CREATE"][0]["guid"]
    stored = api.get(f"/entity/guid/{guid}").json()["entity"]["attributes"]
    assert (stored["rank"], stored["when"], stored["flag"], stored["tags"], stored["checksums"]) == (7, 1767323045000, True, ["a", "1"], {"k": "2"})


def test_negative_guids_inputs_outputs_and_lineage(api):
    raw, process, out = hdfs_path("/raw"), {"typeName": "Process", "attributes": {"qualifiedName": "train", "name": "train"}}, hdfs_path("/model")
    raw["guid"], process["guid"], out["guid"] = "-1", "-2", "-3"
    process["attributes"].update(inputs=[{"guid": "-1"}], outputs=[{"guid": "-3", "typeName": "hdfs_path"}])
    answer = api.post("/entity/bulk", json={"entities": [process], "referredEntities": {"-1": raw, "-3": out}}).json()
    guids = answer["guidAssignments"]
    assert set(guids) == {"-1", "-2", "-3"} and len(answer["mutatedEntities"]["CREATE"]) == 3
    entity = api.get(f"/entity/guid/{guids['-2']}").json()["entity"]
    assert entity["attributes"]["inputs"] == [{"guid": guids["-1"], "typeName": "hdfs_path", "uniqueAttributes": {"qualifiedName": "hdfs://nn:8020/raw@primary"}}]
    assert [r["guid"] for r in entity["relationshipAttributes"]["outputs"]] == [guids["-3"]]
    assert [r["guid"] for r in api.get(f"/entity/guid/{guids['-1']}").json()["entity"]["relationshipAttributes"]["inputToProcesses"]] == [guids["-2"]]

    lineage = api.get(f"/lineage/{guids['-3']}", params={"direction": "INPUT", "depth": 3}).json()
    assert lineage["baseEntityGuid"] == guids["-3"] and lineage["lineageDirection"] == "INPUT"
    assert set(lineage["guidEntityMap"]) == set(guids.values())
    assert {(r["fromEntityId"], r["toEntityId"]) for r in lineage["relations"]} == {(guids["-1"], guids["-2"]), (guids["-2"], guids["-3"])}
    downstream = api.get(f"/lineage/{guids['-3']}", params={"direction": "OUTPUT"}).json()
    assert downstream["relations"] == [] and set(downstream["guidEntityMap"]) == {guids["-3"]}
    assert len(api.get(f"/lineage/{guids['-2']}").json()["relations"]) == 2
    error(api.get("/lineage/nope"), 404, "ATLAS-404-00-005")


def test_classifications_and_soft_delete(api):
    api.post("/types/typedefs", json={"classificationDefs": [{"name": "PII", "attributeDefs": []}]}).raise_for_status()
    guid = api.post("/entity/bulk", json={"entities": [hdfs_path("/r/d")]}).json()["mutatedEntities"]["CREATE"][0]["guid"]
    added = api.post(f"/entity/guid/{guid}/classifications", json=[{"typeName": "PII", "attributes": {}, "propagate": False}])
    assert added.status_code == 204 and added.content == b""
    error(api.post(f"/entity/guid/{guid}/classifications", json=[{"typeName": "PII"}]), 400, "ATLAS-400-00-01A",
          f"invalid parameters: entity: {guid}, already associated with classification: PII")
    error(api.post(f"/entity/guid/{guid}/classifications", json=[{"typeName": "Nope"}]), 404, "ATLAS-404-00-008", "Given classification Nope was invalid")
    assert api.get(f"/entity/guid/{guid}").json()["entity"]["classifications"][0]["typeName"] == "PII"
    assert api.get(f"/entity/{guid}/audit").json()[0]["action"] == "CLASSIFICATION_ADD"
    assert [e["guid"] for e in api.post("/search/basic", json={"classification": "PII"}).json()["entities"]] == [guid]

    deleted = api.delete(f"/entity/guid/{guid}").json()
    assert deleted["mutatedEntities"]["DELETE"][0]["status"] == "DELETED"
    assert api.delete(f"/entity/guid/{guid}").json() == {}
    assert api.get(f"/entity/guid/{guid}").json()["entity"]["status"] == "DELETED"
    error(api.get("/entity/uniqueAttribute/type/hdfs_path", params={"attr:qualifiedName": "hdfs://nn:8020/r/d@primary"}), 404, "ATLAS-404-00-009")
    again = api.post("/entity/bulk", json={"entities": [hdfs_path("/r/d")]}).json()
    assert again["mutatedEntities"]["CREATE"][0]["guid"] != guid  # a deleted entity is not found by its qualifiedName


# -- search ---------------------------------------------------------------------------------------------------
@pytest.fixture
def things(api):
    api.post("/types/typedefs", json={"entityDefs": [THING]}).raise_for_status()
    rows = [thing("a", rank=1, when=1000, owner="ann", **{"model.version": "1.0"}), thing("b", rank=2, when=2000, owner="bob", **{"model.version": "1.1"}),
            thing("c", rank=3, when=3000, owner="ann", tags=["x"], **{"model.version": "2.0"}), thing("d", rank=4, owner="cy")]
    answer = api.post("/entity/bulk", json={"entities": rows}).json()
    return {h["attributes"]["name"]: h["guid"] for h in answer["mutatedEntities"]["CREATE"]}


def names(answer):
    return [e["attributes"]["name"] for e in answer.get("entities", [])]


def test_basic_search_filters(api, things):
    def search(filters, **more):
        answer = api.post("/search/basic", json={"typeName": "mg_thing", "entityFilters": filters, "sortBy": "name", **more})
        assert answer.status_code == 200, answer.text
        return names(answer.json())

    assert search({"attributeName": "owner", "operator": "=", "attributeValue": "ann"}) == ["a", "c"]
    assert search({"condition": "AND", "criterion": [{"attributeName": "owner", "operator": "eq", "attributeValue": "ann"},
                                                      {"attributeName": "rank", "operator": ">", "attributeValue": "1"}]}) == ["c"]
    nested = {"condition": "OR", "criterion": [{"attributeName": "name", "operator": "=", "attributeValue": "d"},
                                               {"condition": "AND", "criterion": [{"attributeName": "when", "operator": ">=", "attributeValue": "2000"},
                                                                                  {"attributeName": "when", "operator": "<=", "attributeValue": "2500"}]}]}
    assert search(nested) == ["b", "d"]
    assert search({"attributeName": "model.version", "operator": "startsWith", "attributeValue": "1."}) == ["a", "b"]
    assert search({"attributeName": "model.version", "operator": "!=", "attributeValue": "1.0"}) == ["b", "c", "d"]
    assert search({"attributeName": "qualifiedName", "operator": "endsWith", "attributeValue": "/c"}) == ["c"]
    assert search({"attributeName": "owner", "operator": "contains", "attributeValue": "o"}) == ["b"]
    assert search({"attributeName": "owner", "operator": "in", "attributeValue": "bob,cy"}) == ["b", "d"]
    assert search({"attributeName": "name", "operator": "like", "attributeValue": "[ab]*"}) == ["a", "b"]
    assert search({"attributeName": "tags", "operator": "contains", "attributeValue": "x"}) == ["c"]
    assert search({"attributeName": "when", "operator": "isNull"}) == []  # an unset date is stored as 0, as Atlas does
    assert search({"attributeName": "when", "operator": "=", "attributeValue": "0"}) == ["d"]
    assert search({"attributeName": "rank", "operator": "<", "attributeValue": "0"}) == []


def test_basic_search_paging_sorting_and_shape(api, things):
    query = {"typeName": "mg_thing", "excludeDeletedEntities": True, "sortBy": "rank", "sortOrder": "DESCENDING", "limit": 2, "offset": 1,
             "attributes": ["model.version", "rank"]}
    answer = api.post("/search/basic", json=query).json()
    assert answer["queryType"] == "BASIC" and answer["approximateCount"] == 4 and names(answer) == ["c", "b"]
    header = answer["entities"][0]
    assert header["attributes"]["model.version"] == "2.0" and header["attributes"]["rank"] == 3 and "description" not in header["attributes"]  # nulls left out
    assert header["typeName"] == "mg_thing" and header["status"] == "ACTIVE" and header["displayText"] == "c"
    assert answer["searchParameters"]["limit"] == 2 and answer["searchParameters"]["includeSubTypes"] is True
    assert names(api.post("/search/basic", json={"typeName": "DataSet", "sortBy": "name"}).json()) == ["a", "b", "c", "d"]  # subtypes
    assert names(api.post("/search/basic", json={"typeName": "DataSet", "includeSubTypes": False}).json()) == []
    empty = api.post("/search/basic", json={"typeName": "mg_thing", "entityFilters": {"attributeName": "name", "operator": "=", "attributeValue": "zz"}}).json()
    assert "entities" not in empty and empty["approximateCount"] == 0
    assert names(api.get("/search/basic", params={"typeName": "mg_thing", "sortBy": "when", "sortOrder": "DESCENDING", "limit": 1}).json()) == ["c"]

    api.delete(f"/entity/guid/{things['a']}").raise_for_status()
    assert "a" not in names(api.post("/search/basic", json={"typeName": "mg_thing", "excludeDeletedEntities": True}).json())
    with_deleted = api.post("/search/basic", json={"typeName": "mg_thing", "excludeDeletedEntities": False}).json()["entities"]
    assert {e["status"] for e in with_deleted} == {"ACTIVE", "DELETED"}


def test_basic_search_refusals(api, things):
    leaf = {"attributeName": "nope", "operator": "=", "attributeValue": "x"}
    error(api.post("/search/basic", json={"typeName": "mg_thing", "entityFilters": leaf}), 400, "ATLAS-400-00-023", "Attribute nope not found for type mg_thing")
    error(api.post("/search/basic", json={"typeName": "mg_thing", "sortBy": "nope"}), 400, "ATLAS-400-00-023")
    assert api.post("/search/basic", json={"typeName": "mg_thing", "attributes": ["nope"]}).status_code == 200  # not returned, not refused
    error(api.post("/search/basic", json={"entityFilters": dict(leaf, attributeName="name")}), 400, "ATLAS-400-00-029", "EntityFilters specified without Type name")
    error(api.post("/search/basic", json={"limit": 10}), 400, "ATLAS-400-00-047")
    error(api.post("/search/basic", json={"typeName": "nope"}), 400, "ATLAS-400-00-00A", "nope: Unknown/invalid typename")
    # Atlas 2.1.0 reads an unknown operator as none: the criterion filters nothing
    assert len(api.post("/search/basic", json={"typeName": "mg_thing", "entityFilters": dict(leaf, attributeName="name", operator="~")}).json()["entities"]) == 4
    error(api.post("/search/basic", json={"typeName": "mg_thing", "limit": -1}), 400, "ATLAS-400-00-029", "Limit/offset should be non-negative")


def test_dsl_search(api, things):
    answer = api.get("/search/dsl", params={"query": 'mg_thing where name = "b"'}).json()
    assert answer["queryType"] == "DSL" and answer["queryText"] == 'mg_thing where name = "b"' and names(answer) == ["b"]
    assert sorted(names(api.get("/search/dsl", params={"query": "mg_thing"}).json())) == ["a", "b", "c", "d"]
    assert "entities" not in api.get("/search/dsl", params={"query": "mg_thing where name = 'zz'"}).json()
    for bad in ("mg_thing where model.version = '1.0'", "nope", "mg_thing select name orderby rank"):
        error(api.get("/search/dsl", params={"query": bad}), 400, "ATLAS-400-00-059")


# -- state ----------------------------------------------------------------------------------------------------
def test_state_survives_a_restart(tmp_path):
    state = tmp_path / "state"
    with AtlasStandIn(state, users={"admin": PASSWORD}) as first:
        auth = ("admin", PASSWORD)
        requests.post(f"{first.url}/api/atlas/v2/types/typedefs", json={"entityDefs": [THING]}, auth=auth, timeout=10).raise_for_status()
        answer = requests.post(f"{first.url}/api/atlas/v2/entity/bulk", json={"entities": [thing("kept")]}, auth=auth, timeout=10).json()
        guid = answer["mutatedEntities"]["CREATE"][0]["guid"]
    assert [p.name for p in state.iterdir()] == ["atlas-state.json"]  # written whole, no temporary file left
    with AtlasStandIn(state, users={"admin": PASSWORD}) as second:
        entity = requests.get(f"{second.url}/api/atlas/v2/entity/guid/{guid}", auth=auth, timeout=10).json()["entity"]
        assert entity["attributes"]["name"] == "kept"
        assert requests.get(f"{second.url}/api/atlas/v2/entity/{guid}/audit", auth=auth, timeout=10).json()[0]["action"] == "ENTITY_CREATE"
        again = requests.post(f"{second.url}/api/atlas/v2/types/typedefs", json={"entityDefs": [THING]}, auth=auth, timeout=10)
        assert again.status_code == 409


# -- clients --------------------------------------------------------------------------------------------------
def test_pyatlasclient(atlas):
    from atlasclient.client import Atlas
    from atlasclient.exceptions import Conflict, NotFound

    client = Atlas("127.0.0.1", port=atlas.port, username="admin", password=PASSWORD)
    base = f"{atlas.url}/api/atlas/v2"
    client.client.post(f"{base}/types/typedefs", data={"entityDefs": [THING]})
    with pytest.raises(Conflict) as conflict:
        client.client.post(f"{base}/types/typedefs", data={"entityDefs": [THING]})
    assert json.loads(conflict.value.details)["errorCode"] == "ATLAS-409-00-001"
    answer = client.client.post(f"{base}/entity/bulk", data={"entities": [thing("py")]})
    guid = answer["mutatedEntities"]["CREATE"][0]["guid"]
    assert client.entity_guid(guid).entity["attributes"]["name"] == "py"
    assert [e.guid for page in client.search_basic(typeName="mg_thing") for e in page.entities] == [guid]
    assert "mg_thing" in [d.name for typedefs in client.typedefs for d in typedefs.entityDefs]
    with pytest.raises(NotFound) as missing:
        client.client.get(f"{base}/entity/guid/nope")
    assert json.loads(missing.value.details)["errorCode"] == "ATLAS-404-00-005"


def test_apache_atlas_client(atlas):
    pytest.importorskip("apache_atlas")
    from apache_atlas.client.base_client import AtlasClient
    from apache_atlas.exceptions import AtlasServiceException
    from apache_atlas.model.instance import AtlasEntity, AtlasEntityWithExtInfo
    from apache_atlas.model.typedef import AtlasTypesDef

    client = AtlasClient(atlas.url, ("admin", PASSWORD))
    created = client.typedef.create_atlas_typedefs(AtlasTypesDef({"entityDefs": [THING]}))  # sends nulls for every unset field
    assert [d.name for d in created.entityDefs] == ["mg_thing"]
    assert client.typedef.get_entitydef_by_name("mg_thing").superTypes == ["DataSet"]
    with pytest.raises(AtlasServiceException, match="ATLAS-409-00-001"):
        client.typedef.create_atlas_typedefs(AtlasTypesDef({"entityDefs": [THING]}))
    response = client.entity.create_entity(AtlasEntityWithExtInfo({"entity": AtlasEntity(thing("official"))}))
    guid = response.mutatedEntities["CREATE"][0].guid
    assert client.entity.get_entity_by_guid(guid).entity.attributes["name"] == "official"
    found = client.discovery.basic_search("mg_thing", None, None, True)
    assert [e.guid for e in found.entities] == [guid]
    assert [e["action"] for e in client.entity.get_audit_events(guid, None, None, 10)] == ["ENTITY_CREATE"]


# -- the product's hook ---------------------------------------------------------------------------------------
@pytest.fixture
def hook(atlas, monkeypatch):
    from model_governance.hooks.atlas import AtlasHook

    conn = {"conn_type": "http", "host": "127.0.0.1", "port": atlas.port, "login": "admin", "password": PASSWORD}
    monkeypatch.setenv("AIRFLOW_CONN_ATLAS_TEST", json.dumps(conn))
    return AtlasHook("atlas_test", retry_backoff=0.01)


def test_hook_reads_and_reports_atlas_errors(atlas, hook):
    from model_governance.exceptions import AtlasError

    assert hook.get_typedef("fs_path")["name"] == "fs_path" and hook.get_typedef("nope") is None
    assert hook.get_entity("hdfs_path", "hdfs://nope@primary") is None
    with pytest.raises(AtlasError) as err:
        hook.get_entity_by_guid("nope")
    assert err.value.status == 404 and err.value.error_code == "ATLAS-404-00-005"
    atlas.fail_next(2)  # a proxy's 503s are retried
    assert hook.get_typedef("DataSet")["name"] == "DataSet"


def test_hook_ensure_model_type_creates_then_upgrades(api, hook):
    from model_governance.atlas.schema import ADDED_ATTRIBUTES, SEED_ATTRIBUTES, TYPE_VERSION, ensure_model_type

    assert ensure_model_type(hook) == "created"
    assert ensure_model_type(hook) == "current"
    model = api.get("/types/typedef/name/model").json()
    assert model["superTypes"] == ["Process"] and model["typeVersion"] == TYPE_VERSION
    assert {a["name"] for a in model["attributeDefs"]} == set(SEED_ATTRIBUTES) | {name for name, _ in ADDED_ATTRIBUTES}
    assert api.get("/types/typedef/name/model_artifacts").status_code == 200


def test_hook_upgrades_an_older_model_type(api, hook):
    from model_governance.atlas.schema import TYPE_VERSION, ensure_model_type

    older = seed_typedef()["entityDefs"][0]
    older["attributeDefs"] = [a for a in older["attributeDefs"] if a["name"] not in ("qualifiedName", "name", "inputs", "outputs")]
    api.post("/types/typedefs", json={"entityDefs": [older]}).raise_for_status()
    assert ensure_model_type(hook) == "upgraded"
    model = api.get("/types/typedef/name/model").json()
    assert model["version"] == 2 and model["typeVersion"] == TYPE_VERSION
    assert all(a["isOptional"] for a in model["attributeDefs"] if a["name"] == "deployStatus")
    assert ensure_model_type(hook) == "current"


def test_hook_gets_09E_for_the_seed_typedef(hook):
    from model_governance.exceptions import AtlasError

    with pytest.raises(AtlasError) as err:
        hook.create_typedefs(seed_typedef())
    assert err.value.status == 400 and err.value.error_code == "ATLAS-400-00-09E"


def test_hook_upserts_searches_and_supersedes(api, hook):
    from model_governance.atlas.queries import search_all, supersede
    from model_governance.atlas.schema import ensure_model_type

    ensure_model_type(hook)
    common = {name: "x" for name in ("deploy.datetime", "deploy.host.type", "deploy.host.detail", "deploy.obj.source", "model.name",
                                     "model.version", "model.type", "model.description", "model.owner", "model.owner.lob", "model.registry.url")}
    for n, when in (("v1", 1000), ("v2", 2000)):
        attributes = {**common, "qualifiedName": f"m-{n}@h", "name": n, "deployStatus": "deployed", "deployTarget": "h", "deployTime": when}
        answer = hook.upsert_entities([{"typeName": "model", "attributes": attributes}])
        assert answer["mutatedEntities"]["CREATE"][0]["attributes"]["qualifiedName"] == f"m-{n}@h"
    assert supersede(hook, "h", "m-v2@h") == ["m-v1@h"]
    v1 = hook.get_entity("model", "m-v1@h")["entity"]["attributes"]
    assert (v1["deployStatus"], v1["supersededBy"]) == ("superseded", "m-v2@h")
    assert len(search_all(hook, [], page=1)) == 2


def test_deployments_are_listed_page_by_page_newest_first(api, hook, monkeypatch):
    """`iter_deployments` asks for one page at a time, as it is read, stops at the limit, and skips an entity
    seen again when a write between two pages shifts the offsets."""
    from model_governance.atlas.queries import iter_deployments
    from model_governance.atlas.schema import ensure_model_type

    ensure_model_type(hook)
    common = {name: "x" for name in ("deploy.datetime", "deploy.host.type", "deploy.host.detail", "deploy.obj.source", "model.name",
                                     "model.version", "model.type", "model.description", "model.owner", "model.owner.lob", "model.registry.url")}

    def register(n: int) -> None:
        attributes = {**common, "qualifiedName": f"m-{n}@h", "name": f"m{n}", "deployStatus": "deployed", "deployTarget": "h", "deployTime": 1000 + n}
        hook.upsert_entities([{"typeName": "model", "attributes": attributes}])

    for n in range(7):
        register(n)
    calls = []
    search = hook.search_basic
    monkeypatch.setattr(hook, "search_basic", lambda body: calls.append(dict(body)) or search(body))
    rows = iter_deployments(hook, limit=100, page=3)
    assert calls == []  # nothing asked before the first row is read
    assert next(rows)["qualifiedName"] == "m-6@h" and len(calls) == 1
    assert [row["qualifiedName"] for row in rows] == [f"m-{n}@h" for n in range(5, -1, -1)]
    assert [(c["limit"], c["offset"]) for c in calls] == [(3, 0), (3, 3), (3, 6)]

    calls.clear()
    assert len(list(iter_deployments(hook, limit=4, page=3))) == 4
    assert [(c["limit"], c["offset"]) for c in calls] == [(3, 0), (1, 3)]

    # a deployment registered between two pages pushes m-4 onto the second page too: listed once
    calls.clear()
    rows = iter_deployments(hook, limit=100, page=3)
    first = [next(rows)["qualifiedName"] for _ in range(3)]
    register(7)
    rest = [row["qualifiedName"] for row in rows]
    assert first + rest == [f"m-{n}@h" for n in range(6, -1, -1)]
