"""What a demo section returns, and how the runner writes the report folder."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path


@dataclass
class SectionResult:
    """One method beside its baseline.

    rows: one dict per run (e.g. {"method": "LoRA", "acc@0.02": 0.41, ...}); ``columns`` fixes
    their order in the table. plots: images (PNG plots, GIF renders) relative to the report folder.
    console_columns: the columns the terminal shows, where all of them would not fit 80 characters
    (None: all); report.md has every one.
    """

    title: str
    columns: list[str]
    rows: list[dict]
    summary: str = ""
    plots: list[str] = field(default_factory=list)
    extra: dict = field(default_factory=dict)
    console_columns: list[str] | None = None


def format_cell(value) -> str:
    if value is None:  # e.g. a target never reached
        return "—"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def markdown_table(columns: list[str], rows: list[dict]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(format_cell(row.get(c, "")) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


def write_report(out_dir: Path, sections: dict[str, SectionResult | str], header: str) -> None:
    """sections maps a name to its result, or to a sentence saying why it has none."""
    lines = ["# hf-eff demo report", "", header, ""]
    results = {}
    for name, section in sections.items():
        if isinstance(section, str):
            lines += [f"## {name}", "", section, ""]
            results[name] = {"status": section}
            continue
        lines += [f"## {section.title}", "", section.summary, "", markdown_table(section.columns, section.rows), ""]
        lines += [f"![{Path(p).stem}]({p})" for p in section.plots]
        lines.append("")
        results[name] = {"status": "ok", **asdict(section)}
    (out_dir / "report.md").write_text("\n".join(lines))
    (out_dir / "results.json").write_text(json.dumps(results, indent=2, default=str))
