"""The model's event log: appended in order, chained by hashes, and any edit or deletion found."""

from __future__ import annotations

import io
import json

import pytest

from model_governance import eventlog
from model_governance.registry import Registry


@pytest.fixture
def registry(tmp_path):
    return Registry.from_root(str(tmp_path / "registry"))


def write_back(registry, lines):
    path = eventlog.log_path(registry, "rental")
    data = b"".join(line + b"\n" for line in lines)
    registry.store.write_file(path, io.BytesIO(data), len(data))


def test_events_are_appended_in_order_each_naming_the_hash_of_the_one_before(registry):
    first = eventlog.append(registry, "rental", "archived", "1.1", sha256="ab" * 32, run_id="run-1")
    second = eventlog.append(registry, "rental", "deployed", "1.1", target="mleap:127.0.0.1:65327", run_id="run-1")
    lines = eventlog.read_lines(registry, "rental")
    assert [json.loads(line)["event"] for line in lines] == ["archived", "deployed"]
    assert first["prev"] == eventlog.GENESIS and first["seq"] == 1
    assert second["prev"] == eventlog.line_hash(lines[0]) and second["seq"] == 2
    assert eventlog.verify(lines) == eventlog.Verdict(True, 2)


def test_an_edited_line_breaks_the_chain_at_the_next_line(registry):
    for event in ("archived", "approved", "deployed"):
        eventlog.append(registry, "rental", event, "1.1", by="alice")
    lines = eventlog.read_lines(registry, "rental")
    lines[1] = lines[1].replace(b'"alice"', b'"mallory"')
    write_back(registry, lines)
    verdict = eventlog.verify(eventlog.read_lines(registry, "rental"))
    assert not verdict.intact and verdict.broken_at == 3 and "edited or deleted" in verdict.reason
    assert verdict.describe("rental") == f"rental: broken at line 3: {verdict.reason}"


def test_a_deleted_line_breaks_the_chain(registry):
    for event in ("archived", "approved", "deployed", "retired"):
        eventlog.append(registry, "rental", event, "1.1")
    lines = eventlog.read_lines(registry, "rental")
    del lines[1]
    verdict = eventlog.verify(lines)
    assert not verdict.intact and verdict.broken_at == 2


def test_garbage_and_unknown_events_are_reported(registry):
    eventlog.append(registry, "rental", "archived", "1.1")
    lines = eventlog.read_lines(registry, "rental")
    assert eventlog.verify([*lines, b"not json"]).broken_at == 2
    forged = json.dumps({"seq": 2, "event": "promoted", "prev": eventlog.line_hash(lines[0])}).encode()
    assert eventlog.verify([*lines, forged]).reason == "unknown event 'promoted'"
    with pytest.raises(ValueError, match="unknown event"):
        eventlog.append(registry, "rental", "promoted", "1.1")


def test_an_empty_log_is_intact(registry):
    assert eventlog.read_lines(registry, "nothing-yet") == []
    assert eventlog.verify([]).intact
