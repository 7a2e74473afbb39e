"""A model's event log in the registry: what happened to it, in order, each line chained to the one before.

One JSON object per line in `<registry root>/.events/<model slug>.jsonl`: `seq` (1, 2, ...), `event`
(archived, approved, rejected, deployed, rolled_back, retired), `at` (ISO-8601 UTC), the version and the
event's own facts, and `prev`: the sha256 of the previous line's bytes (64 zeros for the first). Editing or
deleting a line breaks the chain at the line after it, which `verify` reports. The log is written under
the model's deployment lock, so appends never interleave.
"""

from __future__ import annotations

import hashlib
import io
import json
import posixpath
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from model_governance.registry import Registry

EVENTS_DIR = ".events"
EVENTS = ("archived", "approved", "rejected", "deployed", "rolled_back", "retired")
GENESIS = "0" * 64


def log_path(registry: Registry, slug: str) -> str:
    return posixpath.join(registry.root, EVENTS_DIR, f"{slug}.jsonl")


def line_hash(line: bytes) -> str:
    return hashlib.sha256(line).hexdigest()


def read_lines(registry: Registry, slug: str) -> list[bytes]:
    path = log_path(registry, slug)
    if not registry.store.exists(path):
        return []
    return registry.read_bytes(path).splitlines()


def append(registry: Registry, slug: str, event: str, version: str, **facts: Any) -> dict[str, Any]:
    """Append one event (the caller holds the model's lock); returns the record written."""
    if event not in EVENTS:
        raise ValueError(f"unknown event {event!r}; one of {', '.join(EVENTS)}")
    lines = read_lines(registry, slug)
    record = {
        "seq": len(lines) + 1,
        "event": event,
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "version": version,
        **{key: value for key, value in facts.items() if value is not None},
        "prev": line_hash(lines[-1]) if lines else GENESIS,
    }
    data = b"".join(line + b"\n" for line in lines) + json.dumps(record, sort_keys=True).encode() + b"\n"
    registry.store.write_file(log_path(registry, slug), io.BytesIO(data), len(data))
    return record


@dataclass(frozen=True)
class Verdict:
    """`intact`, how many lines were read, and where and why the chain breaks when it does."""

    intact: bool
    lines: int
    broken_at: int | None = None  # 1-based line number
    reason: str = ""

    def describe(self, where: str) -> str:
        if self.intact:
            return f"{where}: intact, {self.lines} event(s)"
        return f"{where}: broken at line {self.broken_at}: {self.reason}"


def verify(lines: list[bytes]) -> Verdict:
    """Walk the chain: each line parses, numbers follow on, and names the hash of the line before it."""
    previous = GENESIS
    for number, line in enumerate(lines, start=1):
        try:
            record = json.loads(line)
        except ValueError:
            return Verdict(False, len(lines), number, "not a JSON object")
        if not isinstance(record, dict):
            return Verdict(False, len(lines), number, "not a JSON object")
        if record.get("prev") != previous:
            return Verdict(
                False,
                len(lines),
                number,
                "the line before it was edited or deleted (its hash does not match this line's prev)",
            )
        if record.get("seq") != number:
            found = record.get("seq")
            return Verdict(False, len(lines), number, f"sequence number {found!r}, expected {number}")
        if record.get("event") not in EVENTS:
            return Verdict(False, len(lines), number, f"unknown event {record.get('event')!r}")
        previous = line_hash(line)
    return Verdict(True, len(lines))
