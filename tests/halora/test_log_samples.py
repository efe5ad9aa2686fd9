"""HaLoRATrainingArguments.log_samples: per-question samples of every evaluation run under noise, as
lm-evaluation-harness's --log_samples writes them."""

import datetime
import json
import subprocess
import sys
import warnings
from collections import defaultdict

import numpy as np
import pytest
from datasets import Dataset
from peft import LoraConfig, get_peft_model

from hf_eff.halora.experiment import build_trainer
from hf_eff.halora.tasks import MultipleChoiceScorer, builtin_task, tokenize_for_scoring
from hf_eff.halora.trainer import (
    NO_NOISE_SEED,
    HaLoRATrainer,
    HaLoRATrainingArguments,
    sigma_key,
    write_samples,
)
from tests.halora.conftest import make_tiny_llama
from tests.halora.test_example import EXAMPLE, _load_example
from tests.hub.conftest import REPO_ROOT, local_hub  # noqa: F401  (the local Hub server fixture)

SIGMAS = [0.0, 0.1]
SEEDS = 2


def _args(output_dir, **kwargs):
    defaults = dict(output_dir=str(output_dir), report_to=[], use_cpu=True, save_strategy="no", disable_tqdm=True,
                    dataloader_num_workers=0, seed=0, per_device_eval_batch_size=32, eval_sigmas=SIGMAS,
                    eval_noise_seeds=SEEDS, noise_seed=7)
    return HaLoRATrainingArguments(**{**defaults, **kwargs})


def _lora_model(tokenizer):
    return get_peft_model(make_tiny_llama(vocab_size=len(tokenizer)),
                          LoraConfig(r=4, target_modules=["q_proj"], init_lora_weights=False))


def _questions():
    return builtin_task("mixed", train_size=0, eval_size=9)[1]  # 4, 2 and 4 choices


def _read_samples(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_samples_are_the_predictions_the_reported_accuracies_count(tmp_path, char_tokenizer):
    questions = _questions()
    trainer = build_trainer(_lora_model(char_tokenizer), char_tokenizer, None, questions,
                            _args(tmp_path, log_samples=True), max_length=96)
    metrics = trainer.evaluate()
    path = tmp_path / "samples_eval.jsonl"
    assert trainer.samples_path() == path
    samples = _read_samples(path)

    runs = defaultdict(list)
    for sample in samples:
        runs[sample["sigma"], sample["noise_seed"]].append(sample)
    # sigma 0 draws no noise: one run, with no seed (-1); every other level one run per noise seed
    assert list(runs) == [(0.0, -1), (0.1, 7), (0.1, 8)]
    for run in runs.values():
        assert [sample["doc_id"] for sample in run] == list(range(len(questions)))
        for sample, row in zip(run, questions):
            assert (sample["question"], sample["choices"], sample["answer"]) == (row["question"], row["choices"], row["answer"])
            assert "contexts" not in sample
            scores = np.array(sample["loglikelihoods"])
            assert len(scores) == len(row["choices"])
            assert sample["pred"] == scores.argmax()
            assert sample["pred_norm"] == (scores / [len(choice) for choice in row["choices"]]).argmax()
            assert sample["acc"] == int(sample["pred"] == row["answer"])
            assert sample["acc_norm"] == int(sample["pred_norm"] == row["answer"])
    assert runs[0.1, 7][0]["loglikelihoods"] != runs[0.1, 8][0]["loglikelihoods"] != runs[0.0, -1][0]["loglikelihoods"]
    # the two seeds score differently, so a run's rows under another run's seed would not add up
    assert metrics["eval_accuracy_sigma_0.1_std"] > 0

    for metric, field in (("accuracy", "acc"), ("accuracy_norm", "acc_norm")):
        assert np.mean([s[field] for s in runs[0.0, -1]]) == metrics[f"eval_{metric}"]
        for sigma in SIGMAS:
            per_seed = [np.mean([s[field] for s in run]) for (level, _), run in runs.items() if level == sigma]
            assert np.mean(per_seed) == pytest.approx(metrics[sigma_key("eval", metric, sigma, "mean")], abs=1e-12)
            assert np.std(per_seed) == pytest.approx(metrics[sigma_key("eval", metric, sigma, "std")], abs=1e-12)

    trainer.evaluate()  # rewrites the file: one evaluation's samples, not two
    assert _read_samples(path) == samples


def test_no_samples_by_default_nor_from_other_processes(tmp_path, char_tokenizer):
    questions = _questions()
    model = _lora_model(char_tokenizer)
    build_trainer(model, char_tokenizer, None, questions, _args(tmp_path / "default", eval_sigmas=[0.0])).evaluate()
    assert not list((tmp_path / "default").glob("samples_*"))

    trainer = build_trainer(model, char_tokenizer, None, questions,
                            _args(tmp_path / "rank1", eval_sigmas=[0.0], log_samples=True))
    trainer.is_world_process_zero = lambda: False  # another process of a distributed evaluation
    trainer.evaluate()
    assert not list((tmp_path / "rank1").glob("samples_*"))


def test_log_samples_needs_the_scorer_and_predictions(tmp_path, char_tokenizer):
    scoring, scorer = tokenize_for_scoring(_questions(), char_tokenizer, max_length=96)
    model = _lora_model(char_tokenizer)
    with pytest.raises(ValueError, match=r"log_samples needs the eval dataset's scorer: HaLoRATrainer\(\.\.\., scorer=scorer, "
                                         r"eval_dataset=rows\) with rows, scorer = tokenize_for_scoring\(questions, tokenizer\)"):
        HaLoRATrainer(model=model, args=_args(tmp_path, log_samples=True), eval_dataset=scoring,
                      compute_metrics=scorer.compute_metrics)
    # the fix the message names: the trainer pads the rows itself (HaLoRATrainer's default collator), and it scores
    trainer = HaLoRATrainer(model=model, args=_args(tmp_path, log_samples=True), eval_dataset=scoring, scorer=scorer)
    assert trainer.evaluate()["eval_accuracy"] == np.mean([s["acc"] for s in _read_samples(trainer.samples_path())
                                                           if s["sigma"] == 0])
    with pytest.raises(ValueError, match="give scorer or compute_metrics, not both"):
        HaLoRATrainer(model=model, args=_args(tmp_path), eval_dataset=scoring, scorer=scorer,
                      compute_metrics=scorer.compute_metrics)
    for flag in ("prediction_loss_only", "batch_eval_metrics"):
        with pytest.raises(ValueError, match="log_samples writes each evaluation's choice scores, which "
                                             "prediction_loss_only and batch_eval_metrics do not keep"):
            _args(tmp_path, log_samples=True, **{flag: True})


def test_scorer_samples_follow_the_harness():
    questions = Dataset.from_dict({"question": ["q0", "q1"], "choices": [["a", "bbbb"], ["x", "y", "zz"]],
                                   "answer": [1, 0], "contexts": [None, ["c0", "c1", "c2"]]})
    # rows in a scoring order that is not the questions' (tokenize_for_scoring sorts them by length)
    scorer = MultipleChoiceScorer(example_index=np.array([1, 0, 1, 0, 1]), choice_index=np.array([2, 1, 0, 0, 1]),
                                  answers=np.array([1, 0]), choice_lengths=np.array([2.0, 4.0, 1.0, 1.0, 1.0]),
                                  questions=questions)
    row_scores = np.array([-4.0, -6.0, -3.0, -2.0, -3.0])
    first, second = scorer.samples(row_scores)
    # q0: -2 beats -6 (acc wrong), but -6 / 4 beats -2 / 1 (acc_norm right)
    assert first == {"doc_id": 0, "question": "q0", "choices": ["a", "bbbb"], "answer": 1, "loglikelihoods": [-2.0, -6.0],
                     "pred": 0, "acc": 0, "pred_norm": 1, "acc_norm": 1}
    # q1: a tie goes to the lowest choice, as np.argmax in the harness, and per character -4 / 2 beats -3 / 1;
    # its contexts come with it
    assert second == {"doc_id": 1, "question": "q1", "choices": ["x", "y", "zz"], "answer": 0,
                      "contexts": ["c0", "c1", "c2"], "loglikelihoods": [-3.0, -3.0, -4.0],
                      "pred": 0, "acc": 1, "pred_norm": 2, "acc_norm": 0}
    assert scorer.accuracy(row_scores) == 0.5 and scorer.accuracy_norm(row_scores) == 0.5

    without_lengths = MultipleChoiceScorer(scorer.example_index, scorer.choice_index, scorer.answers, questions=questions)
    assert all("pred_norm" not in sample and "acc_norm" not in sample for sample in without_lengths.samples(row_scores))
    without_questions = MultipleChoiceScorer(scorer.example_index, scorer.choice_index, scorer.answers)
    with pytest.raises(ValueError, match="samples need the questions"):
        next(without_questions.samples(row_scores))


def _comparison_run_flags(tmp_path, char_tokenizer, out, do_train, *flags) -> list[str]:
    """The example's flags for a tiny base model (saved under tmp_path) on 4 training and 3 evaluation questions of the
    built-in comparison task, one step at most, into ``out``; ``flags`` add to them."""
    base = tmp_path / "base"
    make_tiny_llama(vocab_size=len(char_tokenizer)).save_pretrained(base)
    char_tokenizer.save_pretrained(base)
    return ["--model_name_or_path", str(base), "--task_name", "comparison", "--train_size", "4", "--eval_size", "3",
            "--max_length", "64", "--output_dir", str(out), "--max_steps", "1", "--per_device_train_batch_size", "4",
            "--report_to", "none", "--use_cpu", "--save_strategy", "no", "--disable_tqdm", "true",
            "--do_train", str(do_train), *flags]


@pytest.mark.parametrize("do_train", [True, False])
def test_example_writes_samples_when_asked(tmp_path, char_tokenizer, do_train):
    out = tmp_path / "run"
    flags = _comparison_run_flags(tmp_path, char_tokenizer, out, do_train,
                                  "--eval_sigmas", "0", "0.02", "--eval_noise_seeds", "2")
    results = _load_example().main(flags + ["--log_samples"])
    samples = _read_samples(out / "samples_eval.jsonl")
    assert len(samples) == 3 * (1 + 2)
    assert np.mean([s["acc"] for s in samples if s["sigma"] == 0]) == results["eval_accuracy_sigma_0_mean"]


def test_no_push_uploads_the_samples(tmp_path, char_tokenizer, local_hub):  # noqa: F811
    """The questions may be private evaluation data: the Trainer's pushes (the checkpoints' during training and
    the final one) and `hf-eff push` leave samples_eval.jsonl local, as the harness pushes samples only when asked."""
    base = tmp_path / "base"
    make_tiny_llama(vocab_size=len(char_tokenizer)).save_pretrained(base)
    char_tokenizer.save_pretrained(base)
    out, trained_repo, pushed_repo = tmp_path / "run", local_hub.repo_id("samples-run"), local_hub.repo_id("samples-cli")
    commands = {
        # an evaluation at step 1 leaves the file in output_dir when the checkpoint of step 1 is pushed
        "example": [str(EXAMPLE), "--model_name_or_path", str(base), "--task_name", "comparison", "--train_size", "4",
                    "--eval_size", "3", "--max_length", "64", "--output_dir", str(out), "--max_steps", "2",
                    "--per_device_train_batch_size", "4", "--eval_sigmas", "0", "--report_to", "none", "--use_cpu",
                    "--disable_tqdm", "true", "--log_samples", "--eval_strategy", "steps", "--eval_steps", "1",
                    "--save_strategy", "steps", "--save_steps", "1", "--push_to_hub", "--hub_model_id", trained_repo],
        "hf-eff push": ["-c", "import sys; from hf_eff.cli import main; sys.exit(main(sys.argv[1:]))", "push", str(out),
                        pushed_repo],
    }
    for name, command in commands.items():
        process = subprocess.run([sys.executable, *command], env=local_hub.env(), cwd=REPO_ROOT, capture_output=True,
                                 text=True, timeout=300)
        assert process.returncode == 0, f"{name}: {process.stderr[-4000:]}"
    assert (out / "samples_eval.jsonl").is_file()
    api = local_hub.api()
    commits = api.list_repo_commits(trained_repo)
    assert any(commit.title.startswith("Training in progress") for commit in commits)  # the checkpoint pushes ran
    for repo_id in (trained_repo, pushed_repo):
        files = api.list_repo_files(repo_id)
        assert "adapter_model.safetensors" in files and "all_results.json" in files
        assert not [name for name in files if name.startswith("samples_")], repo_id


def test_samples_an_earlier_run_left_are_warned_of(tmp_path, char_tokenizer):
    (tmp_path / "samples_eval.jsonl").write_text('{"sigma": 0.0}\n')
    model = _lora_model(char_tokenizer)
    with pytest.warns(UserWarning, match=r"holds samples_eval.jsonl of an earlier run, which this trainer's evaluations "
                                         r"leave as they are \(log_samples False\)"):
        trainer = build_trainer(model, char_tokenizer, None, _questions(), _args(tmp_path, eval_sigmas=[0.0]))
    trainer.evaluate()
    assert (tmp_path / "samples_eval.jsonl").read_text() == '{"sigma": 0.0}\n'  # kept: not this run's to delete
    with warnings.catch_warnings(record=True) as caught:  # with log_samples the evaluation rewrites the file
        warnings.simplefilter("always")
        build_trainer(model, char_tokenizer, None, _questions(), _args(tmp_path, eval_sigmas=[0.0], log_samples=True))
    assert not [w for w in caught if "earlier run" in str(w.message)]


def test_samples_carry_the_other_columns_of_a_users_data(tmp_path, char_tokenizer):
    """An id column identifies the question: a single split is divided at random, so doc_id is no row of the file."""
    rows = [{"id": f"q{k:02d}", "topic": "sums", "question": f"What is {k} + 1?", "choices": [str(k + 1), str(k + 2)],
             "answer": 0} for k in range(30)]
    data = tmp_path / "mine.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in rows))
    base = tmp_path / "base"
    make_tiny_llama(vocab_size=len(char_tokenizer)).save_pretrained(base)
    char_tokenizer.save_pretrained(base)
    out = tmp_path / "eval"
    _load_example().main(["--model_name_or_path", str(base), "--dataset", str(data), "--max_length", "64", "--output_dir",
                          str(out), "--eval_sigmas", "0", "--report_to", "none", "--use_cpu", "--disable_tqdm", "true",
                          "--do_train", "False", "--log_samples"])
    samples = _read_samples(out / "samples_eval.jsonl")
    assert len(samples) == 3 and [s["doc_id"] for s in samples] == [0, 1, 2]
    by_id = {row["id"]: row for row in rows}
    assert [s["other_columns"]["id"] for s in samples] != ["q00", "q01", "q02"]  # a random tenth of the file
    for sample in samples:
        assert sample["other_columns"]["topic"] == "sums"
        assert sample["question"] == by_id[sample["other_columns"]["id"]]["question"]

    # a value JSON has no type for is written as its str
    questions = _questions().add_column("added", [datetime.datetime(2024, 5, k + 1) for k in range(9)])
    trainer = build_trainer(_lora_model(char_tokenizer), char_tokenizer, None, questions,
                            _args(tmp_path / "dated", eval_sigmas=[0.0], log_samples=True), max_length=96)
    trainer.evaluate()
    assert [s["other_columns"] for s in _read_samples(trainer.samples_path())][:2] == [
        {"added": "2024-05-01 00:00:00"}, {"added": "2024-05-02 00:00:00"}]


def test_noise_seeds_read_as_integers_in_pandas_and_the_noise_free_run_keeps_its_rows(tmp_path):
    pd = pytest.importorskip("pandas")  # how lm-evaluation-harness users load samples files
    path = tmp_path / "samples_eval.jsonl"
    samples = [{"doc_id": 0, "acc": 1}, {"doc_id": 1, "acc": 0}]
    write_samples(path, samples, 0.0, None)
    for seed in (7, 8):
        write_samples(path, samples, 0.1, seed)
    table = pd.read_json(path, lines=True)
    assert table["noise_seed"].dtype == "int64"
    assert table.groupby(["sigma", "noise_seed"]).size().to_dict() == {(0.0, NO_NOISE_SEED): 2, (0.1, 7): 2, (0.1, 8): 2}


@pytest.mark.parametrize("do_train", [True, False])
def test_example_run_without_log_samples_removes_an_earlier_runs_samples(tmp_path, char_tokenizer, caplog, do_train):
    # they were left beside this run's results, and passed for its own
    out = tmp_path / "run"
    flags = _comparison_run_flags(tmp_path, char_tokenizer, out, do_train, "--eval_sigmas", "0",
                                  "--overwrite_output_dir")
    _load_example().main([*flags, "--log_samples"])
    assert (out / "samples_eval.jsonl").is_file()
    caplog.set_level("INFO")
    with pytest.warns(UserWarning, match="holds samples_eval.jsonl of an earlier run"):  # HaLoRATrainer's, at once
        _load_example().main(flags)
    assert not (out / "samples_eval.jsonl").exists()
    assert f"removed {out / 'samples_eval.jsonl'}: an earlier run's samples, not this run's" in caplog.text
