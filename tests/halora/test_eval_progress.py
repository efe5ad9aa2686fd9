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


class _EvaluationBarRecorder(TrainerCallback):
    """Records (count, total) of the ProgressCallback's evaluation bar as on_evaluate reaches this callback, which
    comes before the ProgressCallback closes the bar."""

    def __init__(self):
        self.progress: ProgressCallback | None = None
        self.bars = []

    def on_evaluate(self, args, state, control, **kwargs):
        self.bars.append((self.progress.prediction_bar.n, self.progress.prediction_bar.total))


def test_one_progress_bar_counts_every_noise_run_up_to_its_total(tmp_path, char_tokenizer):
    train, evaluation = builtin_task(train_size=4, eval_size=6)
    scoring, scorer = tokenize_for_scoring(evaluation, char_tokenizer, max_length=96)
    args = HaLoRATrainingArguments(output_dir=str(tmp_path), report_to=[], use_cpu=True, save_strategy="no",
                                   disable_tqdm=False, per_device_eval_batch_size=4, eval_sigmas=[0.0, 0.05, 0.1],
                                   eval_noise_seeds=2)
    recorder = _EvaluationBarRecorder()
    trainer = HaLoRATrainer(
        model=get_peft_model(make_tiny_llama(), LoraConfig(r=4, target_modules=["q_proj"])), args=args,
        train_dataset=tokenize_for_training(train, char_tokenizer, 96), eval_dataset=scoring,
        data_collator=DataCollatorForSeq2Seq(char_tokenizer, padding=True), compute_metrics=scorer.compute_metrics,
        preprocess_logits_for_metrics=choice_logprob_sums, callbacks=[recorder])
    recorder.progress = next(c for c in trainer.callback_handler.callbacks if isinstance(c, ProgressCallback))
    trainer.evaluate()
    trainer.evaluate()
    runs = 1 + 2 * 2  # sigma 0 once, each other sigma once per seed
    total = runs * len(trainer.get_eval_dataloader())
    assert recorder.bars == [(total, total)] * 2
    assert recorder.progress.prediction_bar is None
