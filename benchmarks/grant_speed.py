"""GraNT vs full-data training on the four task kinds (graph regression: the solubility set's
log solubility, or QM9 / FreeSolv with --graph_regression; graph classification: solubility
classes; node regression: gen-reg; node classification: gen-cls).

Same model, optimiser, learning-rate schedule, seed and epoch budget for both runs. Reports
time-to-target (training seconds until the full run's best validation metric is first
reached, evaluations excluded), in wall-clock and process CPU seconds, the same to within
--tolerance of that best, the test metric at that moment and at the end, and the time spent
selecting; writes a table, JSON and a plot.

    OMP_NUM_THREADS=1 python benchmarks/grant_speed.py --out grant_bench [--tasks node_regression,...]

Sized for about 20 minutes on 2 CPU cores, one thread per run. Run one benchmark at a time: on
a loaded machine the wall clock is disturbed, the CPU time of a one-thread run much less.
"""

from __future__ import annotations

import argparse
import functools
import json
from pathlib import Path

import torch
import transformers

from hf_eff.demo.report import markdown_table
from hf_eff.grant import (
    GrantGCN,
    generate_graphon_dataset,
    load_freesolv,
    load_qm9,
    load_solubility,
    split_dataset,
)
from hf_eff.grant.compare import compare, plot_curves

TASKS = ("graph_regression", "graph_classification", "node_regression", "node_classification")
# Epoch budgets at which full training has plateaued on validation, so that the comparison
# measures teaching, not an undertrained baseline. Chosen from full runs' validation curves
# (batch 32, cosine learning rate): the best validation metric came at epoch 40 (gen-reg),
# 18 (gen-cls), 46 (solubility classes) and 81 (log solubility) of 100, and later epochs
# only overfit or wander.
EPOCHS = {"graph_regression": 100, "graph_classification": 100, "node_regression": 100, "node_classification": 100}


def datasets_for(task: str, args):
    """(splits, output channels). Molecule sets are used whole; the generated sets have
    args.num_generated_graphs graphs of 10-20 nodes."""
    if task == "graph_regression":
        if args.graph_regression == "qm9":
            graphs = load_qm9("Dipole_debye", max_graphs=args.qm9_graphs)
        elif args.graph_regression == "freesolv":
            graphs = load_freesolv()
        else:
            graphs = load_solubility("train")
        return split_dataset(graphs, 0.1, 0.1, seed=0), 1
    if task == "graph_classification":
        return split_dataset(load_solubility("train", classification=True), 0.1, 0.1, seed=0), 3
    kind = task.split("_")[1]
    graphs = generate_graphon_dataset(kind, num_graphs=args.num_generated_graphs, min_nodes=10, max_nodes=20, seed=0)
    return split_dataset(graphs, 0.1, 0.1, seed=0), (10 if kind == "classification" else 1)


def parse_epochs(text: str) -> dict[str, int]:
    """'100' (every task) or 'node_regression=150,graph_regression=80' (the rest keep EPOCHS)."""
    if "=" not in text:
        return dict.fromkeys(TASKS, int(text))
    epochs = dict(EPOCHS)
    for item in text.split(","):
        task, _, value = item.partition("=")
        if task not in TASKS:
            raise ValueError(f"--epochs: unknown task {task!r}; choose from {TASKS}")
        epochs[task] = int(value)
    return epochs


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="grant_bench")
    parser.add_argument("--tasks", default=",".join(TASKS))
    parser.add_argument("--graph_regression", default="solubility", choices=["solubility", "qm9", "freesolv"],
                        help="the graph-regression set: QM9's dipole does not plateau within this CPU budget")
    parser.add_argument("--qm9_graphs", type=int, default=1500)
    parser.add_argument("--num_generated_graphs", type=int, default=2000, help="gen-reg / gen-cls size")
    parser.add_argument("--epochs", default=None, help=f"per-task epoch budget; default {EPOCHS}")
    parser.add_argument("--batch_size", type=int, default=32, help="graphs per step; 0 = the whole training set")
    parser.add_argument("--lr_scheduler", default="cosine", help="lr_scheduler_type of both runs")
    parser.add_argument("--variant", default="batch", choices=["single", "batch"])
    parser.add_argument("--start_ratio", type=float, default=0.05)
    parser.add_argument("--ratio_schedule", default="step", choices=["step", "linear", "cosine"])
    parser.add_argument("--reselect_interval", default="1,5",
                        help="first,last reselection interval of the paper's schedule, in epochs")
    parser.add_argument("--node_score_normalization", default="nodes", choices=["nodes", "sqrt_nodes"])
    parser.add_argument("--tolerance", type=float, default=0.01,
                        help="also report the time to come within this relative distance of the full run's best")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (small graphs: 1 is fastest)")
    args = parser.parse_args(argv)
    epochs = parse_epochs(args.epochs) if args.epochs else EPOCHS
    interval_start, interval_end = (int(v) for v in args.reselect_interval.split(","))
    torch.set_num_threads(args.threads)
    transformers.logging.set_verbosity_error()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = []
    for task in args.tasks.split(","):
        if task not in TASKS:
            raise ValueError(f"--tasks: unknown task {task!r}; choose from {TASKS}")
        splits, out_channels = datasets_for(task, args)
        in_channels = len(splits["train"][0]["x"][0])
        level = task.split("_")[0]
        model_fn = functools.partial(GrantGCN, in_channels, out_channels, hidden_channels=32, num_layers=3,
                                     kappa=3, level=level, batch_norm=False)
        # Mini-batch epochs (GraNT's epochs hold fewer steps), evaluated once per epoch; with
        # --batch_size 0 the public code's regime, one full-batch step per epoch, evaluated every 5.
        evaluation = dict(eval_strategy="epoch") if args.batch_size else dict(eval_strategy="steps", eval_steps=5)
        training = dict(
            output_dir=str(out / task), num_train_epochs=epochs[task],
            per_device_train_batch_size=args.batch_size or len(splits["train"]), per_device_eval_batch_size=512,
            learning_rate=5e-3, weight_decay=5e-4, lr_scheduler_type=args.lr_scheduler, seed=0,
            logging_strategy="no", save_strategy="no",
            report_to="none", use_cpu=True, disable_tqdm=True, **evaluation,
        )
        teaching = dict(variant=args.variant, start_ratio=args.start_ratio, ratio_schedule=args.ratio_schedule,
                        reselect_schedule="paper", reselect_interval_start=interval_start,
                        reselect_interval_end=interval_end, score_batch_size=1024,
                        node_score_normalization=args.node_score_normalization)
        result = compare(task, model_fn, splits, training, teaching, tolerance=args.tolerance)
        result["epochs"] = epochs[task]
        print(markdown_table(list(result["rows"][1]), result["rows"]), flush=True)
        results.append(result)
    rows = [row for result in results for row in result["rows"]]
    columns = list(dict.fromkeys(key for row in rows for key in row))
    (out / "grant_speed.md").write_text(markdown_table(columns, rows) + "\n")
    serialisable = [
        {k: v for k, v in r.items() if k != "runs"} | {"curves": {t: run.curve for t, run in r["runs"].items()},
                                                     "teaching_log": r["runs"]["grant"].teaching_log}
        for r in results
    ]
    (out / "grant_speed.json").write_text(json.dumps({"settings": vars(args), "results": serialisable},
                                                     indent=2, default=float))
    plot_curves(results, out / "grant_speed.png")
    print(markdown_table(columns, rows))


if __name__ == "__main__":
    main()
