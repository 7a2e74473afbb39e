"""The shape of `make bench`: every bench returns (or yields) `Row`s; `run` prints them as one table.

A bench is a function of no arguments returning an iterable of rows, registered under a short name in
`benchmarks/__main__.py`. Each row is one figure: what was measured, its goal, and PASS/FAIL (or `info`
for a figure that has no goal of its own but explains one that has). Rows are printed as they are
measured, as a Markdown table (so a run can be pasted into RESULTS.md), and a bench that raises becomes
one FAIL row naming the error while the other benches still run. The exit status is 1 when any row
failed.

    from benchmarks.report import Row, at_most

    def bench_example():
        took, limit = measure(), 2.0
        yield at_most("example ratio", took, limit, "{:.2f}x")
        yield Row("example detail", "12 calls")          # info: context for the row above
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
import traceback
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

Bench = Callable[[], Iterable["Row | tuple[str, str, str, str]"]]


@dataclass(frozen=True)
class Row:
    """One figure of a bench. `ok` None: a figure without a goal of its own (printed `info`)."""

    figure: str
    measured: str
    goal: str = ""
    ok: bool | None = None

    @property
    def verdict(self) -> str:
        return "info" if self.ok is None else "PASS" if self.ok else "FAIL"

    def markdown(self) -> str:
        cells = (self.figure, self.measured, self.goal or "—", f"**{self.verdict}**" if self.ok is False else self.verdict)
        return "| " + " | ".join(cell.replace("|", "\\|").replace("\n", " ") for cell in cells) + " |"


def at_most(figure: str, value: float, limit: float, fmt: str = "{:.2f}", detail: str = "") -> Row:
    """A row whose goal is `value <= limit`, both shown with `fmt` (e.g. "{:.1f} s", "{:.2f}x")."""
    measured = fmt.format(value) + (f" ({detail})" if detail else "")
    return Row(figure, measured, "≤ " + fmt.format(limit), value <= limit)


def at_least(figure: str, value: float, limit: float, fmt: str = "{:.2f}", detail: str = "") -> Row:
    """A row whose goal is `value >= limit`."""
    measured = fmt.format(value) + (f" ({detail})" if detail else "")
    return Row(figure, measured, "≥ " + fmt.format(limit), value >= limit)


def equals(figure: str, value: object, expected: object, detail: str = "") -> Row:
    """A row whose goal is an exact count or value."""
    measured = f"{value}" + (f" ({detail})" if detail else "")
    return Row(figure, measured, f"= {expected}", value == expected)


def as_row(row: Row | tuple[str, str, str, str]) -> Row:
    """A row, also from a plain (figure, measured, goal, "pass"/"FAIL"/"") tuple."""
    if isinstance(row, Row):
        return row
    figure, measured, goal, word = row
    return Row(figure, measured, goal, None if word.strip().lower() in ("", "info", "-", "—") else word.strip().lower() == "pass")


HEADER = "| figure | measured | goal | result |\n|---|---|---|---|"


def machine() -> str:
    """Cores, memory, Python, OS and Airflow of this machine, in one line."""
    with open("/proc/meminfo") as meminfo:
        mem_kib = int(meminfo.readline().split()[1])
    try:
        from importlib.metadata import version

        airflow = f", Airflow {version('apache-airflow')}"
    except Exception:
        airflow = ""
    return (
        f"{platform.machine()}, {os.cpu_count()} CPUs, {mem_kib / 1024 / 1024:.0f} GiB RAM, "
        f"Python {platform.python_version()}, {platform.platform()}{airflow}"
    )


def run(benches: Mapping[str, Bench], argv: Sequence[str] | None = None) -> int:
    """Run the named benches (all by default) in order; print every row; return the exit status."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description="Benchmarks with their goals.")
    parser.add_argument("names", nargs="*", metavar="NAME", help=f"which to run: {', '.join(benches)} (default: all)")
    parser.add_argument("--results", type=Path, help="also write the table, with the machine and date, to this Markdown file")
    args = parser.parse_args(argv)
    names = args.names or list(benches)
    unknown = [name for name in names if name not in benches]
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(unknown)}; known: {', '.join(benches)}")
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    lines = [f"Machine: {machine()}", f"Date: {started}", ""]
    print("\n".join(lines), flush=True)
    rows: list[Row] = []
    for name in names:
        section = [f"## {name}", "", HEADER]
        print("\n".join(section), flush=True)
        began = time.perf_counter()
        try:
            for row in map(as_row, benches[name]()):
                rows.append(row)
                section.append(row.markdown())
                print(section[-1], flush=True)
        except Exception as exc:  # one broken bench is a FAIL row, the others still run
            traceback.print_exc(file=sys.stderr)
            row = Row(f"{name}: bench did not finish", f"{type(exc).__name__}: {exc}".splitlines()[0][:300], "finishes", False)
            rows.append(row)
            section.append(row.markdown())
            print(section[-1], flush=True)
        took = f"({name} took {time.perf_counter() - began:.0f} s)"
        print(took + "\n", flush=True)
        lines += [*section, "", took, ""]
    counts = {verdict: sum(1 for row in rows if row.verdict == verdict) for verdict in ("PASS", "FAIL", "info")}
    summary = f"{counts['PASS']} PASS, {counts['FAIL']} FAIL, {counts['info']} info"
    failed = [row.figure for row in rows if row.ok is False]
    print(summary + (f": failed {'; '.join(failed)}" if failed else ""), flush=True)
    if args.results:
        args.results.write_text("\n".join([*lines, summary, ""]))
    return 1 if failed else 0
