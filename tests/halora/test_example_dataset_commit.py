"""examples/halora_finetune.py records the commit a Hub --dataset was read at (dataset_commit, beside the revision
given), and an adapter evaluated later without --dataset_revision is scored on that commit's questions: those its
training held out, after the branch moved, and offline from the cache. Against the local Hub (tests/hub)."""

import json
import subprocess
import sys
from pathlib import Path

import datasets

from tests.halora.conftest import make_tiny_llama
from tests.hub.conftest import local_hub  # noqa: F401  (the local Hub server fixture)

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "halora_finetune.py"
# huggingface_hub and datasets read the endpoint when imported: pushes and runs go to fresh processes
PUSH = """
import sys, datasets
print("COMMIT", datasets.load_from_disk(sys.argv[1]).push_to_hub(sys.argv[2]).oid)
"""
COMMON = ["--max_length", "48", "--eval_sigmas", "0", "--report_to", "none", "--use_cpu", "--disable_tqdm", "true"]


def _push(hub, questions: int, repo_id: str, folder: Path) -> str:
    """Pushes a single split of `questions` questions to `repo_id`; its commit."""
    rows = [{"question": f"Is {i} even?", "choices": ["yes", "no"], "answer": i % 2} for i in range(questions)]
    datasets.Dataset.from_list(rows).save_to_disk(str(folder))
    process = hub.run_code(PUSH, str(folder), repo_id)
    assert process.returncode == 0, process.stderr[-3000:]
    return next(line.split()[1] for line in process.stdout.splitlines() if line.startswith("COMMIT "))


def _run(hub, *flags: str, succeeds: bool = True, **env: str) -> subprocess.CompletedProcess:
    process = subprocess.run([sys.executable, str(EXAMPLE), *flags, *COMMON], env=hub.env(**env), cwd=ROOT,
                             capture_output=True, text=True, timeout=300)
    assert (process.returncode == 0) == succeeds, process.stderr[-4000:]
    return process


def test_an_adapter_trained_on_main_is_evaluated_on_the_commit_it_saw_after_main_moves(tmp_path, char_tokenizer,
                                                                                        local_hub):  # noqa: F811
    base = tmp_path / "base"
    make_tiny_llama(vocab_size=len(char_tokenizer)).save_pretrained(base)
    char_tokenizer.save_pretrained(base)
    repo_id = local_hub.repo_id("questions")
    first = _push(local_hub, 20, repo_id, tmp_path / "v1")
    out = tmp_path / "run"
    _run(local_hub, "--model_name_or_path", str(base), "--dataset", repo_id, "--dataset_revision", "main", "--method",
         "lora", "--output_dir", str(out), "--max_steps", "1", "--per_device_train_batch_size", "4",
         "--save_strategy", "no")
    results = json.loads((out / "all_results.json").read_text())
    split = {"dataset": repo_id, "dataset_revision": "main", "dataset_commit": first, "data_seed": 0}
    assert (results["dataset_revision"], results["dataset_commit"], results["data_split"]) == ("main", first, split)
    assert json.loads((out / "training_data_splits.json").read_text()) == [split]
    assert f'load_dataset("{repo_id}", revision="{first}")' in (out / "README.md").read_text()
    second = _push(local_hub, 40, repo_id, tmp_path / "v2")

    def evaluate(name: str, *flags: str, **env: str) -> tuple[dict, str]:
        process = _run(local_hub, "--adapter_name_or_path", str(out), "--model_name_or_path", str(base), "--dataset",
                       repo_id, *flags, "--no_do_train", "--output_dir", str(tmp_path / name), **env)
        return json.loads((tmp_path / name / "all_results.json").read_text()), process.stderr

    # a single split holds a tenth out: 2 of the first commit's 20 questions, 4 of main's 40 now
    for name, env in (("online", {}), ("offline", {"HF_HUB_OFFLINE": "1"})):
        results, logs = evaluate(name, **env)
        assert (results["eval_questions"], results["dataset_revision"], results["dataset_commit"]) == (2, first, first)
        assert f"--dataset {repo_id} at revision main at commit {first}, as --adapter_name_or_path {out}" in logs
        assert "differ from the training" not in logs, name
    results, logs = evaluate("main", "--dataset_revision", "main")
    assert (results["eval_questions"], results["dataset_commit"]) == (4, second)
    assert (f"--dataset_revision main at commit {second} (the adapter's: main at commit {first}) differ from the "
            f"training of --adapter_name_or_path {out}") in logs
    # main's commit is now the latest cached, which datasets reads offline whatever the revision: refused
    refused = _run(local_hub, "--adapter_name_or_path", str(out), "--model_name_or_path", str(base), "--dataset", repo_id,
                   "--no_do_train", "--output_dir", str(tmp_path / "refused"), succeeds=False, HF_HUB_OFFLINE="1")
    assert refused.stderr.strip().splitlines()[-1] == (
        f"ValueError: --dataset_revision {first}: offline (HF_HUB_OFFLINE or HF_DATASETS_OFFLINE) the cached copy of "
        f"{repo_id} read is of commit {second}; go online, or pin the commit cached")
