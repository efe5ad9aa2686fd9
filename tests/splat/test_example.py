import runpy
import sys
from pathlib import Path

from hf_eff.splat.trainer import SplatTrainer

SCRIPT = Path(__file__).resolve().parents[2] / "examples" / "splat_train.py"


def run_example(monkeypatch, *flags):
    monkeypatch.setattr(sys, "argv", [
        str(SCRIPT), "--procedural_resolution", "16", "--procedural_num_train", "3", "--procedural_num_test", "1",
        "--sh_degree", "0", "--disable_tqdm", "True", "--eval_render_images", "0", *flags,
    ])
    runpy.run_path(str(SCRIPT), run_name="__main__")


def test_resume_from_checkpoint_true_resumes_from_the_last_checkpoint(tmp_path, monkeypatch, checkpoint_loads):
    # The trainer's error for a missing folder suggests True, which the script used to pass on as a path.
    out = tmp_path / "run"
    run_example(monkeypatch, "--max_steps", "6", "--save_strategy", "steps", "--save_steps", "3",
                "--output_dir", str(out))
    loaded = checkpoint_loads(SplatTrainer)
    run_example(monkeypatch, "--max_steps", "9", "--save_strategy", "steps", "--save_steps", "3",
                "--output_dir", str(out), "--resume_from_checkpoint", "True")
    assert loaded == [str(out / "checkpoint-6")]
    assert (out / "checkpoint-9").is_dir()
