"""GraNTTrainingArguments: `TrainingArguments` plus the teacher's settings."""

from __future__ import annotations

from dataclasses import dataclass, field

from transformers import TrainingArguments

from hf_eff.grant.schedules import RATIO_SCHEDULES, RESELECT_SCHEDULES
from hf_eff.grant.selection import NODE_NORMALIZATIONS, SELECTIONS
from hf_eff.grant.tasks import TASKS
from hf_eff.hub.tokens import TokenFreeArgumentsMixin
from hf_eff.utils.best_model import BestModelArgumentsMixin
from hf_eff.utils.pinning import CudaPinningArgumentsMixin

TEACHERS = ("grant", "none", "random")


@dataclass
class GraNTTrainingArguments(BestModelArgumentsMixin, TokenFreeArgumentsMixin, CudaPinningArgumentsMixin,
                             TrainingArguments):
    """Defaults follow the paper and its public code (r0 = 0.05, 50-stage step ratio, reselection
    interval growing from 5 to 50 epochs, AdamW with weight decay 5e-4). The training budget is
    `num_train_epochs`; GraNT derives `max_steps` from the ratio schedule, so `max_steps` must stay
    unset while the teacher selects (`teacher="none"` and `start_ratio=1` take it as transformers does).

    The learning rate, which the paper does not fix, defaults to 1e-3 (transformers' 5e-5 hardly moves a GCN);
    the recipes in trainers/grant use 1e-3 in mini-batches and 5e-3 in full-batch steps. Batches are mini-batches
    of `per_device_train_batch_size` graphs (transformers' default, 8).
    The public code takes one full-batch step per epoch over the taught subset: set
    `per_device_train_batch_size` to the training set's size and `variant="single"` for that regime
    (as benchmarks/grant_speed.py does by default). GraNT(B) keeps whole batches, so its kept
    fraction moves in steps of 1/number of batches; on a single batch it would keep every graph at every
    ratio, and is refused. GraNT(S) keeps at least one graph of every batch, so batches of one graph are
    refused too, as is a training set of one graph (a Planetoid-style node split: GraNT selects whole
    graphs, and one graph leaves it none to leave out).

    `data_seed` (else `seed`) seeds the teacher's batches, their order in each epoch and the random
    teacher's draws. The teacher plans every epoch's batches before training, so
    `dataloader_drop_last`, `auto_find_batch_size` (which would change them) and a `train_sampling_strategy`
    other than "random" (which it would ignore) are refused unless `teacher="none"` (or `start_ratio=1`, which
    is full-data training); `label_smoothing_factor` is refused: the task losses do not apply it, and so is
    `include_for_metrics=["inputs"]`: a graph batch has no single input tensor to pass on."""

    # transformers' do_train defaults to False and Trainer ignores it; examples/grant_train.py reads it
    do_train: bool = field(
        default=True,
        metadata={"help": "examples/grant_train.py: train (the default), or with False (--no_do_train) only evaluate the "
                  "model of --model_name_or_path on the validation and test splits"},
    )
    # transformers' 5e-5 suits fine-tuning pretrained transformers; GraNT trains a small GCN from scratch
    learning_rate: float = field(
        default=1e-3,
        metadata={"help": "AdamW learning rate: 1e-3, as transformers' 5e-5 hardly moves a GCN trained from scratch "
                  "(the full-batch recipes use 5e-3); see docs/grant.md"},
    )
    weight_decay: float = field(
        default=5e-4,
        metadata={"help": "AdamW weight decay: the paper's 5e-4 (Trainer exempts biases and norm layers from it)"},
    )
    task: str | None = field(
        default=None,
        metadata={"help": f"the task kind, one of {TASKS}; None (the default): GraNTTrainer takes the task its model "
                  "records (a GrantGCN's task, which from_pretrained reads from config.json). examples/grant_train.py "
                  "also takes the name of a built-in "
                  "data set here (qm9, freesolv, solubility, solubility-cls, gen-reg or gen-cls, e.g. `--task qm9`), "
                  "which loads that set and sets its task kind"},
    )
    teacher: str = field(
        default="grant",
        metadata={"help": "'grant' (graph neural teaching), 'none' (full-data training) or 'random' (the ablation "
                  "baseline: GraNT's schedule and subset sizes, graphs drawn at random instead of scored, so "
                  "the gain of the selection itself can be told from that of the smaller epochs)"},
    )
    variant: str = field(
        default="batch",
        metadata={"help": "'batch' = GraNT(B), keep whole batches, so the kept fraction moves in steps of 1/number of "
                  "batches (refused when the training set is one batch: every graph would be kept); 'single' = GraNT(S), "
                  "keep ceil(ratio * |b|) graphs of every batch b, at least one (refused on batches of one graph: every graph would "
                  "be kept; the full-batch regime's variant)"},
    )
    start_ratio: float = field(
        default=0.05,
        metadata={"help": "r0, the fraction of graphs taught at epoch 0; 1 teaches every graph at every epoch, which is "
                  "full-data training: the run is teacher='none''s, batch for batch"},
    )
    ratio_schedule: str = field(default="step", metadata={"help": f"one of {RATIO_SCHEDULES}"})
    ratio_stages: int = field(default=50, metadata={"help": "number of stages of the 'step' ratio schedule"})
    reselect_schedule: str = field(
        default="paper",
        metadata={"help": "'paper': every epoch for int(T*r0) epochs, then every start->end epochs; 'constant'"},
    )
    reselect_interval_start: int = field(default=5, metadata={"help": "first interval (or the constant one)"})
    reselect_interval_end: int = field(default=50, metadata={"help": "last interval of the 'paper' schedule"})
    node_score_normalization: str = field(
        default="nodes",
        metadata={"help": "node-level score ||f - f*||_2 divided by 'nodes' (n, the paper) or 'sqrt_nodes' (sqrt(n), "
                  "the root-mean-square node error), or 'total' (undivided: the graph's share of the gradient of a "
                  "loss averaged over every node, as the trainer's is); the paper's score favours small graphs"},
    )
    selection: str = field(
        default="top_k",
        metadata={"help": "'top_k' (the paper's: the best-scored graphs) or 'importance': GraNT(S)'s graphs drawn without "
                  "replacement with probability proportional to their score, each weighted by 1 / (k U p_i) so that "
                  "the loss estimates the training set's mean (Katharopoulos & Fleuret 2018); its gain was measured "
                  "on gen-reg only, see docs/grant.md. Needs teacher='grant', variant='single' and stratify_selection=False; "
                  "refused with task='graph_multilabel' (its loss averages labelled entries, which the weights do not count)"},
    )
    stratify_selection: bool = field(
        default=False,
        metadata={"help": "graph classification with GraNT(S): keep the ceil(ratio * |c|) best-scored graphs of every "
                  "class c instead of every batch, so that the taught subset keeps the class proportions. The "
                  "paper's rule can teach a single class: on the solubility classes the top 5%% (and 20%%) at "
                  "initialisation were all of one class, and validation ROC-AUC fell while they were taught"},
    )
    score_batch_size: int = field(default=256, metadata={"help": "graphs per batch in the scoring pass"})
    cache_scoring_batches: bool = field(
        default=True,
        metadata={"help": "collate the training set once and keep it for every scoring pass (each reselection is "
                  "then one forward pass); turn off when the collated set does not fit in memory"},
    )
    # Graph rows hold x / edge_index / y, which a model's forward signature does not name.
    remove_unused_columns: bool = field(
        default=False,
        metadata={"help": "keep the graph columns for the collator (True, which would drop num_nodes and y, is refused "
                  "with the default GraphCollator)"},
    )

    # Graph rows have no input_ids, by which transformers' length-grouped samplers measure rows by default.
    length_column_name: str = field(
        default="num_nodes",
        metadata={"help": "column the length-grouped samplers (train_sampling_strategy group_by_length, "
                  "batch_rebalance) read each graph's size from: its node count"},
    )

    @property
    def sampling_strategy(self) -> str:
        """The training sampler: transformers 5's train_sampling_strategy (group_by_length before it)."""
        return getattr(self, "train_sampling_strategy", None) or (
            "group_by_length" if getattr(self, "group_by_length", False) else "random")

    @property
    def selects(self) -> bool:
        """Whether a teacher selects graphs: not with teacher='none', nor with start_ratio=1, which teaches every
        graph at every epoch: that run is teacher='none''s full-data training, batch for batch."""
        return self.teacher != "none" and self.start_ratio < 1

    def check_task_settings(self) -> None:
        """The checks that need the task kind: at construction where `task` is given, else by GraNTTrainer once it
        has taken the task its model records."""
        if self.task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got {self.task!r}")
        if self.stratify_selection and (self.task != "graph_classification" or self.variant != "single"):
            raise ValueError(
                "stratify_selection needs task='graph_classification' (one class per graph) and variant='single', "
                f"got task={self.task!r}, variant={self.variant!r}"
            )
        if self.selects and self.selection == "importance" and self.task == "graph_multilabel":
            raise ValueError(
                "selection='importance' with task='graph_multilabel': its loss averages labelled entries, which the "
                "importance weights do not count; use selection='top_k'"
            )

    def __post_init__(self):
        super().__post_init__()
        if self.task is not None:
            self.check_task_settings()
        if self.teacher not in TEACHERS:
            raise ValueError(f"teacher must be one of {TEACHERS}, got {self.teacher!r}")
        if self.variant not in ("batch", "single"):
            raise ValueError(f"variant must be 'batch' or 'single', got {self.variant!r}")
        if self.selection not in SELECTIONS:
            raise ValueError(f"selection must be one of {SELECTIONS}, got {self.selection!r}")
        if self.selects and self.selection == "importance":
            conflict = {"teacher": self.teacher != "grant", "variant": self.variant != "single",
                        "stratify_selection": self.stratify_selection}
            for name, conflicting in conflict.items():
                if conflicting:
                    raise ValueError(
                        f"selection='importance' with {name}={getattr(self, name)!r}: importance sampling draws single "
                        "graphs by the grant teacher's scores; it needs teacher='grant', variant='single' and "
                        "stratify_selection=False (or use selection='top_k')"
                    )
        if not 0 < self.start_ratio <= 1:
            raise ValueError(f"start_ratio must be in (0, 1], got {self.start_ratio}")
        if self.ratio_schedule not in RATIO_SCHEDULES:
            raise ValueError(f"ratio_schedule must be one of {RATIO_SCHEDULES}, got {self.ratio_schedule!r}")
        if self.reselect_schedule not in RESELECT_SCHEDULES:
            raise ValueError(f"reselect_schedule must be one of {RESELECT_SCHEDULES}, got {self.reselect_schedule!r}")
        if not 1 <= self.reselect_interval_start <= self.reselect_interval_end:
            raise ValueError("need 1 <= reselect_interval_start <= reselect_interval_end")
        if self.node_score_normalization not in NODE_NORMALIZATIONS:
            raise ValueError(
                f"node_score_normalization must be one of {NODE_NORMALIZATIONS}, got {self.node_score_normalization!r}"
            )
        if self.per_device_train_batch_size < 1:  # else torch's sampler fails without naming it (teacher='none')
            raise ValueError(f"per_device_train_batch_size must be >= 1 (graphs per batch), got "
                             f"{self.per_device_train_batch_size}")
        if self.ratio_stages < 1 or self.score_batch_size < 1:
            raise ValueError("ratio_stages and score_batch_size must be >= 1")
        if self.max_steps <= 0 and self.num_train_epochs <= 0:  # transformers would train no step, GraNT plan no epoch
            raise ValueError(f"num_train_epochs must be > 0 (the training budget when max_steps is unset), got {self.num_train_epochs}")
        if "inputs" in self.include_for_metrics:  # transformers would look the batch up under input_ids: KeyError
            raise ValueError(
                "include_for_metrics=['inputs']: a graph batch has no single input tensor (input_ids) for the Trainer to "
                "pass on; read what compute_metrics needs from the evaluation dataset, in order"
            )
        if self.label_smoothing_factor != 0:
            raise ValueError("label_smoothing_factor: GraNT's task losses do not apply label smoothing; leave it 0")
        for option in ("dataloader_drop_last", "auto_find_batch_size"):
            if self.selects and getattr(self, option):
                raise ValueError(
                    f"{option}=True would change the batches the teacher plans before training (the learning-rate "
                    "schedule spans their steps); leave it False, or use teacher='none'"
                )
        if self.selects and self.sampling_strategy != "random":
            raise ValueError(
                f"train_sampling_strategy={self.sampling_strategy!r}: the teacher orders its own batches (seeded by data_seed, else "
                "seed), so it would be ignored; leave it 'random', or use teacher='none'"
            )
        if self.selects and self.max_steps > 0:
            raise ValueError(
                f"max_steps={self.max_steps} with teacher={self.teacher!r}: GraNT's budget is num_train_epochs (it derives "
                "the steps from the ratio schedule); leave max_steps unset, or use teacher='none' for a budget in steps"
            )
        if self.selects and self.num_train_epochs != int(self.num_train_epochs):
            raise ValueError(f"GraNT needs a whole number of epochs, got num_train_epochs={self.num_train_epochs}")
