"""Multiple-choice tasks (question, choices, answer index), scored like lm-evaluation-harness.

Each choice is scored by the summed log-likelihood of its tokens (``" " + choice``, the harness's
``target_delimiter``, tokenised after its context as the harness does: see ``encode_choices``) after a
context; the highest-scoring choice is the prediction (``accuracy``), and
the highest score per character of the choice gives ``accuracy_norm`` (the harness's ``acc_norm``).
Training uses the same context followed by the correct choice, with the loss on the choice tokens only.
The context is ``DEFAULT_PROMPT`` (``"Question: {question}\\nAnswer:"``) unless a row has a ``contexts``
column: one context per choice, written as the task's harness prompt (the Hub tasks' mappers fill it).

Offline, deterministic built-in tasks (arithmetic, comparison, ordering) stand in for the paper's
commonsense suite; loaders for the real tasks (ARC-e, ARC-c, OBQA, SIQA, WinoGrande, PIQA) need the Hub.
"""

from __future__ import annotations

import copy
import csv
import gc
import io
import json
import math
import random
import string
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch
from datasets import Dataset, Features, List, Value
from tokenizers import Regex, Tokenizer, models, pre_tokenizers
from transformers import (
    DataCollatorForSeq2Seq,
    EvalPrediction,
    PreTrainedTokenizerBase,
    PreTrainedTokenizerFast,
)

from hf_eff.utils.saved_data import load_saved_dataset

MC_COLUMNS = ("question", "choices", "answer")
# Optional: per row, None (DEFAULT_PROMPT applies) or one context string per choice.
CONTEXTS_COLUMN = "contexts"
# The context of rows without ``contexts``: built-in tasks and users' data. It is the harness's
# ARC and PIQA prompt (arc_easy.yaml, piqa.yaml: doc_to_text: "Question: {{question}}\nAnswer:").
DEFAULT_PROMPT = "Question: {question}\nAnswer:"
BUILTIN_TASKS = ("arithmetic", "comparison", "ordering", "mixed")
MC_FEATURES = Features({"question": Value("string"), "choices": List(Value("string")), "answer": Value("int64")})


def _counted(number: int, noun: str) -> str:
    """``number`` and ``noun``, plural unless one: "1 row", "0 rows", "3 rows"."""
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


def check_multiple_choice(dataset: Dataset, name: str = "dataset") -> None:
    """Columns and types of a multiple-choice dataset: ``question`` a string, ``choices`` a list of
    at least two non-empty strings, ``answer`` an int index into them, and, if the optional
    ``contexts`` column exists, per row None or a list of one string per choice (the text each choice
    is scored after, in place of ``DEFAULT_PROMPT``; empty means after the BOS token, whitespace only is
    refused). Every row is checked before any use; an error names the first bad row counting from 1, as a JSON
    Lines file's lines count (``dataset[i]`` is row i + 1), and says so."""
    missing = [c for c in MC_COLUMNS if c not in dataset.column_names]
    if missing:
        raise ValueError(f"{name}: missing column(s) {missing}; a multiple-choice dataset needs {list(MC_COLUMNS)}"
                         f" (and optionally {CONTEXTS_COLUMN!r})")
    contexts_column = _contexts_column(dataset)
    for row, (question, choices, answer, contexts) in enumerate(
        zip(dataset["question"], dataset["choices"], dataset["answer"], contexts_column), start=1
    ):
        where = f"{name} row {row} (1-based)"
        if not isinstance(question, str):
            raise ValueError(f"{where}: question must be a string, got {question!r}")
        # A single string would be scored as one choice per character.
        if not isinstance(choices, (list, tuple)) or len(choices) < 2 or not all(isinstance(c, str) for c in choices):
            raise ValueError(f"{where}: choices must be a list of at least two strings, got {choices!r}")
        # accuracy_norm divides by the choice's length.
        if not all(choices):
            raise ValueError(f"{where}: choice {choices.index('')} is an empty string")
        # A negative answer (-1 often marks "unlabelled") would index from the end.
        if isinstance(answer, bool) or not isinstance(answer, int) or not 0 <= answer < len(choices):
            raise ValueError(f"{where}: answer {answer!r} is not an int index into its {len(choices)} choices")
        if contexts is not None and (not isinstance(contexts, (list, tuple)) or len(contexts) != len(choices)
                                     or not all(isinstance(c, str) for c in contexts)):
            raise ValueError(f"{where}: {CONTEXTS_COLUMN} must be None or a list of one string per choice "
                             f"({len(choices)}), got {contexts!r}")
        # an empty context is scored after the BOS token, as the harness does; a context of spaces only
        # would leave no token at all once its spaces move onto the choice
        blank = next((k for k, c in enumerate(contexts or ()) if c and not c.strip()), None)
        if blank is not None:
            raise ValueError(f"{where}: {CONTEXTS_COLUMN} {blank} is only whitespace; "
                             "give every choice a context with text, or an empty one")


def _contexts_column(dataset: Dataset | Mapping) -> list:
    """The ``contexts`` column of a Dataset or of a batch dict, all None when there is none."""
    names = dataset.column_names if isinstance(dataset, Dataset) else list(dataset)
    return dataset[CONTEXTS_COLUMN] if CONTEXTS_COLUMN in names else [None] * len(dataset["question"])


def choice_contexts(question: str, choices: Sequence[str], contexts: Sequence[str] | None) -> list[str]:
    """The text each choice is scored after: the row's ``contexts``, else ``DEFAULT_PROMPT`` for every choice."""
    if contexts is not None:
        return list(contexts)
    return [DEFAULT_PROMPT.format(question=question)] * len(choices)


# --- built-in offline tasks -------------------------------------------------------------------


def _arithmetic(rng: random.Random) -> dict:
    a, b = rng.randint(10, 99), rng.randint(10, 99)
    op = rng.choice("+-")
    value = a + b if op == "+" else a - b
    distractors = {value + d for d in (-10, -2, -1, 1, 2, 10, 11, -11)} - {value}
    choices = [value, *rng.sample(sorted(distractors), 3)]
    rng.shuffle(choices)
    return {"question": f"What is {a} {op} {b}?", "choices": [str(c) for c in choices], "answer": choices.index(value)}


def _comparison(rng: random.Random) -> dict:
    a = rng.randint(100, 999)
    b = int("".join(rng.sample(str(a), 3))) if len(set(str(a))) == 3 and rng.random() < 0.5 else rng.randint(100, 999)
    while b == a:
        b = rng.randint(100, 999)
    larger = rng.random() < 0.5
    target = max(a, b) if larger else min(a, b)
    word = "larger" if larger else "smaller"
    return {"question": f"Which number is {word}: {a} or {b}?", "choices": [str(a), str(b)], "answer": [a, b].index(target)}


def _ordering(rng: random.Random) -> dict:
    numbers = rng.sample(range(1, 100), 4)
    ascending = sorted(numbers)
    choices = [ascending]
    while len(choices) < 4:
        shuffled = rng.sample(numbers, 4)
        if shuffled not in choices:
            choices.append(shuffled)
    rng.shuffle(choices)
    return {
        "question": "Which list is sorted from smallest to largest?",
        "choices": [", ".join(map(str, c)) for c in choices],
        "answer": choices.index(ascending),
    }


_GENERATORS: dict[str, Callable[[random.Random], dict]] = {
    "arithmetic": _arithmetic,
    "comparison": _comparison,
    "ordering": _ordering,
}


def _question_key(row: dict) -> tuple[str, str]:
    """What makes two built-in questions the same: the text and the correct answer, whatever the
    distractors (an arithmetic question asked again with other wrong choices is the same question;
    the ordering task asks one text, and its numbers are in the correct choice)."""
    return row["question"], row["choices"][row["answer"]]


def builtin_task(name: str = "mixed", train_size: int = 3000, eval_size: int = 600, seed: int = 0) -> tuple[Dataset, Dataset]:
    """(train, eval) of a built-in task, generated deterministically from ``seed``; each split asks
    each question once, and no question of the eval split appears in the train split, whatever its
    distractors (``_question_key``). ``mixed`` cycles through the three kinds."""
    if name not in BUILTIN_TASKS:
        raise ValueError(f"task_name must be one of {BUILTIN_TASKS} (or a Hub task), got {name!r}")
    kinds = list(_GENERATORS) if name == "mixed" else [name]
    rng = random.Random(f"halora-{name}-{seed}")

    def generate(size: int, exclude: set[tuple[str, str]]) -> list[dict]:
        rows, seen, attempts = [], set(exclude), 0
        while len(rows) < size:
            attempts += 1
            if attempts > 50 * size:
                raise ValueError(f"built-in task {name!r} cannot produce {size} distinct questions; ask for fewer")
            row = _GENERATORS[kinds[len(rows) % len(kinds)]](rng)
            key = _question_key(row)
            if key not in seen:
                seen.add(key)
                rows.append(row)
        return rows

    eval_rows = generate(eval_size, set())
    train_rows = generate(train_size, {_question_key(row) for row in eval_rows})
    # by columns and typed, so that a split of size 0 still has them (and is refused as empty, not as malformed)
    return tuple(Dataset.from_dict({c: [row[c] for row in rows] for c in MC_COLUMNS}, features=MC_FEATURES)
                 for rows in (train_rows, eval_rows))


# --- the paper's tasks from the Hub (need internet) -------------------------------------------


# The mappers write each task's lm-evaluation-harness prompt (lm_eval/tasks/<task>/*.yaml, quoted
# below) into ``contexts``; the harness then scores " " + choice (its default target_delimiter).


def arc_to_mc(example: dict) -> dict:
    """arc_easy.yaml / arc_challenge: ``doc_to_text: "Question: {{question}}\\nAnswer:"``,
    ``doc_to_choice: "{{choices.text}}"``."""
    labels = list(example["choices"]["label"])
    choices = list(example["choices"]["text"])
    return {"question": example["question"], "choices": choices, "answer": labels.index(example["answerKey"]),
            "contexts": [f"Question: {example['question']}\nAnswer:"] * len(choices)}


def openbookqa_to_mc(example: dict) -> dict:
    """openbookqa.yaml: ``doc_to_text: question_stem`` (the bare stem), ``doc_to_choice: "{{choices.text}}"``,
    ``doc_to_target: "{{choices.label.index(answerKey.lstrip())}}"``."""
    labels = list(example["choices"]["label"])
    choices = list(example["choices"]["text"])
    return {"question": example["question_stem"], "choices": choices,
            "answer": labels.index(example["answerKey"].lstrip()), "contexts": [example["question_stem"]] * len(choices)}


def siqa_to_mc(example: dict) -> dict:
    """siqa.yaml: ``doc_to_text: "Q: {{context}} {{question}}\\nA:"``, ``doc_to_choice: answerA/B/C``,
    ``doc_to_target: "{{ (label|int) - 1 }}"``."""
    question = f"{example['context']} {example['question']}"
    return {
        "question": question,
        "choices": [example["answerA"], example["answerB"], example["answerC"]],
        "answer": int(example["label"]) - 1,
        "contexts": [f"Q: {question}\nA:"] * 3,
    }


def winogrande_to_mc(example: dict) -> dict:
    """Partial scoring, as winogrande/preprocess_winogrande.py: one context per option,
    ``doc["sentence"][:idx] + opt`` (idx: the blank), and the same target for both,
    ``doc["sentence"][idx + 1:].strip()``; so only the rest of the sentence is scored, given each option.
    ``choices`` holds that rest twice (what is scored), ``question`` the sentence with its blank."""
    sentence = example["sentence"]
    blank = sentence.index("_")
    rest = sentence[blank + 1 :].strip()
    return {
        "question": sentence,
        "choices": [rest, rest],
        "answer": {"1": 0, "2": 1}[example["answer"]],
        "contexts": [sentence[:blank] + example["option1"], sentence[:blank] + example["option2"]],
    }


def piqa_to_mc(example: dict) -> dict:
    """piqa.yaml: ``doc_to_text: "Question: {{goal}}\\nAnswer:"``, ``doc_to_choice: "{{[sol1, sol2]}}"``."""
    return {"question": example["goal"], "choices": [example["sol1"], example["sol2"]], "answer": int(example["label"]),
            "contexts": [f"Question: {example['goal']}\nAnswer:"] * 2}


# The Hub's parquet conversion of a repo whose main branch still holds a loading script, which
# datasets >= 4 no longer runs (its config is then named "default").
PARQUET_REVISION = "refs/convert/parquet"

# name: (Hub dataset id, config, revision, eval split, mapping)
HUB_TASKS: dict[str, tuple[str, str | None, str | None, str, Callable[[dict], dict]]] = {
    "arc_easy": ("allenai/ai2_arc", "ARC-Easy", None, "test", arc_to_mc),
    "arc_challenge": ("allenai/ai2_arc", "ARC-Challenge", None, "test", arc_to_mc),
    "openbookqa": ("allenai/openbookqa", "main", None, "test", openbookqa_to_mc),
    "siqa": ("allenai/social_i_qa", "default", PARQUET_REVISION, "validation", siqa_to_mc),
    "winogrande": ("allenai/winogrande", "winogrande_xl", None, "validation", winogrande_to_mc),
    "piqa": ("ybisk/piqa", "default", PARQUET_REVISION, "validation", piqa_to_mc),
}


def _first(dataset: Dataset, size: int | None, size_name: str, source: str, why: str = "") -> Dataset:
    """The first ``size`` questions of ``dataset`` (all for None). Asking for more than it holds keeps all it holds, with
    a warning naming ``size_name`` (train_size, eval_size), both numbers, ``source`` (whose questions they are: "dataset
    x.jsonl's training") and ``why`` there are so few, if not plain."""
    if size is None:
        return dataset
    if size > len(dataset):  # else the run's INFO line would be the only sign
        warnings.warn(f"{size_name} {size}: {source} has only {_counted(len(dataset), 'question')}, all used{why}",
                      stacklevel=3)
    return dataset.select(range(min(size, len(dataset))))


def load_hub_task(name: str, train_size: int | None = None, eval_size: int | None = None,
                  seed: int = 0) -> tuple[Dataset, Dataset]:
    """(train, eval) of one of the paper's tasks, mapped to question/choices/answer (needs the Hub).
    ``train_size`` keeps that many training questions (a seeded shuffle first), ``eval_size`` the
    first questions of the eval split; None keeps all."""
    from datasets import load_dataset

    if name not in HUB_TASKS:
        raise ValueError(f"task_name must be one of {sorted(HUB_TASKS)} or {BUILTIN_TASKS}, got {name!r}")
    path, config, revision, eval_split, mapping = HUB_TASKS[name]
    splits = load_dataset(path, config, revision=revision)
    train, evaluation = splits["train"], splits[eval_split]
    if train_size is not None:
        train = _first(train.shuffle(seed=seed), train_size, "train_size", f"task {name}'s train split")
    evaluation = _first(evaluation, eval_size, "eval_size", f"task {name}'s {eval_split} split")
    return (
        train.map(mapping, remove_columns=train.column_names),
        evaluation.map(mapping, remove_columns=evaluation.column_names),
    )


# How load_multiple_choice_dataset reads a data file, by its suffix
DATA_FILE_BUILDERS = {".json": "json", ".jsonl": "json", ".parquet": "parquet", ".csv": "csv"}


def _read_data_file(path: Path, builder: str, source: str):
    """``load_dataset(builder, data_files=path)``; a file of no rows is refused naming it, and a JSON file that does
    not parse is named with the line of the problem (1-based), which datasets leaves to a log line."""
    from datasets import load_dataset
    from datasets.exceptions import DatasetGenerationError

    try:
        return load_dataset(builder, data_files=str(path))
    except Exception as error:  # datasets' errors for a file of no rows vary by format (StopIteration among them)
        if _holds_no_rows(path, builder):
            raise ValueError(f"dataset {source}: the file holds no rows; a multiple-choice dataset needs at least one, "
                             f"with columns {list(MC_COLUMNS)}") from None
        if builder == "json" and isinstance(error, DatasetGenerationError):
            _refuse_json_that_does_not_parse(path, source)
        raise


def _holds_no_rows(path: Path, builder: str) -> bool:
    """Whether data file ``path`` holds no row: no byte, a Parquet file of 0 rows, a CSV file of its header line at
    most, or JSON of whitespace only, ``[]`` or ``{}``. Read only once datasets has failed on it."""
    if path.stat().st_size == 0:
        return True
    if builder == "parquet":
        try:
            return pq.read_metadata(path).num_rows == 0
        except pa.ArrowException:  # not Parquet at all: datasets' own error says so
            return False
    text = path.read_text(encoding="utf-8", errors="replace")
    if builder == "csv":  # csv.reader gives a blank line no record, as pandas skips it
        return sum(1 for record in csv.reader(io.StringIO(text)) if record) <= 1
    try:
        return not text.strip() or json.loads(text) in ([], {})
    except json.JSONDecodeError:  # several lines of JSON Lines, or JSON that does not parse
        return False


def _refuse_json_that_does_not_parse(path: Path, source: str) -> None:
    """Raises ValueError naming the first line (1-based) of JSON Lines ``path`` that is not JSON, or where one JSON
    document (a .json file's other layout) stops parsing; returns when the file parses either way."""
    text = path.read_text(encoding="utf-8", errors="replace")
    try:
        json.loads(text)
        return
    except json.JSONDecodeError as error:
        document_error = error
    lines = [(number, line) for number, line in enumerate(text.split("\n"), start=1) if line.strip()]
    for number, line in lines:
        try:
            json.loads(line)
        except json.JSONDecodeError as error:
            if number == lines[0][0]:  # not JSON Lines: one JSON document, broken where its parser stopped
                raise ValueError(f"dataset {source}: line {document_error.lineno} (1-based), column "
                                 f"{document_error.colno} is not valid JSON: {document_error.msg}") from None
            raise ValueError(f"dataset {source}: line {number} (1-based) is not JSON ({error.msg}): {line[:80]!r}; a "
                             "JSON Lines file holds one JSON object per line") from None


def load_multiple_choice_dataset(source: str, train_size: int | None = None, eval_size: int | None = None,
                                 seed: int = 0, eval_fraction: float = 0.1, config_name: str | None = None,
                                 revision: str | None = None) -> tuple[Dataset, Dataset]:
    """(train, eval) of a user's own data with the columns question, choices, answer: a folder written
    by ``save_to_disk``, a ``.json``/``.jsonl``/``.parquet``/``.csv`` file (``choices`` must be a list, so
    CSV only suits data that stores it as one), or a Hub dataset repo id. A DatasetDict gives its
    ``train`` split and its ``validation`` (else ``test``) split; a single split is divided, a seeded
    ``eval_fraction`` held out. Sizes as in ``load_hub_task``. ``config_name`` and ``revision`` choose a Hub
    dataset's configuration and branch, tag or commit (``load_dataset``'s ``name`` and ``revision``); local data,
    which has neither, refuses them. A JSON file that does not parse is refused naming its line (1-based), a bad row
    naming the row (1-based: in a JSON Lines file without blank lines, its line)."""
    from datasets import DatasetDict, load_dataset

    # imported here: hf_eff.hub imports this module
    from hf_eff.hub.sources import refuse_hub_options_without_hub_data

    path = Path(source).expanduser()
    refuse_hub_options_without_hub_data({"config_name": config_name, "revision": revision}, source, "dataset",
                                        tuple(DATA_FILE_BUILDERS))
    if path.is_dir():
        data = load_saved_dataset(path, f"dataset {source}")
    elif path.is_file():
        builder = DATA_FILE_BUILDERS.get(path.suffix.lower())
        if builder is None:
            raise ValueError(f"dataset {source}: cannot read {path.suffix!r} files; use one of "
                             f"{sorted(DATA_FILE_BUILDERS)} or a folder written by save_to_disk")
        data = _read_data_file(path, builder, source)
    elif path.suffix.lower() in DATA_FILE_BUILDERS:  # else datasets reads it as a Hub repo id and names only the Hub
        raise FileNotFoundError(f"dataset {source}: no such file ({path.absolute()})")
    else:
        data = load_dataset(source, config_name, revision=revision)  # a Hub repo id
    if isinstance(data, DatasetDict):
        eval_split = next((s for s in ("validation", "test") if s in data), None)
        if "train" in data and eval_split is not None:
            train, evaluation = data["train"], data[eval_split]
            held_out, why = f"dataset {source}'s {eval_split} split", ""
            check_multiple_choice(train, f"dataset {source} (train split)")
            check_multiple_choice(evaluation, f"dataset {source} ({eval_split} split)")
        elif len(data) == 1:
            data = next(iter(data.values()))
        else:
            raise ValueError(f"dataset {source}: splits {sorted(data)}; need train plus validation or test, or one split")
    if not isinstance(data, DatasetDict):
        # checked before the seeded split shuffles it, so that a bad row's number is its row in the user's data
        check_multiple_choice(data, f"dataset {source}")
        held_out_rows = math.ceil(eval_fraction * len(data))  # rounded up, as train_test_split does
        if held_out_rows < 1 or len(data) - held_out_rows < 1:  # else its error names neither the data nor the fraction
            raise ValueError(f"dataset {source}: its one split of {_counted(len(data), 'row')} is too few to divide "
                             f"{1 - eval_fraction:.0%}/{eval_fraction:.0%}: eval_fraction {eval_fraction} holds out "
                             f"{held_out_rows} (rounded up) to evaluate on and leaves {len(data) - held_out_rows} to "
                             "train on, and each needs at least one; give more rows, or a train split and a "
                             "validation or test split of their own")
        halves = data.train_test_split(test_size=eval_fraction, seed=seed)
        train, evaluation = halves["train"], halves["test"]
        held_out = f"dataset {source}'s held-out evaluation split"
        why = (f" (its one split of {_counted(len(data), 'row')} is divided {1 - eval_fraction:.0%}/"
               f"{eval_fraction:.0%}: give the data a validation or test split of its own for more)")
    if train_size is not None:
        train = _first(train.shuffle(seed=seed), train_size, "train_size", f"dataset {source}'s training split")
    return train, _first(evaluation, eval_size, "eval_size", held_out, why)


def load_task(name: str, seed: int = 0, train_size: int | None = None, eval_size: int | None = None) -> tuple[Dataset, Dataset]:
    """A built-in task (``train_size`` / ``eval_size`` default 3000 / 600) or one of the paper's
    tasks from the Hub (all questions unless sizes are given)."""
    if name in BUILTIN_TASKS:
        return builtin_task(name, train_size=3000 if train_size is None else train_size,
                            eval_size=600 if eval_size is None else eval_size, seed=seed)
    return load_hub_task(name, train_size=train_size, eval_size=eval_size, seed=seed)


# --- tokenisation and scoring -----------------------------------------------------------------


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Pauses CPython's cyclic garbage collector while building many acyclic token lists: otherwise it
    rescans the whole heap (~430k objects once transformers is imported) several times, 1.4 s of
    encoding 20k questions' 67k pairs in 4.3 s (CPU time)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _harness_pair(context: str, choice: str) -> tuple[str, str]:
    """lm-evaluation-harness's request text for one pair (``TemplateLM._encode_pair``): the continuation is
    the ``target_delimiter`` " " + choice, and trailing spaces of the context move onto it (so a context
    ending in a space is not tokenised with a dangling space token)."""
    stripped = context.rstrip()
    return stripped, context[len(stripped) :] + " " + choice


def encode_choices(tokenizer: PreTrainedTokenizerBase, contexts: Sequence[str], choices: Sequence[str],
                   max_length: int, add_bos_token: bool = False) -> list[dict]:
    """Token ids of each (context, choice) pair as lm-evaluation-harness builds them for a causal LM,
    labels -100 on the context (training and scoring both use these rows).

    As ``TemplateLM._encode_pair`` / ``loglikelihood`` with ``HFLM.tok_encode``'s causal default
    (``add_special_tokens=False``, no BOS): the context's trailing spaces move onto the continuation
    " " + choice; context + continuation is tokenised as one text and the context alone, and the
    continuation's tokens are ``whole[len(context_tokens):]`` (a merge across the boundary is
    tokenised as in the full text). An empty context is the tokenizer's BOS token (else its EOS), and the
    continuation is then tokenised alone. A row holds at most ``max_length`` tokens, the length the
    model is given: a longer pair is cut from the left, as ``_loglikelihood_tokens`` cuts to its window
    (which keeps one token more, its last a target only, since it shifts the inputs itself; a row here
    is one model input, so its cut never exceeds ``max_length`` positions).

    ``add_bos_token`` True is the harness's ``add_bos_token``, which it turns on for Gemma models
    (``harness_adds_bos``): every text is then tokenised with the tokenizer's special tokens, the bare
    continuation of an empty context too, as the harness does.

    Distinct contexts and texts are tokenised once each and go to the tokenizer in batches: a call per
    pair took 17 s for 20k questions."""
    if max_length < 1:
        raise ValueError(f"max_length must be >= 1, got {max_length}")
    pairs = [_harness_pair(context, choice) for context, choice in zip(contexts, choices, strict=True)]
    for context, (stripped, _) in zip(contexts, pairs):
        if context and not stripped:
            raise ValueError(f"context {context!r} is only whitespace: the harness would score it after no token")
    with _gc_paused():
        return _encode_pairs(tokenizer, choices, pairs, max_length, add_bos_token)


def _encode_pairs(tokenizer: PreTrainedTokenizerBase, choices: Sequence[str], pairs: list[tuple[str, str]],
                  max_length: int, add_bos_token: bool) -> list[dict]:
    # every key of ``tokens`` is one text of the requests: stripped contexts, their full texts, and the
    # bare continuations of empty contexts
    texts = dict.fromkeys(text for stripped, continuation in pairs
                          for text in ((stripped, stripped + continuation) if stripped else (continuation,)))
    encoded = (tokenizer(list(texts), add_special_tokens=add_bos_token, return_attention_mask=False) if texts
               else {"input_ids": []})
    tokens = dict(zip(texts, encoded["input_ids"]))
    prefix = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    rows = []
    for choice, (stripped, continuation) in zip(choices, pairs):
        if stripped:
            context_ids = tokens[stripped]
            continuation_ids = tokens[stripped + continuation][len(context_ids) :]
        else:
            if prefix is None:
                raise ValueError("an empty context is scored after the tokenizer's BOS (or EOS) token; this tokenizer has neither")
            context_ids, continuation_ids = [prefix], tokens[continuation]
        if not continuation_ids:
            raise ValueError(f"choice {choice[:40]!r} adds no token to its context {stripped[-40:]!r}")
        if len(continuation_ids) >= max_length:  # the first choice token is predicted from a context token
            raise ValueError(f"choice {choice[:40]!r} alone has {_counted(len(continuation_ids), 'token')}; "
                             f"raise max_length ({max_length})")
        input_ids = context_ids[max(0, len(context_ids) + len(continuation_ids) - max_length) :] + continuation_ids
        rows.append({
            "input_ids": input_ids,
            "attention_mask": [1] * len(input_ids),
            "labels": [-100] * (len(input_ids) - len(continuation_ids)) + continuation_ids,
        })
    return rows


def choice_rows_collator(tokenizer: PreTrainedTokenizerBase) -> DataCollatorForSeq2Seq:
    """The collator of ``encode_choices``' rows (``tokenize_for_training``'s and ``tokenize_for_scoring``'s): pads
    the ids, attention mask and labels (with -100) on the right, whatever ``tokenizer.padding_side`` says, through a
    copy (the caller's tokenizer is left as it is). On the left an absolute-position model (GPT-2) would see a row
    at other positions in a batch than alone: a choice would score differently, and training would fit positions
    that inference does not use."""
    if tokenizer.pad_token_id is None:
        raise ValueError(f"tokenizer {tokenizer.name_or_path!r} has no pad token, which padding the rows of a batch needs: "
                         "set tokenizer.pad_token = tokenizer.eos_token (the attention mask and labels of -100 hide "
                         "the padding)")
    right_padding = copy.copy(tokenizer)
    right_padding.padding_side = "right"
    return DataCollatorForSeq2Seq(right_padding, padding=True, label_pad_token_id=-100)


def labelled_rows_differ_in_length(dataset) -> bool:
    """Whether ``dataset`` is a ``Dataset`` whose rows carry token labels of unequal lengths (``encode_choices``'
    rows do): transformers' default collators cannot batch them (``DataCollatorWithPadding`` pads no labels,
    ``default_data_collator`` nothing), ``choice_rows_collator`` can."""
    if not isinstance(dataset, Dataset) or "labels" not in dataset.column_names:
        return False
    labels = dataset.with_format("arrow")["labels"]  # the selected rows only, without reading them into Python
    if not (pa.types.is_list(labels.type) or pa.types.is_large_list(labels.type)):
        return False  # a label per row (classification) or none
    return pc.count_distinct(pc.list_value_length(labels)).as_py() > 1


def harness_adds_bos(model) -> bool:
    """Whether lm-evaluation-harness would encode for ``model`` with a BOS token: it turns ``add_bos_token``
    on for the Gemma family (its model_type holds "gemma"), which underperforms without one."""
    config = getattr(model, "config", None)
    return "gemma" in str(getattr(config, "model_type", ""))


def tokenize_for_training(dataset: Dataset, tokenizer: PreTrainedTokenizerBase, max_length: int = 128,
                          add_bos_token: bool = False) -> Dataset:
    """Context + correct choice per example (loss on the choice tokens); ``add_bos_token`` as in
    ``encode_choices``."""
    check_multiple_choice(dataset, "train dataset")
    if len(dataset) == 0:  # else the Trainer's error names no-columns-matching, not the cause
        raise ValueError("train dataset: no questions to train on (a train_size of 0?)")

    def encode(batch: dict) -> dict:
        contexts, correct = [], []
        for question, choices, answer, row_contexts in zip(
            batch["question"], batch["choices"], batch["answer"], _contexts_column(batch)
        ):
            contexts.append(choice_contexts(question, choices, row_contexts)[answer])
            correct.append(choices[answer])
        rows = encode_choices(tokenizer, contexts, correct, max_length, add_bos_token)
        return {key: [row[key] for row in rows] for key in ("input_ids", "attention_mask", "labels")}

    return dataset.map(encode, batched=True, remove_columns=dataset.column_names)


@dataclass
class MultipleChoiceScorer:
    """Maps the per-row scores of ``tokenize_for_scoring``'s flattened rows back to questions.
    ``choice_lengths``: characters of each row's choice, for ``accuracy_norm`` (None: accuracy only);
    ``questions``: the multiple-choice dataset the rows were built from, for ``samples``; ``tokenizer``: the one
    that encoded the rows, which ``HaLoRATrainer`` pads them with (``choice_rows_collator``) when given no collator;
    ``rows``: the rows themselves, which ``rows_mismatch`` tells other rows from (None: only their number is known)."""

    example_index: np.ndarray
    choice_index: np.ndarray
    answers: np.ndarray
    choice_lengths: np.ndarray | None = None
    questions: Dataset | None = None
    tokenizer: PreTrainedTokenizerBase | None = field(default=None, repr=False, compare=False)
    rows: Dataset | None = field(default=None, repr=False, compare=False)

    def rows_mismatch(self, dataset) -> str | None:
        """Why this scorer cannot score ``dataset`` (None when it can): its answers and choice layout are those of
        ``rows``, so another dataset of as many rows would be scored silently wrong. ``rows`` are recognised by their
        fingerprint, or as the same input_ids and labels in the same order (a copy: ``with_format``,
        ``select(range(len(rows)))``); a scorer built without ``rows``, or a dataset that is not a datasets.Dataset
        (``to_iterable_dataset()``, a torch Dataset), is checked only by its number of rows."""
        expected = self.example_index.shape[0]
        if self.rows is None or not isinstance(dataset, Dataset):
            size = len(dataset) if hasattr(dataset, "__len__") else expected  # an iterable one cannot tell
            return None if size == expected else f"it has {_counted(size, 'row')}, the scorer scores {expected}"
        if dataset._fingerprint == self.rows._fingerprint:
            return None
        if len(dataset) != expected:
            return f"it has {_counted(len(dataset), 'row')}, the scorer scores {expected}"
        ours, theirs = self.rows.with_format("arrow"), dataset.with_format("arrow")
        if all(name in dataset.column_names and theirs[name].equals(ours[name]) for name in ("input_ids", "labels")):
            return None
        # rows tokenize_for_scoring made are two at least (two choices a question)
        return (f"its {expected} rows are not those tokenize_for_scoring made the scorer for (other questions, "
                "or the same in another order)")

    def _score_table(self, row_scores: np.ndarray) -> np.ndarray:
        """The rows' scores as a questions x choices table, -inf past a question's last choice."""
        row_scores = np.asarray(row_scores, dtype=np.float64).reshape(-1)
        if row_scores.shape[0] != self.example_index.shape[0]:
            # e.g. trainer.evaluate(other_dataset) with the compute_metrics of the trainer's own eval dataset
            raise ValueError(f"got {_counted(row_scores.shape[0], 'choice score')} for "
                             f"{_counted(self.example_index.shape[0], 'scored row')}: "
                             "a scorer scores only the dataset tokenize_for_scoring returned with it")
        if np.isnan(row_scores).any():
            raise ValueError("choice log-likelihoods contain NaN (the model diverged?)")
        table = np.full((len(self.answers), int(self.choice_index.max(initial=0)) + 1), -np.inf)
        table[self.example_index, self.choice_index] = row_scores
        return table

    def _predictions(self, row_scores: np.ndarray) -> np.ndarray:
        """Best choice per question; ties go to the lowest choice index (np.argmax, as the harness)."""
        return self._score_table(row_scores).argmax(axis=1)

    def _normalised(self, row_scores: np.ndarray) -> np.ndarray:
        """Each row's score per character of its choice (``accuracy_norm``)."""
        if self.choice_lengths is None:
            raise ValueError("accuracy_norm needs choice_lengths (tokenize_for_scoring's scorer has them)")
        return np.asarray(row_scores, dtype=np.float64).reshape(-1) / self.choice_lengths

    def accuracy(self, row_scores: np.ndarray) -> float:
        """The harness's ``acc``: the choice of highest summed log-likelihood."""
        return float((self._predictions(row_scores) == self.answers).mean())

    def accuracy_norm(self, row_scores: np.ndarray) -> float:
        """The harness's ``acc_norm`` (lm_eval/api/task.py, ConfigurableTask.process_results):
        ``completion_len = np.array([float(len(i)) for i in choices])``,
        ``pred_norm = np.argmax(lls / completion_len)``: the summed log-likelihood divided by the
        choice's length in characters (``len`` of the str, without the leading space; the harness's
        separate ``acc_bytes`` divides by UTF-8 bytes instead)."""
        return float((self._predictions(self._normalised(row_scores)) == self.answers).mean())

    def samples(self, row_scores: np.ndarray) -> Iterator[dict]:
        """Per question, in the dataset's order, what lm-evaluation-harness's ``--log_samples`` records:
        ``doc_id`` (the question's index in ``questions``), ``question``, ``choices``, ``answer``,
        ``contexts`` where the row has them, ``other_columns`` (the row's other columns, e.g. an id: ``doc_id``
        is no row number of data divided at random) where ``questions`` has any, ``loglikelihoods`` (each
        choice's summed log-likelihood), ``pred`` and ``acc`` (0/1), and with ``choice_lengths`` ``pred_norm``
        and ``acc_norm``: the predictions ``accuracy`` and ``accuracy_norm`` count."""
        if self.questions is None:
            raise ValueError("samples need the questions the rows were built from (tokenize_for_scoring's scorer has them)")
        table = self._score_table(row_scores)
        predictions = table.argmax(axis=1)
        norm_predictions = None if self.choice_lengths is None else self._predictions(self._normalised(row_scores))
        for doc_id, row in enumerate(self.questions):
            answer = int(self.answers[doc_id])
            sample = {"doc_id": doc_id, "question": row["question"], "choices": row["choices"], "answer": answer}
            if row.get(CONTEXTS_COLUMN) is not None:
                sample[CONTEXTS_COLUMN] = row[CONTEXTS_COLUMN]
            other_columns = {name: value for name, value in row.items() if name not in (*MC_COLUMNS, CONTEXTS_COLUMN)}
            if other_columns:
                sample["other_columns"] = other_columns
            sample["loglikelihoods"] = table[doc_id, : len(row["choices"])].tolist()
            sample.update(pred=int(predictions[doc_id]), acc=int(predictions[doc_id] == answer))
            if norm_predictions is not None:
                sample.update(pred_norm=int(norm_predictions[doc_id]), acc_norm=int(norm_predictions[doc_id] == answer))
            yield sample

    def compute_metrics(self, eval_pred: EvalPrediction) -> dict[str, float]:
        """``compute_metrics`` for the Trainer (with ``choice_logprob_sums`` as preprocess_logits_for_metrics)."""
        metrics = {"accuracy": self.accuracy(eval_pred.predictions)}
        if self.choice_lengths is not None:
            metrics["accuracy_norm"] = self.accuracy_norm(eval_pred.predictions)
        return metrics


def tokenize_for_scoring(
    dataset: Dataset, tokenizer: PreTrainedTokenizerBase, max_length: int = 128, add_bos_token: bool = False
) -> tuple[Dataset, MultipleChoiceScorer]:
    """One row per (question, choice), plus the scorer that turns row scores into accuracy and per-question
    samples (``add_bos_token`` as in ``encode_choices``); the scorer keeps the rows, the only ones it scores.

    Rows are sorted by length (stably), so the Trainer's sequential evaluation batches pad little (on
    the built-in tasks unsorted batches of 64 carried about 20% padding). The scorer maps rows back to questions."""
    check_multiple_choice(dataset, "eval dataset")
    if len(dataset) == 0:  # refused here, before training: the scorer has nothing to score
        raise ValueError("eval dataset: no questions to evaluate (an eval_size or max_eval_samples of 0?)")
    contexts, texts, example_index, choice_index = [], [], [], []
    for i, (question, choices, row_contexts) in enumerate(
        zip(dataset["question"], dataset["choices"], _contexts_column(dataset))
    ):
        for j, (context, choice) in enumerate(zip(choice_contexts(question, choices, row_contexts), choices)):
            contexts.append(context)
            texts.append(choice)
            example_index.append(i)
            choice_index.append(j)
    rows = encode_choices(tokenizer, contexts, texts, max_length, add_bos_token)
    order = sorted(range(len(rows)), key=lambda k: len(rows[k]["input_ids"]))
    scored_rows = Dataset.from_list([rows[k] for k in order])
    scorer = MultipleChoiceScorer(
        np.array(example_index)[order], np.array(choice_index)[order], np.array(dataset["answer"]),
        np.array([float(len(texts[k])) for k in order]), questions=dataset, tokenizer=tokenizer, rows=scored_rows,
    )
    return scored_rows, scorer


def choice_logprob_sums(logits: torch.Tensor, labels: torch.Tensor, rows_per_chunk: int = 8) -> torch.Tensor:
    """Summed log-probability of the labelled tokens of each row (``preprocess_logits_for_metrics``).

    The target's logit minus the logsumexp, ``rows_per_chunk`` rows at a time: a full log_softmax
    would hold two more copies of the batch's [rows, tokens, vocabulary] logits (+3 GB for 64 rows
    of 128 tokens over SmolLM2's 49k-token vocabulary)."""
    if isinstance(logits, tuple):
        logits = logits[0]
    targets = labels[:, 1:]
    mask = targets != -100
    sums = []
    for start in range(0, logits.size(0), rows_per_chunk):
        rows = slice(start, start + rows_per_chunk)
        chunk = logits[rows, :-1].float()
        target_logits = chunk.gather(-1, targets[rows].clamp(min=0).unsqueeze(-1)).squeeze(-1)
        sums.append(((target_logits - torch.logsumexp(chunk, dim=-1)) * mask[rows]).sum(dim=1))
    return torch.cat(sums)


def character_tokenizer() -> PreTrainedTokenizerFast:
    """One token per printable character: a tokenizer for tiny random models, needing no download."""
    vocab = {"<pad>": 0, "<unk>": 1, "<s>": 2}
    for char in string.printable:
        vocab.setdefault(char, len(vocab))
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    return PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>", unk_token="<unk>", bos_token="<s>")
