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

from model_governance.metadata import DeploymentDocument
from model_governance.registry import Registry

EVENTS_DIR = ".events"
EVENTS = ("archived", "approved", "rejected", "deployed", "rolled_back", "retired")
GENESIS = "0" * 64


def log_path(registry: Registry, slug: str) -> str:
    return posixpath.join(registry.root, EVENTS_DIR, f"{slug}.jsonl")


def line_hash(line: bytes) -> str:
    return hashlib.sha256(line).hexdigest()


def encode(record: dict[str, Any]) -> bytes:
    """A record as its line's bytes (without the newline): what the next line's `prev` hashes."""
    return json.dumps(record, sort_keys=True).encode()


def read_lines(registry: Registry, slug: str) -> list[bytes]:
    """The log's lines (one read, no status call first); [] when the model has none yet."""
    data = registry.read_optional(log_path(registry, slug))
    return data.splitlines() if data else []


def append(registry: Registry, slug: str, event: str, version: str, **facts: Any) -> dict[str, Any]:
    """Append one event (the caller holds the model's lock); returns the record written.

    One read and one write of the log: the file is rewritten whole (WebHDFS's APPEND is not atomic either,
    and a log of a few hundred lines is a few hundred KiB at most)."""
    return _append(registry, slug, read_lines(registry, slug), event, version, facts)


def append_once(
    registry: Registry, slug: str, event: str, version: str, run_key: str, **facts: Any
) -> tuple[dict[str, Any], str]:
    """`append`, unless the run `run_key` already recorded this event for this version (its task is a
    retry): the record and its line's sha256, either way."""
    lines = read_lines(registry, slug)
    for line in reversed(lines):
        try:
            record = json.loads(line)
        except ValueError:
            continue  # `verify-log` reports it; appending after it does not hide it
        if (
            isinstance(record, dict)
            and record.get("run_key") == run_key
            and record.get("event") == event
            and record.get("version") == version
        ):
            return record, line_hash(line)
    record = _append(registry, slug, lines, event, version, {**facts, "run_key": run_key})
    return record, line_hash(encode(record))


def _append(
    registry: Registry, slug: str, lines: list[bytes], event: str, version: str, facts: dict[str, Any]
) -> dict[str, Any]:
    if event not in EVENTS:
        raise ValueError(f"unknown event {event!r}; one of {', '.join(EVENTS)}")
    record = {
        "seq": len(lines) + 1,
        "event": event,
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "version": version,
        **{key: value for key, value in facts.items() if value is not None},
        "prev": line_hash(lines[-1]) if lines else GENESIS,
    }
    data = b"".join(line + b"\n" for line in lines) + encode(record) + b"\n"
    registry.store.write_file(log_path(registry, slug), io.BytesIO(data), len(data))
    return record


def record_archived(registry: Registry, doc: DeploymentDocument) -> str:
    """`archived`: the publish step put this version in the registry (not when it was there already).
    Returns the line's sha256."""
    if doc.registry is None:
        raise ValueError("only a published version is archived")
    _, head = append_once(
        registry,
        doc.model.slug,
        "archived",
        doc.model.version,
        doc.run_key,
        model=doc.model.name,
        url=doc.registry.url,
        sha256=doc.executable_entry.sha256,
        files=len(doc.manifest),
        source_revision=doc.source.revision,
        requested_by=doc.requested_by or None,
        run_id=doc.run_id,
    )
    return head


def record_deployed(registry: Registry, doc: DeploymentDocument, qualified_name: str = "") -> str:
    """`deployed`: the register step found the model serving at its target, registered as
    `qualified_name` (default: the seed's name). Returns the line's sha256, which the Atlas entity keeps
    as its `eventLogHead`."""
    if doc.deploy is None:
        raise ValueError("only a serving model is deployed")
    approval = doc.approval
    approved_by = None if approval is None else (approval.by if approval.required else "not required")
    _, head = append_once(
        registry,
        doc.model.slug,
        "deployed",
        doc.model.version,
        doc.run_key,
        model=doc.model.name,
        qualified_name=qualified_name or doc.qualified_name,
        target=doc.deploy.target,
        sha256=doc.executable_entry.sha256,
        requested_by=doc.requested_by or None,
        approved_by=approved_by,
        rollback_of=doc.rollback_of or None,
        run_id=doc.run_id,
    )
    return head


@dataclass(frozen=True)
class Verdict:
    """`intact`, how many lines were read, and where and why the chain breaks when it does."""

    intact: bool
    lines: int
    broken_at: int | None = None  # 1-based line number; lines + 1 when the break is at the end
    reason: str = ""

    def describe(self, where: str) -> str:
        if self.intact:
            return f"{where}: intact, {self.lines} event{'' if self.lines == 1 else 's'}"
        if not self.lines:
            return f"{where}: {self.reason}"
        if self.broken_at is not None and self.broken_at > self.lines:
            return f"{where}: broken at its end (after line {self.lines}): {self.reason}"
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


def head_line(lines: list[bytes], head: str) -> int | None:
    """The 1-based number of the line whose sha256 is `head`, or None."""
    return next((n for n, line in enumerate(lines, start=1) if line_hash(line) == head), None)


def check_head(lines: list[bytes], head: str, deployment: str) -> Verdict:
    """The line Atlas recorded for `deployment` (its `eventLogHead`) must be in the log. The chain cannot
    see lines deleted from the end of the log, or an edit of its last line: this can, up to that line."""
    if head_line(lines, head) is not None:
        return Verdict(True, len(lines))
    return Verdict(
        False,
        len(lines),
        len(lines) + 1,
        f"Atlas records {deployment} with eventLogHead {head[:12]}…, and no line of the log has that "
        "sha256: lines were deleted from the end of the log, or its last line was edited",
    )


def last_event(lines: list[bytes], event: str) -> tuple[int, dict[str, Any]] | None:
    """The last line recording `event`: its number and record."""
    for number in range(len(lines), 0, -1):
        try:
            record = json.loads(lines[number - 1])
        except ValueError:
            continue
        if isinstance(record, dict) and record.get("event") == event:
            return number, record
    return None
