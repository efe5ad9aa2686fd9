import json

import numpy as np
import pytest
import torch
from datasets import Dataset, DatasetDict

from hf_eff.halora.tasks import (
    HUB_TASKS,
    MultipleChoiceScorer,
    arc_to_mc,
    builtin_task,
    check_multiple_choice,
    choice_logprob_sums,
    load_hub_task,
    load_multiple_choice_dataset,
    openbookqa_to_mc,
    piqa_to_mc,
    siqa_to_mc,
    tokenize_for_scoring,
    tokenize_for_training,
    winogrande_to_mc,
)


def _key(row):
    return row["question"] + "|" + "|".join(row["choices"])


def test_builtin_task_is_deterministic_disjoint_and_well_formed():
    train, evaluation = builtin_task()
    assert (len(train), len(evaluation)) == (3000, 600)
    assert builtin_task()[1].to_list() == evaluation.to_list()
    assert not {_key(r) for r in train} & {_key(r) for r in evaluation}
    for row in evaluation:
        assert 0 <= row["answer"] < len(row["choices"]) and len(set(row["choices"])) == len(row["choices"])
    # the answers are spread over the positions, so "always pick choice 0" is not a good strategy
    assert np.mean(np.array(evaluation["answer"]) == 0) < 0.45
    arithmetic = builtin_task("arithmetic", train_size=10, eval_size=10)[1][0]
    a, op, b = arithmetic["question"].removeprefix("What is ").removesuffix("?").split()
    assert int(arithmetic["choices"][arithmetic["answer"]]) == (int(a) + int(b) if op == "+" else int(a) - int(b))
    with pytest.raises(ValueError, match="task_name"):
        builtin_task("poetry")


def test_hub_mappings_on_tiny_examples():
    arc = {"question": "Q?", "choices": {"text": ["a", "b", "c"], "label": ["A", "B", "C"]}, "answerKey": "C"}
    assert arc_to_mc(arc) == {"question": "Q?", "choices": ["a", "b", "c"], "answer": 2}
    obqa = {"question_stem": "S", "choices": {"text": ["x", "y"], "label": ["A", "B"]}, "answerKey": "B"}
    assert openbookqa_to_mc(obqa)["answer"] == 1
    siqa = {"context": "C.", "question": "Q?", "answerA": "a", "answerB": "b", "answerC": "c", "label": "3"}
    assert siqa_to_mc(siqa) == {"question": "C. Q?", "choices": ["a", "b", "c"], "answer": 2}
    wino = {"sentence": "The cup fell because _ was heavy.", "option1": "the cup", "option2": "the table", "answer": "2"}
    assert winogrande_to_mc(wino) == {"question": "The cup fell because",
                                      "choices": ["the cup was heavy.", "the table was heavy."], "answer": 1}
    assert piqa_to_mc({"goal": "g", "sol1": "s1", "sol2": "s2", "label": 0}) == {"question": "g", "choices": ["s1", "s2"], "answer": 0}


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
            with pytest.raises(ValueError, match=f"{name} row 1: answer {answer} is not an int index into its 2 choices"):
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
    scorer = MultipleChoiceScorer(np.array([0, 0, 1, 1, 1]), np.array([0, 1, 0, 1, 2]), np.array([1, 2]))
    assert scorer.accuracy(np.array([-5.0, -1.0, -3.0, -9.0, -2.0])) == 1.0
    assert scorer.accuracy(np.array([-1.0, -5.0, -3.0, -9.0, -2.0])) == 0.5
    with pytest.raises(ValueError, match="NaN"):
        scorer.accuracy(np.array([np.nan, -1.0, -3.0, -9.0, -2.0]))
    logits = torch.log(torch.tensor([[[0.5, 0.5], [0.25, 0.75], [0.9, 0.1]]]))
    labels = torch.tensor([[-100, 1, 0]])
    torch.testing.assert_close(choice_logprob_sums(logits, labels), torch.log(torch.tensor([0.5 * 0.25])))


@pytest.mark.parametrize(("column", "values", "problem"), [
    ("answer", ["1", "0"], "answer '1' is not an int index"),
    ("answer", [1.0, 0.0], "answer 1.0 is not an int index"),
    ("choices", ["yes/no", "a/b"], "choices must be a list of at least two strings"),
    ("question", [None, None], "question must be a string"),
])
def test_badly_typed_rows_are_named(column, values, problem):
    columns = {"question": ["q", "r"], "choices": [["a", "b"], ["c", "d"]], "answer": [1, 0], column: values}
    with pytest.raises(ValueError, match=f"mine row 0: {problem}"):
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
    assert evaluation[2] == {"question": "goal 2", "choices": ["a", "b"], "answer": 0}
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


def test_logprob_sums_in_chunks_equal_the_full_log_softmax():
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(11, 7, 50, generator=generator, dtype=torch.float64).to(torch.bfloat16)
    labels = torch.randint(0, 50, (11, 7), generator=generator)
    labels[:, :3] = -100
    full = torch.log_softmax(logits[:, :-1].float(), dim=-1).gather(-1, labels[:, 1:].clamp(min=0).unsqueeze(-1))
    expected = (full.squeeze(-1) * (labels[:, 1:] != -100)).sum(dim=1)
    for rows_per_chunk in (1, 4, 64):  # chunks that do and do not divide the batch
        torch.testing.assert_close(choice_logprob_sums(logits, labels, rows_per_chunk), expected)


def test_batched_encoding_equals_one_tokenizer_call_per_pair(char_tokenizer):
    from hf_eff.halora.tasks import encode_choices

    questions, choices = ["What is 2 + 2?", "What is 2 + 2?", "Which is larger: 13 or 31?"], ["4", "22", "31"]
    for max_length in (64, 20):  # 20 cuts the prompts from the left
        rows = encode_choices(char_tokenizer, questions, choices, max_length)
        for row, question, choice in zip(rows, questions, choices):
            continuation = char_tokenizer(" " + choice, add_special_tokens=False)["input_ids"]
            context = char_tokenizer(f"Question: {question}\nAnswer:")["input_ids"][-(max_length - len(continuation)):]
            assert row == {"input_ids": context + continuation, "attention_mask": [1] * (len(context) + len(continuation)),
                           "labels": [-100] * len(context) + continuation}
