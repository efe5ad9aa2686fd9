from peft import LoraConfig, get_peft_model
from transformers import DataCollatorForSeq2Seq, TrainerCallback
from transformers.trainer_callback import ProgressCallback

from hf_eff.halora.tasks import (
    builtin_task,
    choice_logprob_sums,
    tokenize_for_scoring,
    tokenize_for_training,
)
from hf_eff.halora.trainer import HaLoRATrainer, HaLoRATrainingArguments
from tests.halora.conftest import make_tiny_llama

RUNS = 1 + 2 * 2  # sigma 0 once, each other sigma once per seed


class _EvaluationBarRecorder(TrainerCallback):
    """Records (count, total) of the progress callback's evaluation bar as on_evaluate reaches this callback, which
    comes before the progress callback closes the bar; during training, also whether the bar is the training
    tracker's child."""

    def __init__(self):
        self.progress = None
        self.bars = []
        self.under_training_table = []

    def on_evaluate(self, args, state, control, **kwargs):
        bar = self.progress.prediction_bar
        # tqdm counts in n, transformers' NotebookProgressBar in value
        self.bars.append((getattr(bar, "n", getattr(bar, "value", None)), bar.total))
        tracker = getattr(self.progress, "training_tracker", None)
        self.under_training_table.append(tracker is not None and tracker.child_bar is bar)


def _trainer(tmp_path, char_tokenizer, recorder, progress_callback=None, **arguments) -> HaLoRATrainer:
    """A trainer evaluating at three sigmas over two seeds, its progress shown by ``progress_callback`` (default:
    transformers' terminal ProgressCallback), which ``recorder`` watches."""
    train, evaluation = builtin_task(train_size=4, eval_size=6)
    scoring, scorer = tokenize_for_scoring(evaluation, char_tokenizer, max_length=96)
    args = HaLoRATrainingArguments(output_dir=str(tmp_path), report_to=[], use_cpu=True, save_strategy="no",
                                   disable_tqdm=False, per_device_eval_batch_size=4, eval_sigmas=[0.0, 0.05, 0.1],
                                   eval_noise_seeds=2, **arguments)
    trainer = HaLoRATrainer(
        model=get_peft_model(make_tiny_llama(), LoraConfig(r=4, target_modules=["q_proj"])), args=args,
        train_dataset=tokenize_for_training(train, char_tokenizer, 96), eval_dataset=scoring,
        data_collator=DataCollatorForSeq2Seq(char_tokenizer, padding=True), compute_metrics=scorer.compute_metrics,
        preprocess_logits_for_metrics=choice_logprob_sums, callbacks=[recorder])
    if progress_callback is not None:
        trainer.remove_callback(ProgressCallback)
        trainer.add_callback(progress_callback)  # last, as transformers places its own: after the recorder
    recorder.progress = next(c for c in trainer.callback_handler.callbacks
                             if isinstance(c, type(progress_callback) if progress_callback else ProgressCallback))
    return trainer


def test_one_progress_bar_counts_every_noise_run_up_to_its_total(tmp_path, char_tokenizer):
    recorder = _EvaluationBarRecorder()
    trainer = _trainer(tmp_path, char_tokenizer, recorder)
    trainer.evaluate()
    trainer.evaluate()
    total = RUNS * len(trainer.get_eval_dataloader())
    assert recorder.bars == [(total, total)] * 2
    assert recorder.progress.prediction_bar is None


def test_the_jupyter_bar_counts_every_noise_run_up_to_its_total(tmp_path, char_tokenizer):
    # needs IPython (the dev extra), not a notebook
    from transformers.utils.notebook import NotebookProgressCallback

    recorder = _EvaluationBarRecorder()
    trainer = _trainer(tmp_path, char_tokenizer, recorder, NotebookProgressCallback(), max_steps=1,
                       eval_strategy="steps", eval_steps=1)
    trainer.train()  # evaluates at its one step: the bar goes under the training table
    trainer.evaluate()  # after training: a bar of its own
    total = RUNS * len(trainer.get_eval_dataloader())
    assert recorder.bars == [(total, total)] * 2
    assert recorder.under_training_table == [True, False]
    assert recorder.progress.prediction_bar is None
