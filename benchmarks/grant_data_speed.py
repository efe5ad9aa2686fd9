"""GraNT's data path at real size: checking a graph dataset and collating it, column-wise over Arrow
(what GraNTTrainer uses) against the row-by-row paths they replaced, which stay in the library as
the fallbacks (the row check names the first bad row; the row collator serves users' own loops).

On QM9's training split (the qm9pack CSVs, 80% of --max_graphs molecules; all 130,831 by default):
- check: `check_graph_dataset` vs its row loop (`_check_rows`) over the whole split;
- collate: every graph into batches of --batch_size, as the teacher's scoring pass does
  (`scoring_batches`), through `ArrowBatches` vs rows as python lists (a plain function collator);
- score: one no-grad pass of a small GrantGCN over the collated batches (`score_batches`), the
  model's share of a reselection.
Both clocks: wall and process CPU seconds (one thread; CPU time is steadier on a shared machine).
Prints a table and writes results.json.

    OMP_NUM_THREADS=1 python benchmarks/grant_data_speed.py --output_dir grant_data_bench
    OMP_NUM_THREADS=1 python benchmarks/grant_data_speed.py --output_dir grant_data_bench --max_graphs 20000

The first run builds QM9 (about 1.5 min, cached in HF_EFF_CACHE).

Measured (2026-11-26, all of QM9: 104,663 training graphs, 1 thread, load ~1.5; wall / CPU s):
    check     row by row 48.7 / 48.3       column-wise 1.33 / 1.32   (36x)
    collate   python lists 24.2 / 24.1     Arrow 5.13 / 5.11         (4.7x; batches identical)
    score     the model's pass 2.83 / 2.82
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from hf_eff.demo.report import markdown_table
from hf_eff.grant import GrantGCN, GraphCollator, check_graph_dataset, load_qm9, split_dataset
from hf_eff.grant.data import _check_rows  # the row loop check_graph_dataset falls back to
from hf_eff.grant.selection import score_batches, scoring_batches
from hf_eff.grant.tasks import GraphTask

TASK = "graph_regression"


def timed(function):
    wall, cpu = time.perf_counter(), time.process_time()
    result = function()
    return result, time.perf_counter() - wall, time.process_time() - cpu


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--max_graphs", type=int, default=None, help="QM9 molecules read (default: all)")
    parser.add_argument("--qm9_target", default="Dipole_debye")
    parser.add_argument("--batch_size", type=int, default=256)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)

    train = split_dataset(load_qm9(args.qm9_target, max_graphs=args.max_graphs), 0.1, 0.1, seed=0)["train"]
    graphs = len(train)
    collator = GraphCollator.for_dataset(TASK, train)

    rows = []
    _, wall, cpu = timed(lambda: _check_rows(train, 0, GraphTask(TASK), "train", None))
    rows.append(["check", "row by row", wall, cpu])
    _, wall, cpu = timed(lambda: check_graph_dataset(train, TASK, "train"))
    rows.append(["check", "column-wise (Arrow)", wall, cpu])

    # a plain function is not GraphCollator itself, so the loader hands it rows as python lists
    row_batches, wall, cpu = timed(lambda: scoring_batches(train, lambda batch: collator(batch), None, args.batch_size))
    rows.append(["collate", "rows as python lists", wall, cpu])
    arrow_batches, wall, cpu = timed(lambda: scoring_batches(train, collator, None, args.batch_size))
    rows.append(["collate", "Arrow columns", wall, cpu])
    identical = all(
        a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
        for (a, _), (b, _) in zip(row_batches, arrow_batches)
    )
    del row_batches

    torch.manual_seed(0)
    model = GrantGCN(len(train[0]["x"][0]), 1, hidden_channels=64)
    _, wall, cpu = timed(lambda: score_batches(model, arrow_batches, TASK))
    rows.append(["score (model only)", "GrantGCN hidden 64", wall, cpu])

    columns = ["step", "path", "wall s", "CPU s", "graphs per CPU s"]
    table = [dict(zip(columns, [step, path, f"{wall:.2f}", f"{cpu:.2f}", f"{graphs / cpu:,.0f}"]))
             for step, path, wall, cpu in rows]
    print(f"QM9 train split: {graphs:,} graphs; collated batches identical on both paths: {identical}")
    print(markdown_table(columns, table))
    (out / "results.json").write_text(json.dumps({
        "graphs": graphs, "batch_size": args.batch_size, "identical_batches": identical,
        "rows": [dict(step=step, path=path, wall_seconds=wall, cpu_seconds=cpu) for step, path, wall, cpu in rows],
    }, indent=2))


if __name__ == "__main__":
    main()
