import io

import pytest
from rich.console import Console

from hf_eff.demo import _print_section, grant
from hf_eff.demo.report import write_report


@pytest.mark.slow
def test_quick_demo_section(tmp_path):
    result = grant.run(tmp_path, quick=True)
    method, steps, selection = (grant.COLUMNS[key] for key in ("method", "steps", "selection_s"))  # the table's headers
    assert [row[method] for row in result.rows] == ["full", "GraNT(S)", "random(S)"]
    assert (tmp_path / "grant_curves.png").stat().st_size > 0
    full, teaching, random = result.rows
    assert teaching[steps] == full[steps] == random[steps]  # one step per epoch: same epoch budget
    assert teaching[selection] > 0 and full[selection] == 0


def _compare_result():
    """compare()'s result for the three runs, with values as wide as a full demo's."""
    shared = {"task": grant.TASK, "metric": "roc_auc", "steps": 300, "best_val": 0.9176, "test_at_target": 0.9348}
    full = {**shared, "method": "full", "train_s": 1045.27, "train_cpu_s": 1012.5, "selection_s": 0.0,
            "time_to_target_s": 834.12, "time_to_target_cpu_s": 810.4, "test": 0.9002}
    taught = {"time_to_target_x": 0.125, "time_to_target_cpu_x": 0.131, "test_change_%": 3.87, "ratio_mean": 0.412,
              "score_share_mean": 0.873}
    teaching = {**shared, **taught, "method": "GraNT(S)", "train_s": 412.93, "train_cpu_s": 401.2,
                "selection_s": 37.61, "time_to_target_s": 104.27, "time_to_target_cpu_s": 106.2, "test": 0.9348}
    random = {**shared, **taught, "method": "random(S)", "train_s": 398.02, "train_cpu_s": 390.7,
              "selection_s": 0.01, "time_to_target_s": None, "time_to_target_cpu_s": None, "time_to_target_x": None,
              "time_to_target_cpu_x": None, "test": 0.9133}
    return {"target": 0.9176, "rows": [full, teaching, random]}


def test_the_console_table_fits_80_columns_and_the_report_keeps_every_column(tmp_path):
    result = grant.section(_compare_result(), num_graphs=800, epochs=300)
    terminal = io.StringIO()
    _print_section(Console(file=terminal, width=80), result)
    lines = terminal.getvalue().splitlines()
    assert max(len(line) for line in lines) <= 80
    table = "\n".join(lines[:lines.index(next(line for line in lines if line.startswith("gen-cls")))])
    assert "…" not in table  # no header or value cut short
    for value in ("GraNT(S)", "random(S)", "1045", "0.9176", "0.125", "0.9348", "—"):
        assert value in table, value
    assert "5 more columns in report.md" in table

    write_report(tmp_path, {"grant": result}, "header")
    header = next(line for line in (tmp_path / "report.md").read_text().splitlines() if line.startswith("| method"))
    assert header == "| " + " | ".join(grant.COLUMNS.values()) + " |"
