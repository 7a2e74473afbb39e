"""A stand-in for Apache Atlas REST v2 (2.3+): typedefs, entities, basic/DSL search, lineage, audits, classifications.

Answers follow Atlas's source: AtlasErrorCode (status, code, message), TypesREST / AtlasTypeDefGraphStore (409 only
after the whole registry resolves, so a bad def answers 400 first), AtlasEntityStoreV2 (bulk upsert by unique
attribute across a type and its subtypes, unchanged entities skipped), SearchContext (400 for unknown filter
attributes; names with dots are plain attribute names there), EntityGraphRetriever (entity and header shapes).
The base models in atlas_models/ are preloaded as Atlas preloads them; user typedefs, entities, relationships and
audits persist as JSON in state_dir. Filters compare case-sensitively; the DSL knows only `T` and `T where a op v`.
"""

from __future__ import annotations

import base64
import binascii
import fnmatch
import hmac
import html
import itertools
import json
import os
import random
import re
import tempfile
import threading
import time
import uuid
from datetime import datetime, timezone
from http import HTTPStatus
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from model_governance_devstack.base import StandInHandler, StandInServer

API = "/api/atlas/v2"
MODELS_DIR = Path(__file__).parent / "atlas_models"
DEF_KEYS = {"ENUM": "enumDefs", "STRUCT": "structDefs", "CLASSIFICATION": "classificationDefs", "ENTITY": "entityDefs",
            "RELATIONSHIP": "relationshipDefs", "BUSINESS_METADATA": "businessMetadataDefs"}
WITH_ATTRS = ("STRUCT", "CLASSIFICATION", "ENTITY", "BUSINESS_METADATA", "RELATIONSHIP")  # AtlasRelationshipDef is a struct def
PRIMITIVES = {"boolean", "byte", "short", "int", "long", "float", "double", "biginteger", "bigdecimal", "string", "date"}
# EntityGraphMapper.mapPrimitiveValue on create: an unset attribute of these types is stored as its type's default
# (measured on Atlas 2.1.0: an hdfs_path posted without isFile/fileSize/createTime reads back false/0/0)
PRIMITIVE_DEFAULTS = {"boolean": False, "byte": 0, "short": 0, "int": 0, "long": 0, "float": 0.0, "double": 0.0,
                      "biginteger": 0, "bigdecimal": 0.0, "date": 0}
JSON_TYPE = "application/json; charset=UTF-8"  # Servlets.JSON_MEDIA_TYPE, on every JSON answer
INT_RANGES = {"byte": 2**7, "short": 2**15, "int": 2**31, "long": 2**63}
NAME_RE = re.compile(r"(__)?[a-zA-Z][a-zA-Z0-9_ ]*")  # AtlasAbstractDefStoreV2.NAME_REGEX
HEADER_ATTRS = ("name", "description", "owner", "createTime")  # AtlasEntityType.ENTITY_HEADER_ATTRIBUTES
SYSTEM_ATTRS = {"__guid": "guid", "__typeName": "typeName", "__state": "status", "__timestamp": "createTime",
                "__modificationTimestamp": "updateTime", "__createdBy": "createdBy", "__modifiedBy": "updatedBy"}
TYPE_ALIASES = {"CLASS": "ENTITY", "TRAIT": "CLASSIFICATION"}  # FilterUtil.getTypePredicate
LINEAGE_RELS = {"dataset_process_inputs": "in", "process_dataset_outputs": "out"}
OPERATORS = {s: op for op, symbols in {
    "<": "< lt", ">": "> gt", "<=": "<= lte", ">=": ">= gte", "=": "= eq", "!=": "!= neq", "in": "in IN", "like": "like LIKE",
    "startsWith": "startsWith STARTSWITH begins_with BEGINS_WITH", "endsWith": "endsWith ENDSWITH ends_with ENDS_WITH",
    "contains": "contains CONTAINS", "not_contains": "not_contains NOT_CONTAINS", "isNull": "isNull ISNULL is_null IS_NULL",
    "notNull": "notNull NOTNULL not_null NOT_NULL", "timerange": "timerange TIMERANGE time_range TIME_RANGE",
}.items() for s in symbols.split()}
DSL_RE = re.compile(r"""\s*(?P<type>\w+)(?:\s+where\s+(?P<attr>[\w.]+)\s*(?P<op>!=|<=|>=|=|<|>|like)\s*"""
                    r"""(?P<val>"[^"]*"|'[^']*'|[-\w.:]+))?\s*""", re.I)

# AtlasErrorCode.java: name -> (HTTP status, code, message as Java's MessageFormat renders it: quotes vanish)
ERRORS = {
    "INCOMPATIBLE_SUPERTYPE": (400, "ATLAS-400-00-003", "{0}: incompatible supertype {1}"),
    "CIRCULAR_REFERENCE": (400, "ATLAS-400-00-002", "{0}: invalid supertypes - circular reference back to self {1}"),
    "UNKNOWN_TYPENAME": (400, "ATLAS-400-00-00A", "{0}: Unknown/invalid typename"),
    "CANNOT_ADD_MANDATORY_ATTRIBUTE": (400, "ATLAS-400-00-00C", "{0}.{1} : can not add mandatory attribute"),
    "ATTRIBUTE_DELETION_NOT_SUPPORTED": (400, "ATLAS-400-00-00D", "{0}.{1} : attribute delete not supported"),
    "SUPERTYPE_REMOVAL_NOT_SUPPORTED": (400, "ATLAS-400-00-00E", "superType remove not supported"),
    "ATTRIBUTE_UNIQUE_INVALID": (400, "ATLAS-400-00-013", "Type {0} with unique attribute {1} does not exist"),
    "TYPE_NAME_INVALID": (400, "ATLAS-400-00-014", "Type {0} with name {1} does not exist"),
    "TYPE_NAME_INVALID_FORMAT": (400, "ATLAS-400-00-019", "{0}: invalid name for {1}.  Names must consist of a letter followed "
                                 "by a sequence of letter, number, space, or _ characters"),
    "INVALID_PARAMETERS": (400, "ATLAS-400-00-01A", "invalid parameters: {0}"),
    "INVALID_OBJECT_ID": (400, "ATLAS-400-00-021", "ObjectId is not valid {0}"),
    "UNKNOWN_ATTRIBUTE": (400, "ATLAS-400-00-023", "Attribute {0} not found for type {1}"),
    "INSTANCE_LINEAGE_INVALID_PARAMS": (400, "ATLAS-400-00-026", "Invalid lineage query parameters passed {0}: {1}"),
    "BAD_REQUEST": (400, "ATLAS-400-00-029", "{0}"),
    "UNKNOWN_CLASSIFICATION": (400, "ATLAS-400-00-046", "{0}: Unknown/invalid classification"),
    "INVALID_SEARCH_PARAMS": (400, "ATLAS-400-00-047", "No search parameter was found. One of the following MUST be specified "
                              "in the request; typeName, classification, termName or queryText"),
    "INVALID_DSL_QUERY": (400, "ATLAS-400-00-059", "Invalid DSL query: {0} | Reason: {1}. Please refer to Atlas DSL grammar for more information"),
    "ATTRIBUTE_NAME_ALREADY_EXISTS_IN_ANOTHER_PARENT_TYPE": (400, "ATLAS-400-00-09E", "Invalid attribute name: {0}.{1}. "
                                                             "Attribute already exists in another parent type: {2}"),
    "INVALID_OPERATOR": (400, "ATLAS-400-00-103", "Invalid operator specified for attribute: {0}"),
    "BLANK_NAME_ATTRIBUTE": (400, "ATLAS-400-00-104", "Name Attribute cant be empty!"),
    "BLANK_VALUE_ATTRIBUTE": (400, "ATLAS-400-00-105", "Value Attribute cant be empty!"),
    "TYPE_NAME_NOT_FOUND": (404, "ATLAS-404-00-001", "Given typename {0} was invalid"),
    "INSTANCE_GUID_NOT_FOUND": (404, "ATLAS-404-00-005", "Given instance guid {0} is invalid/not found"),
    "INSTANCE_CRUD_INVALID_PARAMS": (404, "ATLAS-404-00-007", "Invalid instance creation/updation parameters passed : {0}"),
    "CLASSIFICATION_NOT_FOUND": (404, "ATLAS-404-00-008", "Given classification {0} was invalid"),
    "INSTANCE_BY_UNIQUE_ATTRIBUTE_NOT_FOUND": (404, "ATLAS-404-00-009", "Instance {0} with unique attribute {1} does not exist"),
    "REFERENCED_ENTITY_NOT_FOUND": (404, "ATLAS-404-00-00A", "Referenced entity {0} is not found"),
    "INVALID_LINEAGE_ENTITY_TYPE": (404, "ATLAS-404-00-011", "Given instance guid {0} with type {1} is not a valid lineage entity type."),
    "TYPE_ALREADY_EXISTS": (409, "ATLAS-409-00-001", "Given type {0} already exists"),
}


class AtlasError(Exception):
    """An AtlasBaseException: answered as {"errorCode", "errorMessage"} with the code's HTTP status."""

    def __init__(self, name: str, *args: Any):
        self.status, self.code, template = ERRORS[name]
        self.message = re.sub(r"\{(\d)\}", lambda m: jstr(args[int(m[1])]) if int(m[1]) < len(args) else m[0], template)
        super().__init__(self.message)


def jstr(value: Any) -> str:
    """A value as Java's toString() shows it (the JSON was read into Java maps and lists)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}={jstr(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(jstr(v) for v in value) + "]"
    return str(value)


def object_id_text(ref: dict[str, Any]) -> str:
    uniq = ", ".join(f"{k}:{jstr(v)}" for k, v in (ref.get("uniqueAttributes") or {}).items())
    return f"AtlasObjectId{{guid='{jstr(ref.get('guid'))}', typeName='{jstr(ref.get('typeName'))}', uniqueAttributes={{{uniq}}}}}"


def now_ms() -> int:
    return int(time.time() * 1000)


class _Internal(Exception):
    """Anything Atlas answers through AllExceptionMapper: 500 with a plain-text body (e.g. JSON it cannot map)."""


class AtlasStandIn:
    """Atlas on loopback with basic auth against `users`; `fail_next` and `hang` inject faults for tests."""

    def __init__(self, state_dir: Path, host: str = "127.0.0.1", port: int = 0, users: dict[str, str] | None = None,
                 verbose: bool = False):
        self.state_dir = Path(state_dir)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.users = dict(users if users is not None else {"admin": "admin"})  # Atlas's stock file users
        self.lock = threading.RLock()
        self._fault_lock = threading.Lock()
        self._fail_count, self._fail_status, self._hang, self._hang_times = 0, 503, 0.0, 0
        self.requests_received = 0  # for tests that check a client does not ask again and again
        self._local_ids = itertools.count(time.time_ns() // 1000 % 10**13)
        self.defs: dict[str, dict[str, Any]] = {}
        self.user_types: set[str] = set()
        self.entities: dict[str, dict[str, Any]] = {}
        self.rels: dict[str, dict[str, Any]] = {}
        self.audits: dict[str, list[dict[str, Any]]] = {}
        self._cache: dict[str, dict[str, Any]] = {}
        self._load_models()
        self._load_state()
        self.server = StandInServer(_Handler, host, port, verbose)
        self.server.stand_in = self  # type: ignore[attr-defined]

    host = property(lambda self: self.server.host)
    port = property(lambda self: self.server.port)
    url = property(lambda self: self.server.url)

    def start(self) -> "AtlasStandIn":
        self.server.start()
        return self

    def stop(self) -> None:
        self.server.stop()

    def __enter__(self) -> "AtlasStandIn":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- fault switches for tests ----------------------------------------------------------------------
    def fail_next(self, n: int, status: int = 503) -> None:
        """The next n requests answer `status` in plain text, as a proxy in front of Atlas would."""
        with self._fault_lock:
            self._fail_count, self._fail_status = n, status

    def hang(self, seconds: float, times: int = 1) -> None:
        """The next `times` requests wait this long before they are answered."""
        with self._fault_lock:
            self._hang, self._hang_times = seconds, times

    def _take_fault(self) -> tuple[int | None, float]:
        with self._fault_lock:
            self.requests_received += 1
            delay = self._hang if self._hang_times > 0 else 0.0
            self._hang_times = max(0, self._hang_times - 1)
            if self._fail_count > 0:
                self._fail_count -= 1
                return self._fail_status, delay
        return None, delay

    # -- state -----------------------------------------------------------------------------------------
    def _load_models(self) -> None:
        """Models first, then patches, as AtlasTypeDefStoreInitializer applies them."""
        patches, stamp = [], now_ms()
        for path in sorted(MODELS_DIR.glob("*.json")):
            data = json.loads(path.read_text())
            patches += data.get("patches") or []
            for category, key in DEF_KEYS.items():
                for raw in data.get(key) or []:
                    d = self._normalize(raw, category)
                    d.setdefault("description", d["name"])
                    d.setdefault("typeVersion", "1.0")
                    d.update(guid=str(uuid.uuid5(uuid.NAMESPACE_URL, "atlas-type:" + d["name"])), createdBy="admin",
                             updatedBy="admin", createTime=stamp, updateTime=stamp, version=1)
                    self.defs[d["name"]] = d
        for patch in patches:
            d = self.defs.get(patch.get("typeName"))
            if d is None or d.get("typeVersion") != patch.get("applyToVersion"):
                continue
            if patch["action"] == "ADD_SUPER_TYPES":
                d["superTypes"] += [s for s in patch.get("superTypes") or [] if s not in d["superTypes"]]
            elif patch["action"] == "SET_SERVICE_TYPE":
                d["serviceType"] = patch["serviceType"]
            elif patch["action"] == "ADD_ATTRIBUTE":
                d["attributeDefs"] += [self._normalize_attr(a) for a in patch.get("attributeDefs") or []]
            else:
                continue
            d["typeVersion"] = patch["updateToVersion"]

    @property
    def state_file(self) -> Path:
        return self.state_dir / "atlas-state.json"

    def _load_state(self) -> None:
        if not self.state_file.exists():
            return
        state = json.loads(self.state_file.read_text())
        self.defs.update(state.get("typedefs", {}))
        self.user_types = set(state.get("typedefs", {}))
        self.entities, self.rels, self.audits = state.get("entities", {}), state.get("relationships", {}), state.get("audits", {})

    def _save(self) -> None:
        """Written whole to a temporary file and renamed over the old one: a crash never leaves half a state."""
        state = {"typedefs": {n: self.defs[n] for n in sorted(self.user_types)}, "entities": self.entities,
                 "relationships": self.rels, "audits": self.audits}
        fd, tmp = tempfile.mkstemp(dir=self.state_dir, prefix=".atlas-state.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w") as out:
                json.dump(state, out)
            os.replace(tmp, self.state_file)
        except BaseException:
            os.unlink(tmp)
            raise

    # -- the type registry ---------------------------------------------------------------------------------
    def _normalize(self, raw: dict[str, Any], category: str) -> dict[str, Any]:
        """A def as stored: nulls dropped (clients send them), defaults of AtlasStructDef filled, derived fields left out."""
        if not isinstance(raw, dict):
            raise _Internal("not a typedef")
        d = {k: v for k, v in raw.items() if v is not None and k not in ("subTypes", "relationshipAttributeDefs", "businessAttributeDefs")}
        d["category"] = category
        if category in WITH_ATTRS:
            d["attributeDefs"] = [self._normalize_attr(a) for a in d.get("attributeDefs") or []]
        if category in ("ENTITY", "CLASSIFICATION"):
            d["superTypes"] = list(dict.fromkeys(d.get("superTypes") or []))
        if category == "RELATIONSHIP":
            d.setdefault("relationshipCategory", "ASSOCIATION")
            d.setdefault("propagateTags", "NONE")
            for end in ("endDef1", "endDef2"):
                e = {k: v for k, v in (d.get(end) or {}).items() if v is not None}
                d[end] = {"cardinality": "SINGLE", "isContainer": False, "isLegacyAttribute": False, **e}
        return d

    @staticmethod
    def _normalize_attr(raw: dict[str, Any]) -> dict[str, Any]:
        a = {k: v for k, v in raw.items() if v is not None}
        a.setdefault("isOptional", False)  # AtlasAttributeDef's default: mandatory
        a.setdefault("cardinality", "SINGLE")
        for key in ("isUnique", "isIndexable", "includeInNotification"):
            a.setdefault(key, False)
        a.setdefault("valuesMinCount", 0 if a["isOptional"] else 1)
        a.setdefault("valuesMaxCount", 1 if a["cardinality"] == "SINGLE" else 2147483647)
        a.setdefault("searchWeight", -1)
        return a

    def _category(self, name: Any) -> str | None:
        d = self.defs.get(name) if isinstance(name, str) else None
        return d["category"] if d else None

    def _unknown_type(self, type_name: str, defs: dict[str, Any]) -> str | None:
        """The type name AtlasTypeRegistry.getType would not find (the innermost one in array<>/map<>)."""
        if type_name.startswith("array<") and type_name.endswith(">"):
            return self._unknown_type(type_name[6:-1], defs)
        if type_name.startswith("map<") and type_name.endswith(">"):
            key, _, value = type_name[4:-1].partition(",")
            return self._unknown_type(key, defs) or self._unknown_type(value, defs)
        known = type_name in PRIMITIVES or (type_name in defs and defs[type_name]["category"] != "RELATIONSHIP")
        return None if known else type_name

    def _collect(self, name: str, defs: dict[str, Any], owner: dict[str, str], visited: list[str], order: list | None) -> None:
        """AtlasEntityType.collectTypeHierarchyInfo: supertypes first; a name declared by two types is refused."""
        d = defs[name]
        if name in visited:
            raise AtlasError("CIRCULAR_REFERENCE", name, "[" + ", ".join(visited) + "]")
        if d.get("superTypes"):
            visited.append(name)
            for s in d["superTypes"]:
                if s in defs and defs[s]["category"] == d["category"]:
                    self._collect(s, defs, owner, visited, order)
            visited.remove(name)
        for a in d.get("attributeDefs", []):
            if owner.get(a["name"], name) != name:
                raise AtlasError("ATTRIBUTE_NAME_ALREADY_EXISTS_IN_ANOTHER_PARENT_TYPE", name, a["name"], owner[a["name"]])
            owner[a["name"]] = name
            if order is not None:
                order.append((name, a))

    def _check(self, defs: dict[str, Any]) -> None:
        """Resolve every type as AtlasTypeRegistry.resolveReferences does; getType's 404 turns into 400 BAD_REQUEST."""
        for category in DEF_KEYS:
            for d in [d for d in defs.values() if d["category"] == category]:
                for a in d.get("attributeDefs", []):
                    if missing := self._unknown_type(str(a.get("typeName")), defs):
                        raise AtlasError("BAD_REQUEST", f"Given typename {missing} was invalid")
                if category in ("ENTITY", "CLASSIFICATION"):
                    self._collect(d["name"], defs, {}, [], None)
                    for s in d["superTypes"]:
                        if s not in defs:
                            raise AtlasError("BAD_REQUEST", f"Given typename {s} was invalid")
                        if defs[s]["category"] != category:
                            raise AtlasError("INCOMPATIBLE_SUPERTYPE", s, d["name"])
                if category == "RELATIONSHIP":
                    for end in ("endDef1", "endDef2"):
                        if str(d[end].get("type")) not in defs:
                            raise AtlasError("BAD_REQUEST", f"Given typename {d[end].get('type')} was invalid")

    def _info(self, name: str) -> dict[str, Any]:
        """What AtlasEntityType resolves: all attributes, supertypes, subtypes, relationship attributes."""
        if name not in self._cache:
            order: list[tuple[str, dict[str, Any]]] = []
            self._collect(name, self.defs, {}, [], order)
            supers, todo = set(), list(self.defs[name].get("superTypes", []))
            while todo:
                s = todo.pop()
                if s not in supers and s in self.defs:
                    supers.add(s)
                    todo += self.defs[s].get("superTypes", [])
            lineage = supers | {name}
            rel_attrs: dict[str, list[tuple[dict, str, str]]] = {}
            for d in self.defs.values():
                if d["category"] == "RELATIONSHIP":
                    for me, other in (("endDef1", "endDef2"), ("endDef2", "endDef1")):
                        if d[me].get("type") in lineage and d[me].get("name"):
                            rel_attrs.setdefault(d[me]["name"], []).append((d, me, other))
            self._cache[name] = {"order": order, "attrs": {a["name"]: a for _, a in order}, "supers": supers, "rel_attrs": rel_attrs}
        return self._cache[name]

    def _with_subtypes(self, name: str) -> set[str]:
        return {n for n, d in self.defs.items() if d["category"] == "ENTITY" and (n == name or name in self._info(n)["supers"])}

    def _out_def(self, d: dict[str, Any]) -> dict[str, Any]:
        """A def as TypesREST answers it: entity defs carry their subTypes and relationshipAttributeDefs."""
        out = dict(d)
        if d["category"] in ("ENTITY", "CLASSIFICATION"):
            out["subTypes"] = sorted(n for n, o in self.defs.items() if d["name"] in o.get("superTypes", []) and o["category"] == d["category"])
        if d["category"] == "ENTITY":
            out.setdefault("businessAttributeDefs", {})
            out["relationshipAttributeDefs"] = [
                {"name": name, "typeName": (f"array<{rel[other]['type']}>" if rel[me]["cardinality"] != "SINGLE" else rel[other]["type"]),
                 "isOptional": True, "cardinality": rel[me]["cardinality"], "valuesMinCount": -1, "valuesMaxCount": -1,
                 "isUnique": False, "isIndexable": False, "includeInNotification": False, "searchWeight": -1,
                 "relationshipTypeName": rel["name"], "isLegacyAttribute": rel[me]["isLegacyAttribute"]}
                for name, options in self._info(d["name"])["rel_attrs"].items() for rel, me, other in options]
        return out

    def _types_def(self, defs: list[dict[str, Any]]) -> dict[str, list]:
        return {key: [self._out_def(d) for d in defs if d["category"] == cat] for cat, key in DEF_KEYS.items()}

    def _defs_in(self, body: Any) -> list[dict[str, Any]]:
        if not isinstance(body, dict):
            raise _Internal("not an AtlasTypesDef")
        return [self._normalize(raw, cat) for cat, key in DEF_KEYS.items() for raw in body.get(key) or []]

    def create_types(self, body: Any, user: str) -> dict[str, list]:
        new = self._defs_in(body)
        self._check({**self.defs, **{d["name"]: d for d in new}})
        stamp = now_ms()
        for d in new:
            if not NAME_RE.fullmatch(str(d.get("name"))):
                raise AtlasError("TYPE_NAME_INVALID_FORMAT", d.get("name"), d["category"])
            if d["name"] in self.defs:
                raise AtlasError("TYPE_ALREADY_EXISTS", d["name"])
            d.setdefault("description", d["name"])
            d.setdefault("typeVersion", "1.0")
            d.update(guid=d.get("guid") or str(uuid.uuid4()), createdBy=user, updatedBy=user, createTime=stamp, updateTime=stamp, version=1)
        self._commit_types(new)
        return self._types_def(new)

    def update_types(self, body: Any, user: str) -> dict[str, list]:
        new = self._defs_in(body)
        self._check({**self.defs, **{d["name"]: d for d in new}})
        for d in new:
            old = self.defs.get(d.get("name"))
            if old is None or old["category"] != d["category"]:
                raise AtlasError("TYPE_NAME_NOT_FOUND", d.get("name"))
            if d["category"] in WITH_ATTRS:  # AtlasStructDefStoreV2.updateVertexPreUpdate
                wanted = {a["name"]: a for a in d["attributeDefs"]}
                have = {a["name"]: a for a in old["attributeDefs"]}
                for name in have:
                    if name not in wanted:
                        raise AtlasError("ATTRIBUTE_DELETION_NOT_SUPPORTED", d["name"], name)
                for name, a in wanted.items():
                    if name not in have and not a["isOptional"]:
                        raise AtlasError("CANNOT_ADD_MANDATORY_ATTRIBUTE", d["name"], name)
                    if name in have and have[name]["typeName"] != a["typeName"]:
                        raise AtlasError("BAD_REQUEST", "Data type update for attribute is not supported")
            if d["category"] == "ENTITY" and not set(old["superTypes"]) <= set(d["superTypes"]):
                raise AtlasError("SUPERTYPE_REMOVAL_NOT_SUPPORTED")
            for key in ("description", "typeVersion", "serviceType"):
                if key not in d and key in old:
                    d[key] = old[key]
            d.update(guid=old["guid"], createdBy=old["createdBy"], createTime=old["createTime"], updatedBy=user,
                     updateTime=now_ms(), version=old.get("version", 1) + 1)
        self._commit_types(new)
        return self._types_def(new)

    def _commit_types(self, defs: list[dict[str, Any]]) -> None:
        self.defs.update({d["name"]: d for d in defs})
        self.user_types |= {d["name"] for d in defs}
        self._cache.clear()
        self._save()

    def search_types(self, params: dict[str, str]) -> dict[str, list]:
        """GET /types/typedefs with SearchFilter params: name, type, supertype, notsupertype, serviceType."""
        found = []
        for d in self.defs.values():
            supers = self._info(d["name"])["supers"] if d["category"] == "ENTITY" else set(d.get("superTypes", []))
            if (("name" in params and d["name"] != params["name"])
                    or ("type" in params and d["category"] != TYPE_ALIASES.get(params["type"].upper(), params["type"].upper()))
                    or ("supertype" in params and params["supertype"] not in supers)
                    or ("notsupertype" in params and (params["notsupertype"] in supers or d["name"] == params["notsupertype"]))
                    or ("serviceType" in params and d.get("serviceType") != params["serviceType"])):
                continue
            found.append(d)
        return self._types_def(found)

    # -- entities ----------------------------------------------------------------------------------------
    def _find_unique(self, type_name: str, values: dict[str, Any]) -> str | None:
        """An ACTIVE entity of the type or a subtype with these unique attribute values (soft delete drops them)."""
        attrs = self._info(type_name)["attrs"]
        uniq = {k: v for k, v in values.items() if k in attrs and attrs[k]["isUnique"] and v is not None}
        if not uniq:
            return None
        types = self._with_subtypes(type_name)
        for guid, e in self.entities.items():
            if e["status"] == "ACTIVE" and e["typeName"] in types and all(jstr(e["attributes"].get(k)) == jstr(v) for k, v in uniq.items()):
                return guid
        return None

    def _rel_targets(self, guid: str, rel_name: str, me: str) -> dict[str, str]:
        """other entity guid -> relationship guid, for ACTIVE relationships of rel_name with this entity at end `me`."""
        mine, other = ("end1", "end2") if me == "endDef1" else ("end2", "end1")
        return {r[other]: rg for rg, r in self.rels.items() if r["typeName"] == rel_name and r[mine] == guid and r["status"] == "ACTIVE"}

    def _norm(self, value: Any, type_name: str, where: str, msgs: list[str], refs: list[dict]) -> Any:
        """The value as the attribute's AtlasType normalizes it; what it refuses goes to msgs as Atlas words it."""
        bad = f"{where}={jstr(value)}: invalid value for type {type_name}"
        if value is None:
            return None
        if type_name.startswith("array<"):
            if not isinstance(value, list):
                return msgs.append(bad)
            return [self._norm(v, type_name[6:-1], f"{where}[{i}]", msgs, refs) for i, v in enumerate(value)]
        if type_name.startswith("map<"):
            if not isinstance(value, dict):
                return msgs.append(bad)
            value_type = type_name[4:-1].partition(",")[2]
            return {str(k): self._norm(v, value_type, f"{where}.{k}", msgs, refs) for k, v in value.items()}
        if type_name == "string":
            return jstr(value)
        if type_name in INT_RANGES or type_name == "biginteger":
            if isinstance(value, float):
                value = int(value)
            if isinstance(value, str) and re.fullmatch(r"[-+]?\d+", value):
                value = int(value)
            limit = INT_RANGES.get(type_name)
            if isinstance(value, bool) or not isinstance(value, int) or (limit and not -limit <= value < limit):
                return msgs.append(bad)
            return value
        if type_name in ("float", "double", "bigdecimal"):
            try:
                if isinstance(value, bool):
                    raise ValueError
                return float(value)
            except (TypeError, ValueError):
                return msgs.append(bad)
        if type_name == "boolean":
            if isinstance(value, str) and value.lower() in ("true", "false"):
                return value.lower() == "true"
            return value if isinstance(value, bool) else msgs.append(bad)
        if type_name == "date":  # epoch ms, a numeric string, or yyyy-MM-dd'T'HH:mm:ss.SSS'Z'
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                return int(value)
            if isinstance(value, str):
                if value == "":
                    return None
                if re.fullmatch(r"-?\d+", value):
                    return int(value)
                try:
                    return int(datetime.strptime(value, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc).timestamp() * 1000)
                except ValueError:
                    pass
            return msgs.append(bad)
        d = self.defs.get(type_name, {})
        if d.get("category") == "ENUM":
            by_value = {str(e["value"]).lower(): e for e in d.get("elementDefs", [])}
            if isinstance(value, int) and not isinstance(value, bool):
                match = next((e for e in by_value.values() if e.get("ordinal") == value), None)
            else:
                match = by_value.get(str(value).lower())
            return match["value"] if match else msgs.append(bad)
        if d.get("category") == "STRUCT":
            if not isinstance(value, dict):
                return msgs.append(bad)
            given = value.get("attributes") if isinstance(value.get("attributes"), dict) else value
            out = {}
            for a in d["attributeDefs"]:
                if given.get(a["name"]) is not None:
                    out[a["name"]] = self._norm(given[a["name"]], a["typeName"], f"{where}.{a['name']}", msgs, refs)
                elif not a["isOptional"]:
                    msgs.append(f"{where}.{a['name']}: mandatory attribute value missing in type {type_name}")
            return {"typeName": type_name, "attributes": out}
        if d.get("category") == "ENTITY":  # an AtlasObjectId
            if not isinstance(value, dict):
                return msgs.append(bad)
            ref = {k: value[k] for k in ("guid", "typeName", "uniqueAttributes", "relationshipType") if value.get(k) is not None}
            if not (ref.get("guid") or (ref.get("typeName") and ref.get("uniqueAttributes"))):
                raise AtlasError("INVALID_OBJECT_ID", object_id_text(ref))
            refs.append(ref)
            return ref
        return msgs.append(bad)

    def upsert(self, body: Any, user: str, single: bool = False) -> dict[str, Any]:
        """POST /entity and /entity/bulk: AtlasEntityStoreV2.createOrUpdate, not a partial update."""
        if not isinstance(body, dict):
            raise _Internal("not an AtlasEntitiesWithExtInfo")
        raws = ([body["entity"]] if body.get("entity") is not None else []) if single else list(body.get("entities") or [])
        if not raws:
            raise AtlasError("INVALID_PARAMETERS", "no entities to create/update.")
        stream = []
        for raw in raws + list((body.get("referredEntities") or {}).values()):
            if not isinstance(raw, dict):
                raise AtlasError("INVALID_PARAMETERS", "found null entity")
            if self._category(raw.get("typeName")) != "ENTITY":
                raise AtlasError("TYPE_NAME_INVALID", "ENTITY", raw.get("typeName"))
            info = self._info(raw["typeName"])
            attrs, rels = dict(raw.get("attributes") or {}), dict(raw.get("relationshipAttributes") or {})
            for name in info["rel_attrs"]:  # compactAttributes: relationship attributes given in `attributes` move
                if name in attrs and (value := attrs.pop(name)) is not None and rels.get(name) is None:
                    rels[name] = value
            e = {"typeName": raw["typeName"], "guid": str(raw.get("guid") or f"-{next(self._local_ids)}"), "attributes": attrs,
                 "rels": {k: v for k, v in rels.items() if k in info["rel_attrs"]}, "msgs": [], "refs": [], "norm": {}}
            for owner, a in info["order"]:  # AtlasEntityType.validateValue: supertypes first, first message wins
                if a["name"] in e["norm"] or a["name"] in e["rels"]:
                    continue
                if a["name"] in attrs and attrs[a["name"]] is not None:
                    e["norm"][a["name"]] = self._norm(attrs[a["name"]], a["typeName"], f"{e['typeName']}.{a['name']}", e["msgs"], e["refs"])
                elif not a["isOptional"]:
                    e["msgs"].append(f"{e['typeName']}.{a['name']}: mandatory attribute value missing in type {owner}")
                elif a["name"] in attrs:
                    e["norm"][a["name"]] = None
            for name, value in e["rels"].items():
                rel, me, other = info["rel_attrs"][name][0]
                many = rel[me]["cardinality"] != "SINGLE"
                if many != isinstance(value, list) and value is not None:
                    wanted = f"array<{rel[other]['type']}>" if many else rel[other]["type"]
                    e["msgs"].append(f"{e['typeName']}.{name}={jstr(value)}: invalid value for type {wanted}")
                    continue
                values = value if isinstance(value, list) else [value] if value is not None else []
                e["rels"][name] = [self._norm(ref, rel[other]["type"], f"{e['typeName']}.{name}", e["msgs"], e["refs"]) for ref in values]
            stream.append(e)
        local = {e["guid"]: e for e in stream}
        # IDBasedEntityResolver, then UniqAttrBasedEntityResolver, then validation: the order Atlas reports in
        for e in stream:
            if not e["guid"].startswith("-") and e["guid"] not in self.entities and not self._find_unique(e["typeName"], e["norm"]):
                raise AtlasError("REFERENCED_ENTITY_NOT_FOUND", e["guid"])
        refs = [r for e in stream for r in e["refs"]]
        for ref in refs:
            if ref.get("guid") and str(ref["guid"]) not in local and str(ref["guid"]) not in self.entities:
                raise AtlasError("REFERENCED_ENTITY_NOT_FOUND", ref["guid"])
        for ref in refs:
            if not ref.get("guid"):
                if self._category(ref["typeName"]) != "ENTITY":
                    raise AtlasError("TYPE_NAME_INVALID", "ENTITY", ref["typeName"])
                if not (found := self._find_unique(ref["typeName"], ref["uniqueAttributes"])):
                    raise AtlasError("REFERENCED_ENTITY_NOT_FOUND", object_id_text(ref))
                ref["guid"] = found
        for e in stream:
            if e["msgs"]:
                raise AtlasError("INSTANCE_CRUD_INVALID_PARAMS", e["msgs"][0])
        return self._apply(stream, local, user)

    def _apply(self, stream: list[dict[str, Any]], local: dict[str, Any], user: str) -> dict[str, Any]:
        stamp, created, updated, assigned, final, touched = now_ms(), [], [], {}, {}, []
        for e in stream:
            target = e["guid"] if e["guid"] in self.entities else self._find_unique(e["typeName"], e["norm"])
            if target is None:  # later entities of this request find it by unique attribute, as Atlas's context does
                target = str(uuid.uuid4())
                self.entities[target] = {"typeName": e["typeName"], "guid": target, "status": "ACTIVE", "attributes": {},
                                         "createdBy": user, "updatedBy": user, "createTime": stamp, "updateTime": stamp,
                                         "version": 0, "classifications": [], "labels": []}
                created.append(target)
                for name, a in self._info(e["typeName"])["attrs"].items():
                    if a["typeName"] in PRIMITIVE_DEFAULTS and e["norm"].get(name) is None and name not in e["rels"]:
                        self.entities[target]["attributes"][name] = PRIMITIVE_DEFAULTS[a["typeName"]]
            stored = self.entities[target]
            for name, value in e["norm"].items():
                if stored["attributes"].get(name) != value:
                    e["changed"] = True
                    stored["attributes"][name] = value
            stored["attributes"] = {k: v for k, v in stored["attributes"].items() if v is not None}
            final[e["guid"]] = target
            if e["guid"] != target:
                assigned[e["guid"]] = target
        for e in stream:
            guid = final[e["guid"]]
            for name, value in e["rels"].items():
                options = self._info(e["typeName"])["rel_attrs"][name]
                values = [v for v in value if v]  # normalized object ids, resolved to guids
                wanted_type = next((v.get("relationshipType") for v in values if v.get("relationshipType")), None)
                rel, me, _ = next((o for o in options if o[0]["name"] == wanted_type), options[0])
                wanted = list(dict.fromkeys(final.get(str(v["guid"]), str(v["guid"])) for v in values))
                current = self._rel_targets(guid, rel["name"], me)
                for other, rel_guid in current.items():
                    if other not in wanted:
                        self.rels[rel_guid].update(status="DELETED", updateTime=stamp)
                        e["changed"] = True
                        touched.append(other)
                for other in wanted:
                    if other not in current:
                        ends = (guid, other) if me == "endDef1" else (other, guid)
                        rel_guid = str(uuid.uuid4())
                        self.rels[rel_guid] = {"guid": rel_guid, "typeName": rel["name"], "status": "ACTIVE", "end1": ends[0],
                                               "end2": ends[1], "createdBy": user, "createTime": stamp, "updateTime": stamp}
                        e["changed"] = True
                        touched.append(other)
        for e in stream:
            guid = final[e["guid"]]
            if guid not in created and e.get("changed") and guid not in updated:
                stored = self.entities[guid]
                stored.update(updatedBy=user, updateTime=stamp)  # `version` stays: Atlas 2.1.0 answers 0 after updates
                updated.append(guid)
        for guid in created:
            self._audit(guid, user, "ENTITY_CREATE", "Created: " + self._audit_json(guid))
        for guid in updated:
            self._audit(guid, user, "ENTITY_UPDATE", "Updated: " + self._audit_json(guid))
        self._save()
        answer: dict[str, Any] = {"guidAssignments": assigned}
        # entities of the request carry their classifications; the other end of a relationship made or removed
        # here is reported updated too, as a plain header (EntityGraphMapper records it; Atlas 2.1.0 answers so)
        posted = set(final.values())
        updated += [g for g in dict.fromkeys(touched) if g not in created and g not in updated and g in self.entities]
        mutated = {k: [self._header(g, mutation=g in posted) for g in v] for k, v in (("CREATE", created), ("UPDATE", updated)) if v}
        if mutated:
            answer["mutatedEntities"] = mutated
        return answer

    def _audit_json(self, guid: str) -> str:
        """The entity as an audit's details hold it: compact JSON, null attributes left out (AtlasType.toJson)."""
        entity = self._entity_out(guid, relationships=False)
        entity["attributes"] = {k: v for k, v in entity["attributes"].items() if v is not None}
        return json.dumps(entity, separators=(",", ":"))

    def _audit(self, guid: str, user: str, action: str, details: str) -> None:
        events = self.audits.setdefault(guid, [])
        stamp = now_ms()
        events.append({"entityId": guid, "timestamp": stamp, "user": user, "action": action, "details": details,
                       "eventKey": f"{guid}:{stamp}:{len(events)}", "entity": None, "type": "ENTITY_AUDIT_V2"})

    def delete(self, guid: str, user: str) -> dict[str, Any]:
        """Soft delete: the entity and its relationships turn DELETED; an unknown guid is no error (deleteById)."""
        e = self.entities.get(guid)
        if e is None or e["status"] == "DELETED":
            return {}
        stamp = now_ms()
        e.update(status="DELETED", updatedBy=user, updateTime=stamp)
        for r in self.rels.values():
            if guid in (r["end1"], r["end2"]) and r["status"] == "ACTIVE":
                r.update(status="DELETED", updateTime=stamp)
        self._audit(guid, user, "ENTITY_DELETE", "Deleted entity")
        self._save()
        return {"mutatedEntities": {"DELETE": [self._header(guid)]}}

    def classify(self, guid: str, body: Any, user: str) -> None:
        if not isinstance(body, list):
            raise _Internal("not a list of AtlasClassification")
        e = self.entities.get(guid)
        if e is None:
            raise AtlasError("INSTANCE_GUID_NOT_FOUND", guid)
        if not body:
            raise AtlasError("INVALID_PARAMETERS", "classifications(s) not specified")
        for c in body:
            if self._category(c.get("typeName")) != "CLASSIFICATION":
                raise AtlasError("CLASSIFICATION_NOT_FOUND", c.get("typeName"))
            if any(have["typeName"] == c["typeName"] for have in e["classifications"]):
                raise AtlasError("INVALID_PARAMETERS", f"entity: {guid}, already associated with classification: {c['typeName']}")
        for c in body:
            added = {"typeName": c["typeName"], "attributes": c.get("attributes") or {}, "entityGuid": guid, "entityStatus": e["status"],
                     "propagate": c.get("propagate", True), "removePropagationsOnEntityDelete": c.get("removePropagationsOnEntityDelete", False),
                     "validityPeriods": c.get("validityPeriods") or []}
            e["classifications"].append(added)
            self._audit(guid, user, "CLASSIFICATION_ADD", "Added classification: " + json.dumps(added))
        e.update(updatedBy=user, updateTime=now_ms())
        self._save()

    # -- answers: entities and headers (EntityGraphRetriever) ---------------------------------------------------
    def _display_text(self, e: dict[str, Any]) -> str | None:
        a = e["attributes"]
        return jstr(a["name"]) if a.get("name") not in (None, "") else (jstr(a["qualifiedName"]) if a.get("qualifiedName") is not None else None)

    def _header(self, guid: str, extra: list[str] | tuple = (), mutation: bool = False) -> dict[str, Any]:
        """AtlasEntityHeader: unique and header attributes that have a value (Atlas leaves nulls out); in a
        mutation response an entity of the request also lists its classifications, even none."""
        e = self.entities[guid]
        info = self._info(e["typeName"])
        attributes = {n: e["attributes"][n] for n, a in info["attrs"].items()
                      if (a["isUnique"] or n in HEADER_ATTRS) and e["attributes"].get(n) is not None}
        for name in extra:  # requested attributes show only with a value
            value = self._rel_value(guid, name, legacy=False) if name in info["rel_attrs"] else e["attributes"].get(name)
            if value is not None:
                attributes[name] = value
        header = {"typeName": e["typeName"], "attributes": attributes, "guid": guid, "status": e["status"],
                  "displayText": self._display_text(e), "classificationNames": [c["typeName"] for c in e["classifications"]],
                  "meaningNames": [], "meanings": [], "isIncomplete": False, "labels": list(e.get("labels", []))}
        if e["classifications"] or mutation:
            header["classifications"] = e["classifications"]
        return {k: v for k, v in header.items() if v is not None}

    def _rel_value(self, guid: str, name: str, legacy: bool) -> Any:
        """A relationship attribute: AtlasRelatedObjectIds (relationshipAttributes) or AtlasObjectIds (legacy `attributes`)."""
        rel, me, other_end = self._info(self.entities[guid]["typeName"])["rel_attrs"][name][0]
        values = []
        for options in self._info(self.entities[guid]["typeName"])["rel_attrs"][name]:
            for other, rel_guid in self._rel_targets(guid, options[0]["name"], options[1]).items():
                o = self.entities[other]
                if legacy:
                    uniq = {n: o["attributes"].get(n) for n, a in self._info(o["typeName"])["attrs"].items() if a["isUnique"]}
                    values.append({"guid": other, "typeName": o["typeName"], "uniqueAttributes": uniq})
                else:
                    values.append({"guid": other, "typeName": o["typeName"], "entityStatus": o["status"], "displayText": self._display_text(o),
                                   "relationshipType": options[0]["name"], "relationshipGuid": rel_guid, "relationshipStatus": "ACTIVE",
                                   "relationshipAttributes": {"typeName": options[0]["name"]}})
        return values if rel[me]["cardinality"] != "SINGLE" else (values[0] if values else None)

    def _entity_out(self, guid: str, relationships: bool = True) -> dict[str, Any]:
        e = self.entities[guid]
        info = self._info(e["typeName"])
        attributes = {n: (self._rel_value(guid, n, legacy=True) if n in info["rel_attrs"] else e["attributes"].get(n)) for n in info["attrs"]}
        out = {"typeName": e["typeName"], "attributes": attributes, "guid": guid, "isIncomplete": False, "status": e["status"],
               "createdBy": e["createdBy"], "updatedBy": e["updatedBy"], "createTime": e["createTime"], "updateTime": e["updateTime"],
               "version": e["version"], "labels": list(e.get("labels", []))}
        if relationships:  # a single-valued one with no relationship is left out; a set is [] (as Atlas answers)
            values = {n: self._rel_value(guid, n, legacy=False) for n in info["rel_attrs"]}
            out["relationshipAttributes"] = {n: v for n, v in values.items() if v is not None}
        if e["classifications"]:
            out["classifications"] = e["classifications"]
        return out

    def entity_with_ext(self, guid: str) -> dict[str, Any]:
        """AtlasEntityWithExtInfo: referredEntities holds what the entity owns (COMPOSITION container ends)."""
        info = self._info(self.entities[guid]["typeName"])
        referred = {}
        for name, options in info["rel_attrs"].items():
            for rel, me, _ in options:
                if rel["relationshipCategory"] == "COMPOSITION" and rel[me]["isContainer"]:
                    referred.update({g: self._entity_out(g) for g in self._rel_targets(guid, rel["name"], me)})
        return {"referredEntities": referred, "entity": self._entity_out(guid)}

    def by_unique(self, type_name: str, params: dict[str, list[str]]) -> dict[str, Any]:
        if self._category(type_name) != "ENTITY":
            raise AtlasError("TYPE_NAME_INVALID", "ENTITY", type_name)
        uniq = {k[5:]: v[-1] for k, v in params.items() if k.startswith("attr:")}
        if not uniq:
            raise AtlasError("ATTRIBUTE_UNIQUE_INVALID", type_name, "")
        attrs = self._info(type_name)["attrs"]
        for name in uniq:
            if name not in attrs or not attrs[name]["isUnique"]:
                raise AtlasError("ATTRIBUTE_UNIQUE_INVALID", type_name, name)
        guid = self._find_unique(type_name, uniq)
        if guid is None:
            raise AtlasError("INSTANCE_BY_UNIQUE_ATTRIBUTE_NOT_FOUND", type_name, jstr(uniq))
        return self.entity_with_ext(guid)

    def audit(self, guid: str, params: dict[str, list[str]]) -> list[dict[str, Any]]:
        if guid not in self.entities:  # Atlas reads the entity's header first
            raise AtlasError("INSTANCE_GUID_NOT_FOUND", guid)
        count = int((params.get("count") or ["100"])[-1])
        action = (params.get("auditAction") or [None])[-1]
        events = [ev for ev in reversed(self.audits.get(guid, [])) if action in (None, ev["action"])]
        return events[:count]

    # -- search (DiscoveryREST, SearchContext, SearchProcessor) ----------------------------------------------
    def search(self, p: dict[str, Any]) -> dict[str, Any]:
        p = {k: v for k, v in p.items() if v is not None}
        limit, offset = int(p.get("limit", 0)), int(p.get("offset", 0))
        if limit < 0 or offset < 0:
            raise AtlasError("BAD_REQUEST", "Limit/offset should be non-negative")
        filters = p.get("entityFilters")
        if not p.get("typeName") and not self._empty(filters):
            raise AtlasError("BAD_REQUEST", "EntityFilters specified without Type name")
        if not any(p.get(k) for k in ("typeName", "classification", "query", "termName")):
            raise AtlasError("INVALID_SEARCH_PARAMS")
        self._check_criteria(filters)
        types: set[str] | None = None
        wanted_attrs = list(p.get("attributes") or [])
        if p.get("typeName"):
            names = set(str(p["typeName"]).split(","))
            known = [n for n in names if self._category(n) == "ENTITY" or n == "_ALL_ENTITY_TYPES"]
            if not known:
                raise AtlasError("UNKNOWN_TYPENAME", p["typeName"])
            if len(known) != len(names):
                raise AtlasError("UNKNOWN_TYPENAME", ",".join(sorted(names - set(known))))
            for n in known:
                for attr in self._filter_attrs(filters) + ([p["sortBy"]] if p.get("sortBy") else []):
                    if n != "_ALL_ENTITY_TYPES" and attr not in self._info(n)["attrs"] and attr not in SYSTEM_ATTRS:
                        raise AtlasError("UNKNOWN_ATTRIBUTE", attr, n)
            # `attributes` Atlas does not know are not returned, and not refused (Atlas 2.1.0 answers 200)
            types = set()
            subtypes = str(p.get("includeSubTypes", True)).lower() != "false"
            for n in known:
                if n == "_ALL_ENTITY_TYPES":
                    types |= {t for t, d in self.defs.items() if d["category"] == "ENTITY"}
                else:
                    types |= self._with_subtypes(n) if subtypes else {n}
        cls = p.get("classification")
        if cls and cls not in ("*", "_CLASSIFIED", "_NOT_CLASSIFIED") and self._category(cls) != "CLASSIFICATION":
            raise AtlasError("UNKNOWN_CLASSIFICATION", cls)
        exclude_deleted = str(p.get("excludeDeletedEntities", False)).lower() == "true"
        query = str(p.get("query") or "").strip("*").lower()
        hits = []
        for guid, e in self.entities.items():
            names = [c["typeName"] for c in e["classifications"]]
            if ((types is not None and e["typeName"] not in types) or (exclude_deleted and e["status"] != "ACTIVE")
                    or (cls == "_NOT_CLASSIFIED" and names) or (cls in ("*", "_CLASSIFIED") and not names)
                    or (cls and cls not in ("*", "_CLASSIFIED", "_NOT_CLASSIFIED") and cls not in names)
                    or (query and not any(query in jstr(v).lower() for v in e["attributes"].values()))
                    or not self._match(e, filters)):
                continue
            hits.append(guid)
        if p.get("sortBy"):
            keyed = [(self._value(self.entities[g], p["sortBy"]), g) for g in hits]
            present = [(key, g) for key, g in keyed if key is not None]
            present.sort(key=lambda pair: pair[0], reverse=p.get("sortOrder") == "DESCENDING")
            hits = [g for _, g in present] + [g for key, g in keyed if key is None]  # unset last, in store order
        limit = min(limit or 100, 10000)  # QueryParams.getNormalizedParams: atlas.search.defaultlimit / maxlimit
        shown = wanted_attrs + [a for a in self._filter_attrs(filters) if a not in wanted_attrs and a not in SYSTEM_ATTRS]
        params = {"includeClassificationAttributes": False, "includeSubTypes": True, "includeSubClassifications": True, **p, "excludeDeletedEntities": exclude_deleted, "limit": limit, "offset": offset}
        answer: dict[str, Any] = {"queryType": "BASIC", "searchParameters": params, "approximateCount": len(hits)}
        if page := hits[offset:offset + limit]:
            answer["entities"] = [self._header(g, shown) for g in page]
        return answer

    @staticmethod
    def _empty(criteria: Any) -> bool:
        return not isinstance(criteria, dict) or (not criteria.get("attributeName") and not criteria.get("criterion"))

    def _check_criteria(self, c: Any) -> None:
        """DiscoveryREST.validateNestedCriteria."""
        if not isinstance(c, dict):
            return
        composite = bool(c.get("criterion"))
        leaf = bool(c.get("attributeName") or c.get("operator") or c.get("attributeValue"))
        if composite:
            if not c.get("condition"):
                raise _Internal("Condition (AND/OR) must be specified when using multiple filters.")
            for sub in c["criterion"]:
                self._check_criteria(sub)
        if leaf:
            if OPERATORS.get(c.get("operator")) is None:
                return  # Atlas 2.1.0 reads an unknown operator as none and the criterion filters nothing
            if not str(c.get("attributeName") or "").strip():
                raise AtlasError("BLANK_NAME_ATTRIBUTE")
            if OPERATORS[c["operator"]] not in ("isNull", "notNull") and not str(c.get("attributeValue") or "").strip():
                raise AtlasError("BLANK_VALUE_ATTRIBUTE")

    def _filter_attrs(self, c: Any) -> list[str]:
        if not isinstance(c, dict):
            return []
        if c.get("condition") and c.get("criterion"):
            return [a for sub in c["criterion"] for a in self._filter_attrs(sub) if a]
        return [c["attributeName"]] if c.get("attributeName") else []

    def _value(self, e: dict[str, Any], name: str) -> Any:
        return e.get(SYSTEM_ATTRS[name]) if name in SYSTEM_ATTRS else e["attributes"].get(name)

    def _match(self, e: dict[str, Any], c: Any) -> bool:
        if not isinstance(c, dict):
            return True
        if c.get("condition") and c.get("criterion"):
            results = [self._match(e, sub) for sub in c["criterion"] if isinstance(sub, dict)]
            return all(results) if str(c["condition"]).upper() == "AND" else any(results)
        if not c.get("attributeName") or OPERATORS.get(c.get("operator")) is None:
            return True
        op, actual, raw = OPERATORS[c["operator"]], self._value(e, c["attributeName"]), str(c.get("attributeValue") or "")
        if op in ("isNull", "notNull"):
            return (actual in (None, "", [], {})) == (op == "isNull")
        if actual is None:
            return op in ("!=", "not_contains")
        attr = self._info(e["typeName"])["attrs"].get(c["attributeName"], {"typeName": "string"})
        kind = attr["typeName"].removeprefix("array<").removesuffix(">")
        parse = {"int": int, "long": int, "short": int, "byte": int, "date": int, "biginteger": int, "float": float,
                 "double": float, "bigdecimal": float, "boolean": lambda v: v.lower() == "true"}.get(kind, str)
        actuals = actual if isinstance(actual, list) else [actual]
        if op == "in":
            options = {parse(v.strip().strip("'\"")) for v in re.split(r"[,\s]+", raw.strip("()")) if v.strip()}
            return any(a in options for a in actuals)
        if op == "timerange":
            start, _, end = raw.partition(",")
            return any(int(start) <= a <= int(end) for a in actuals)
        value = parse(raw)
        checks = {"=": lambda a: a == value, "!=": lambda a: a != value, "<": lambda a: a < value, ">": lambda a: a > value,
                  "<=": lambda a: a <= value, ">=": lambda a: a >= value,
                  "contains": lambda a: str(value) in str(a), "not_contains": lambda a: str(value) not in str(a),
                  "startsWith": lambda a: str(a).startswith(str(value)), "endsWith": lambda a: str(a).endswith(str(value)),
                  "like": lambda a: fnmatch.fnmatchcase(str(a), str(value)) if any(ch in str(value) for ch in "*?") else str(value) in str(a)}
        if op == "!=":
            return all(checks[op](a) for a in actuals)
        return any(checks[op](a) for a in actuals)

    def dsl(self, query: str, limit: int, offset: int) -> dict[str, Any]:
        m = DSL_RE.fullmatch(query or "")
        if not m:
            raise AtlasError("INVALID_DSL_QUERY", query, "the stand-in knows only `<type>` and `<type> where <attribute> <op> <value>`")
        type_name = m["type"]
        if self._category(type_name) not in ("ENTITY", "CLASSIFICATION"):
            raise AtlasError("INVALID_DSL_QUERY", query, f"DSL Semantic Error - {type_name} type not found")
        crit = None
        if m["attr"]:
            first = m["attr"].split(".")[0]  # the DSL splits names on '.': a dotted name is a path, not an attribute
            if "." in m["attr"] or (first not in self._info(type_name)["attrs"] and first not in SYSTEM_ATTRS):
                raise AtlasError("INVALID_DSL_QUERY", query, f"DSL Semantic Error - {first} attribute not found for type {type_name}")
            crit = {"attributeName": m["attr"], "operator": m["op"].lower(), "attributeValue": m["val"].strip("'\"")}
        types = self._with_subtypes(type_name) if self._category(type_name) == "ENTITY" else None
        hits = [g for g, e in self.entities.items() if e["status"] == "ACTIVE" and self._match(e, crit)
                and (e["typeName"] in types if types is not None else type_name in [c["typeName"] for c in e["classifications"]])]
        answer: dict[str, Any] = {"queryType": "DSL", "queryText": query, "approximateCount": -1}  # DSL does not count
        if page := hits[offset:offset + (limit or 100)]:
            answer["entities"] = [self._header(g, mutation=True) for g in page]  # with their classifications, even none
        return answer

    def lineage(self, guid: str, direction: str, depth: int) -> dict[str, Any]:
        """Process inputs/outputs, walked one process per depth level in each asked direction."""
        e = self.entities.get(guid)
        if e is None:
            raise AtlasError("INSTANCE_GUID_NOT_FOUND", guid)
        if direction not in ("INPUT", "OUTPUT", "BOTH"):
            raise AtlasError("INSTANCE_LINEAGE_INVALID_PARAMS", "direction", direction)
        lineage_of = {e["typeName"]} | self._info(e["typeName"])["supers"]
        if not lineage_of & {"DataSet", "Process"}:
            raise AtlasError("INVALID_LINEAGE_ENTITY_TYPE", guid, e["typeName"])
        entities, relations = {guid: self._header(guid)}, {}
        for downstream in [d for d in (False, True) if direction in ("BOTH", ("OUTPUT" if d else "INPUT"))]:
            frontier, seen = {guid}, {guid}
            for _ in range(max(depth, 0) * 2 if "DataSet" in lineage_of else max(depth, 0) * 2 - 1):
                nxt = set()
                for rg, r in self.rels.items():
                    kind = LINEAGE_RELS.get(r["typeName"])
                    if kind is None or r["status"] != "ACTIVE":
                        continue
                    process, dataset = r["end1"], r["end2"]
                    source, target = (dataset, process) if kind == "in" else (process, dataset)
                    node, step = (source, target) if downstream else (target, source)
                    if node in frontier:
                        relations[rg] = {"fromEntityId": source, "toEntityId": target, "relationshipId": rg}
                        if step not in seen:
                            nxt.add(step)
                            seen.add(step)
                            entities[step] = self._header(step)
                frontier = nxt
        return {"baseEntityGuid": guid, "lineageDirection": direction, "lineageDepth": depth, "guidEntityMap": entities,
                "relations": list(relations.values())}


class _Handler(StandInHandler):
    routes = [
        ("GET", API + r"/types/typedef/name/(?P<name>[^/]+)", "get_typedef"),
        ("GET", API + r"/types/(?P<kind>enum|struct|classification|entity|relationship)def/name/(?P<name>[^/]+)", "get_typedef"),
        ("GET", API + r"/types/typedefs/?", "get_typedefs"),
        ("POST", API + r"/types/typedefs/?", "post_typedefs"),
        ("PUT", API + r"/types/typedefs/?", "put_typedefs"),
        ("POST", API + r"/entity/?", "post_entity"),
        ("POST", API + r"/entity/bulk/?", "post_bulk"),
        ("GET", API + r"/entity/guid/(?P<guid>[^/]+)", "get_entity"),
        ("DELETE", API + r"/entity/guid/(?P<guid>[^/]+)", "delete_entity"),
        ("GET", API + r"/entity/uniqueAttribute/type/(?P<type_name>[^/]+)", "get_by_unique"),
        ("POST", API + r"/entity/guid/(?P<guid>[^/]+)/classifications", "post_classifications"),
        ("GET", API + r"/entity/(?P<guid>[^/]+)/audit", "get_audit"),
        ("POST", API + r"/search/basic/?", "search_basic"),
        ("GET", API + r"/search/basic/?", "search_basic"),
        ("GET", API + r"/search/dsl/?", "search_dsl"),
        ("GET", API + r"/lineage/(?P<guid>[^/]+)", "get_lineage"),
        ("GET", r"/api/atlas/admin/version", "get_version"),
        ("GET", r"/api/atlas/admin/status", "get_status"),
    ]

    @property
    def atlas(self) -> AtlasStandIn:
        return self.server.stand_in  # type: ignore[attr-defined]

    def _handle(self) -> None:
        status, delay = self.atlas._take_fault()
        if delay:
            time.sleep(delay)
        if status:  # a proxy's answer, before Atlas sees the request
            self.body()
            self.send_text(status, f"{status} {HTTPStatus(status).phrase}\n")
            return
        self.user, reason = self._authenticated()
        if self.user is None:
            self.body()
            self._unauthorized(reason)
            return
        try:
            with self.atlas.lock:
                self._dispatch()
        except AtlasError as err:
            self.send_json(err.status, {"errorCode": err.code, "errorMessage": err.message})
        except Exception:  # AllExceptionMapper
            self.send_text(500, f"There was an error processing your request. It has been logged (ID {random.getrandbits(64):016x}).")

    do_GET = do_PUT = do_POST = do_DELETE = do_PATCH = do_HEAD = _handle

    def send_json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        self.send_bytes(status, json.dumps(payload).encode(), JSON_TYPE, headers)

    def _authenticated(self) -> tuple[str | None, str]:
        """(the user, "") or (None, Spring Security's reason), as Atlas's file login words it."""
        anonymous = "Full authentication is required to access this resource"
        scheme, _, token = (self.headers.get("Authorization") or "").partition(" ")
        if scheme.lower() != "basic":
            return None, anonymous
        try:
            user, _, password = base64.b64decode(token.strip(), validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None, anonymous
        expected = self.atlas.users.get(user)
        if expected is None:
            return None, f"Username not found.{user}"
        return (user, "") if hmac.compare_digest(expected.encode(), password.encode()) else (None, "Wrong password")

    def _unauthorized(self, reason: str) -> None:
        """Atlas's 401: no Atlas error body and no WWW-Authenticate; a JSON client gets an empty body, any other
        Jetty's HTML error page (measured on Atlas 2.1.0)."""
        if "application/json" in (self.headers.get("Accept") or ""):
            self.send_bytes(401, b"", None)
            return
        reason = html.escape(reason, quote=False)
        page = (f'<html>\n<head>\n<meta http-equiv="Content-Type" content="text/html;charset=utf-8"/>\n<title>Error 401 {reason}</title>\n'
                f"</head>\n<body><h2>HTTP ERROR 401</h2>\n<p>Problem accessing {self.path.split('?')[0]}. Reason:\n<pre>    {reason}</pre></p>"
                '<hr><a href="http://eclipse.org/jetty">Powered by Jetty://</a><hr/>\n\n</body>\n</html>\n')
        self.send_bytes(401, page.encode("iso-8859-1", "replace"), "text/html;charset=iso-8859-1")

    def get_typedef(self, name: str, kind: str | None = None) -> None:
        d = self.atlas.defs.get(unquote(name))
        if d is None or (kind and d["category"] != kind.upper()):
            raise AtlasError("TYPE_NAME_NOT_FOUND", unquote(name))
        self.send_json(200, self.atlas._out_def(d))

    def get_typedefs(self) -> None:
        self.send_json(200, self.atlas.search_types({k: v[-1] for k, v in self.query.items()}))

    def post_typedefs(self) -> None:
        self.send_json(200, self.atlas.create_types(self.json_body(), self.user))

    def put_typedefs(self) -> None:
        self.send_json(200, self.atlas.update_types(self.json_body(), self.user))

    def post_entity(self) -> None:
        self.send_json(200, self.atlas.upsert(self.json_body(), self.user, single=True))

    def post_bulk(self) -> None:
        self.send_json(200, self.atlas.upsert(self.json_body(), self.user))

    def get_entity(self, guid: str) -> None:
        if unquote(guid) not in self.atlas.entities:
            raise AtlasError("INSTANCE_GUID_NOT_FOUND", unquote(guid))
        self.send_json(200, self.atlas.entity_with_ext(unquote(guid)))

    def delete_entity(self, guid: str) -> None:
        self.send_json(200, self.atlas.delete(unquote(guid), self.user))

    def get_by_unique(self, type_name: str) -> None:
        self.send_json(200, self.atlas.by_unique(unquote(type_name), self.query))

    def post_classifications(self, guid: str) -> None:
        self.atlas.classify(unquote(guid), self.json_body(), self.user)
        self.send_bytes(204, b"", None)

    def get_audit(self, guid: str) -> None:
        self.send_json(200, self.atlas.audit(unquote(guid), self.query))

    def search_basic(self) -> None:
        if self.command == "POST":
            body = self.json_body()
            if not isinstance(body, dict):
                raise _Internal("not SearchParameters")
        else:
            body = {k: v[-1] for k, v in self.query.items() if k in ("query", "typeName", "classification", "sortBy", "sortOrder",
                                                                   "excludeDeletedEntities", "limit", "offset", "marker")}
        self.send_json(200, self.atlas.search(body))

    def search_dsl(self) -> None:
        self.send_json(200, self.atlas.dsl(self.param("query", ""), int(self.param("limit") or 0), int(self.param("offset") or 0)))

    def get_lineage(self, guid: str) -> None:
        self.send_json(200, self.atlas.lineage(unquote(guid), (self.param("direction") or "BOTH").upper(), int(self.param("depth") or 3)))

    def get_version(self) -> None:
        self.send_json(200, {"Description": "Metadata Management and Data Governance Platform over Hadoop", "Revision": "stand-in",
                             "Version": "2.4.0", "Name": "apache-atlas"})

    def get_status(self) -> None:
        self.send_json(200, {"Status": "ACTIVE"})
