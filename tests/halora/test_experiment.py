import mmap

import pytest

from hf_eff.halora.experiment import ResidentMemory

pytestmark = pytest.mark.skipif(not ResidentMemory.available(), reason="needs Linux /proc/self/clear_refs")
MIB = 2**20


def _touch_fresh_pages(mebibytes: int) -> None:
    # Anonymous mmap: pages new to the process whatever malloc holds (a test worker's heap may serve
    # a large tensor from memory freed, yet still resident, by earlier tests).
    with mmap.mmap(-1, mebibytes * MIB) as block:
        for offset in range(0, len(block), mmap.PAGESIZE):
            block[offset] = 1


def test_resident_memory_catches_a_peak_already_freed_and_forgets_earlier_ones():
    _touch_fresh_pages(300)  # unmapped before the block: outside its peak
    with ResidentMemory() as quiet:
        pass
    assert quiet.peak_mb - quiet.start_mb < 100  # other threads of a test worker may allocate a little
    with ResidentMemory() as resident:
        _touch_fresh_pages(200)  # unmapped inside the block
    assert resident.peak_mb - resident.start_mb >= 190


def test_the_adapter_is_saved_before_the_evaluation_under_noise(tmp_path, monkeypatch, char_tokenizer):
    from hf_eff.halora.experiment import train_and_evaluate
    from hf_eff.halora.tasks import builtin_task
    from hf_eff.halora.trainer import HaLoRATrainer, HaLoRATrainingArguments
    from tests.halora.conftest import make_tiny_llama

    def failing_evaluation(self, *args, **kwargs):
        raise RuntimeError("evaluation failed")

    monkeypatch.setattr(HaLoRATrainer, "evaluate", failing_evaluation)
    train, evaluation = builtin_task(train_size=4, eval_size=2)
    args = HaLoRATrainingArguments(output_dir=str(tmp_path), max_steps=1, per_device_train_batch_size=2, report_to=[],
                                   use_cpu=True, save_strategy="no", disable_tqdm=True, eval_sigmas=[0.0])
    with pytest.raises(RuntimeError, match="evaluation failed"):
        train_and_evaluate("halora", make_tiny_llama(vocab_size=len(char_tokenizer)), char_tokenizer, train, evaluation,
                           args, max_length=64)
    assert (tmp_path / "adapter_config.json").is_file() and (tmp_path / "adapter_model.safetensors").is_file()
