"""GraNT on 2 CPU DDP processes (gloo) against one process with the same global batch.

Run by pytest, this file launches itself with ``accelerate launch`` (trainers/accelerate/cpu_2proc.yaml);
each rank writes what it saw (world size, the subset chosen at every reselection, the dataset
indices of the graphs it trained on at every step, the final parameters) and the test compares
the ranks with each other and with a one-process run that accumulates the same two batches per step.
The example's --do_predict is launched on 2 ranks too.
"""

import json
import os
import sys
import time
from pathlib import Path

import pytest
import torch

from hf_eff.utils.distributed import finish_distributed
from tests.distributed.launch import launch_two_ranks
from tests.grant.conftest import random_graphs

# 96 graphs in batches of 6, GraNT(S) at ratios 0.5 then 0.75: 8 then 14 batches per epoch, even
# counts, so that accelerate's even_batches never repeats a batch on the second rank (which one
# process would not train on) and two ranks take exactly the pairs one process accumulates.
NUM_GRAPHS, BATCH_SIZE = 96, 6


def run_worker(out_dir: Path, accumulation: int, batch_norm: bool = False, selection: str = "top_k") -> None:
    """selection: GraNT(S)'s rule, the top-k graphs or an importance-sampled draw with loss weights.
    batch_norm: each rank also records, at every reselection, the gathered scores beside those its own model
    gives every graph (each process scores its shard: with BatchNorm, the statistics it scores with matter)."""
    from torch_geometric.utils import scatter
    from transformers import set_seed

    from hf_eff.grant import GrantGCN, GraNTTrainer, GraNTTrainingArguments
    from hf_eff.grant.selection import score_dataset
    from hf_eff.utils.distributed import check_world_size, prepare_cpu_distributed

    prepare_cpu_distributed()
    graphs = random_graphs(NUM_GRAPHS, "graph_regression", min_nodes=2, max_nodes=8)
    # each graph's feature sum identifies it in a training batch
    identity = {round(float(torch.tensor(x).sum()), 3): index for index, x in enumerate(graphs["x"])}
    assert len(identity) == NUM_GRAPHS

    class RecordingTrainer(GraNTTrainer):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.selections, self.step_graphs, self.score_pairs = [], [], []

        def _score_training_set(self):
            scores = super()._score_training_set()
            own = score_dataset(self.model, self.train_dataset, self.data_collator, self.task, device=self.args.device)
            self.score_pairs.append([scores.tolist(), own.tolist()])
            return scores

        def _teach(self, epoch):
            super()._teach(epoch)
            if self._plan[epoch].reselect:
                self.selections.append(sorted(i for batch in self._sampler.batches for i in batch))

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            sums = scatter(inputs["x"].sum(dim=1), inputs["batch"], dim=0, dim_size=inputs["num_nodes"].numel())
            self.step_graphs.append(sorted(identity[round(float(s), 3)] for s in sums))
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)

    args = GraNTTrainingArguments(
        output_dir=str(out_dir / "run"), task="graph_regression", teacher="grant", variant="single", selection=selection,
        start_ratio=0.5, ratio_schedule="step", ratio_stages=2, reselect_schedule="constant",
        reselect_interval_start=1, num_train_epochs=4, per_device_train_batch_size=BATCH_SIZE,
        gradient_accumulation_steps=accumulation, learning_rate=1e-2, score_batch_size=16,
        save_strategy="no", report_to=[], disable_tqdm=True, dataloader_num_workers=0, seed=0,
    )
    check_world_size(args.world_size)
    set_seed(0)
    model = GrantGCN(6, 1, hidden_channels=16, num_layers=2, kappa=2, batch_norm=batch_norm)
    trainer = RecordingTrainer(model=model, args=args, train_dataset=graphs)
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    rank = int(os.environ.get("RANK", "0"))
    report = {"world_size": args.world_size, "ddp": type(trainer.model_wrapped).__name__,
              "selections": trainer.selections, "step_graphs": trainer.step_graphs,
              "global_step": trainer.state.global_step, "weighted": trainer._graph_weights is not None, "train_seconds": seconds, "score_pairs": trainer.score_pairs}
    (out_dir / f"rank{rank}.json").write_text(json.dumps(report))
    torch.save({n: p.detach().clone() for n, p in model.named_parameters()}, out_dir / f"rank{rank}.pt")



@pytest.mark.slow
@pytest.mark.parametrize("selection", ["top_k", "importance"])
def test_grant_ddp_selects_the_same_graphs_shards_batches_and_matches_one_process(tmp_path, selection):
    # importance: every rank draws the same graphs (and weights) from the gathered scores, seeded alike
    ddp_dir, single_dir = tmp_path / "ddp", tmp_path / "single"
    ddp_dir.mkdir()
    single_dir.mkdir()
    launch_two_ranks(__file__, str(ddp_dir), selection)
    run_worker(single_dir, accumulation=2, selection=selection)

    ranks = [json.loads((ddp_dir / f"rank{r}.json").read_text()) for r in (0, 1)]
    single = json.loads((single_dir / "rank0.json").read_text())
    assert [rank["world_size"] for rank in ranks] == [2, 2] and single["world_size"] == 1
    assert [rank["ddp"] for rank in ranks] == ["DistributedDataParallel"] * 2
    assert [rank["weighted"] for rank in (*ranks, single)] == [selection == "importance"] * 3  # trained by its rule

    # every rank chose the same graphs at every reselection, and the same ones as one process
    assert len(ranks[0]["selections"]) == 4
    assert ranks[0]["selections"] == ranks[1]["selections"] == single["selections"]
    assert [len(s) for s in ranks[0]["selections"]] == [48, 48, 80, 80]

    # each step, the ranks trained on different graphs of the current subset, together the pair
    # of batches that one process accumulates in that step
    steps_per_epoch = [4, 4, 7, 7]
    assert ranks[0]["global_step"] == ranks[1]["global_step"] == single["global_step"] == sum(steps_per_epoch)
    step = 0
    for epoch, steps in enumerate(steps_per_epoch):
        subset = set(ranks[0]["selections"][epoch])
        seen = []
        for _ in range(steps):
            first, second = ranks[0]["step_graphs"][step], ranks[1]["step_graphs"][step]
            assert not set(first) & set(second) and set(first) | set(second) <= subset
            assert sorted(first + second) == sorted(single["step_graphs"][2 * step] + single["step_graphs"][2 * step + 1])
            seen += first + second
            step += 1
        assert sorted(seen) == sorted(subset)  # one pass over the subset per epoch

    # identical parameters on both ranks, and those of one process up to floating-point order
    params = [torch.load(ddp_dir / f"rank{r}.pt") for r in (0, 1)]
    single_params = torch.load(single_dir / "rank0.pt")
    for name, value in params[0].items():
        assert torch.equal(value, params[1][name]), name
        torch.testing.assert_close(value, single_params[name], rtol=1e-4, atol=1e-5)
    print(f"train seconds: 1 process {single['train_seconds']:.2f}, "
          f"2 processes {max(rank['train_seconds'] for rank in ranks):.2f}")


def test_with_batch_norm_every_shard_is_scored_with_the_first_processs_statistics(tmp_path):
    """Each process scores its shard of the training set; with BatchNorm each holds the statistics its own batches
    left, so the shards were scored by different models. The gathered scores are those of the first process's model
    (which is saved), on every process."""
    launch_two_ranks(__file__, str(tmp_path), "top_k", "batch_norm")
    for rank in (0, 1):
        pairs = json.loads((tmp_path / f"rank{rank}.json").read_text())["score_pairs"]
        assert len(pairs) == 4
        for gathered, own in pairs[1:]:  # the first scores the untrained model, whose statistics agree anyway
            torch.testing.assert_close(torch.tensor(gathered), torch.tensor(own), rtol=1e-5, atol=1e-6)


def test_example_predictions_on_two_processes_are_every_node_once_in_order_and_the_saved_models(tmp_path):
    """--do_predict after a 2-process training run: the node predictions (padded per graph, gathered across the
    processes) are every node of every graph once, in order, written once, and the saved model's own: each process
    evaluates with the first one's BatchNorm statistics, not those its own last training batch left it."""
    import numpy as np
    import pandas as pd

    from hf_eff.grant import GrantGCN
    from tests.grant.test_predict import _forward

    random_graphs(24, "node_regression", min_nodes=2, max_nodes=9).save_to_disk(str(tmp_path / "train"))
    new = random_graphs(7, "node_regression", seed=1, min_nodes=2, max_nodes=9)  # odd: one process gets a duplicate
    new.save_to_disk(str(tmp_path / "new"))
    out = tmp_path / "run"
    launch = launch_two_ranks(
        str(Path(__file__).parents[2] / "examples" / "grant_train.py"), "--dataset", str(tmp_path / "train"),
        "--task", "node_regression", "--output_dir", str(out), "--do_predict", "--predict_file", str(tmp_path / "new"),
        "--num_train_epochs", "1", "--per_device_train_batch_size", "4", "--per_device_eval_batch_size", "2",
        "--hidden_channels", "8", "--teacher", "none", "--save_strategy", "no", "--report_to", "none",
    )
    assert launch.stderr.count("predictions written to") == 1
    table = pd.read_csv(out / "predict_results.csv")
    sizes = new["num_nodes"]
    assert table["graph_index"].tolist() == [g for g, n in enumerate(sizes) for _ in range(n)]
    assert table["node_index"].tolist() == [i for n in sizes for i in range(n)]
    expected = _forward(GrantGCN.from_pretrained(out), new)[:, 0]
    np.testing.assert_allclose(table["prediction"].to_numpy(), expected, rtol=1e-5, atol=1e-6)


if __name__ == "__main__":
    run_worker(Path(sys.argv[1]), accumulation=1, selection=sys.argv[2], batch_norm=sys.argv[3:] == ["batch_norm"])
    finish_distributed()
