"""HaLoRATrainer: trains on noisy RRAM weights with the robustness regulariser, and evaluates
every metric at several noise levels over several noise seeds.

With a plain LoRA (or any) model the same trainer trains normally and evaluates under noise the
same way, which is how LoRA and HaLoRA are compared.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import json
import math
import numbers
import re
import sys
import time
import warnings
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from accelerate.optimizer import AcceleratedOptimizer
from huggingface_hub import hf_hub_download
from huggingface_hub.errors import EntryNotFoundError
from peft import PeftModel
from tqdm.auto import tqdm
from transformers import (
    DataCollatorWithPadding,
    PreTrainedTokenizerBase,
    Trainer,
    TrainerCallback,
    TrainingArguments,
    default_data_collator,
)
from transformers.trainer_callback import ProgressCallback
from transformers.trainer_utils import has_length, speed_metrics

from hf_eff.halora.base_model import save_embedding_layers
from hf_eff.halora.config import (
    NOISE_MODES,
    HaLoRAConfig,
    check_draw_key,
    check_noise_target_modules,
    check_tile_size,
)
from hf_eff.halora.noise import (
    RRAMNoise,
    active_halora_config,
    draw_seed,
    noise_settings,
    rram_linear_modules,
    rram_noise,
    setting_field,
)
from hf_eff.halora.regularizer import FactorGroups, halora_regularizer_gradients, lora_factor_groups
from hf_eff.halora.tasks import (
    MultipleChoiceScorer,
    choice_logprob_sums,
    choice_rows_collator,
    labelled_rows_differ_in_length,
)
from hf_eff.hub.tokens import TokenFreeArgumentsMixin
from hf_eff.hub.trainer_cards import HubCardTrainerMixin
from hf_eff.utils.best_model import BestModelArgumentsMixin, reported_metric_names
from hf_eff.utils.pinning import CudaPinningArgumentsMixin
from hf_eff.utils.resume import check_resume
from hf_eff.utils.speed_metrics import SPEED_METRICS
from hf_eff.utils.training_failures import TrainingFailuresMixin

# Evaluation draws use their own draw index, so they never coincide with a training draw.
EVAL_DRAW_INDEX = -1
# The samples' noise_seed at sigma 0, which draws no noise. Not null: pandas (read_json) would read the column as
# floats (7.0) and groupby would drop the sigma 0 rows. Noise seeds are >= 0, so -1 is no seed.
NO_NOISE_SEED = -1
# transformers' timings, which evaluate reports once for all its runs, not averaged over them
_NOT_AVERAGED = (*SPEED_METRICS, "model_preparation_time")
# TRL's running count of training tokens, which it also files under the evaluation metrics: one value,
# logged once by TRL itself, not a metric of the noise.
_COTRAINER_TOTALS = ("num_tokens",)
# Beside adapter_config.json, which cannot hold them: PEFT drops a key its config class lacks, warning that
# the file needs a newer PEFT.
DATA_SPLITS_NAME = "training_data_splits.json"


@dataclass
class HaLoRATrainingArguments(BestModelArgumentsMixin, TokenFreeArgumentsMixin, CudaPinningArgumentsMixin,
                              TrainingArguments):
    """TrainingArguments plus the robustness evaluation. The training noise and the regulariser
    are the adapter's (``HaLoRAConfig``), so they are saved with it. The evaluation noise
    (``eval_noise_mode``, ``eval_noise_tile_size``, ``eval_noise_target_modules``) is the adapter's
    where left as None (the defaults' with ``eval_noise_from_adapter=False``): set it to evaluate a LoRA
    baseline, which has no noise settings of its own, under the same noise as a HaLoRA adapter."""

    eval_sigmas: list[float] = field(
        default_factory=lambda: [0.0, 0.005, 0.01, 0.02],
        metadata={"help": "Noise levels to evaluate at, each once; each gives eval_<metric>_sigma_<s>_mean and _std (<s> "
                          "written with Python's :g format, e.g. 0.0025, 1e-05). The plain "
                          "eval_<metric> names come only from sigma 0, so metric_for_best_model must be a noisy name "
                          "when 0 is left out (checked when the arguments are built)."},
    )
    eval_noise_seeds: int = field(default=5, metadata={"help": "Noise seeds per non-zero sigma (K)."})
    eval_noise_mode: str | None = field(
        default=None, metadata={"help": f"Noise model at evaluation, one of {NOISE_MODES}; default: the adapter's (tile_additive for non-HaLoRA models; examples/halora_finetune.py gives both methods --noise_mode)."}
    )
    eval_noise_tile_size: int | None = field(
        default=None, metadata={"help": "RRAM tile side at evaluation; default: the adapter's (64 for non-HaLoRA models; examples/halora_finetune.py gives both methods --noise_tile_size)."}
    )
    eval_noise_target_modules: list[str] | None = field(
        default=None,
        metadata={"help": "Frozen nn.Linear modules noised at evaluation (name suffixes); default: the adapter's "
                          "(every nn.Linear in the transformer blocks for non-HaLoRA models)."},
    )
    eval_noise_from_adapter: bool = field(
        default=True,
        metadata={"help": "Where an eval_noise_* field is None: the active HaLoRA adapter's setting (True), or the "
                          "defaults (False: tile_additive, 64, every nn.Linear in the transformer blocks), so that "
                          "adapters trained under different noise, and LoRA ones, are evaluated under the same noise "
                          "(examples/halora_finetune.py: False, and its --noise_* flags fill the None fields; True there keeps a HaLoRA adapter's "
                          "own, and the flags still fill them for LoRA and the bare base model)."},
    )
    noise_seed: int | None = field(default=None, metadata={"help": "Seed of every noise draw; default: `seed`."})
    log_samples: bool = field(
        default=False,
        metadata={"help": "As lm-evaluation-harness's --log_samples: each evaluation writes samples_<prefix>.jsonl "
                          "(samples_eval.jsonl) into output_dir, one line per sigma, noise seed and question: sigma, "
                          "noise_seed (-1 at sigma 0, which draws no noise: seeds are >= 0), doc_id (the question's index in the "
                          "eval dataset), question, choices, answer, the row's contexts and other_columns (e.g. an "
                          "id) where it has them, loglikelihoods (one per choice), pred, acc and "
                          "pred_norm, acc_norm (the predictions the reported accuracies count); each evaluation "
                          "rewrites it. It stays local: no push uploads it (the questions may be private data; "
                          "upload it yourself to share it). Needs the trainer's scorer (HaLoRATrainer(scorer=...))."},
    )
    # transformers leaves do_train to the scripts, False by default; hf-eff's examples train unless told not to
    do_train: bool = field(
        default=True,
        metadata={"help": "Train, then evaluate under noise. False (or --no_do_train): evaluate only, write "
                          "all_results.json and no model (examples/halora_finetune.py)."},
    )

    def __post_init__(self):
        super().__post_init__()
        if isinstance(self.eval_sigmas, (str, numbers.Real)):  # one level, where a list is meant
            raise ValueError(f"eval_sigmas must be a list of noise levels (e.g. [0.0, 0.02]), got {self.eval_sigmas!r}")
        try:
            self.eval_sigmas = [float(s) + 0.0 for s in self.eval_sigmas]  # + 0.0: -0.0 would be named sigma_-0
        except (TypeError, ValueError):
            raise ValueError(f"eval_sigmas must be a list of noise levels (numbers), got {self.eval_sigmas!r}") from None
        if not self.eval_sigmas or any(not (s >= 0 and math.isfinite(s)) for s in self.eval_sigmas):
            raise ValueError(f"eval_sigmas must be a non-empty list of finite values >= 0, got {self.eval_sigmas}")
        names = [sigma_name(sigma) for sigma in self.eval_sigmas]
        counts = Counter(names)
        if len(counts) < len(names):  # one level's metrics would overwrite another's
            twice = sorted({(name, sigma) for name, sigma in zip(names, self.eval_sigmas) if counts[name] > 1})
            raise ValueError(f"eval_sigmas: levels that metric names spell alike (sigma_<s> keeps 6 significant digits) "
                             f"would overwrite each other's metrics: {twice}; list each level once")
        if self.eval_noise_seeds < 1:
            raise ValueError(f"eval_noise_seeds must be >= 1, got {self.eval_noise_seeds}")
        if self.eval_noise_mode is not None and self.eval_noise_mode not in NOISE_MODES:
            raise ValueError(f"eval_noise_mode must be one of {NOISE_MODES}, got {self.eval_noise_mode!r}")
        check_eval_sigmas(self.eval_sigmas, self.eval_noise_mode, "eval_noise_mode")
        if self.eval_noise_tile_size is not None:
            check_tile_size(self.eval_noise_tile_size, "eval_noise_tile_size")
        check_noise_target_modules(self.eval_noise_target_modules, "eval_noise_target_modules")
        if self.noise_seed is None:
            self.noise_seed = self.seed
        check_draw_key(self.noise_seed, "noise_seed (default: seed)", minimum=0)
        if self.log_samples and (self.prediction_loss_only or self.batch_eval_metrics):
            raise ValueError("log_samples writes each evaluation's choice scores, which prediction_loss_only and "
                             "batch_eval_metrics do not keep: set them False, or log_samples False")
        self._check_metric_for_best_model(names)

    def _check_metric_for_best_model(self, reported: list[str]) -> None:
        """Refuses, before training, a metric whose sigma level ``HaLoRATrainer.evaluate`` will not report (the
        Trainer would raise KeyError at the first evaluation). Plain names (``loss``, ``accuracy``)
        come only from the run at sigma 0; every sigma gives ``<metric>_sigma_<s>_mean`` / ``_std``
        (``reported``: the levels as metric names spell them). The metric itself is checked by the trainer,
        which knows its compute_metrics."""
        if self.metric_for_best_model is None:
            return
        name = self.metric_for_best_model.removeprefix("eval_")
        noisy = re.fullmatch(r".+_sigma_(.+)_(?:mean|std)", name)
        if noisy is None and 0.0 not in self.eval_sigmas:
            raise ValueError(
                f"metric_for_best_model={self.metric_for_best_model!r} is reported only when 0 is in eval_sigmas "
                f"(got eval_sigmas={self.eval_sigmas}): add 0 to eval_sigmas, or pick a noisy metric such as "
                f"{sigma_key('eval', name, self.eval_sigmas[0], 'mean')!r}"
            )
        if noisy is not None and noisy.group(1) not in reported:
            raise ValueError(
                f"metric_for_best_model={self.metric_for_best_model!r} names sigma {noisy.group(1)}, which eval_sigmas "
                f"does not evaluate (eval_sigmas={self.eval_sigmas}, spelled {reported} in metric names)"
            )


def _has_cotrainer(trainer_class: type) -> bool:
    """Whether ``trainer_class`` combines HaLoRATrainer with another Trainer class (TRL's SFTTrainer in
    ``class T(HaLoRATrainer, SFTTrainer)``)."""
    return any(issubclass(cls, Trainer) and not issubclass(cls, HaLoRATrainer) and cls not in HaLoRATrainer.__mro__
               for cls in trainer_class.__mro__)


def check_eval_sigmas(sigmas: list[float], mode: str | None, source: str) -> None:
    """Refuses, before training, a stuck_at evaluation level above 1 (there sigma is the fraction of
    stuck cells); ``source`` names where the mode came from."""
    if mode == "stuck_at" and any(sigma > 1 for sigma in sigmas):
        raise ValueError(f"eval_sigmas: with stuck_at noise ({source}) each sigma is the fraction of stuck cells "
                         f"and must be <= 1, got {sigmas}")


def save_data_splits(folder, data_splits: list[dict]) -> None:
    """``data_splits`` (the data settings of each training run an adapter went through) as DATA_SPLITS_NAME."""
    Path(folder).mkdir(parents=True, exist_ok=True)
    Path(folder, DATA_SPLITS_NAME).write_text(json.dumps(data_splits, indent=2) + "\n")


def read_data_splits(adapter: str, revision: str | None = None) -> list[dict]:
    """The data splits an adapter's folder or Hub repo (at ``revision``) records; none for an adapter saved
    without them (by PEFT itself, or by hf-eff before it kept them)."""
    if Path(adapter).is_dir():
        path = Path(adapter, DATA_SPLITS_NAME)
        if not path.is_file():
            return []
    else:
        try:
            path = hf_hub_download(adapter, DATA_SPLITS_NAME, revision=revision)
        except EntryNotFoundError:
            return []
    try:
        data_splits = json.loads(Path(path).read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{adapter}: {DATA_SPLITS_NAME} is not JSON ({error}); remove it to use the adapter "
                         "without its record of the questions it trained on") from error
    if not isinstance(data_splits, list) or not all(isinstance(split, dict) for split in data_splits):
        raise ValueError(f"{adapter}: {DATA_SPLITS_NAME} holds {data_splits!r}, not a list of data splits (one object "
                         "per training run)")
    return data_splits


def training_noise_sigma(config: HaLoRAConfig, draw: int, seed: int) -> float:
    """The noise level of training draw ``draw`` (it starts at step ``draw * noise_resample_steps``):
    ``noise_sigma``, ramped over ``noise_warmup_steps``, times a U(0, 1) factor seeded by (seed, draw)
    when ``noise_sigma_sampling`` is ``uniform``. The same on every process."""
    sigma = config.noise_sigma
    if config.noise_warmup_steps:
        sigma *= min(1.0, draw * config.noise_resample_steps / config.noise_warmup_steps)
    if config.noise_sigma_sampling == "uniform":
        sigma *= draw_seed(seed, draw, "noise_sigma") / 2**63
    return sigma


def sigma_name(sigma: float) -> str:
    """A noise level as metric names spell it (6 significant digits): ``0.01``."""
    return f"{sigma:g}"


def sigma_key(prefix: str, metric: str, sigma: float, stat: str) -> str:
    """``eval_accuracy_sigma_0.01_mean``."""
    return f"{prefix}_{metric}_sigma_{sigma_name(sigma)}_{stat}"


def write_samples(path: Path, samples: Iterable[dict], sigma: float, noise_seed: int | None) -> None:
    """Appends one evaluation run's per-question ``samples`` (``MultipleChoiceScorer.samples``) to ``path`` as JSON
    lines, each led by the run's ``sigma`` and ``noise_seed`` (None at sigma 0, which draws no noise, is written as
    ``NO_NOISE_SEED``). A value JSON has no type for (a date in a dataset's other columns) is written as its str, as
    the harness does."""
    seed = NO_NOISE_SEED if noise_seed is None else noise_seed
    with path.open("a") as file:
        for sample in samples:
            file.write(json.dumps({"sigma": sigma, "noise_seed": seed, **sample}, default=str) + "\n")


class _OneNoiseDrawWarning(TrainerCallback):
    """Warns at train start, once the run's steps are known, of a run that ends within its first noise draw."""

    def __init__(self, trainer: HaLoRATrainer):
        self.trainer = trainer

    def on_train_begin(self, args, state, control, **kwargs):
        self.trainer.warn_of_one_noise_draw(state.max_steps)


class HaLoRATrainer(TrainingFailuresMixin, HubCardTrainerMixin, Trainer):
    """``Trainer`` for HaLoRA adapters (and for LoRA baselines evaluated the same way).

    Training (HaLoRA adapter active): the adapter's RRAM noise is written into the frozen weights
    and redrawn every ``noise_resample_steps`` optimizer steps from (noise_seed, draw index, layer),
    at the level ``training_noise_sigma`` gives (warm-up, sampled level), identical on every process;
    ``reg_weight * L_reg`` reaches the adapter as the config's ``reg_application`` says (a decoupled
    step after each optimizer step, or in the loss). Logs ``task_loss``, ``reg_loss`` and
    ``noise_sigma`` (the current draw's level) beside ``loss``. A non-finite training loss, or LoRA factors the
    regulariser finds non-finite, stop training with a ``FloatingPointError`` (``TrainingFailuresMixin``). The
    noise is taken out before evaluation, saving and at the end of training. ``evaluate`` runs at each of ``eval_sigmas``; ``predict``
    runs on the clean weights (inside ``with rram_noise(trainer.model, ...)`` on noisy ones).

    ``scorer`` (``tokenize_for_scoring``'s, with its eval dataset) scores the evaluation: it sets
    ``compute_metrics`` and ``preprocess_logits_for_metrics``, and with ``log_samples`` maps each run's
    choice scores to the per-question samples written beside the metrics. It scores only its own rows (``scorer.rows``,
    or as many rows for a scorer built by hand), in the trainer's eval_dataset (each split of a dict) or given to
    ``evaluate`` / ``predict``, which refuse others before any evaluation step unless given with their own scorer
    (``trainer.evaluate(rows, scorer=scorer)``); a scorer's ``compute_metrics`` given as the trainer's is checked
    the same way. Its rows, and any dataset's rows whose
    labels differ in length (``tokenize_for_training``'s), need a collator that pads labels: given none, the trainer
    pads them, with a scorer or without, with ``choice_rows_collator`` (on the right, with -100) from the scorer's
    tokenizer (else ``processing_class``), as TRL's trainers choose the collator their data needs; a collator that
    pads no labels is refused, and so is a trainer with no tokenizer to pad them with.

    ``data_splits``, when set, is saved beside the adapter (checkpoints too) as DATA_SPLITS_NAME: the data
    settings of each training run the adapter went through, which tell an evaluation of it whether its
    questions were held out from them (examples/halora_finetune.py sets and reads them).
    """

    card_kind = "halora_adapter"
    data_splits: list[dict] | None = None

    def __init__(self, *args, scorer: MultipleChoiceScorer | None = None, **kwargs):
        if scorer is not None:
            given = [name for name in ("compute_metrics", "preprocess_logits_for_metrics") if kwargs.get(name) is not None]
            if given:  # the samples must be what the reported metrics counted
                raise ValueError(f"HaLoRATrainer: scorer sets compute_metrics and preprocess_logits_for_metrics; "
                                 f"give scorer or {' and '.join(given)}, not both")
            kwargs.update(compute_metrics=scorer.compute_metrics, preprocess_logits_for_metrics=choice_logprob_sums)
        # Trainer and TRL's trainers take data_collator third
        collator_given = (args[2] if len(args) > 2 else kwargs.get("data_collator")) is not None
        given = inspect.signature(super().__init__).bind_partial(*args, **kwargs).arguments
        self._check_metric_for_best_model(given.get("args"), given.get("compute_metrics"), given.get("eval_dataset"))
        super().__init__(*args, **kwargs)
        if not isinstance(self.args, HaLoRATrainingArguments):
            raise TypeError("HaLoRATrainer needs HaLoRATrainingArguments (eval_sigmas, eval_noise_seeds, noise_seed)")
        if self.args.log_samples and scorer is None:
            raise ValueError("log_samples needs the eval dataset's scorer: HaLoRATrainer(..., scorer=scorer, "
                             "eval_dataset=rows) with rows, scorer = tokenize_for_scoring(questions, tokenizer) "
                             "(hf_eff.halora.experiment.build_trainer passes them)")
        self.data_collator = self._padding_collator(scorer, collator_given)
        self.scorer = scorer
        self._check_scored_rows(None, "HaLoRATrainer")  # before training, not at its first evaluation
        earlier_samples = [] if self.args.log_samples else sorted(Path(self.args.output_dir).glob("samples_*.jsonl"))
        if earlier_samples and self.is_world_process_zero():  # beside this run's results, they would pass for its own
            warnings.warn(f"output_dir {self.args.output_dir} holds {', '.join(p.name for p in earlier_samples)} of an "
                          "earlier run, which this trainer's evaluations leave as they are (log_samples False): they are "
                          "not this run's; set log_samples True to rewrite them, or use another output_dir", stacklevel=2)
        self._train_noise: RRAMNoise | None = None
        self._train_draw: int | None = None
        self._reg_sum: torch.Tensor | float = 0.0  # a tensor while training: no device sync per step
        self._reg_count = 0
        self._hooked_optimizer: torch.optim.Optimizer | None = None
        self._factor_groups: FactorGroups | None = None  # the decoupled step's, kept within a train() call
        self._in_train = False  # Trainer's is_in_train stays True after a train() that raised
        self.add_callback(_OneNoiseDrawWarning(self))
        config = self.halora_config()
        if config is not None and config.noise_sigma > 0 and 0 < config.noise_warmup_steps <= config.noise_resample_steps:
            # the level is taken at each draw's first step: draw 0 is at 0, draw 1 (past the warm-up) at the full level
            warnings.warn(
                f"HaLoRAConfig.noise_warmup_steps={config.noise_warmup_steps} is not longer than noise_resample_steps="
                f"{config.noise_resample_steps}: training runs noise-free for the first {config.noise_resample_steps} "
                "steps, then at the full noise_sigma, with no ramp between (any such warm-up trains the same); for a "
                "ramp, draw several times within the warm-up (noise_resample_steps a fraction of noise_warmup_steps)",
                stacklevel=2,
            )
        if any(sigma > 0 for sigma in self.args.eval_sigmas):
            # Checked now, not after training: a model without noisable layers, or stuck_at levels above
            # 1 from the adapter's mode, would fail only at evaluation.
            settings, model = self.eval_noise_settings(), self._eval_noise_model()
            rram_linear_modules(model, settings["target_modules"], field=setting_field(
                model, "target_modules", self.args.eval_noise_target_modules, "eval_noise_target_modules"))
            check_eval_sigmas(self.args.eval_sigmas, settings["mode"],
                              setting_field(model, "mode", self.args.eval_noise_mode, "eval_noise_mode"))

    def _check_metric_for_best_model(self, args, compute_metrics, eval_dataset) -> None:
        """Refuses, before Trainer makes output_dir, a ``metric_for_best_model`` that ``evaluate`` does not report,
        naming those it does: the Trainer would raise KeyError at the first evaluation. Checked where the names are
        known: this class's evaluate, alone (a co-trainer's, TRL's, adds its own), with no ``compute_metrics`` (the
        loss only) or a scorer's (``HaLoRATrainingArguments`` checks the sigma levels when built)."""
        metric = getattr(args, "metric_for_best_model", None)
        scorer = getattr(compute_metrics, "__self__", None)
        own_metrics = compute_metrics is None or isinstance(scorer, MultipleChoiceScorer)
        if (metric is None or eval_dataset is None or not own_metrics or not isinstance(args, HaLoRATrainingArguments)
                or type(self).evaluate is not HaLoRATrainer.evaluate or _has_cotrainer(type(self))):
            return
        run = ["loss"]
        if scorer is not None and not args.prediction_loss_only:
            run += ["accuracy"] + ([] if scorer.choice_lengths is None else ["accuracy_norm"])
        plain = run if 0.0 in args.eval_sigmas else []
        noisy = [sigma_key("", name, sigma, stat).removeprefix("_") for sigma in args.eval_sigmas for name in run
                 for stat in ("mean", "std")]
        names = [*plain, *noisy, *SPEED_METRICS]
        if metric.removeprefix("eval_") in reported_metric_names(names, eval_dataset):
            return
        levels = ", ".join(sigma_name(sigma) for sigma in args.eval_sigmas)
        splits = (f", each led by its eval_dataset split's key ({', '.join(eval_dataset)})"
                  if isinstance(eval_dataset, dict) else "")
        raise ValueError(
            f"metric_for_best_model (--metric_for_best_model) is {metric!r}, which HaLoRATrainer's evaluation does not "
            f"report; it reports {', '.join(plain) + ' (the run at sigma 0), ' if plain else ''}"
            f"<metric>_sigma_<s>_mean and _std of {', '.join(run)} at each of eval_sigmas ({levels}), e.g. "
            f"{noisy[0]!r}, and {', '.join(SPEED_METRICS)}{splits} (each also with an eval_ prefix)"
        )

    def _padding_collator(self, scorer: MultipleChoiceScorer | None, collator_given: bool):
        """The collator the rows need. transformers' defaults pad no labels, so they fail on rows that carry labels and
        differ in length: the scorer's rows always, and ``tokenize_for_training``'s (any dataset whose rows do), with a
        scorer or without. Given, such a collator is refused; chosen by default, ``choice_rows_collator`` replaces it,
        from the scorer's tokenizer, else ``processing_class``. Any other collator (a co-trainer's own: TRL's pads
        labels) is kept."""
        pads_no_labels = self.data_collator is default_data_collator or type(self.data_collator) is DataCollatorWithPadding
        if not pads_no_labels:
            return self.data_collator
        if scorer is not None:
            rows = "scorer: tokenize_for_scoring's rows"
        else:
            rows = next((f"{name}: its rows" for name, dataset in self._named_datasets()
                         if labelled_rows_differ_in_length(dataset)), None)
            if rows is None:
                return self.data_collator
        tokenizer = scorer.tokenizer if scorer is not None else None
        if tokenizer is None and isinstance(self.processing_class, PreTrainedTokenizerBase):
            tokenizer = self.processing_class
        if collator_given:
            raise ValueError(f"{rows} differ in length and carry labels, which the given data_collator does not pad; "
                             "give none (the trainer then pads them with the scorer's tokenizer, else processing_class) "
                             "or one that pads labels on the right, e.g. hf_eff.choice_rows_collator(tokenizer)")
        if tokenizer is None:
            holders = "neither the scorer (one tokenize_for_scoring did not build) nor processing_class holds" if (
                scorer is not None) else "no processing_class gives"
            raise ValueError(f"{rows} differ in length and carry labels, and {holders} the tokenizer to pad them "
                             "with; give processing_class=tokenizer, or data_collator="
                             "hf_eff.choice_rows_collator(tokenizer)")
        return choice_rows_collator(tokenizer)

    def _metrics_scorer(self) -> MultipleChoiceScorer | None:
        """The scorer whose answers the metrics count: the trainer's, or the one whose ``compute_metrics`` was given."""
        if self.scorer is not None:
            return self.scorer
        owner = getattr(self.compute_metrics, "__self__", None)
        return owner if isinstance(owner, MultipleChoiceScorer) else None

    def _check_scored_rows(self, dataset, call: str) -> None:
        """Refuses, before any evaluation step, a dataset the scorer was not made for (``rows_mismatch``): its metrics
        would count another set's answers, in that set's choice layout. ``dataset`` as ``evaluate`` takes it: None
        (the trainer's own), a key of the trainer's dict, a dataset or a dict of them."""
        scorer = self._metrics_scorer()
        if scorer is None:
            return
        name = "the trainer's eval_dataset"
        if dataset is None:
            dataset = self.eval_dataset
        elif isinstance(dataset, str):
            name, dataset = f"the trainer's eval_dataset[{dataset!r}]", self.eval_dataset[dataset]
        else:
            name = "the dataset given"
        named = ([(f"{name}[{key!r}]", split) for key, split in dataset.items()] if isinstance(dataset, dict)
                 else [(name, dataset)] if dataset is not None else [])
        for split_name, split in named:
            why = scorer.rows_mismatch(split)
            if why is not None:
                raise ValueError(
                    f"{call}: the scorer cannot score {split_name}: {why}; its accuracy would count another set's "
                    "answers. Score each set of rows with the scorer tokenize_for_scoring returned with them (rows, "
                    "scorer = tokenize_for_scoring(questions, tokenizer)): HaLoRATrainer(..., eval_dataset=rows, "
                    "scorer=scorer), or trainer.evaluate(rows, scorer=scorer) (predict too) for other rows; a dict "
                    "eval_dataset's splits, each with its own scorer, one evaluate call each")

    @contextlib.contextmanager
    def _scoring_with(self, scorer: MultipleChoiceScorer) -> Iterator[None]:
        """Within, the trainer scores with ``scorer`` as if built with it: its metrics, its samples, and, where the
        trainer's collator pads no labels, ``choice_rows_collator``."""
        saved = self.scorer, self.compute_metrics, self.preprocess_logits_for_metrics, self.data_collator
        try:
            self.scorer, self.compute_metrics = scorer, scorer.compute_metrics
            self.preprocess_logits_for_metrics = choice_logprob_sums
            self.data_collator = self._padding_collator(scorer, collator_given=False)
            yield
        finally:
            self.scorer, self.compute_metrics, self.preprocess_logits_for_metrics, self.data_collator = saved

    def _named_datasets(self) -> Iterator[tuple[str, object]]:
        """The trainer's datasets, each named as its argument (an eval dataset of a dict by its key)."""
        yield "train_dataset", self.train_dataset
        evaluation = self.eval_dataset
        yield from (((f"eval_dataset[{key!r}]", dataset) for key, dataset in evaluation.items())
                    if isinstance(evaluation, dict) else [("eval_dataset", evaluation)])

    # --- configuration ---------------------------------------------------------------------

    def halora_config(self) -> HaLoRAConfig | None:
        """The active adapter's HaLoRAConfig, or None for LoRA / plain models."""
        return active_halora_config(self.model)

    def regularization_loss(self) -> torch.Tensor:
        with self._regulariser_divergence():
            return self.model.base_model.get_regularization_loss(self.model.active_adapter)

    def regularization_gradients(self) -> tuple[torch.Tensor, list[tuple[torch.nn.Parameter, torch.Tensor]]]:
        """``regularization_loss`` (detached) and its gradient with respect to each of the active adapter's factors
        (``halora_regularizer_gradients``)."""
        config, model, adapter = self.halora_config(), self.model.base_model.model, self.model.active_adapter
        if config is None:  # a plain LoRA adapter set active after the optimizer took the decoupled step's hook
            raise ValueError(f"adapter {adapter!r} is not a HaLoRA adapter ({type(self.model.peft_config[adapter]).__name__}): "
                             "the HaLoRA regulariser needs the active adapter to be one")
        # Kept between the steps of a train() call (the walk over every module costs a few ms of host time a step, as
        # much as the rest of the regulariser step), and found again for another adapter, or one deleted and re-added; not kept outside train(),
        # where the model may be cast or moved before the next call
        groups = self._factor_groups
        if groups is None or groups.adapter_name != adapter or not groups.are_current():
            groups = lora_factor_groups(model, adapter)
            self._factor_groups = groups if self._in_train else None
        with self._regulariser_divergence():
            return halora_regularizer_gradients(model, adapter, norm=config.reg_norm, reduction=config.reg_reduction,
                                                groups=groups)

    @contextlib.contextmanager
    def _regulariser_divergence(self) -> Iterator[None]:
        try:
            yield
        except FloatingPointError as error:  # non-finite LoRA factors: the optimizer step just taken diverged
            raise self.divergence_error(f"the HaLoRA regulariser's {error}") from error

    # --- training --------------------------------------------------------------------------

    def warn_of_one_noise_draw(self, max_steps: int) -> None:
        """Warns when a run of ``max_steps`` optimizer steps trains a noisy HaLoRA adapter under a single noise draw
        (the draws change every ``noise_resample_steps``), as a short run with the paper's 400 does; with a warm-up,
        that draw's level is 0, and the run trains noise-free."""
        config = self.halora_config()
        if config is None or config.noise_sigma == 0 or max_steps > config.noise_resample_steps:
            return
        steps = (f"the run's {max_steps} optimizer steps are no more than HaLoRAConfig.noise_resample_steps="
                 f"{config.noise_resample_steps}")
        if config.noise_warmup_steps:  # its one draw is at step 0, where the warm-up's level is 0
            warnings.warn(f"{steps}: the whole run trains under its first noise draw, at level 0 within "
                          f"noise_warmup_steps={config.noise_warmup_steps}, so without any noise; for noise, set "
                          f"noise_resample_steps and noise_warmup_steps to fractions of {max_steps}", stacklevel=2)
            return
        warnings.warn(f"{steps}: the whole run trains under one noise draw; for several, set noise_resample_steps to "
                      f"a fraction of {max_steps}", stacklevel=2)

    def _sync_training_noise(self) -> None:
        config = self.halora_config()
        if config is None or config.noise_sigma == 0:
            return
        draw = self.state.global_step // config.noise_resample_steps
        if self._train_noise is not None and self._train_noise.active and self._train_draw == draw:
            return
        if self._train_noise is None:
            self._train_noise = RRAMNoise(
                self.model, config.noise_sigma, config.noise_mode, config.noise_tile_size, config.noise_target_modules
            )
        self._train_noise.redraw(seed=self.args.noise_seed, draw_index=draw,
                                 sigma=training_noise_sigma(config, draw, self.args.noise_seed))
        self._train_draw = draw

    def remove_training_noise(self) -> None:
        """Puts the clean weights back (the next training step draws the noise again)."""
        if self._train_noise is not None:
            self._train_noise.restore()

    def create_optimizer(self, model=None):
        optimizer = super().create_optimizer(model)
        config = self.halora_config()
        decoupled = config is not None and config.reg_application == "decoupled" and config.reg_weight > 0
        # From the second train() (or a resume) on the same trainer, the optimizer is accelerate's wrapper:
        # the hook belongs on the torch optimizer inside, once.
        torch_optimizer = optimizer.optimizer if isinstance(optimizer, AcceleratedOptimizer) else optimizer
        if decoupled and self._hooked_optimizer is not torch_optimizer:
            # A hook on the torch optimizer fires only on real steps (not on accumulation micro-steps
            # nor on steps a gradient scaler skips).
            torch_optimizer.register_step_post_hook(lambda optimizer, args, kwargs: self._decoupled_regulariser_step(optimizer))
            self._hooked_optimizer = torch_optimizer
        return optimizer

    def _decoupled_regulariser_step(self, optimizer: torch.optim.Optimizer) -> None:
        """``p -= lr * mu * dL_reg/dp`` on the adapter's factors. L_reg depends only on the parameters,
        which DDP keeps identical on every process, so every process takes the same step: it counts
        once, with no communication. The factors of one learning rate, device and dtype take one foreach
        update (as torch.optim's), not one operator call each: the step is launch-bound."""
        config = self.halora_config()
        learning_rates = {p: group["lr"] for group in optimizer.param_groups for p in group["params"]}
        with torch.enable_grad():
            reg, gradients = self.regularization_gradients()
        updates: dict[tuple, tuple[list, list]] = defaultdict(lambda: ([], []))
        for param, grad in gradients:
            if param.requires_grad and param in learning_rates:  # only what this optimizer trains
                params, grads = updates[(learning_rates[param], param.device, param.dtype)]
                params.append(param)
                grads.append(grad)
        with torch.no_grad():
            for (learning_rate, _, _), (params, grads) in updates.items():
                torch._foreach_add_(params, grads, alpha=-learning_rate * config.reg_weight)
        self._reg_sum = self._reg_sum + reg
        self._reg_count += 1

    def training_step(self, model, inputs, num_items_in_batch=None):
        self._sync_training_noise()
        tuner = getattr(self.model, "base_model", None)
        if not hasattr(tuner, "halora_trainer_step"):  # LoRA / plain models
            return super().training_step(model, inputs, num_items_in_batch)
        tuner.halora_trainer_step = True  # tells HaLoRAModel its training forward is HaLoRA's
        try:
            return super().training_step(model, inputs, num_items_in_batch)
        finally:
            tuner.halora_trainer_step = False

    def _loss_is_scaled_for_ga(self, num_items_in_batch) -> bool:
        # Mirrors Trainer.training_step: when the task loss is already normalised over the whole
        # accumulated batch, the Trainer does not divide it by the accumulation steps.
        if getattr(self, "loss_is_scaled_for_ga", None) is not None:
            return self.loss_is_scaled_for_ga
        return (self.model_accepts_loss_kwargs and num_items_in_batch is not None) or self.compute_loss_func is not None

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        result = super().compute_loss(model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch)
        config = self.halora_config()
        if config is None or config.reg_weight == 0 or config.reg_application != "loss" or not model.training:
            return result
        loss, outputs = result if return_outputs else (result, None)
        reg = self.regularization_loss()
        self._reg_sum = self._reg_sum + reg.detach()
        self._reg_count += 1
        # L_reg does not depend on the batch: each of the accumulated micro-batches carries 1/GA of
        # it, so one optimizer step sees mu * L_reg exactly once. It is added after the Trainer's
        # world-size factor (token averaging across devices), and DDP averages the identical
        # gradients of every process, so it also counts once across processes.
        accumulation = 1
        if self._loss_is_scaled_for_ga(num_items_in_batch):
            accumulation = getattr(self, "current_gradient_accumulation_steps", self.args.gradient_accumulation_steps)
        loss = loss + config.reg_weight * reg / accumulation
        return (loss, outputs) if return_outputs else loss

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        config = self.halora_config()
        if config is not None and "loss" in logs:
            logs["noise_sigma"] = self._train_noise.sigma if self._train_noise is not None else config.noise_sigma
            if self._reg_count:
                reg = float(self._reg_sum) / self._reg_count
                logs["reg_loss"] = reg
                in_loss = config.reg_application == "loss"
                logs["task_loss"] = logs["loss"] - config.reg_weight * reg if in_loss else logs["loss"]
                self._reg_sum, self._reg_count = 0.0, 0
        super().log(logs, start_time)

    def train(self, resume_from_checkpoint=None, **kwargs):
        if not any(param.requires_grad for param in self.model.parameters()):  # torch would fail at the first backward
            raise ValueError("HaLoRATrainer.train: the model has no trainable parameters; an adapter loaded with "
                             "PeftModel.from_pretrained is frozen unless loaded with is_trainable=True")
        if resume_from_checkpoint:  # train(None) resumes nothing, whatever args.resume_from_checkpoint says
            check_resume(self.args, resume_from_checkpoint)
        self._in_train = True
        try:
            return super().train(resume_from_checkpoint, **kwargs)
        finally:
            self.remove_training_noise()
            self._in_train, self._factor_groups = False, None

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False):
        self.remove_training_noise()
        self.save_data_splits(output_dir)  # first: with push_to_hub, Trainer.save_model ends by uploading the folder
        super().save_model(output_dir, _internal_call)

    def _save(self, output_dir: str | None = None, state_dict=None):
        model = self.accelerator.unwrap_model(self.model, keep_torch_compile=False)  # the one Trainer._save saves
        embedding_layers = save_embedding_layers(model) if isinstance(model, PeftModel) else "auto"
        if embedding_layers == "auto":
            return super()._save(output_dir, state_dict)
        # Trainer._save calls model.save_pretrained(output_dir, state_dict=..., is_main_process=...) with no route for
        # save_embedding_layers, whose "auto" would look the built-in base up on the Hub; patched to avoid copying it.
        own = vars(model).get("save_pretrained")  # an instance's own save_pretrained, kept and restored
        model.save_pretrained = functools.partial(model.save_pretrained, save_embedding_layers=embedding_layers)
        try:
            return super()._save(output_dir, state_dict)
        finally:
            if own is None:
                del model.save_pretrained
            else:
                model.save_pretrained = own

    def save_data_splits(self, output_dir: str | None = None) -> None:
        """``data_splits``, if set, into ``output_dir`` (default: the arguments'), from the process that saves."""
        if self.data_splits is not None and self.args.should_save:
            save_data_splits(output_dir or self.args.output_dir, self.data_splits)

    # --- evaluation under noise --------------------------------------------------------------

    def _take_cotrainer_eval_metrics(self, prefix: str) -> dict[str, float]:
        """Metrics a trainer combined with this one gathers during an evaluation run and would log only
        at the end: TRL's (``class T(HaLoRATrainer, SFTTrainer)``) keep them in ``self._metrics["eval"]``
        (``entropy``, ``mean_token_accuracy``) and average them in ``log``, which would pool every sigma
        and seed under the noise-free names. Taken after each run, they are reported per sigma (TRL's
        token count, ``_COTRAINER_TOTALS``, is left to TRL)."""
        pending = getattr(self, "_metrics", None)
        if not isinstance(pending, dict) or not pending.get("eval"):
            return {}
        taken = [key for key, values in pending["eval"].items() if values and key not in _COTRAINER_TOTALS]
        return {f"{prefix}_{key}": sum(values) / len(values) for key, values in
                ((key, pending["eval"].pop(key)) for key in taken)}

    def eval_noise_settings(self) -> dict:
        """mode, tile_size and target_modules of the evaluation noise: the arguments' ``eval_noise_*``
        where given, else the active HaLoRA adapter's (unless ``eval_noise_from_adapter`` is False), else the
        defaults (``noise.noise_settings``)."""
        return noise_settings(self._eval_noise_model(), mode=self.args.eval_noise_mode,
                              tile_size=self.args.eval_noise_tile_size, target_modules=self.args.eval_noise_target_modules)

    def _eval_noise_model(self) -> torch.nn.Module:
        """What the evaluation noise is drawn on. With ``eval_noise_from_adapter`` False, the model inside the
        PeftModel: the same layers, canonical names (so the same draws) and adapter-side modules, but no adapter
        config for ``RRAMNoise`` to read the settings left as None from."""
        if self.args.eval_noise_from_adapter or not isinstance(self.model, PeftModel):
            return self.model
        return self.model.get_base_model()

    def samples_path(self, metric_key_prefix: str = "eval") -> Path:
        """Where ``evaluate`` writes its samples with ``log_samples``."""
        return Path(self.args.output_dir, f"samples_{metric_key_prefix}.jsonl")

    def _new_samples_file(self, metric_key_prefix: str) -> Path | None:
        """With ``log_samples``, on the main process only (every process holds the gathered predictions):
        ``samples_path``, emptied for this evaluation's runs; else None."""
        if not (self.args.log_samples and self.is_world_process_zero()):
            return None
        path = self.samples_path(metric_key_prefix)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("")
        return path

    def _noise_runs(self, sigma: float) -> int:
        """Evaluation runs at ``sigma``: one noise seed per run, a single run without noise."""
        return 1 if sigma == 0 else self.args.eval_noise_seeds

    def _open_progress_bar_over_runs(self, dataloader) -> None:
        """Gives transformers' progress bar, the terminal's or Jupyter's, the batches of all of ``evaluate``'s runs:
        ProgressCallback and NotebookProgressCallback size their bar to one run's batches at the first prediction step
        and close it only at on_evaluate, which comes once after every run, so the bar counted on past its total (the
        terminal's with no ETA, the notebook's stuck at its end)."""
        if not (self.state.is_world_process_zero and has_length(dataloader)):
            return
        runs = sum(self._noise_runs(sigma) for sigma in self.args.eval_sigmas)
        total, label = runs * len(dataloader), f"Evaluation ({runs} runs)"
        # Imported only by whoever made a notebook callback (it needs IPython): absent, there is none to size.
        notebook = sys.modules.get("transformers.utils.notebook")
        for callback in self.callback_handler.callbacks:
            if isinstance(callback, ProgressCallback) and callback.prediction_bar is None:
                callback.prediction_bar = tqdm(total=total, desc=label, leave=callback.training_bar is None,
                                               dynamic_ncols=True)
            elif (notebook is not None and isinstance(callback, notebook.NotebookProgressCallback)
                  and callback.prediction_bar is None):
                tracker = callback.training_tracker  # during training the bar goes under its table, as transformers'
                bar = (tracker.add_child(total, prefix=label) if tracker is not None
                       else notebook.NotebookProgressBar(total, prefix=label))
                bar.update(0)  # the callback counts on from the bar's value at each prediction step
                callback.prediction_bar = bar

    def card_run_settings(self) -> dict:
        settings = self.eval_noise_settings()
        return {"noise_mode": settings["mode"], "noise_tile_size": settings["tile_size"],
                "num_noise_seeds": self.args.eval_noise_seeds}

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval", *,
                 scorer: MultipleChoiceScorer | None = None) -> dict[str, float]:
        """Every metric at each of ``eval_sigmas``, over ``eval_noise_seeds`` noise seeds (one run
        at sigma 0): ``<prefix>_<metric>_sigma_<s>_mean`` / ``_std`` (std over seeds, ddof 0). The
        noise-free run's metrics are also reported under their usual names. Accuracy is exact on
        any number of processes; the loss is transformers' own, which over several processes
        weighs an uneven last batch as a full one (transformers issue #16716). With ``log_samples``, each
        run's per-question samples go to ``samples_path(metric_key_prefix)``. Evaluate the unmerged
        adapter: merged weights would put BA on RRAM with W0 (see ``rram_noise``).

        The scorer scores only its own rows: other rows are refused before any run, unless given with their own
        ``scorer`` (``tokenize_for_scoring``'s), which then scores this call in place of the trainer's."""
        if scorer is not None:
            with self._scoring_with(scorer):
                return self.evaluate(eval_dataset, ignore_keys, metric_key_prefix)
        self._check_scored_rows(eval_dataset, "evaluate")
        if isinstance(eval_dataset if eval_dataset is not None else self.eval_dataset, dict):
            return super().evaluate(eval_dataset, ignore_keys, metric_key_prefix)  # recurses per dataset
        self.remove_training_noise()
        if not self.is_in_train and (self.args.fp16_full_eval or self.args.bf16_full_eval):
            # evaluation_loop casts the model at its first call, which would come inside the first noisy run: the
            # noise must go into (and come out of) the weights the evaluation runs on
            self.model.to(dtype=torch.float16 if self.args.fp16_full_eval else torch.bfloat16, device=self.args.device)
        self._take_cotrainer_eval_metrics(metric_key_prefix)  # left by an earlier predict(): not this evaluation's
        self._memory_tracker.start()
        dataloader = self.get_eval_dataloader(eval_dataset)
        settings = self.eval_noise_settings()
        start_time = time.time()
        metrics: dict[str, float] = {}
        num_samples = num_steps = 0
        total_batch_size = self.args.eval_batch_size * self.args.world_size
        samples_path = self._new_samples_file(metric_key_prefix)
        self._open_progress_bar_over_runs(dataloader)
        for sigma in self.args.eval_sigmas:
            runs = []
            for k in range(self._noise_runs(sigma)):
                noise_seed = self.args.noise_seed + k if sigma > 0 else None
                noise = (
                    rram_noise(self._eval_noise_model(), sigma, seed=noise_seed, draw_index=EVAL_DRAW_INDEX, **settings)
                    if sigma > 0
                    else contextlib.nullcontext()
                )
                with noise:
                    output = self.evaluation_loop(
                        dataloader,
                        description=f"Evaluation sigma={sigma:g} seed={k}",
                        prediction_loss_only=True if self.compute_metrics is None else None,
                        ignore_keys=ignore_keys,
                        metric_key_prefix=metric_key_prefix,
                    )
                num_samples += output.num_samples
                num_steps += math.ceil(output.num_samples / total_batch_size)  # each run's batches, its last one short
                if samples_path is not None:
                    write_samples(samples_path, self.scorer.samples(output.predictions), sigma, noise_seed)
                output.metrics.update(self._take_cotrainer_eval_metrics(metric_key_prefix))
                runs.append(output.metrics)
                if sigma == 0 and not any(k.startswith(f"{metric_key_prefix}_") and "_sigma_" not in k for k in metrics):
                    metrics.update({k: v for k, v in output.metrics.items() if not k.endswith(_NOT_AVERAGED)})
            for key in runs[0]:
                if key.endswith(_NOT_AVERAGED) or not isinstance(runs[0][key], (int, float)):
                    continue
                name = key.removeprefix(f"{metric_key_prefix}_")
                values = np.array([run[key] for run in runs], dtype=np.float64)
                metrics[sigma_key(metric_key_prefix, name, sigma, "mean")] = float(values.mean())
                metrics[sigma_key(metric_key_prefix, name, sigma, "std")] = float(values.std())
        metrics.update(speed_metrics(metric_key_prefix, start_time, num_samples=num_samples, num_steps=num_steps))
        self.log(metrics)
        self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
        self._memory_tracker.stop_and_update_metrics(metrics)
        return metrics

    def predict(self, test_dataset, ignore_keys=None, metric_key_prefix: str = "test", *,
                scorer: MultipleChoiceScorer | None = None):
        """``Trainer.predict``, refusing rows the scorer was not made for, unless given with their own ``scorer``
        (as ``evaluate``)."""
        if scorer is not None:
            with self._scoring_with(scorer):
                return self.predict(test_dataset, ignore_keys, metric_key_prefix)
        self._check_scored_rows(test_dataset, "predict")
        return super().predict(test_dataset, ignore_keys, metric_key_prefix)
