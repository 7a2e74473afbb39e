"""MLeap serving stand-in: the legacy mleap-serving API (`PUT /model`, one model) or mleap-spring-boot's
(`POST /models`, named models loaded asynchronously), over real HTTP on loopback.

Bundles are read the way the real loader reads them (bundle.json, then every node a pipeline names, each
`<name>.node/` with model.json and node.json), from the server's own file system as `mounts` map it, like
docker volumes. JSON bundles whose ops are implemented here (string_indexer, one_hot_encoder,
vector_assembler, standard_scaler, linear_regression) really score; other ops load but cannot score.
Not served: binary/avro LeapFrames, protobuf bundles, gRPC. `http(s):` bundle URIs fail as MLeap's
HttpRepository makes them fail (combust/mleap#513); a model idle for its memoryTimeout is unloaded.
Answers follow the sources: legacy mleap-serving v0.12.0 (akka-http) and mleap-spring-boot 0.25; the
spring-boot answers are held to the real MLeap runtime by tests/devstack/test_mleap_parity.py.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import posixpath
import re
import threading
import time
import zipfile
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from model_governance_devstack.base import StandInHandler, StandInServer

APIS = ("legacy", "spring-boot")
JSON_FORMAT = "ml.combust.mleap.json"
AKKA_500 = "There was an internal server error."  # akka-http's default text for an unhandled failure
AKKA_TIMEOUT = (  # akka-http's default answer when a request outlives akka.http.server.request-timeout
    "The server was not able to produce a timely response to your request.\r\nPlease try again in a short while!"
)
LEGACY_REQUEST_TIMEOUT = 20.0  # akka.http.server.request-timeout's default, which mleap-serving keeps
BUNDLE_KEYS = ("uid", "name", "format", "version")
ACTOR_NAME = re.compile(r"[-\w:@&=+,.!~*'_;][-\w:@&=+,.!~*'_;$]*")  # akka actor names: a model's name
LOAD_KEYS = {"modelName", "model_name", "uri", "config", "force"}
TRANSFORM_KEYS = {"modelName", "model_name", "streamName", "stream_name", "flowConfig", "flow_config", "format",
                  "initTimeout", "init_timeout", "tag", "frame", "options"}
DOUBLE, STRING = "double", "string"
DEFAULT_MEMORY_TIMEOUT_MS = 15 * 60 * 1000  # mleap-executor reference.conf: default-memory-timeout
DOUBLE_NN = {"type": "basic", "base": "double", "isNullable": False}


def tensor_type(size: int) -> dict[str, Any]:
    return {"type": "tensor", "base": "double", "dimensions": [size]}


class LoadError(Exception):
    """The bundle cannot be loaded: the exception the real loader throws, its class and its message."""

    def __init__(self, kind: str, message: str):
        super().__init__(f"{kind}: {message}")
        self.kind, self.message = kind, message


class ScoringError(Exception):
    """A transform failure, worded like the JVM's `ExceptionUtils.getMessage`: "Class: message"."""

    def __init__(self, kind: str, message: str):
        super().__init__(f"{kind}: {message}")


# -- bundles ----------------------------------------------------------------------------------------------
def _attr(model: dict[str, Any], name: str, default: Any = None) -> Any:
    """An attribute's value: {"double": [..], "shape": .., "type": "tensor"} gives the list."""
    value = model.get("attributes", {}).get(name)
    if value is None:
        return default
    return next(v for k, v in value.items() if k not in ("type", "shape"))


class Stage:
    """One op of the flattened pipeline: field names by port, their types, and the attributes to score."""

    def __init__(self, model: dict[str, Any], node: dict[str, Any]):
        self.op, self.name, self.model = model["op"], node["name"], model
        ins = {s["port"]: s["name"] for s in node["shape"]["inputs"]}
        outs = {s["port"]: s["name"] for s in node["shape"]["outputs"]}
        op = self.op
        if op == "string_indexer":
            ports = [("input", STRING)], [("output", DOUBLE_NN)]
        elif op == "one_hot_encoder" and _attr(model, "size") is not None:  # Spark 2.2's encoder (size = width)
            ports = [("input", DOUBLE_NN)], [("output", tensor_type(int(_attr(model, "size"))))]
        elif op == "vector_assembler":
            shapes = _attr(model, "input_shapes")
            widths = [1 if s["base"] == "scalar" else s["tensorShape"]["dimensions"][0]["size"] for s in shapes]
            kinds = [tensor_type(w) if s["base"] != "scalar" else DOUBLE if s.get("isNullable", True) else DOUBLE_NN
                     for s, w in zip(shapes, widths)]
            ports = [(f"input{i}", kind) for i, kind in enumerate(kinds)], [("output", tensor_type(sum(widths)))]
        elif op == "standard_scaler":
            size = len(_attr(model, "std") or _attr(model, "mean"))
            ports = [("input", tensor_type(size))], [("output", tensor_type(size))]
        elif op == "linear_regression":
            ports = [("features", tensor_type(len(_attr(model, "coefficients"))))], [("prediction", DOUBLE_NN)]
        else:  # not implemented here: names from node.json, types unknown (shown as double)
            ports = [(p, DOUBLE) for p in ins], [(p, DOUBLE) for p in outs]
        self.inputs = [(ins[port], kind) for port, kind in ports[0]]  # KeyError: a port the op needs is unset
        self.outputs = [(outs[port], kind) for port, kind in ports[1]]
        self.input_fields, self.output_fields = self.inputs, self.outputs

    def stages(self) -> list["Stage"]:
        return [self]

    def run(self, values: list[Any]) -> list[Any]:
        """Score one row: the input values in port order, the output values back."""
        m, op = self.model, self.op
        if op == "string_indexer":
            labels, label = _attr(m, "labels"), values[0]
            if label is not None and str(label) in labels:
                return [float(labels.index(str(label)))]
            if _attr(m, "handle_invalid") == "keep":
                return [float(len(labels))]
            raise ScoringError("NoSuchElementException", f"Unseen label: {label}. To handle unseen labels, "
                               "set handleInvalid to keep")
        if op == "one_hot_encoder":  # out of range gives the empty vector, as in MLeap 0.8
            label, size = float(values[0]), int(_attr(m, "size"))
            if label != int(label):
                raise ScoringError("IllegalArgumentException", f"invalid label: {label}, must be integer")
            return [_sparse(size, [(int(label), 1.0)] if 0 <= label < size else [])]
        if op == "vector_assembler":
            dense = [x for v in values for x in _dense(v, self.name)]
            nnz = [(i, x) for i, x in enumerate(dense) if x != 0.0]
            sparse = 1.5 * (len(nnz) + 1.0) < len(dense)  # Spark's Vector.compressed
            return [_sparse(len(dense), nnz) if sparse else _tensor(dense)]
        if op == "standard_scaler":
            std, mean, x = _attr(m, "std"), _attr(m, "mean"), _dense(values[0], self.name)
            shifted = [v - mu for v, mu in zip(x, mean)] if mean else x
            return [_tensor([v * (1.0 / s if s else 0.0) for v, s in zip(shifted, std)] if std else shifted)]
        if op == "linear_regression":
            coefficients, x = _attr(m, "coefficients"), _dense(values[0], self.name)
            if len(x) != len(coefficients):
                raise ScoringError("IllegalArgumentException", f"{self.name}: {len(x)} features, {len(coefficients)} coefficients")
            return [sum(a * b for a, b in zip(x, coefficients)) + float(_attr(m, "intercept", 0.0))]
        raise ScoringError("UnsupportedOperationException", f"{self.name}: the MLeap stand-in cannot score op {op!r}")


def _tensor(values: list[float]) -> dict[str, Any]:
    return {"values": values, "dimensions": [len(values)]}


def _sparse(size: int, entries: list[tuple[int, float]]) -> dict[str, Any]:
    return {"indices": [[i] for i, _ in entries], "values": [v for _, v in entries], "dimensions": [size]}


def _dense(value: Any, node: str) -> list[float]:
    """A scalar or a dense/sparse tensor (LeapFrame JSON) as a list of doubles."""
    try:
        if isinstance(value, dict) and "indices" in value:
            out = [0.0] * value["dimensions"][0]
            for (i, *_), v in zip(value["indices"], value["values"]):
                out[i] = float(v)
            return out
        if isinstance(value, dict):
            return [float(v) for v in value["values"]]
        return [float(value)]
    except (KeyError, IndexError, TypeError, ValueError):
        raise ScoringError("IllegalArgumentException", f"{node}: invalid value {json.dumps(value)[:80]}") from None


class ScalaMap:
    """An immutable Scala 2.12 Map's iteration order, which MLeap's schemas show: insertion order up to four
    entries (Map1..Map4), then a HashMap's hash-trie order, kept even when removals shrink it again."""

    def __init__(self) -> None:
        self.items: dict[str, Any] = {}
        self.hashed = False

    def put(self, key: str, value: Any) -> None:
        self.items[key] = value
        self.hashed = self.hashed or len(self.items) > 4

    def without(self, keys: Any) -> "ScalaMap":
        out = ScalaMap()
        out.items, out.hashed = {k: v for k, v in self.items.items() if k not in keys}, self.hashed
        return out

    def ordered(self) -> list[tuple[str, Any]]:
        return sorted(self.items.items(), key=lambda item: _trie_path(item[0])) if self.hashed else list(self.items.items())


def _trie_path(key: str) -> list[int]:
    """Where scala.collection.immutable.HashMap (2.12) puts a String key: improve(hashCode), 5 bits a level."""
    h = 0
    for unit in range(0, len(encoded := key.encode("utf-16-be")), 2):  # String.hashCode over UTF-16 units
        h = (31 * h + int.from_bytes(encoded[unit:unit + 2], "big")) & 0xFFFFFFFF
    h = (h + (~(h << 9) & 0xFFFFFFFF)) & 0xFFFFFFFF
    h ^= h >> 14
    h = (h + (h << 4)) & 0xFFFFFFFF
    h ^= h >> 10
    return [(h >> shift) & 31 for shift in range(0, 32, 5)]


class Pipeline:
    """A pipeline node; its schemas as mleap-runtime's Pipeline.scala folds them from its children's."""

    def __init__(self, children: list["Stage | Pipeline"]):
        self.children = children
        inputs, outputs = ScalaMap(), ScalaMap()
        for child in children:
            for name, kind in child.input_fields:
                inputs.put(name, kind)
            for name, kind in child.output_fields:
                outputs.put(name, kind)
        self.input_fields = inputs.without(outputs.items).ordered()  # the fields no stage produces
        self.output_fields = outputs.ordered()

    def stages(self) -> list[Stage]:
        return [s for child in self.children for s in (child.stages() if isinstance(child, Pipeline) else [child])]


class Bundle:
    """A loaded bundle: its bundle.json, its ops in pipeline order, and the schemas MLeap derives."""

    def __init__(self, info: dict[str, Any], root: "Stage | Pipeline"):
        self.info = info
        self.stages = root.stages() if isinstance(root, Pipeline) else [root]
        self.input_schema = [{"name": n, "type": t} for n, t in root.input_fields]
        self.output_schema = [{"name": n, "type": t} for n, t in root.output_fields]

    def transform(self, frame: dict[str, Any]) -> dict[str, Any]:
        fields = list(frame["schema"]["fields"])
        columns = {f["name"]: [row[i] for row in frame["rows"]] for i, f in enumerate(fields)}
        for stage in self.stages:
            absent = [name for name, _ in stage.inputs if name not in columns]
            if len(stage.inputs) == 1 and absent:  # mleap-core StructType.indexOf (one input column)
                raise ScoringError("IllegalArgumentException", f"invalid field: {absent[0]}")
            if absent:  # StructType.indicesOf (several, as a vector assembler's)
                raise ScoringError("IllegalArgumentException", f"invalid fields: {','.join(absent)}")
            try:
                results = [stage.run([columns[n][r] for n, _ in stage.inputs]) for r in range(len(frame["rows"]))]
            except (ValueError, TypeError) as exc:  # a value of the wrong type for the op
                raise ScoringError("IllegalArgumentException", f"{stage.name}: {exc}") from None
            for k, (name, kind) in enumerate(stage.outputs):
                if name in columns:
                    raise ScoringError("IllegalArgumentException", f"struct already has field: {name}")
                columns[name] = [values[k] for values in results]
                fields.append({"name": name, "type": kind})
        rows = [[columns[f["name"]][r] for f in fields] for r in range(len(frame["rows"]))]
        return {"schema": {"fields": fields}, "rows": rows}


class FrameError(ValueError):
    """Not a LeapFrame; `kind` is the exception MLeap's JSON frame reader throws."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


def read_frame(raw: bytes) -> dict[str, Any]:
    """A LeapFrame from JSON; FrameError when it is not one (every row as wide as the schema)."""
    try:
        frame = json.loads(raw)
    except ValueError as exc:
        raise FrameError("JsonParser.ParsingException", str(exc)) from None
    if not isinstance(frame, dict):
        raise FrameError("DeserializationException", "Object expected")
    for key in ("schema", "rows"):  # mleap-runtime JsonSupport reads the frame's fields by key
        if key not in frame:
            raise FrameError("NoSuchElementException", f"key not found: {key}")
    try:
        width = len([(f["name"], f["type"]) for f in frame["schema"]["fields"]])
        if not isinstance(frame["rows"], list) or any(not isinstance(r, list) or len(r) != width for r in frame["rows"]):
            raise FrameError("IllegalArgumentException", "rows must be lists as wide as the schema")
    except (KeyError, TypeError):
        raise FrameError("DeserializationException", "not a LeapFrame: {\"schema\": {\"fields\": [...]}, \"rows\": [...]}") from None
    return frame


def load_bundle(file: Path, shown: str) -> Bundle:
    """Read a bundle as MLeap's BundleFile would, failing where it would; `shown` is the path in messages.

    bundle-ml BundleFile.scala: a path ending in ".zip" is opened as a zip file system, any other as a
    folder (a file under another name fails on its bundle.json: "Not a directory")."""
    if not shown.endswith(".zip"):
        if file.is_file():
            raise LoadError("FileSystemException", f"{shown}/bundle.json: Not a directory")
        root = file

        def raw(name: str) -> bytes:
            try:
                return (root / name).read_bytes()
            except OSError:
                raise LoadError("NoSuchFileException", f"{shown}/{name}") from None

        return _read_bundle(raw, shown)
    try:
        archive = zipfile.ZipFile(file)
    except (zipfile.BadZipFile, OSError):
        raise LoadError("ZipException", "zip END header not found") from None  # java.util.zip's text
    with archive:
        entries = {name.lstrip("/").removeprefix("./"): name for name in archive.namelist()}

        def read_entry(name: str) -> bytes:
            if name not in entries:
                raise LoadError("NoSuchFileException", f"/{name}")
            try:
                return archive.read(entries[name])
            except (zipfile.BadZipFile, OSError) as exc:
                raise LoadError("ZipException", str(exc)) from None

        return _read_bundle(read_entry, shown)


def _read_bundle(raw: Any, shown: str) -> Bundle:
    """A bundle from its files (`raw(name)` gives one's bytes): bundle.json, then the pipeline's nodes."""
    def read(name: str) -> dict[str, Any]:
        try:
            value = json.loads(raw(name))
        except ValueError as exc:
            raise LoadError("JsonParser.ParsingException", f"{name} in {shown}: {exc}") from None
        if not isinstance(value, dict):
            raise LoadError("DeserializationException", f"{name} in {shown}: JSON object expected")
        return value

    info = read("bundle.json")
    missing = [key for key in BUNDLE_KEYS if not info.get(key)]
    if missing:
        raise LoadError("DeserializationException", f"bundle.json in {shown} lacks {', '.join(missing)}")
    if info["format"] != "json":
        raise LoadError("UnsupportedOperationException", f"{shown}: format {info['format']!r}: the stand-in reads JSON bundles only")

    def load_node(folder: str) -> Stage | Pipeline:
        model, node = read(f"{folder}/model.json"), read(f"{folder}/node.json")
        if model.get("op") == "pipeline":
            return Pipeline([load_node(f"{folder}/{child}.node") for child in _attr(model, "nodes") or _attr(model, "children") or []])
        try:
            return Stage(model, node)
        except (KeyError, IndexError, TypeError, ValueError, StopIteration) as exc:
            raise LoadError("IllegalArgumentException", f"{folder} in {shown}: invalid {model.get('op')!r} node ({exc!r})") from None

    return Bundle(info, load_node("root"))


def proto_schema(fields: list[dict[str, Any]]) -> dict[str, Any]:
    """Fields as spring-boot prints them: proto3 JSON of ml.bundle.Schema."""
    out = []
    for field in fields:
        kind = field["type"] if isinstance(field["type"], dict) else {"type": "basic", "base": field["type"]}
        tensor = kind["type"] == "tensor"
        shape: dict[str, Any] = {"base": "TENSOR" if tensor else "SCALAR", "isNullable": kind.get("isNullable", True)}
        if tensor:
            shape["tensorShape"] = {"dimensions": [{"size": d, "name": ""} for d in kind.get("dimensions", [])]}
        base = {"integer": "INT"}.get(kind["base"], kind["base"].upper())
        out.append({"name": field["name"], "dataType": {"base": base, "shape": shape}})
    return {"fields": out}


# -- HTTP -------------------------------------------------------------------------------------------------
class _Handler(StandInHandler):
    @property
    def stand_in(self) -> "MLeapStandIn":
        return self.server.stand_in  # type: ignore[attr-defined]

    def _dispatch(self) -> None:
        status, delay = self.stand_in._take_fault(self.command)
        if delay:
            time.sleep(delay)
        if self.stand_in.api == "spring-boot" and not (self.headers.get("timeout") or "0").isdigit():
            status = status or 400  # every spring-boot endpoint takes an integer `timeout` header
        if status:
            self.body()
            self.send_bytes(status, b"", None)
            return
        super()._dispatch()

    do_GET = do_PUT = do_POST = do_DELETE = do_PATCH = do_HEAD = _dispatch

    def is_json(self) -> bool:
        return (self.headers.get("Content-Type") or "").split(";")[0].strip().lower() == "application/json"


class LegacyHandler(_Handler):
    """mleap-serving ≤ 0.12: akka-http's routes and default rejection texts."""

    routes = [("PUT", "/model", "put_model"), ("DELETE", "/model", "delete_model"), ("GET", "/model", "get_model"),
              ("POST", "/transform", "transform")]

    def not_found(self) -> None:
        self.send_text(404, "The requested resource could not be found.")

    def method_not_allowed(self, allowed: list[str]) -> None:
        path = urlsplit(self.path).path  # akka lists the methods in route order, not sorted
        ordered = [m for m, pattern, _ in self.compiled_routes() if pattern.fullmatch(path)]
        self.send_text(405, "HTTP method not allowed, supported methods: " + ", ".join(ordered))

    def entity(self, expected: str) -> tuple[bool, Any]:
        """The JSON body, or (False, None) once a 415/400 rejection is sent."""
        if not self.is_json():
            self.send_text(415, f"The request's Content-Type is not supported. Expected:\n{expected}")
            return False, None
        try:
            return True, (read_frame(self.body()) if self.command == "POST" else self.json_body())
        except ValueError as exc:
            self.send_text(400, f"The request content was malformed:\n{exc}")
            return False, None

    def put_model(self) -> None:
        ok, request = self.entity("application/json")
        if not ok:
            return
        path = request.get("path") if isinstance(request, dict) else None
        if not isinstance(request, dict) or not isinstance(path, (str, type(None))):
            return self.send_text(400, "The request content was malformed:\nexpected {\"path\": string}")
        # The service loads inside the request's Future, under akka-http's request timeout: past it the
        # client gets a 503 while the load goes on, and a load that succeeds swaps the model in later.
        load = self.stand_in.start_legacy_load(path)
        if not load.done.wait(self.stand_in.request_timeout):
            return self.send_text(503, AKKA_TIMEOUT)
        if load.error is not None:  # the future fails, the old model stays loaded
            self.log_message("load of %s failed: %s", path, load.error)
            return self.send_text(500, AKKA_500)
        self.send_json(200, {})

    def delete_model(self) -> None:
        with self.stand_in.lock:
            self.stand_in.model = None
        self.send_json(200, {})

    def get_model(self) -> None:
        bundle = self.stand_in.model
        if bundle is None:
            return self.send_text(500, AKKA_500)
        self.send_json(200, {"fields": bundle.input_schema + bundle.output_schema})  # Transformer.schema

    def transform(self) -> None:
        ok, frame = self.entity("application/binary or application/avro or application/json")
        if not ok:
            return
        bundle = self.stand_in.model
        try:
            if bundle is None:
                raise ScoringError("IllegalStateException", "no transformer loaded")
            self.stand_in._take_transform_fault()
            answer = bundle.transform(frame)
        except ScoringError as exc:
            self.log_message("transform failed: %s", exc)
            return self.send_text(500, AKKA_500)
        self.send_json(200, answer)


NAME = r"/models/(?P<name>[^/]+)"


class SpringBootHandler(_Handler):
    """mleap-spring-boot: named models, asynchronous loads, Spring's empty error answers."""

    routes = [("POST", "/models", "load_model"), ("POST", "/models/transform", "transform_frame"),
              ("GET", NAME, "get_model"), ("DELETE", NAME, "unload_model"), ("GET", NAME + "/meta", "get_meta"),
              ("POST", NAME + "/transform", "transform_named"), ("GET", "/actuator/health", "health")]

    def ask_timeout(self) -> float:
        return int(self.headers.get("timeout") or "60000") / 1000

    def request_json(self, keys: set[str]) -> dict[str, Any] | None:
        """The body as a proto3 JSON message; None once the 415/400 (empty) is sent."""
        if not self.is_json():
            self.send_bytes(415, b"", None)
            return None
        try:
            body = self.json_body()
            if isinstance(body, dict) and not set(body) - keys:
                return body
        except ValueError:
            pass
        self.send_bytes(400, b"", None)
        return None

    def load_model(self) -> None:
        body = self.request_json(LOAD_KEYS)
        if body is None:
            return
        name, uri = body.get("modelName", body.get("model_name", "")), body.get("uri", "")
        config = body.get("config") or {}
        if not (isinstance(name, str) and ACTOR_NAME.fullmatch(name) and isinstance(uri, str) and isinstance(config, dict)):
            return self.send_bytes(400, b"", None)  # akka's InvalidActorNameException
        entry = {"name": name, "uri": uri, "config": {k: config[k] for k in ("memoryTimeout", "diskTimeout") if k in config},
                 "ready": threading.Event(), "bundle": None, "error": None, "touched": time.monotonic()}
        self.stand_in.named(name, touch=False)  # an idle model's name is free again
        with self.stand_in.lock:
            if name in self.stand_in.models:  # the actor name is taken, loading or loaded
                return self.send_bytes(400, b"", None)
            self.stand_in.models[name] = entry
            self.stand_in.loads_requested += 1
            self.stand_in.loads_by_name[name] += 1
        threading.Thread(target=self.stand_in._load_named, args=(entry,), daemon=True).start()
        self.send_json(202, _model_json(entry))

    def get_model(self, name: str) -> None:
        entry = self.stand_in.named(unquote(name))
        return self.send_json(200, _model_json(entry)) if entry else self.not_found()

    def unload_model(self, name: str) -> None:
        if not self.is_json():
            return self.send_bytes(415, b"", None)
        self.stand_in.named(unquote(name), touch=False)
        with self.stand_in.lock:
            entry = self.stand_in.models.pop(unquote(name), None)
        return self.send_json(200, _model_json(entry)) if entry else self.not_found()

    def get_meta(self, name: str) -> None:
        entry, timeout = self.stand_in.named(unquote(name)), self.ask_timeout()
        if entry is None:
            return self.not_found()
        if not entry["ready"].wait(timeout):
            return self.send_bytes(500, b"", None)  # the ask timed out: empty, like every mapped error
        if entry["error"]:  # not mapped by GlobalExceptionHandler: Spring Boot's default error JSON
            when = datetime.now(timezone.utc).isoformat(timespec="milliseconds")
            path = urlsplit(self.path).path
            # the real server only logs the load error; this header (also sent by the runtime host) shows it
            cause = {"X-MLeap-Load-Error": f"ExecutorException: {entry['error'].message}"}
            return self.send_json(500, {"timestamp": when, "status": 500, "error": "Internal Server Error", "path": path}, cause)
        bundle = entry["bundle"]
        info = {"uid": bundle.info["uid"], "name": bundle.info["name"], "format": "JSON",
                "version": bundle.info["version"], "timestamp": bundle.info.get("timestamp", "")}
        schemas = {"inputSchema": proto_schema(bundle.input_schema), "outputSchema": proto_schema(bundle.output_schema)}
        self.send_json(200, {"bundle": info, **schemas})

    def _score(self, name: str, frame: dict[str, Any]) -> dict[str, Any]:
        """Score with a named model as the executor does: wait for its load; failures raise ScoringError."""
        entry, timeout = self.stand_in.named(name), self.ask_timeout()
        if entry is None:
            raise ScoringError("NotFoundException", f"no model with name {name}")
        if not entry["ready"].wait(timeout):
            raise ScoringError("TimeoutException", f"Ask timed out on model {name}")
        if entry["error"]:
            raise ScoringError("ExecutorException", entry["error"].message)  # LocalTransformService.wrapExceptions
        self.stand_in._take_transform_fault()
        return entry["bundle"].transform(frame)

    def transform_named(self, name: str) -> None:
        if not self.is_json():
            return self.send_bytes(415, b"", None)
        try:
            frame = read_frame(self.body())
        except FrameError as exc:
            return self.send_json(200, _error(ScoringError(exc.kind, str(exc))))
        try:
            self.send_json(200, self._score(unquote(name), frame))
        except ScoringError as exc:
            self.send_json(200, _error(exc))

    def transform_frame(self) -> None:
        body = self.request_json(TRANSFORM_KEYS)
        if body is None:
            return
        try:
            tag, raw = int(body.get("tag", 0)), base64.b64decode(body.get("frame", ""), validate=True)
        except (ValueError, TypeError, binascii.Error):
            return self.send_bytes(400, b"", None)  # proto3 JSON: a tag or bytes field that does not parse
        answer = {"tag": tag, "format": "", "frame": "", "status": "STATUS_OK", "error": "", "backtrace": ""}
        try:
            if body.get("format") != JSON_FORMAT:
                raise ScoringError("IllegalArgumentException", f"the stand-in reads {JSON_FORMAT} only, not {body.get('format')!r}")
            try:
                frame = read_frame(raw)
            except FrameError as exc:
                raise ScoringError(exc.kind, str(exc)) from None
            scored = self._score(body.get("modelName", body.get("model_name", "")), frame)
            answer["frame"] = base64.b64encode(json.dumps(scored).encode()).decode()
        except ScoringError as exc:
            answer.update(_error(exc))
        self.send_json(200, answer)

    def health(self) -> None:
        self.send_json(200, {"status": "UP"})


def _model_json(entry: dict[str, Any]) -> dict[str, Any]:
    return {"name": entry["name"], "uri": entry["uri"], "config": entry["config"]}


def _error(exc: Exception) -> dict[str, Any]:
    return {"status": "STATUS_ERROR", "error": str(exc), "backtrace": f"{exc}\n\tat (MLeap stand-in)"}


# -- the stand-in -------------------------------------------------------------------------------------------
class LegacyLoad:
    """One legacy `PUT /model` load, running in its own thread like the service's Future."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.error: Exception | None = None


class MLeapStandIn:
    """MLeap serving on loopback. `mounts` maps a folder as the server sees it ("/models") to a host
    folder, like a docker volume; `load_delay` is how long a bundle takes to load (seconds);
    `request_timeout` is the legacy server's akka-http request timeout (seconds)."""

    def __init__(self, state_dir: Path, host: str = "127.0.0.1", port: int = 0, api: str = "legacy",
                 mounts: dict[str, Path] | None = None, verbose: bool = False, load_delay: float = 0.05,
                 request_timeout: float = LEGACY_REQUEST_TIMEOUT):
        if api not in APIS:
            raise ValueError(f"api must be one of {', '.join(APIS)}, not {api!r}")
        self.state_dir = Path(state_dir)  # nothing persists: like the real server, a restart forgets models
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.api, self.load_delay, self.request_timeout = api, load_delay, request_timeout
        self.loads_requested = 0  # loads received (legacy PUT /model, spring-boot POST /models accepted): a load must never be sent twice
        self.loads_by_name: Counter[str] = Counter()  # spring-boot: accepted loads per model name
        self.mounts = {posixpath.normpath("/" + key.strip("/")): Path(folder) for key, folder in (mounts or {}).items()}
        self.lock = threading.Lock()
        self.model: Bundle | None = None  # legacy: the one model
        self.models: dict[str, dict[str, Any]] = {}  # spring-boot: name -> entry
        self._fail_count, self._fail_status, self._hang, self._fail_transforms = 0, 503, 0.0, 0
        self._fail_method: str | None = None
        self._fail_transforms_after_load = 0
        self.server = StandInServer(LegacyHandler if api == "legacy" else SpringBootHandler, host, port, verbose)
        self.server.stand_in = self  # type: ignore[attr-defined]

    host = property(lambda self: self.server.host)
    port = property(lambda self: self.server.port)
    url = property(lambda self: self.server.url)

    def start(self) -> "MLeapStandIn":
        self.server.start()
        return self

    def stop(self) -> None:
        self.server.stop()

    def __enter__(self) -> "MLeapStandIn":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- fault switches for tests ---------------------------------------------------------------------------
    def fail_next(self, n: int, status: int = 503, method: str | None = None) -> None:
        """The next n requests (of `method` only, when given) answer `status` with an empty body."""
        with self.lock:
            self._fail_count, self._fail_status, self._fail_method = n, status, method

    def hang(self, seconds: float) -> None:
        """The next request sleeps this long before it is answered."""
        with self.lock:
            self._hang = seconds

    def fail_transform_next(self, n: int, after_load: bool = False) -> None:
        """The next n transforms fail as a scoring error would (legacy 500, spring-boot STATUS_ERROR);
        with `after_load`, the next n after the next successful load."""
        with self.lock:
            self._fail_transforms, self._fail_transforms_after_load = (0, n) if after_load else (n, 0)

    def _loaded(self) -> None:
        """A load succeeded: arm the transform faults waiting for one (call with the lock held)."""
        if self._fail_transforms_after_load:
            self._fail_transforms, self._fail_transforms_after_load = self._fail_transforms_after_load, 0

    def _take_fault(self, method: str) -> tuple[int | None, float]:
        with self.lock:
            delay, self._hang = self._hang, 0.0
            if self._fail_count and self._fail_method in (None, method):
                self._fail_count -= 1
                return self._fail_status, delay
        return None, delay

    def _take_transform_fault(self) -> None:
        with self.lock:
            if self._fail_transforms:
                self._fail_transforms -= 1
                raise ScoringError("RuntimeException", "transform failure injected by the MLeap stand-in")

    # -- loading ---------------------------------------------------------------------------------------------
    def resolve(self, server_path: str) -> Path | None:
        """Where a path on the serving host is on this host; None outside every mount."""
        path = posixpath.normpath(server_path) if server_path.startswith("/") else ""
        for mount in sorted(self.mounts, key=len, reverse=True):
            if path == mount or path.startswith(mount.rstrip("/") + "/"):
                return self.mounts[mount].joinpath(*path[len(mount):].split("/"))
        return None

    def load(self, server_path: str | None, uri: str = "") -> Bundle:
        """Load a bundle by its path on the server, or (None) by its URI, taking load_delay. As
        mleap-executor's MultiRepository: `file:` (FileRepository), then `http(s):` (HttpRepository)."""
        time.sleep(self.load_delay)
        if server_path is None and uri.startswith(("http://", "https://")):
            return self._load_url(uri)
        if server_path is None:
            raise LoadError("BundleException", "could not find a repository to download the bundle file")
        if not server_path:
            raise LoadError("BundleException", "file path cannot be empty")
        file = self.resolve(server_path)
        if file is None or not file.exists():
            raise LoadError("BundleException", f"file does not exist {posixpath.normpath(server_path)}")
        return load_bundle(file, server_path)

    def _load_url(self, uri: str) -> Bundle:
        """MLeap's HttpRepository, bug included (combust/mleap#513): `Files.createTempFile` makes the file,
        then `Files.copy(url.openStream(), tmpFile)` refuses to overwrite it. The GET is sent, the download
        thrown away, the empty temporary file left behind: every http(s) load fails."""
        import tempfile
        import urllib.error
        import urllib.request

        tmp = self.state_dir / "tmp"
        tmp.mkdir(exist_ok=True)
        handle, name = tempfile.mkstemp(prefix="mleap", suffix=".bundle.zip", dir=tmp)
        os.close(handle)
        try:
            urllib.request.urlopen(uri, timeout=30).close()  # url.openStream(): java.net's exceptions
        except urllib.error.HTTPError as exc:
            if exc.code in (404, 410):
                raise LoadError("FileNotFoundException", uri) from None
            raise LoadError("IOException", f"Server returned HTTP response code: {exc.code} for URL: {uri}") from None
        except (urllib.error.URLError, OSError):
            raise LoadError("ConnectException", "Connection refused") from None
        raise LoadError("FileAlreadyExistsException", name)

    def start_legacy_load(self, path: str | None) -> LegacyLoad:
        """Load in the background; swap the model in when (and only if) the load succeeds."""
        load = LegacyLoad()
        with self.lock:
            self.loads_requested += 1

        def run() -> None:
            try:
                if path is None:  # the real service calls request.path.get
                    raise LoadError("NoSuchElementException", "None.get")
                bundle = self.load(path)
                with self.lock:
                    self.model = bundle
                    self._loaded()
            except LoadError as exc:
                load.error = exc
            finally:
                load.done.set()

        threading.Thread(target=run, daemon=True).start()
        return load

    def _load_named(self, entry: dict[str, Any]) -> None:
        """spring-boot's background load: a failure drops the model, so later requests answer 404."""
        try:
            parts = urlsplit(entry["uri"])
            entry["bundle"] = self.load(unquote(parts.path) if parts.scheme == "file" else None, entry["uri"])
            with self.lock:
                self._loaded()
        except LoadError as exc:
            entry["error"] = exc
            with self.lock:
                if self.models.get(entry["name"]) is entry:
                    del self.models[entry["name"]]
        finally:
            entry["touched"] = time.monotonic()  # the Loaded message restarts the actor's idle clock
            entry["ready"].set()

    def named(self, name: str, touch: bool = True) -> dict[str, Any] | None:
        """The named model, its idle clock restarted (`touch`); None if unknown or unloaded by its
        memoryTimeout (BundleActor: any message restarts `setReceiveTimeout`; when it fires the actor stops)."""
        with self.lock:
            entry = self.models.get(name)
            if entry is None:
                return None
            now = time.monotonic()
            limit = entry["config"].get("memoryTimeout", DEFAULT_MEMORY_TIMEOUT_MS) / 1000
            if now - entry["touched"] > limit:
                del self.models[name]
                return None
            if touch:
                entry["touched"] = now
            return entry
