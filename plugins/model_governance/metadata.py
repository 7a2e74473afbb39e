"""The model's metadata and the deployment document that carries it from task to task.

`modelMetadata.txt` is a Java properties file (the seed read it with `java.util.Properties.load`), so it
is parsed by Java's rules: `=`, `:` or white space between key and value, `#`/`!` comment lines, line
continuations with a trailing backslash, and `\\t \\n \\uXXXX`-style escapes.

The `DeploymentDocument` is the only thing tasks hand to each other (as XCom JSON): plain metadata, no
secrets, no file contents. Every Atlas attribute is read from it.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from model_governance.exceptions import MetadataError
from model_governance.validation import Validation

METADATA_FILE = "modelMetadata.txt"
MAX_METADATA_BYTES = 64 * 1024  # a metadata file is a dozen lines; anything this big is a mistake

REQUIRED_KEYS = (
    "model.owner",
    "model.owner.lob",
    "model.name",
    "model.type",
    "model.version",
    "model.description",
)
ENDPOINT_KEY = "model.microservice.endpoint"
EXECUTABLE_KEY = "model.executable"
TRAINING_DATA_DIR = "trainingdata"  # the staged folder's training data: the deployment's lineage inputs

# Versions and endpoints become path segments (registry folders, serving URLs): keep them plain.
_VERSION_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,63}")
_ENDPOINT_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._~-]{0,127}")
_WHITESPACE = " \t\f"
_ESCAPES = {"t": "\t", "n": "\n", "r": "\r", "f": "\f"}


# -- Java properties ----------------------------------------------------------------------------------
def parse_properties(text: str, source: str = METADATA_FILE) -> dict[str, str]:
    """Parse Java properties text as `java.util.Properties.load` does, except that a key set twice is an
    error (Java silently keeps the last value: a copy-paste mistake would deploy the wrong version)."""
    props: dict[str, str] = {}
    lines: dict[str, int] = {}
    for lineno, logical in _logical_lines(text):
        key, value = _split_key_value(logical)
        key = _unescape(key, source, lineno)
        if key in props:
            raise MetadataError(
                f"{source}, line {lineno}: key {key} is set again (first on line {lines[key]}); keep one"
            )
        props[key] = _unescape(value, source, lineno)
        lines[key] = lineno
    return props


def _logical_lines(text: str) -> Iterator[tuple[int, str]]:
    """Yield (first line number, logical line): comments and blank lines dropped, continuations joined."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    i = 0
    while i < len(lines):
        start = i
        line = lines[i].lstrip(_WHITESPACE)
        i += 1
        if not line or line[0] in "#!":
            continue  # a comment is never continued, even if it ends in a backslash
        while _ends_with_continuation(line) and i < len(lines):
            line = line[:-1] + lines[i].lstrip(_WHITESPACE)
            i += 1
        if _ends_with_continuation(line):
            line = line[:-1]  # a continuation at end of file continues into nothing
        yield start + 1, line


def _ends_with_continuation(line: str) -> bool:
    trailing = len(line) - len(line.rstrip("\\"))
    return trailing % 2 == 1


def _split_key_value(line: str) -> tuple[str, str]:
    i = 0
    while i < len(line):
        ch = line[i]
        if ch == "\\":
            i += 2
            continue
        if ch in "=:" or ch in _WHITESPACE:
            break
        i += 1
    key, rest = line[:i], line[i:]
    rest = rest.lstrip(_WHITESPACE)
    if rest[:1] in ("=", ":"):
        rest = rest[1:].lstrip(_WHITESPACE)
    return key, rest


def _unescape(text: str, source: str, lineno: int) -> str:
    out = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch != "\\" or i + 1 >= len(text):
            out.append(ch)
            i += 1
            continue
        nxt = text[i + 1]
        if nxt == "u":
            digits = text[i + 2 : i + 6]
            if len(digits) != 4 or not all(c in "0123456789abcdefABCDEF" for c in digits):
                raise MetadataError(f"{source}, line {lineno}: malformed \\uXXXX escape {text[i : i + 6]!r}")
            out.append(chr(int(digits, 16)))
            i += 6
            continue
        out.append(_ESCAPES.get(nxt, nxt))
        i += 2
    # \uD83D\uDE00 pairs come out as surrogates: join them into the character they encode
    try:
        return "".join(out).encode("utf-16", "surrogatepass").decode("utf-16")
    except UnicodeDecodeError:
        raise MetadataError(
            f"{source}, line {lineno}: a \\uD800-\\uDFFF escape without its pair is not a character"
        ) from None


def read_properties_file(path: Path) -> dict[str, str]:
    """Read a properties file as UTF-8, with errors that name the file and what is wrong with it."""
    try:
        size = path.stat().st_size
        if size > MAX_METADATA_BYTES:
            raise MetadataError(
                f"{path}: {size} bytes is too large for a metadata file (limit {MAX_METADATA_BYTES})"
            )
        raw = path.read_bytes()
    except FileNotFoundError:
        raise MetadataError(f"{path}: the staged model has no {path.name}") from None
    except IsADirectoryError:
        raise MetadataError(f"{path}: is a folder, not a properties file") from None
    except OSError as exc:
        raise MetadataError(f"{path}: cannot be read: {exc.strerror}") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        lineno = raw[: exc.start].count(b"\n") + 1
        raise MetadataError(
            f"{path}, line {lineno}: not UTF-8 (byte 0x{raw[exc.start]:02x}); save the file as UTF-8 "
            "or write the character as a \\uXXXX escape"
        ) from None
    return parse_properties(text, source=str(path))


# -- the model's own metadata ---------------------------------------------------------------------------
def slugify(name: str) -> str:
    """A readable, path-safe ASCII form of a name: `Prix été` -> `prix-ete`. Lossy: see `model_slug`."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "-", ascii_name.lower()).strip("-")


# Names of this form map to their slug one to one (spaces <-> hyphens); any other name gets a hash.
_PLAIN_NAME_RE = re.compile(r"[a-z0-9]+( [a-z0-9]+)*")


def model_slug(name: str) -> str:
    """The model's registry folder and lock name: one per model name, whatever its letters.

    `rental pricing prediction` -> `rental-pricing-prediction`; any other name (capitals, accents, other
    scripts, punctuation) -> its readable ASCII slug + `--` + 12 hex of the sha256 of its NFC form, e.g.
    `Prix été` -> `prix-ete--<hash>`, `模型` -> `model--<hash>`. Plain slugs never hold `--`, so the two forms
    never meet; the registry also records the exact name and checks it before writing."""
    exact = unicodedata.normalize("NFC", name)
    if len(exact) <= 64 and _PLAIN_NAME_RE.fullmatch(exact):
        return exact.replace(" ", "-")
    readable = slugify(exact)[:64].strip("-") or "model"
    return f"{readable}--{hashlib.sha256(exact.encode()).hexdigest()[:12]}"


def same_name(a: str, b: str) -> bool:
    return unicodedata.normalize("NFC", a) == unicodedata.normalize("NFC", b)


# What a one-line value may not hold: a line break would forge lines in logs and the CLI's tables.
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f\u2028\u2029]")


@dataclass(frozen=True)
class ModelMetadata:
    """What the model owner declared in `modelMetadata.txt`."""

    owner: str
    owner_lob: str
    name: str
    type: str
    version: str
    description: str
    endpoint: str | None = None
    executable: str | None = None

    @classmethod
    def from_properties(
        cls, props: dict[str, str], source: str = METADATA_FILE, require_endpoint: bool = True
    ) -> ModelMetadata:
        values = {key: props.get(key, "").strip() for key in (*REQUIRED_KEYS, ENDPOINT_KEY, EXECUTABLE_KEY)}
        required = REQUIRED_KEYS + ((ENDPOINT_KEY,) if require_endpoint else ())
        missing = [key for key in required if key not in props]
        if missing:
            raise MetadataError(f"{source}: missing required key(s) {', '.join(missing)}")
        empty = [key for key in required if not values[key]]
        if empty:
            raise MetadataError(f"{source}: empty value for key(s) {', '.join(empty)}")
        if not _VERSION_RE.fullmatch(values["model.version"]) or ".." in values["model.version"]:
            raise MetadataError(
                f"{source}: model.version {values['model.version']!r} must be letters, digits and . _ + - "
                "(it names a registry folder)"
            )
        if not any(c.isalnum() for c in values["model.name"]):
            raise MetadataError(f"{source}: model.name {values['model.name']!r} has no letters or digits")
        for key, value in values.items():
            text = value.replace("\n", "").replace("\t", "") if key == "model.description" else value
            if _CONTROL_RE.search(text):
                raise MetadataError(f"{source}: {key} {value!r} holds a line break or control character")
        if len(values["model.name"]) > 200:
            raise MetadataError(
                f"{source}: model.name {values['model.name'][:40]!r}… is longer than 200 characters"
            )
        endpoint = values[ENDPOINT_KEY] or None
        if endpoint is not None and not _ENDPOINT_RE.fullmatch(endpoint):
            raise MetadataError(
                f"{source}: {ENDPOINT_KEY} {endpoint!r} must be one URL path segment "
                "of letters, digits and . _ ~ -"
            )
        return cls(
            owner=values["model.owner"],
            owner_lob=values["model.owner.lob"],
            name=values["model.name"],
            type=values["model.type"],
            version=values["model.version"],
            description=values["model.description"],
            endpoint=endpoint,
            executable=values[EXECUTABLE_KEY] or None,
        )

    @classmethod
    def load(cls, path: Path, require_endpoint: bool = True) -> ModelMetadata:
        return cls.from_properties(
            read_properties_file(path), source=str(path), require_endpoint=require_endpoint
        )

    @property
    def slug(self) -> str:
        return model_slug(self.name)

    @property
    def deploy_name(self) -> str:
        """The seed's deployment name: `<name> v<version>`."""
        return f"{self.name} v{self.version}"

    def qualified_name(self, host_port: str) -> str:
        """The deployment's identity in Atlas: `<name>-v<version>@<host:port>`, spaces as `-`."""
        return f"{self.deploy_name}@{host_port}".replace(" ", "-")


# -- the document tasks hand to each other ---------------------------------------------------------------
@dataclass(frozen=True)
class ManifestEntry:
    path: str  # relative, with `/` separators
    size: int
    sha256: str


@dataclass(frozen=True)
class SourceInfo:
    location: str  # where the staged model came from, credentials removed
    kind: str  # local | git | archive
    revision: str  # commit SHA, archive sha256, or the manifest's sha256 for a folder


@dataclass(frozen=True)
class RegistryInfo:
    root: str  # as given: hdfs:///model-registry or a local folder
    path: str  # the version's folder inside the registry's file system
    url: str  # what stakeholders follow: hdfs://namenode:8020/... or file:///...
    uploaded_bytes: int = 0  # 0 when the version was already there with the same content
    # this run put the version in the registry, where it was not before: it has served nowhere yet, so
    # Atlas has no deployment of it (the approval and register steps need not ask)
    first_archived: bool = False


@dataclass(frozen=True)
class DeployFacts:
    host_type: str  # microservice | spark
    host_port: str  # host:port of the serving host
    endpoint_url: str  # the seed's deploy.host.detail: http://<host:port>/<endpoint>
    serialized_object: str  # the model file's name, the seed's deploy.obj.source
    deployed_at: str  # ISO-8601 UTC
    target: str  # what a later deployment replaces: the legacy server's host:port, or host:port/models/<name>
    scoring_url: str  # where predictions are asked for
    input_schema: list[dict[str, Any]] = field(default_factory=list)
    output_schema: list[dict[str, Any]] = field(default_factory=list)
    unchanged: bool = False  # already serving exactly this bundle: verified, left alone
    inputs: list[str] = field(default_factory=list)  # spark: the datasets the scoring job reads
    outputs: list[str] = field(default_factory=list)  # spark: the datasets it writes
    conn_id: str = ""  # the serving connection: how a consumer of the deployment reaches its endpoint
    # the deployments Atlas showed serving at the target when the deploy step looked (guid and attributes,
    # as a search returns them): what the register step supersedes without asking again; None: not looked
    serving: list[dict[str, Any]] | None = None


@dataclass(frozen=True)
class ApprovalInfo:
    """Who let the deployment go ahead: the approver of the run's approval step, or why none was asked."""

    by: str  # the approver's Airflow user name; "" when approval was not required
    at: str  # ISO-8601 UTC
    comment: str = ""  # the approver's comment, or why no approval was required
    required: bool = True


@dataclass(frozen=True)
class DeploymentDocument:
    """The aggregated metadata of one deployment run, built up step by step."""

    model: ModelMetadata
    source: SourceInfo
    manifest: tuple[ManifestEntry, ...]
    executable: str  # the serialized model's path in the staged folder, e.g. executable/model.zip
    dag_id: str
    run_id: str
    registry: RegistryInfo | None = None
    deploy: DeployFacts | None = None
    run_key: str = ""  # the run id, plus the map index in a mapped task group: its pending upload and lock
    requested_by: str = ""  # the Airflow user who triggered the run, or "scheduler"
    approval: ApprovalInfo | None = None
    validation: Validation | None = None  # the owner's recorded validation, when modelMetadata.txt has one
    rollback_of: str = ""  # a rollback: the qualifiedName of the deployment it replaces
    reason: str = ""  # a rollback's reason

    def __post_init__(self) -> None:
        if not self.run_key:  # a document of a run that is not mapped: its key is its run id
            object.__setattr__(self, "run_key", self.run_id)

    @property
    def deploy_name(self) -> str:
        return self.model.deploy_name

    @property
    def qualified_name(self) -> str:
        if self.deploy is None:
            raise ValueError("the deployment has no host yet: deploy before asking for its qualified name")
        return self.model.qualified_name(self.deploy.host_port)

    @property
    def executable_entry(self) -> ManifestEntry:
        return next(entry for entry in self.manifest if entry.path == self.executable)

    @property
    def training_data(self) -> tuple[ManifestEntry, ...]:
        """The training data files (under `trainingdata/`): what lineage names as the deployment's inputs."""
        return tuple(e for e in self.manifest if e.path.startswith(f"{TRAINING_DATA_DIR}/"))

    def with_registry(self, registry: RegistryInfo) -> DeploymentDocument:
        return replace(self, registry=registry)

    def with_deploy(self, deploy: DeployFacts) -> DeploymentDocument:
        return replace(self, deploy=deploy)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["manifest"] = [asdict(entry) for entry in self.manifest]
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DeploymentDocument:
        if not isinstance(data, dict) or "model" not in data:
            raise ValueError(f"not a deployment document: {str(data)[:200]!r}")
        return cls(
            model=ModelMetadata(**data["model"]),
            source=SourceInfo(**data["source"]),
            manifest=tuple(ManifestEntry(**entry) for entry in data["manifest"]),
            executable=data["executable"],
            dag_id=data["dag_id"],
            run_id=data["run_id"],
            registry=RegistryInfo(**data["registry"]) if data.get("registry") else None,
            deploy=DeployFacts(**data["deploy"]) if data.get("deploy") else None,
            run_key=data.get("run_key", ""),
            requested_by=data.get("requested_by", ""),
            approval=ApprovalInfo(**data["approval"]) if data.get("approval") else None,
            validation=Validation(**data["validation"]) if data.get("validation") else None,
            rollback_of=data.get("rollback_of", ""),
            reason=data.get("reason", ""),
        )
