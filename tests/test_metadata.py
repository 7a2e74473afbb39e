"""modelMetadata.txt is read by Java's Properties rules, and every bad input names the file and key."""

from __future__ import annotations

import pytest

from model_governance.exceptions import MetadataError
from model_governance.metadata import (
    DeployFacts,
    DeploymentDocument,
    ManifestEntry,
    ModelMetadata,
    RegistryInfo,
    SourceInfo,
    parse_properties,
    read_properties_file,
    slugify,
)

SEED = """model.owner = Greg Keys
model.owner.lob = pricing
model.name = rental pricing prediction
model.type = gradient boosting regression
model.version = 1.1
model.description = model predicts monthly price of rental if property is purchased
model.microservice.endpoint=target
"""


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a=b", {"a": "b"}),
        ("a = b", {"a": "b"}),
        ("a:b", {"a": "b"}),
        ("a : b", {"a": "b"}),
        ("a b", {"a": "b"}),
        ("a\tb", {"a": "b"}),
        ("a    =    b c  ", {"a": "b c  "}),  # trailing white space belongs to the value, as in Java
        ("   a=b", {"a": "b"}),
        ("a=", {"a": ""}),
        ("a", {"a": ""}),
        ("a==b", {"a": "=b"}),  # only the first separator is one
        ("a=b=c:d", {"a": "b=c:d"}),
        ("# comment\n! also\n\n   \na=b", {"a": "b"}),
        ("a=b # not a comment", {"a": "b # not a comment"}),
        ("a=b\\\n   c", {"a": "bc"}),  # continuation drops the next line's leading white space
        ("a=one \\\n  two \\\n  three", {"a": "one two three"}),
        ("a=b\\\\\nc=d", {"a": "b\\", "c": "d"}),  # an even run of backslashes does not continue
        ("# comment \\\na=b", {"a": "b"}),  # a comment is never continued
        ("a=b\\", {"a": "b"}),  # a continuation at end of file continues into nothing
        ("a=b\r\nc=d\re=f", {"a": "b", "c": "d", "e": "f"}),
        ("a=tab\\there", {"a": "tab\there"}),
        ("a=new\\nline", {"a": "new\nline"}),
        ("a=\\u00e9t\\u00E9", {"a": "été"}),
        ("a=\\uD83D\\uDE00", {"a": "\U0001F600"}),
        ("a=\\x\\y", {"a": "xy"}),  # an unknown escape is the character itself
        ("key\\ with\\ spaces = v", {"key with spaces": "v"}),
        ("k\\=ey=v", {"k=ey": "v"}),
        ("k\\:ey:v", {"k:ey": "v"}),
        ("a=José", {"a": "José"}),
    ],
)
def test_java_properties_syntax(text, expected):
    assert parse_properties(text) == expected


def test_a_key_set_twice_is_an_error_not_the_last_value():  # Java keeps the last one silently
    with pytest.raises(MetadataError, match="line 2: key a is set again \\(first on line 1\\)"):
        parse_properties("a=1\na=2")


def test_malformed_unicode_escape_names_the_line():
    with pytest.raises(MetadataError, match=r"line 2: malformed \\uXXXX escape"):
        parse_properties("a=b\nc=\\u12g4")


def test_seed_metadata_loads(tmp_path):
    path = tmp_path / "modelMetadata.txt"
    path.write_text(SEED)
    meta = ModelMetadata.load(path)
    assert meta == ModelMetadata(
        owner="Greg Keys",
        owner_lob="pricing",
        name="rental pricing prediction",
        type="gradient boosting regression",
        version="1.1",
        description="model predicts monthly price of rental if property is purchased",
        endpoint="target",
    )
    assert meta.slug == "rental-pricing-prediction"
    assert meta.deploy_name == "rental pricing prediction v1.1"
    assert meta.qualified_name("mleap.example.com:65327") == "rental-pricing-prediction-v1.1@mleap.example.com:65327"


@pytest.mark.parametrize(
    "key",
    ["model.owner", "model.owner.lob", "model.name", "model.type", "model.version", "model.description", "model.microservice.endpoint"],
)
def test_each_missing_key_is_named(tmp_path, key):
    path = tmp_path / "modelMetadata.txt"
    path.write_text("\n".join(line for line in SEED.splitlines() if not line.startswith(f"{key} ") and not line.startswith(f"{key}=")))
    with pytest.raises(MetadataError, match=rf"{path}: missing required key\(s\) {key}$"):
        ModelMetadata.load(path)


def test_empty_value_is_named(tmp_path):
    path = tmp_path / "modelMetadata.txt"
    path.write_text(SEED.replace("model.owner.lob = pricing", "model.owner.lob =   "))
    with pytest.raises(MetadataError, match=r"empty value for key\(s\) model.owner.lob"):
        ModelMetadata.load(path)


def test_endpoint_is_optional_when_not_deploying_a_microservice(tmp_path):
    path = tmp_path / "modelMetadata.txt"
    path.write_text(SEED.replace("model.microservice.endpoint=target", ""))
    assert ModelMetadata.load(path, require_endpoint=False).endpoint is None


@pytest.mark.parametrize("version", ["../1", "1/2", "1 1", ".1", "x" * 80])
def test_unsafe_versions_are_refused(tmp_path, version):
    path = tmp_path / "modelMetadata.txt"
    path.write_text(SEED.replace("model.version = 1.1", f"model.version = {version}"))
    with pytest.raises(MetadataError, match="model.version"):
        ModelMetadata.load(path)


@pytest.mark.parametrize("endpoint", ["a/b", "../x", "a b", "?x"])
def test_unsafe_endpoints_are_refused(tmp_path, endpoint):
    path = tmp_path / "modelMetadata.txt"
    path.write_text(SEED.replace("model.microservice.endpoint=target", f"model.microservice.endpoint={endpoint}"))
    with pytest.raises(MetadataError, match="model.microservice.endpoint"):
        ModelMetadata.load(path)


def test_name_without_letters_is_refused(tmp_path):
    path = tmp_path / "modelMetadata.txt"
    path.write_text(SEED.replace("model.name = rental pricing prediction", "model.name = ---"))
    with pytest.raises(MetadataError, match="model.name"):
        ModelMetadata.load(path)


def test_missing_file(tmp_path):
    with pytest.raises(MetadataError, match="has no modelMetadata.txt"):
        read_properties_file(tmp_path / "modelMetadata.txt")


def test_folder_instead_of_file(tmp_path):
    (tmp_path / "modelMetadata.txt").mkdir()
    with pytest.raises(MetadataError, match="is a folder"):
        read_properties_file(tmp_path / "modelMetadata.txt")


def test_unreadable_file(tmp_path):
    import os

    path = tmp_path / "modelMetadata.txt"
    path.write_text(SEED)
    path.chmod(0)
    if os.access(path, os.R_OK):  # root reads anything: make it unreadable another way
        path.chmod(0o644)
        path.unlink()
        path.symlink_to(path)  # a link to itself cannot be opened
    with pytest.raises(MetadataError, match="cannot be read"):
        read_properties_file(path)


def test_not_utf8_names_line_and_byte(tmp_path):
    path = tmp_path / "modelMetadata.txt"
    path.write_bytes(SEED.encode() + "model.extra = Jos\xe9\n".encode("latin-1"))
    with pytest.raises(MetadataError, match=r"line 8: not UTF-8 \(byte 0xe9\)"):
        read_properties_file(path)


def test_utf8_bom_is_ignored(tmp_path):
    path = tmp_path / "modelMetadata.txt"
    path.write_bytes(b"\xef\xbb\xbf" + SEED.encode())
    assert read_properties_file(path)["model.owner"] == "Greg Keys"


def test_huge_file_is_refused_before_reading(tmp_path):
    path = tmp_path / "modelMetadata.txt"
    path.write_bytes(SEED.encode() + b"# " + b"x" * 100_000)
    with pytest.raises(MetadataError, match="too large"):
        read_properties_file(path)


def test_empty_file_lists_every_missing_key(tmp_path):
    path = tmp_path / "modelMetadata.txt"
    path.write_text("")
    with pytest.raises(MetadataError, match="model.owner, model.owner.lob, model.name, model.type, model.version, model.description"):
        ModelMetadata.load(path)


def test_slugify():
    assert slugify("Rental  Pricing/Prediction!") == "rental-pricing-prediction"
    assert slugify("Prix été") == "prix-ete"


def test_document_round_trips_through_json():
    import json

    meta = ModelMetadata("o", "lob", "n", "t", "1", "d", "target")
    doc = DeploymentDocument(
        model=meta,
        source=SourceInfo("/staging/n", "local", "sha256:abc"),
        manifest=(ManifestEntry("executable/m.zip", 3, "f" * 64),),
        executable="executable/m.zip",
        dag_id="model_deployment",
        run_id="manual__1",
    )
    doc = doc.with_registry(RegistryInfo("hdfs:///r", "/r/n/1", "hdfs://nn:8020/r/n/1", 3))
    doc = doc.with_deploy(DeployFacts("microservice", "h:1", "http://h:1/target", "m.zip", "2026-11-25T00:00:00+00:00", "h:1", "http://h:1/transform", [{"name": "x", "type": "double"}]))
    again = DeploymentDocument.from_json(json.loads(json.dumps(doc.to_json())))
    assert again == doc
    assert again.qualified_name == "n-v1@h:1"
    assert again.executable_entry.sha256 == "f" * 64
