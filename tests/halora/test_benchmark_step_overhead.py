import json
from pathlib import Path

from tests.scripts import load_script

BENCHMARK = Path(__file__).parents[2] / "benchmarks" / "halora_step_overhead.py"


def test_step_overhead_benchmark_charges_halora_extra_calls_to_its_own_parts(tmp_path, capsys):
    module = load_script(BENCHMARK)
    module.main(["--output_dir", str(tmp_path), "--steps", "4", "--count_steps", "4", "--resample_steps", "2",
                 "--batch_size", "2"])
    runs = json.loads((tmp_path / "halora_step_overhead.json").read_text())["runs"]
    lora, halora = runs["lora"]["part_ops_per_step"], runs["halora"]["part_ops_per_step"]
    # the same model and adapter: HaLoRA's forward and backward are LoRA's; its extra calls are its own parts'
    assert (halora["forward"], halora["backward"]) == (lora["forward"], lora["backward"])
    assert lora["forward"] > 0 and lora["backward"] > 0 and lora["optimizer"] > 0
    assert lora["regulariser step"] == lora["noise redraw"] == 0
    assert halora["regulariser step"] > 0 and halora["noise redraw"] > 0
    # the trainer's redraws in the 4 counted steps, a draw every 2 (the warm-up's draw, which restores nothing, is not
    # counted); none for LoRA
    assert (runs["halora"]["noise_draws"], runs["lora"]["noise_draws"]) == (2, 0)
    assert all(runs[method]["step_cpu_seconds"] > 0 for method in runs)
    assert "| HaLoRA / LoRA |" in capsys.readouterr().out
    assert (tmp_path / "halora_step_overhead.md").read_text().count("| regulariser step |") == 1
