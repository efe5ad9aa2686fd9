"""A scorer scores only the rows tokenize_for_scoring made it for: other rows reaching evaluate or predict are
refused before any evaluation step, unless given with their own scorer."""

import json

import numpy as np
import pytest
import torch

from hf_eff.halora.tasks import (
    MultipleChoiceScorer,
    builtin_task,
    choice_logprob_sums,
    tokenize_for_scoring,
)
from hf_eff.halora.trainer import HaLoRATrainer
from tests.halora.conftest import make_tiny_llama
from tests.halora.test_trainer import _args, _model_metrics


def _scored(tokenizer, seed):
    """Six two-choice questions: 12 rows, as many for every seed."""
    return tokenize_for_scoring(builtin_task("comparison", train_size=4, eval_size=6, seed=seed)[1], tokenizer,
                                max_length=64)


@pytest.fixture
def scored(char_tokenizer):
    (rows, scorer), (other, other_scorer) = _scored(char_tokenizer, 0), _scored(char_tokenizer, 7)
    assert len(rows) == len(other) == 12
    return rows, scorer, other, other_scorer


def _trainer(tmp_path, tokenizer, **kwargs):
    args = _args(tmp_path, eval_sigmas=[0.0, 0.05], eval_noise_seeds=2, per_device_eval_batch_size=16)
    return HaLoRATrainer(model=make_tiny_llama(vocab_size=len(tokenizer)), args=args, **kwargs)


def _spy(trainer):
    """Counts the trainer's evaluation loops and logs."""
    calls = {"evaluation_loop": 0, "log": 0}
    for name in calls:
        method = getattr(trainer, name)

        def counted(*args, _method=method, _name=name, **kwargs):
            calls[_name] += 1
            return _method(*args, **kwargs)

        setattr(trainer, name, counted)
    return calls


def test_other_rows_of_as_many_questions_are_refused_before_any_evaluation_step(tmp_path, char_tokenizer, scored):
    rows, scorer, other, _ = scored
    trainer = _trainer(tmp_path, char_tokenizer, eval_dataset=rows, scorer=scorer)
    calls = _spy(trainer)
    for call in (lambda: trainer.evaluate(other, metric_key_prefix="other"), lambda: trainer.predict(other)):
        with pytest.raises(ValueError, match=r"the scorer cannot score the dataset given: its 12 rows are not those "
                                             r"tokenize_for_scoring made the scorer for.*trainer.evaluate\(rows, "
                                             r"scorer=scorer\)"):
            call()
    assert calls == {"evaluation_loop": 0, "log": 0}
    own = _model_metrics(trainer.evaluate())
    assert calls == {"evaluation_loop": 3, "log": 1}  # sigma 0 once, sigma 0.05 with two seeds
    assert _model_metrics(trainer.evaluate(rows)) == own
    assert trainer.predict(rows).metrics["test_accuracy"] == own["eval_accuracy"]


def test_rows_are_told_by_their_content_after_select_shuffle_or_with_format(char_tokenizer, scored):
    rows, scorer, other, _ = scored
    for same in (rows, rows.select(range(len(rows))), rows.with_format("torch"), rows.flatten_indices()):
        assert scorer.rows_mismatch(same) is None
    assert "another order" in scorer.rows_mismatch(rows.select(range(len(rows))[::-1]))
    assert "another order" in scorer.rows_mismatch(rows.shuffle(seed=0))
    assert "other questions" in scorer.rows_mismatch(other)
    assert scorer.rows_mismatch(rows.select(range(10))) == "it has 10 rows, the scorer scores 12"
    # built by hand, a scorer knows only how many rows it scores
    by_hand = MultipleChoiceScorer(scorer.example_index, scorer.choice_index, scorer.answers)
    assert by_hand.rows_mismatch(other) is None
    assert by_hand.rows_mismatch(rows.select(range(10))) == "it has 10 rows, the scorer scores 12"


class _TorchRows(torch.utils.data.Dataset):
    def __init__(self, rows):
        self.rows = list(rows)

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, index):
        return self.rows[index]


def test_rows_that_are_not_a_datasets_dataset_are_told_by_their_number_as_by_a_scorer_built_by_hand(
        tmp_path, char_tokenizer, scored):
    rows, scorer, _, _ = scored
    for same in (_TorchRows(rows), list(rows), rows.to_iterable_dataset()):  # the last has no length to tell
        assert scorer.rows_mismatch(same) is None
    assert scorer.rows_mismatch(_TorchRows(rows.select(range(10)))) == "it has 10 rows, the scorer scores 12"
    trainer = _trainer(tmp_path, char_tokenizer, eval_dataset=rows, scorer=scorer)
    own = _model_metrics(trainer.evaluate())
    assert "eval_accuracy" in own
    assert _model_metrics(trainer.evaluate(_TorchRows(rows))) == own


def test_a_dict_eval_dataset_with_a_split_of_other_rows_is_refused(tmp_path, char_tokenizer, scored):
    rows, scorer, other, _ = scored
    with pytest.raises(ValueError, match=r"HaLoRATrainer: the scorer cannot score the trainer's eval_dataset\['other'\]"):
        _trainer(tmp_path, char_tokenizer, eval_dataset={"own": rows, "other": other}, scorer=scorer)
    trainer = _trainer(tmp_path, char_tokenizer, eval_dataset={"own": rows, "copy": rows.select(range(len(rows)))},
                       scorer=scorer)
    metrics = trainer.evaluate()
    assert metrics["eval_own_accuracy"] == metrics["eval_copy_accuracy"]
    calls = _spy(trainer)
    trainer.eval_dataset = {"own": rows, "other": other}  # set after the trainer was built: refused at evaluate
    with pytest.raises(ValueError, match=r"evaluate: the scorer cannot score the trainer's eval_dataset\['other'\]"):
        trainer.evaluate()
    with pytest.raises(ValueError, match=r"evaluate: the scorer cannot score the dataset given\['other'\]"):
        trainer.evaluate({"own": rows, "other": other})
    with pytest.raises(ValueError, match=r"evaluate: the scorer cannot score the trainer's eval_dataset\['other'\]"):
        trainer.evaluate("other")
    assert calls == {"evaluation_loop": 0, "log": 0}


def test_a_scorer_wired_by_hand_through_compute_metrics_is_checked_too(tmp_path, char_tokenizer, scored):
    rows, scorer, other, _ = scored
    wired = dict(compute_metrics=scorer.compute_metrics, preprocess_logits_for_metrics=choice_logprob_sums,
                 processing_class=char_tokenizer)
    with pytest.raises(ValueError, match="HaLoRATrainer: the scorer cannot score the trainer's eval_dataset: its 12"):
        _trainer(tmp_path, char_tokenizer, eval_dataset=other, **wired)
    trainer = _trainer(tmp_path, char_tokenizer, eval_dataset=rows, **wired)
    with pytest.raises(ValueError, match="evaluate: the scorer cannot score the dataset given"):
        trainer.evaluate(other)


def test_other_rows_given_with_their_scorer_are_scored_as_by_a_trainer_built_with_it(tmp_path, char_tokenizer, scored):
    rows, scorer, other, other_scorer = scored
    trainer = _trainer(tmp_path, char_tokenizer, eval_dataset=rows, scorer=scorer)
    built = _trainer(tmp_path, char_tokenizer, eval_dataset=other, scorer=other_scorer)
    expected = _model_metrics(built.evaluate(metric_key_prefix="other"))
    assert _model_metrics(trainer.evaluate(other, metric_key_prefix="other", scorer=other_scorer)) == expected
    assert trainer.predict(other, scorer=other_scorer).metrics["test_accuracy"] == expected["other_accuracy"]
    # the call's scorer only: the trainer's own scores its rows again, and refuses the others
    assert trainer.scorer is scorer and trainer.compute_metrics == scorer.compute_metrics
    with pytest.raises(ValueError, match="the scorer cannot score the dataset given"):
        trainer.evaluate(other)
    # a trainer built with no scorer and no tokenizer pads the rows from the given scorer's tokenizer
    bare = _trainer(tmp_path, char_tokenizer)
    predictions = bare.predict(other, scorer=other_scorer).predictions
    np.testing.assert_allclose(predictions, built.predict(other).predictions)
    assert bare.compute_metrics is None and bare.preprocess_logits_for_metrics is None


def test_samples_of_other_rows_come_from_their_scorer(tmp_path, char_tokenizer, scored):
    rows, scorer, other, other_scorer = scored
    args = _args(tmp_path, eval_sigmas=[0.0], log_samples=True)
    trainer = HaLoRATrainer(model=make_tiny_llama(vocab_size=len(char_tokenizer)), args=args, eval_dataset=rows,
                            scorer=scorer)
    trainer.evaluate(other, metric_key_prefix="other", scorer=other_scorer)
    samples = [json.loads(line) for line in trainer.samples_path("other").read_text().splitlines()]
    assert [sample["question"] for sample in samples] == other_scorer.questions["question"]
