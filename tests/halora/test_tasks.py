import hashlib
import json
import re
import string
import warnings
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from datasets import Dataset, DatasetDict
from tokenizers import Tokenizer, models, processors
from transformers import EvalPrediction, PreTrainedTokenizerFast

from hf_eff.halora.tasks import (
    DEFAULT_PROMPT,
    HUB_TASKS,
    MultipleChoiceScorer,
    arc_to_mc,
    builtin_task,
    check_multiple_choice,
    choice_logprob_sums,
    choice_rows_collator,
    encode_choices,
    harness_adds_bos,
    load_hub_task,
    load_multiple_choice_dataset,
    openbookqa_to_mc,
    piqa_to_mc,
    siqa_to_mc,
    tokenize_for_scoring,
    tokenize_for_training,
    winogrande_to_mc,
)

ORDERING = "Which list is sorted from smallest to largest?"


def _questions(dataset):
    """Each row's question, whatever its distractors: its text, or for the ordering task (one text for
    all) the numbers its lists order."""
    return [question if question != ORDERING else frozenset(choices[0].split(", "))
            for question, choices in zip(dataset["question"], dataset["choices"])]


@pytest.mark.parametrize("name", ["mixed", "arithmetic"])
def test_builtin_task_is_deterministic_disjoint_and_well_formed(name):
    train, evaluation = builtin_task(name)
    assert (len(train), len(evaluation)) == (3000, 600)
    assert builtin_task(name)[1].to_list() == evaluation.to_list()
    train_questions, eval_questions = _questions(train), _questions(evaluation)
    assert len(set(train_questions)) == len(train) and len(set(eval_questions)) == len(evaluation)
    assert not set(train_questions) & set(eval_questions)
    for row in evaluation:
        assert 0 <= row["answer"] < len(row["choices"]) and len(set(row["choices"])) == len(row["choices"])
    # the answers are spread over the positions, so "always pick choice 0" is not a good strategy
    assert np.mean(np.array(evaluation["answer"]) == 0) < 0.45
    arithmetic = builtin_task("arithmetic", train_size=10, eval_size=10)[1][0]
    a, op, b = arithmetic["question"].removeprefix("What is ").removesuffix("?").split()
    assert int(arithmetic["choices"][arithmetic["answer"]]) == (int(a) + int(b) if op == "+" else int(a) - int(b))
    with pytest.raises(ValueError, match="task_name"):
        builtin_task("poetry")


def _text(tokenizer, ids):
    return "".join(tokenizer.convert_ids_to_tokens(ids))


def _scored_pairs(dataset, tokenizer):
    """(context, scored continuation) of each scoring row, in (question, choice) order."""
    scoring, scorer = tokenize_for_scoring(dataset, tokenizer, max_length=256)
    pairs = {}
    for row, example, choice in zip(scoring, scorer.example_index, scorer.choice_index):
        context = [t for t, label in zip(row["input_ids"], row["labels"]) if label == -100]
        pairs[(int(example), int(choice))] = (_text(tokenizer, context), _text(tokenizer, [t for t in row["labels"] if t != -100]))
    return [pairs[key] for key in sorted(pairs)]


# Rows shaped like each Hub dataset, and the (context, continuation) requests lm-evaluation-harness
# builds for them from its task YAMLs (continuation = target_delimiter " " + choice).
HARNESS_REQUESTS = [
    # arc_easy.yaml: doc_to_text: "Question: {{question}}\nAnswer:", doc_to_choice: "{{choices.text}}"
    (arc_to_mc, {"question": "Which is a metal?", "choices": {"text": ["wood", "iron", "glass"], "label": ["A", "B", "C"]},
                 "answerKey": "B"},
     1, [("Question: Which is a metal?\nAnswer:", " wood"), ("Question: Which is a metal?\nAnswer:", " iron"),
         ("Question: Which is a metal?\nAnswer:", " glass")]),
    # openbookqa.yaml: doc_to_text: question_stem (the bare stem)
    (openbookqa_to_mc, {"question_stem": "The sun is responsible for",
                        "choices": {"text": ["puppies learning new tricks", "plants sprouting"], "label": ["A", "B"]},
                        "answerKey": "B"},
     1, [("The sun is responsible for", " puppies learning new tricks"), ("The sun is responsible for", " plants sprouting")]),
    # siqa.yaml: doc_to_text: "Q: {{context}} {{question}}\nA:", doc_to_choice: answerA/B/C, target (label|int) - 1
    (siqa_to_mc, {"context": "Tracy didn't go home that evening.", "question": "What does Tracy need to do before this?",
                  "answerA": "make a new plan", "answerB": "Go home", "answerC": "Find somewhere to go", "label": "3"},
     2, [("Q: Tracy didn't go home that evening. What does Tracy need to do before this?\nA:", " make a new plan"),
         ("Q: Tracy didn't go home that evening. What does Tracy need to do before this?\nA:", " Go home"),
         ("Q: Tracy didn't go home that evening. What does Tracy need to do before this?\nA:", " Find somewhere to go")]),
    # preprocess_winogrande.py: contexts sentence[:idx] + opt, target sentence[idx + 1:].strip() for both
    (winogrande_to_mc, {"sentence": "Sarah was a much better surgeon than Maria so _ always got the harder cases.",
                        "option1": "Sarah", "option2": "Maria", "answer": "1"},
     0, [("Sarah was a much better surgeon than Maria so Sarah", " always got the harder cases."),
         ("Sarah was a much better surgeon than Maria so Maria", " always got the harder cases.")]),
    # piqa.yaml: doc_to_text: "Question: {{goal}}\nAnswer:", doc_to_choice: "{{[sol1, sol2]}}", target label
    (piqa_to_mc, {"goal": "Dry wet shoes", "sol1": "Stuff them with newspaper.", "sol2": "Put them in the freezer.", "label": 0},
     0, [("Question: Dry wet shoes\nAnswer:", " Stuff them with newspaper."),
         ("Question: Dry wet shoes\nAnswer:", " Put them in the freezer.")]),
]


@pytest.mark.parametrize(("mapping", "example", "answer", "requests"), HARNESS_REQUESTS,
                         ids=[m.__name__ for m, *_ in HARNESS_REQUESTS])
def test_hub_mappings_score_the_harness_requests(char_tokenizer, mapping, example, answer, requests):
    row = mapping(example)
    assert row["answer"] == answer
    data = Dataset.from_list([row])
    assert _scored_pairs(data, char_tokenizer) == requests
    # training: the correct choice's request, loss on its continuation only
    train = tokenize_for_training(data, char_tokenizer, max_length=256)[0]
    context = _text(char_tokenizer, [t for t, label in zip(train["input_ids"], train["labels"]) if label == -100])
    assert (context, _text(char_tokenizer, [t for t in train["labels"] if t != -100])) == requests[answer]


def test_winogrande_partial_scoring_scores_only_the_shared_rest(char_tokenizer):
    row = winogrande_to_mc({"sentence": "The cup fell off the table because _ was heavy.", "option1": "the cup",
                            "option2": "the table", "answer": "1"})
    scoring, scorer = tokenize_for_scoring(Dataset.from_list([row]), char_tokenizer, max_length=256)
    scored = [[t for t in labels if t != -100] for labels in scoring["labels"]]
    assert scored[0] == scored[1] and _text(char_tokenizer, scored[0]) == " was heavy."
    # the options sit in the unscored contexts, so their own likelihood does not enter
    assert sorted(_text(char_tokenizer, ids[: -len(scored[0])]) for ids in scoring["input_ids"]) == [
        "The cup fell off the table because the cup", "The cup fell off the table because the table"]
    assert scorer.choice_lengths.tolist() == [len("was heavy.")] * 2


def test_builtin_tokenisation_is_unchanged_by_contexts(char_tokenizer):
    """Built-in tasks and users' data without ``contexts`` keep the "Question: ...\nAnswer:" prompt:
    the digests at 128 were taken before per-task contexts existed (and before harness-exact encoding,
    which changes no uncut row of the built-in tasks: no prompt ends in a space). The train digests were
    re-taken when the train split stopped repeating eval questions with other distractors (its rows
    changed, the encoding did not: the old rows still give the old digests)."""
    train, evaluation = builtin_task("mixed", train_size=200, eval_size=100, seed=0)

    def digest(dataset, scorer=None):
        h = hashlib.sha256(json.dumps(dataset.to_dict(), sort_keys=True).encode())
        if scorer is not None:
            h.update(json.dumps([scorer.example_index.tolist(), scorer.choice_index.tolist(), scorer.answers.tolist()]).encode())
        return h.hexdigest()

    expected = {
        128: ("5aa120ad1801a97bb27c4007c690cd31ead63a3c9daee67d23380b262f18fbd7",
              "2ad6e8573c6e332ae13e11fa3508e030e7c7bcc74e0388b095d38775588681ff"),
        24: ("dd4e6c7dc927603be8fbb724b28cfd2c1c48e93a5441e5fa2d8430dc8ff354c6",
             "199a68abe782e99fc6bd470849223f4d8d1e3a3f910c67af421c7b24aecdb4ed"),
    }
    for max_length, (train_digest, scoring_digest) in expected.items():
        assert digest(tokenize_for_training(train, char_tokenizer, max_length)) == train_digest
        assert digest(*tokenize_for_scoring(evaluation, char_tokenizer, max_length)) == scoring_digest
    first = tokenize_for_training(train.select([0]), char_tokenizer, 128)[0]
    assert _text(char_tokenizer, first["input_ids"]) == (
        DEFAULT_PROMPT.format(question=train[0]["question"]) + " " + train[0]["choices"][train[0]["answer"]])
    # a contexts column of None rows is the same as none
    with_none = train.add_column("contexts", [None] * len(train))
    assert digest(tokenize_for_training(with_none, char_tokenizer, 24)) == expected[24][0]


def test_an_empty_eval_dataset_is_refused_when_given(char_tokenizer):
    evaluation = builtin_task("comparison", train_size=4, eval_size=4)[1]
    with pytest.raises(ValueError, match="eval dataset: no questions"):
        tokenize_for_scoring(evaluation.select([]), char_tokenizer)


def test_a_builtin_split_of_size_zero_is_refused_as_empty(char_tokenizer):
    train, evaluation = builtin_task("comparison", train_size=0, eval_size=0)
    with pytest.raises(ValueError, match="eval dataset: no questions to evaluate"):
        tokenize_for_scoring(evaluation, char_tokenizer)
    with pytest.raises(ValueError, match="train dataset: no questions to train on"):
        tokenize_for_training(train, char_tokenizer)


def test_tokenisation_labels_only_the_choice(char_tokenizer):
    data = Dataset.from_list([{"question": "1+1?", "choices": ["2", "11"], "answer": 0}])
    train = tokenize_for_training(data, char_tokenizer, max_length=64)[0]
    labelled = [t for t in train["labels"] if t != -100]
    assert char_tokenizer.decode(labelled) == char_tokenizer.decode(char_tokenizer(" 2", add_special_tokens=False)["input_ids"])
    scoring, scorer = tokenize_for_scoring(data, char_tokenizer, max_length=64)
    assert len(scoring) == 2 and scorer.example_index.tolist() == [0, 0] and scorer.choice_index.tolist() == [0, 1]
    with pytest.raises(ValueError, match="answer"):
        tokenize_for_training(Dataset.from_list([{"question": "q", "choices": ["a"]}]), char_tokenizer)
    for answer in (-1, 2):  # -1 would otherwise train on the last choice
        bad = Dataset.from_list([{"question": "q", "choices": ["a", "b"], "answer": 0},
                                 {"question": "r", "choices": ["a", "b"], "answer": answer}])
        for tokenize, name in ((tokenize_for_training, "train dataset"), (tokenize_for_scoring, "eval dataset")):
            with pytest.raises(ValueError, match=rf"{name} row 2 \(1-based\): answer {answer} is not an int index into "
                                                 "its 2 choices"):
                tokenize(bad, char_tokenizer, max_length=64)


def test_scoring_rows_are_sorted_by_length_and_mapped_back(char_tokenizer):
    data = Dataset.from_list([{"question": "long?", "choices": ["333", "1"], "answer": 1},
                              {"question": "q?", "choices": ["22", "4444"], "answer": 0}])
    scoring, scorer = tokenize_for_scoring(data, char_tokenizer, max_length=64)
    lengths = [len(ids) for ids in scoring["input_ids"]]
    assert lengths == sorted(lengths)
    assert list(zip(scorer.example_index.tolist(), scorer.choice_index.tolist())) == [(1, 0), (0, 1), (1, 1), (0, 0)]
    # a score that favours short choices picks "1" (right) for question 0 and "22" (right) for question 1
    assert scorer.accuracy(-np.array(lengths, dtype=float)) == 1.0


def test_scorer_and_logprob_sums():
    scorer = MultipleChoiceScorer(np.array([0, 0, 1, 1, 1]), np.array([0, 1, 0, 1, 2]), np.array([1, 2]), np.ones(5))
    assert scorer.accuracy(np.array([-5.0, -1.0, -3.0, -9.0, -2.0])) == 1.0
    assert scorer.accuracy(np.array([-1.0, -5.0, -3.0, -9.0, -2.0])) == 0.5
    assert scorer.accuracy(np.array([-1.0, -1.0, -3.0, -3.0, -3.0])) == 0.0  # ties: the lowest index, as np.argmax
    with pytest.raises(ValueError, match="NaN"):
        scorer.accuracy(np.array([np.nan, -1.0, -3.0, -9.0, -2.0]))
    with pytest.raises(ValueError, match="got 4 choice scores for 5 scored rows: a scorer scores only the dataset"):
        scorer.accuracy(np.zeros(4))  # another eval dataset's rows
    with pytest.raises(ValueError, match="got 1 choice score for 5 scored rows"):
        scorer.accuracy(np.zeros(1))
    assert scorer.rows_mismatch([{"input_ids": [1]}]) == "it has 1 row, the scorer scores 5"
    # built without choice lengths (the three-field form): accuracy only
    plain = MultipleChoiceScorer(scorer.example_index, scorer.choice_index, scorer.answers)
    from transformers import EvalPrediction

    assert plain.compute_metrics(EvalPrediction(np.array([-5.0, -1.0, -3.0, -9.0, -2.0]), None)) == {"accuracy": 1.0}
    with pytest.raises(ValueError, match="accuracy_norm needs choice_lengths"):
        plain.accuracy_norm(np.zeros(5))
    logits = torch.log(torch.tensor([[[0.5, 0.5], [0.25, 0.75], [0.9, 0.1]]]))
    labels = torch.tensor([[-100, 1, 0]])
    torch.testing.assert_close(choice_logprob_sums(logits, labels), torch.log(torch.tensor([0.5 * 0.25])))


def test_accuracy_norm_divides_by_the_choice_length_in_characters(char_tokenizer):
    choices = ["yes", "a long but correct answer", "no"]
    data = Dataset.from_list([{"question": "Pick one.", "choices": choices, "answer": 1},
                              {"question": "Again?", "choices": ["ja", "nein"], "answer": 0}])
    _, scorer = tokenize_for_scoring(data, char_tokenizer, max_length=64)
    by_choice = {(0, 0): -3.0, (0, 1): -9.0, (0, 2): -2.5, (1, 0): -4.0, (1, 1): -5.0}
    row_scores = np.array([by_choice[(int(e), int(c))] for e, c in zip(scorer.example_index, scorer.choice_index)])
    # lm-evaluation-harness: pred_norm = np.argmax(lls / completion_len), completion_len = len(choice)
    harness = [np.argmax(np.array([by_choice[(0, j)] for j in range(3)]) / np.array([float(len(c)) for c in choices])),
               np.argmax(np.array([-4.0, -5.0]) / np.array([2.0, 4.0]))]
    assert harness == [1, 1]
    assert scorer.accuracy_norm(row_scores) == np.mean(np.array(harness) == data["answer"]) == 0.5
    assert scorer.accuracy(row_scores) == 0.5  # the raw sums pick "no" and "ja"
    metrics = scorer.compute_metrics(EvalPrediction(predictions=row_scores, label_ids=None))
    assert metrics == {"accuracy": 0.5, "accuracy_norm": 0.5}
    only_first = data.select([0])
    _, scorer = tokenize_for_scoring(only_first, char_tokenizer, max_length=64)
    row_scores = np.array([by_choice[(0, int(c))] for c in scorer.choice_index])
    assert (scorer.accuracy(row_scores), scorer.accuracy_norm(row_scores)) == (0.0, 1.0)


@pytest.mark.parametrize(("column", "values", "problem"), [
    ("answer", ["1", "0"], "answer '1' is not an int index"),
    ("answer", [1.0, 0.0], "answer 1.0 is not an int index"),
    ("choices", ["yes/no", "a/b"], "choices must be a list of at least two strings"),
    ("question", [None, None], "question must be a string"),
    ("choices", [["", "b"], ["c", "d"]], "choice 0 is an empty string"),
    ("contexts", [["only one"], None], r"contexts must be None or a list of one string per choice \(2\)"),
    ("contexts", ["one string", None], "contexts must be None or a list of one string per choice"),
    ("contexts", [["ctx", " \n"], None], "contexts 1 is only whitespace"),
])
def test_badly_typed_rows_are_named(column, values, problem):
    columns = {"question": ["q", "r"], "choices": [["a", "b"], ["c", "d"]], "answer": [1, 0], column: values}
    with pytest.raises(ValueError, match=rf"^mine row 1 \(1-based\): {problem}"):
        check_multiple_choice(Dataset.from_dict(columns), "mine")


def test_hub_tasks_load_script_free_revisions_and_honour_sizes(monkeypatch):
    import datasets

    calls = []

    def fake_load_dataset(path, config=None, revision=None):
        calls.append((path, config, revision))
        rows = [{"goal": f"goal {i}", "sol1": "a", "sol2": "b", "label": i % 2} for i in range(10)]
        return datasets.DatasetDict({"train": Dataset.from_list(rows), "validation": Dataset.from_list(rows[:6])})

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    train, evaluation = load_hub_task("piqa", train_size=4, eval_size=3, seed=1)
    assert calls == [("ybisk/piqa", "default", "refs/convert/parquet")]
    assert (len(train), len(evaluation)) == (4, 3)
    assert evaluation[2] == {"question": "goal 2", "choices": ["a", "b"], "answer": 0,
                             "contexts": ["Question: goal 2\nAnswer:"] * 2}
    assert len(load_hub_task("piqa")[0]) == 10  # no size: every question
    assert HUB_TASKS["siqa"][2] == "refs/convert/parquet"


def test_own_data_from_a_folder_a_file_or_one_split(tmp_path):
    rows = [{"question": f"q{i}", "choices": ["yes", "no"], "answer": i % 2} for i in range(20)]
    DatasetDict({"train": Dataset.from_list(rows[:15]), "test": Dataset.from_list(rows[15:])}).save_to_disk(tmp_path / "dd")
    train, evaluation = load_multiple_choice_dataset(str(tmp_path / "dd"), eval_size=3)
    assert (len(train), evaluation["question"]) == (15, ["q15", "q16", "q17"])
    (tmp_path / "mine.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    train, evaluation = load_multiple_choice_dataset(str(tmp_path / "mine.jsonl"), seed=0)
    assert (len(train), len(evaluation)) == (18, 2) and not set(train["question"]) & set(evaluation["question"])
    (tmp_path / "mine.txt").write_text("")
    with pytest.raises(ValueError, match="cannot read '.txt'"):
        load_multiple_choice_dataset(str(tmp_path / "mine.txt"))
    Dataset.from_list([{"question": "q", "choices": ["a"], "answer": 0}] * 4).save_to_disk(tmp_path / "one_choice")
    with pytest.raises(ValueError, match="choices must be a list of at least two"):
        load_multiple_choice_dataset(str(tmp_path / "one_choice"))



@pytest.mark.parametrize("rows, split, eval_fraction, held_out, left", [(1, "1 row", 0.1, 1, 0),
                                                                       (4, "4 rows", 0.0, 0, 4)])
def test_one_split_too_small_to_divide_is_named_with_the_fraction(tmp_path, rows, split, eval_fraction, held_out, left):
    mine = tmp_path / "mine.jsonl"
    mine.write_text("\n".join(json.dumps({"question": f"q{i}", "choices": ["yes", "no"], "answer": 0})
                              for i in range(rows)))
    with pytest.raises(ValueError, match=rf"^dataset {mine}: its one split of {split} is too few to divide "
                                         rf".*: eval_fraction {eval_fraction} holds out {held_out} \(rounded up\) to "
                                         rf"evaluate on and leaves {left} to train on"):
        load_multiple_choice_dataset(str(mine), eval_fraction=eval_fraction)

def test_sizes_beyond_the_questions_there_are_warn_naming_both_numbers_and_why(tmp_path, monkeypatch):
    rows = [{"question": f"q{i}", "choices": ["yes", "no"], "answer": i % 2} for i in range(40)]
    (tmp_path / "mine.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    mine = str(tmp_path / "mine.jsonl")
    with pytest.warns(UserWarning, match=rf"eval_size 8: dataset {mine}'s held-out evaluation split has only 4 "
                                         r"questions, all used \(its one split of 40 rows is divided 90%/10%: give the "
                                         r"data a validation or test split of its own for more\)"):
        train, evaluation = load_multiple_choice_dataset(mine, eval_size=8)
    assert (len(train), len(evaluation)) == (36, 4)
    with pytest.warns(UserWarning, match=rf"train_size 50: dataset {mine}'s training split has only 36 questions"):
        load_multiple_choice_dataset(mine, train_size=50)
    DatasetDict({"train": Dataset.from_list(rows[:30]), "test": Dataset.from_list(rows[30:])}).save_to_disk(tmp_path / "dd")
    with pytest.warns(UserWarning, match=r"eval_size 12: dataset .*dd's test split has only 10 questions, all used$"):
        load_multiple_choice_dataset(str(tmp_path / "dd"), eval_size=12)
    DatasetDict({"train": Dataset.from_list(rows[:30]), "test": Dataset.from_list(rows[30:31])}).save_to_disk(tmp_path / "one")
    with pytest.warns(UserWarning, match=r"eval_size 2: dataset .*one's test split has only 1 question, all used$"):
        load_multiple_choice_dataset(str(tmp_path / "one"), eval_size=2)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*questions, all used")
        load_multiple_choice_dataset(mine, train_size=36, eval_size=4)  # as many as there are

    import datasets
    monkeypatch.setattr(datasets, "load_dataset", lambda path, config=None, revision=None: datasets.DatasetDict(
        {"train": Dataset.from_list([{"goal": "g", "sol1": "a", "sol2": "b", "label": 0}] * 5),
         "validation": Dataset.from_list([{"goal": "g", "sol1": "a", "sol2": "b", "label": 1}] * 3)}))
    with pytest.warns(UserWarning, match="eval_size 4: task piqa's validation split has only 3 questions, all used"):
        load_hub_task("piqa", eval_size=4)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*questions, all used")
        load_hub_task("piqa", train_size=5, eval_size=3)


def test_a_hub_datasets_config_and_revision_reach_load_dataset_and_local_data_refuses_them(tmp_path, monkeypatch):
    import datasets

    rows = [{"question": f"q{i}", "choices": ["yes", "no"], "answer": i % 2} for i in range(10)]
    (tmp_path / "mine.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    Dataset.from_list(rows).save_to_disk(tmp_path / "folder")
    for local in ("mine.jsonl", "folder", "missing.parquet"):
        with pytest.raises(ValueError, match=rf"dataset .*{local} is local data, which has no Hub configuration or "
                                             "revision: leave out config_name and revision$"):
            load_multiple_choice_dataset(str(tmp_path / local), config_name="easy", revision="v2")
    with pytest.raises(ValueError, match=r"mine.jsonl is local data, .*: leave out revision$"):
        load_multiple_choice_dataset(str(tmp_path / "mine.jsonl"), revision="v2")
    calls = []
    monkeypatch.setattr(datasets, "load_dataset", lambda path, name=None, revision=None: (
        calls.append((path, name, revision)), Dataset.from_list(rows))[1])
    train, evaluation = load_multiple_choice_dataset("me/questions", config_name="easy", revision="v2")
    assert calls == [("me/questions", "easy", "v2")] and (len(train), len(evaluation)) == (9, 1)


def test_a_missing_data_file_is_named_not_looked_up_on_the_hub(tmp_path):
    with pytest.raises(FileNotFoundError, match=rf"dataset data/mine.JSONL: no such file \({tmp_path}"):
        with pytest.MonkeyPatch.context() as patch:
            patch.chdir(tmp_path)
            load_multiple_choice_dataset("data/mine.JSONL")


def test_a_bad_row_of_ones_own_data_is_named_by_its_row_in_the_file(tmp_path):
    rows = [{"question": f"q{i}", "choices": ["yes", "no"], "answer": 0} for i in range(20)]
    rows[13]["answer"] = 5  # on line 14 of the file
    (tmp_path / "mine.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    with pytest.raises(ValueError, match=r"mine.jsonl row 14 \(1-based\): answer 5 is not an int index"):
        load_multiple_choice_dataset(str(tmp_path / "mine.jsonl"))
    DatasetDict({"train": Dataset.from_list(rows[:10]), "validation": Dataset.from_list(rows[10:])}).save_to_disk(tmp_path / "dd")
    with pytest.raises(ValueError, match=r"\(validation split\) row 4 \(1-based\): answer 5"):
        load_multiple_choice_dataset(str(tmp_path / "dd"))


@pytest.mark.parametrize("suffix", [".jsonl", ".json"])
def test_a_line_that_is_not_json_is_named_by_its_line_in_the_file(tmp_path, suffix):
    lines = [json.dumps({"question": f"q{i}", "choices": ["yes", "no"], "answer": 0}) for i in range(12)]
    lines[6] = "{'question': 'single quotes'}"  # line 7
    path = tmp_path / f"mine{suffix}"
    path.write_text("\n".join(lines[:3]) + "\n\n" + "\n".join(lines[3:]))  # a blank line still counts: line 8
    with pytest.raises(ValueError, match=rf"^dataset {re.escape(str(path))}: line 8 \(1-based\) is not JSON \(Expecting "
                                         r"property name enclosed in double quotes\): \"\{'question'"):
        load_multiple_choice_dataset(str(path))


def test_a_json_document_that_does_not_parse_is_named_by_the_line_where_it_stops(tmp_path):
    path = tmp_path / "mine.json"
    path.write_text('[\n  {"question": "q", "choices": ["yes", "no"], "answer": 0},\n  {"question": "r" "answer": 1}\n]\n')
    with pytest.raises(ValueError, match=rf"^dataset {re.escape(str(path))}: line 3 \(1-based\), column 20 is not valid "
                                         "JSON: Expecting ',' delimiter$"):
        load_multiple_choice_dataset(str(path))


def test_logprob_sums_in_chunks_equal_the_full_log_softmax():
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(11, 7, 50, generator=generator, dtype=torch.float64).to(torch.bfloat16)
    labels = torch.randint(0, 50, (11, 7), generator=generator)
    labels[:, :3] = -100
    full = torch.log_softmax(logits[:, :-1].float(), dim=-1).gather(-1, labels[:, 1:].clamp(min=0).unsqueeze(-1))
    expected = (full.squeeze(-1) * (labels[:, 1:] != -100)).sum(dim=1)
    for rows_per_chunk in (1, 4, 64):  # chunks that do and do not divide the batch
        torch.testing.assert_close(choice_logprob_sums(logits, labels, rows_per_chunk), expected)


def _harness_request(tokenizer, context, continuation, max_length, add_bos_token=False):
    """lm-evaluation-harness, one request at a time (a causal HFLM with ``add_bos_token``): TemplateLM.loglikelihood
    and _encode_pair with tok_encode(add_special_tokens=add_bos_token), cut from the left as _loglikelihood_tokens
    cuts to its window, to rows of max_length tokens (one model input each), the continuation's tokens labelled."""
    if context == "":
        prefix = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
        context_enc, continuation_enc = [prefix], tokenizer.encode(continuation, add_special_tokens=add_bos_token)
    else:
        n_spaces = len(context) - len(context.rstrip())
        if n_spaces > 0:
            continuation = context[-n_spaces:] + continuation
            context = context[:-n_spaces]
        whole_enc = tokenizer.encode(context + continuation, add_special_tokens=add_bos_token)
        context_enc = tokenizer.encode(context, add_special_tokens=add_bos_token)
        continuation_enc = whole_enc[len(context_enc):]
    assert 0 < len(continuation_enc) < max_length
    tokens = (context_enc + continuation_enc)[-max_length:]
    return {"input_ids": tokens, "attention_mask": [1] * len(tokens),
            "labels": [-100] * (len(tokens) - len(continuation_enc)) + continuation_enc}


def boundary_bpe_tokenizer():
    """Characters plus two BPE merges, ":" + " " and "A" + "n": the first crosses the boundary between a
    "...Answer:" context and its " choice" continuation, so tokenising the two apart differs from the harness."""
    vocab = {"<s>": 0, "<unk>": 1}
    for char in string.ascii_letters + string.digits + " :?\n,.+-":
        vocab.setdefault(char, len(vocab))
    merges = [(":", " "), ("A", "n")]
    vocab.update({a + b: len(vocab) + k for k, (a, b) in enumerate(merges)})
    backend = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token="<unk>"))
    return PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<s>", unk_token="<unk>")


HARNESS_PAIRS = [
    ("Question: What is 2 + 2?\nAnswer:", "4"), ("Question: What is 2 + 2?\nAnswer:", "22"),
    ("Which is larger: 13 or 31? ", "31"),  # a trailing space: moved onto the continuation
    ("Ends in two spaces  ", "x"), ("", "no context"),  # an empty context: scored after BOS
    ("Answer:", "4"), ("Answer:", "4"),  # a repeated pair
]


@pytest.mark.parametrize("tokenizer_name", ["char", "bpe"])
def test_encoding_equals_the_harness_one_request_at_a_time(char_tokenizer, tokenizer_name):
    tokenizer = char_tokenizer if tokenizer_name == "char" else boundary_bpe_tokenizer()
    contexts, choices = zip(*HARNESS_PAIRS)
    for max_length in (64, 20, 12):  # 20 and 12 cut the longer contexts from the left
        expected = [_harness_request(tokenizer, c, " " + k, max_length) for c, k in HARNESS_PAIRS]
        assert encode_choices(tokenizer, contexts, choices, max_length) == expected


def test_encoding_with_the_harness_bos_token_as_for_gemma():
    tokenizer = boundary_bpe_tokenizer()
    tokenizer.backend_tokenizer.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 0)])
    contexts, choices = zip(*HARNESS_PAIRS)
    for max_length in (64, 14):  # 14 cuts the longer contexts
        expected = [_harness_request(tokenizer, c, " " + k, max_length, add_bos_token=True) for c, k in HARNESS_PAIRS]
        assert encode_choices(tokenizer, contexts, choices, max_length, add_bos_token=True) == expected
    with_bos = encode_choices(tokenizer, ["Answer:"], ["4"], 64, add_bos_token=True)[0]
    assert with_bos["input_ids"] == [0] + encode_choices(tokenizer, ["Answer:"], ["4"], 64)[0]["input_ids"]
    assert harness_adds_bos(SimpleNamespace(config=SimpleNamespace(model_type="gemma2")))
    assert not harness_adds_bos(SimpleNamespace(config=SimpleNamespace(model_type="llama")))


def test_encoding_across_a_merged_boundary_and_a_trailing_space(char_tokenizer):
    bpe = boundary_bpe_tokenizer()
    row = encode_choices(bpe, ["Answer:"], ["4"], 64)[0]
    # the full text merges ": " into one token, so (as in the harness) the continuation is the "4" alone
    assert bpe.convert_ids_to_tokens(row["input_ids"]) == ["An", "s", "w", "e", "r", ":", "4"]
    assert bpe.convert_ids_to_tokens([t for t in row["labels"] if t != -100]) == ["4"]
    # a context's trailing space is scored as part of the choice, not conditioned on
    row = encode_choices(char_tokenizer, ["Pick: "], ["yes"], 64)[0]
    assert _text(char_tokenizer, [t for t in row["labels"] if t != -100]) == "  yes"
    assert _text(char_tokenizer, row["input_ids"]) == "Pick:  yes"
    # an empty context is the BOS token; a context of spaces only leaves no token and is refused
    row = encode_choices(char_tokenizer, [""], ["yes"], 64)[0]
    assert row["input_ids"][0] == char_tokenizer.bos_token_id and row["labels"][0] == -100
    with pytest.raises(ValueError, match="only whitespace"):
        encode_choices(char_tokenizer, ["   "], ["yes"], 64)
    # a row holds max_length tokens at most, one of them context; a longer choice is refused
    row = encode_choices(char_tokenizer, ["abcdef"], ["xy"], 4)[0]
    assert _text(char_tokenizer, row["input_ids"]) == "f xy"
    assert len(encode_choices(char_tokenizer, ["abc"], ["xy"], 4)[0]["labels"]) == 4
    with pytest.raises(ValueError, match="alone has 4 tokens; raise max_length"):
        encode_choices(char_tokenizer, ["abc"], ["xyz"], 4)


def test_own_data_may_give_contexts_per_row(tmp_path, char_tokenizer):
    rows = [{"question": "2+2?", "choices": ["4", "5"], "answer": 0, "contexts": None},
            {"question": "ignored", "choices": ["cat", "dog"], "answer": 1, "contexts": ["A cat says", "A dog says"]}]
    (tmp_path / "mine.jsonl").write_text("\n".join(json.dumps(r) for r in rows * 5))
    _, evaluation = load_multiple_choice_dataset(str(tmp_path / "mine.jsonl"), eval_fraction=0.2, seed=0)
    pairs = _scored_pairs(Dataset.from_list(rows), char_tokenizer)
    assert pairs == [("Question: 2+2?\nAnswer:", " 4"), ("Question: 2+2?\nAnswer:", " 5"),
                     ("A cat says", " cat"), ("A dog says", " dog")]
    expected = [pair for row in evaluation for pair in (pairs[:2] if row["contexts"] is None else pairs[2:])]
    assert len(evaluation) == 2 and _scored_pairs(evaluation, char_tokenizer) == expected


@pytest.mark.slow
def test_smollm2_encoding_equals_the_harness_one_request_at_a_time():
    from transformers import AutoTokenizer

    from hf_eff.halora.base_model import ensure_converted_smollm2

    tokenizer = AutoTokenizer.from_pretrained(ensure_converted_smollm2())
    pairs = list(HARNESS_PAIRS)
    for mapping, example, _, _ in HARNESS_REQUESTS:  # the Hub tasks' prompts
        row = mapping(example)
        pairs += list(zip(row["contexts"], row["choices"]))
    for row in builtin_task("mixed", train_size=10, eval_size=60)[1]:
        pairs += [(DEFAULT_PROMPT.format(question=row["question"]), choice) for choice in row["choices"]]
    contexts, choices = zip(*pairs)
    for max_length in (128, 24):  # 24 cuts most prompts; the longest choice has 15 tokens
        expected = [_harness_request(tokenizer, c, " " + k, max_length) for c, k in pairs]
        assert encode_choices(tokenizer, contexts, choices, max_length) == expected


def test_the_rows_collator_names_a_missing_pad_token(char_tokenizer):
    import copy

    without_pad = copy.deepcopy(char_tokenizer)
    without_pad.pad_token = None
    with pytest.raises(ValueError, match="has no pad token, which padding the rows of a batch needs: set "
                                         "tokenizer.pad_token = tokenizer.eos_token"):
        choice_rows_collator(without_pad)
