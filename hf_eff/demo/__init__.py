"""`hf-eff demo`: each method's built-in default beside its baseline, on small built-in data.

Each section is a module ``hf_eff.demo.<name>`` with ``run(out_dir: Path, quick: bool) ->
SectionResult``.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import platform
import time
import traceback
from pathlib import Path

from rich.console import Console
from rich.table import Table

from hf_eff.demo.report import SectionResult, format_cell, write_report

SECTIONS = {
    "halora": "HaLoRA: LoRA vs HaLoRA accuracy under RRAM noise",
    "grant": "GraNT: full-data training vs graph neural teaching",
    "splat": "Gaussian splatting: default densification vs G2L + C2F + adaptive pruning",
}


def _print_section(console: Console, result: SectionResult) -> None:
    columns = result.console_columns or result.columns
    left_out = len(result.columns) - len(columns)
    table = Table(title=result.title, caption=f"{left_out} more columns in report.md" if left_out else None)
    for column in columns:
        table.add_column(column)
    for row in result.rows:
        table.add_row(*(format_cell(row.get(c, "")) for c in columns))
    console.print(table)
    if result.summary:
        console.print(result.summary)


def earlier_sections(out_dir: Path) -> dict[str, SectionResult | str]:
    """The sections of the report an earlier run left in ``out_dir`` (its results.json), as ``write_report`` takes
    them; none when there is no readable report, and none of a section that does not read back (e.g. a results.json
    of another shape): a rerun of all sections rewrites it."""
    try:
        results = json.loads((out_dir / "results.json").read_text())
    except (OSError, ValueError):
        return {}
    fields = {f.name for f in dataclasses.fields(SectionResult)}
    sections = {}
    for name, section in results.items() if isinstance(results, dict) else ():
        if name not in SECTIONS or not isinstance(section, dict):
            continue
        try:
            sections[name] = (SectionResult(**{k: v for k, v in section.items() if k in fields})
                              if section.get("status") == "ok" else str(section.get("status")))
        except TypeError:  # fields missing
            continue
    return sections


def run_demo(out_dir: Path, only: list[str] | None = None, quick: bool = False) -> bool:
    """Runs the sections (all, or those named in `only`); returns False if any raised. With `only`, the other
    sections of a report already in `out_dir` are kept (each section's summary gives its own sizes)."""
    unknown = sorted(set(only or ()) - set(SECTIONS))
    if unknown:
        raise ValueError(f"unknown demo section(s) {unknown}; choose from {list(SECTIONS)}")
    console = Console()
    out_dir.mkdir(parents=True, exist_ok=True)
    kept = earlier_sections(out_dir) if only else {}
    outcomes: dict[str, SectionResult | str] = {}
    ok = True
    for name, title in SECTIONS.items():
        if only and name not in only:
            if name in kept:
                outcomes[name] = kept[name]
            continue
        console.rule(title)
        start = time.perf_counter()
        try:
            result = importlib.import_module(f"hf_eff.demo.{name}").run(out_dir, quick=quick)
        except Exception:  # a failed section is reported; the others still run
            ok = False
            outcomes[name] = f"{title}: FAILED\n\n```\n{traceback.format_exc()}```"
            console.print_exception()
            continue
        result.extra.setdefault("section_seconds", round(time.perf_counter() - start, 1))
        outcomes[name] = result
        _print_section(console, result)
    header = f"Machine: {platform.processor() or platform.machine()}, Python {platform.python_version()}."
    write_report(out_dir, outcomes, header)
    console.print(f"Report written to {out_dir}/report.md (results.json, plots).")
    return ok
