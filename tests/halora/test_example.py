import json
import re
from pathlib import Path
from types import SimpleNamespace

import pytest
from transformers import Trainer

from tests.halora.conftest import make_tiny_llama
from tests.scripts import load_script

EXAMPLE = Path(__file__).parents[2] / "examples" / "halora_finetune.py"


def _load_example():
    return load_script(EXAMPLE)


def parse_and_resolve(argv: list[str]):
    """The example's arguments as main uses them: parsed, then the adapter, method and evaluation noise resolved."""
    example = _load_example()
    model_args, data_args, training_args, command_line = example.parse_args(argv, return_command_line=True)
    example.resolve_adapter(model_args, training_args, command_line.given)
    return model_args, data_args, training_args


def test_example_writes_adapter_and_noise_table(tmp_path, char_tokenizer, caplog):
    caplog.set_level("INFO")
    model_dir = tmp_path / "base"
    make_tiny_llama(vocab_size=len(char_tokenizer)).save_pretrained(model_dir)
    char_tokenizer.save_pretrained(model_dir)
    out = tmp_path / "run"
    recipe = tmp_path / "recipe.json"
    recipe.write_text(json.dumps({
        "model_name_or_path": str(model_dir), "method": "halora", "task_name": "comparison", "train_size": 32,
        "eval_size": 8, "max_length": 64, "output_dir": str(out), "max_steps": 2, "per_device_train_batch_size": 4,
        "eval_sigmas": [0.0, 0.02], "eval_noise_seeds": 2, "noise_resample_steps": 1, "noise_sigma_sampling": "uniform",
        "noise_warmup_steps": 1, "reg_reduction": "mean", "report_to": "none",
        "use_cpu": True, "save_strategy": "no", "disable_tqdm": True,
    }))
    _load_example().main([str(recipe)])
    results = json.loads((out / "all_results.json").read_text())
    for key in ("train_loss", "eval_accuracy_sigma_0_mean", "eval_accuracy_sigma_0.02_mean", "eval_accuracy_sigma_0.02_std",
                "eval_accuracy_norm_sigma_0.02_mean"):
        assert key in results, key
    assert (results["noise_mode"], results["noise_tile_size"], results["num_noise_seeds"]) == ("tile_additive", 64, 2)
    # save_strategy "no" leaves no checkpoint: the run's log is the top-level trainer_state.json, final evaluation in
    state = json.loads((out / "trainer_state.json").read_text())
    assert state["global_step"] == 2
    final = [entry for entry in state["log_history"] if "eval_accuracy_sigma_0.02_mean" in entry][-1]
    assert final["eval_accuracy_sigma_0.02_mean"] == results["eval_accuracy_sigma_0.02_mean"]
    # transformers' examples' split files beside all_results.json
    train_results = json.loads((out / "train_results.json").read_text())
    eval_results = json.loads((out / "eval_results.json").read_text())
    assert train_results["train_loss"] == results["train_loss"] and train_results["train_questions"] == 32
    assert eval_results["eval_accuracy_sigma_0.02_mean"] == results["eval_accuracy_sigma_0.02_mean"]
    assert not any(key.startswith("eval_") for key in train_results)
    assert not any(key.startswith("train_") for key in eval_results)
    assert (f"Wrote the adapter, the tokenizer, train_results.json, eval_results.json, all_results.json, "
            f"trainer_state.json, README.md to {out}") in caplog.text  # its closing line
    saved = json.loads((out / "adapter_config.json").read_text())
    assert saved["peft_type"] == "HALORA"
    card = (out / "README.md").read_text()  # hf-eff's card, not PEFT's template
    assert "under RRAM weight noise" in card and "PeftModel.from_pretrained(" in card and "More Information Needed" not in card
    assert (saved["noise_sigma_sampling"], saved["noise_warmup_steps"], saved["reg_reduction"]) == ("uniform", 1, "mean")


def test_both_methods_are_evaluated_under_the_noise_flags(tmp_path, char_tokenizer):
    """--noise_mode / --noise_tile_size are LoRA's evaluation noise too (not only HaLoRA's training
    noise); --eval_noise_tile_size overrides the tile size for either. --eval_noise_from_adapter True leaves them to
    the adapter: a new HaLoRA adapter's are the flags, and a LoRA adapter, which has none, still gets the flags'."""
    model_dir = tmp_path / "base"
    make_tiny_llama(vocab_size=len(char_tokenizer)).save_pretrained(model_dir)
    char_tokenizer.save_pretrained(model_dir)
    common = ["--model_name_or_path", str(model_dir), "--task_name", "comparison", "--train_size", "8", "--eval_size", "4",
              "--max_length", "64", "--max_steps", "1", "--per_device_train_batch_size", "4", "--eval_sigmas", "0", "0.02",
              "--eval_noise_seeds", "1", "--noise_mode", "multiplicative", "--noise_tile_size", "16", "--report_to", "none",
              "--use_cpu", "--save_strategy", "no", "--disable_tqdm", "true"]
    from_adapter = ["--eval_noise_from_adapter", "True"]
    for run, (method, extra, tile) in enumerate((("lora", [], 16), ("halora", [], 16),
                                                 ("lora", ["--eval_noise_tile_size", "8"], 8), ("lora", from_adapter, 16),
                                                 ("halora", from_adapter, 16))):
        results = _load_example().main(common + ["--method", method, "--output_dir", str(tmp_path / f"run{run}")] + extra)
        assert (results["noise_mode"], results["noise_tile_size"]) == ("multiplicative", tile), (method, extra)


def test_noise_target_modules_flag_sets_the_training_and_both_methods_evaluation_layers(tmp_path, char_tokenizer):
    _, _, training_args = parse_and_resolve(["--noise_target_modules", "q_proj", "up_proj", "--output_dir", "unused"])
    assert training_args.eval_noise_target_modules == ["q_proj", "up_proj"]
    _, _, training_args = parse_and_resolve(["--noise_target_modules", "q_proj", "--eval_noise_target_modules", "v_proj",
                                             "--output_dir", "unused"])
    assert training_args.eval_noise_target_modules == ["v_proj"]
    model_dir = tmp_path / "base"
    make_tiny_llama(vocab_size=len(char_tokenizer)).save_pretrained(model_dir)
    char_tokenizer.save_pretrained(model_dir)
    _load_example().main(["--model_name_or_path", str(model_dir), "--task_name", "comparison", "--train_size", "8",
                          "--eval_size", "4", "--max_length", "64", "--max_steps", "1", "--per_device_train_batch_size",
                          "4", "--eval_sigmas", "0", "--noise_target_modules", "q_proj", "up_proj", "--report_to", "none",
                          "--use_cpu", "--save_strategy", "no", "--disable_tqdm", "true", "--output_dir",
                          str(tmp_path / "run")])
    saved = json.loads((tmp_path / "run" / "adapter_config.json").read_text())
    assert saved["noise_target_modules"] == ["q_proj", "up_proj"]
def test_resume_from_checkpoint_true_resumes_from_the_last_checkpoint(tmp_path, char_tokenizer, checkpoint_loads):
    model_dir = tmp_path / "base"
    make_tiny_llama(vocab_size=len(char_tokenizer)).save_pretrained(model_dir)
    char_tokenizer.save_pretrained(model_dir)
    out = tmp_path / "run"
    common = ["--model_name_or_path", str(model_dir), "--method", "halora", "--task_name", "comparison",
              "--train_size", "16", "--eval_size", "4", "--max_length", "64", "--per_device_train_batch_size", "4",
              "--eval_sigmas", "0", "--eval_noise_seeds", "1", "--report_to", "none", "--use_cpu",
              "--disable_tqdm", "true", "--output_dir", str(out), "--save_strategy", "steps", "--save_steps", "2"]
    _load_example().main(common + ["--max_steps", "2"])
    loaded = checkpoint_loads(Trainer)
    _load_example().main(common + ["--max_steps", "3", "--resume_from_checkpoint", "True"])
    assert loaded == [str(out / "checkpoint-2")]
    assert (out / "checkpoint-3").is_dir()



def test_a_checkpoint_of_another_method_is_refused_before_any_work(tmp_path):
    """A splat run's checkpoint-N: else its weights load into the model by the names that match, and torch's optimizer
    then fails on KeyError: 'param_groups'."""
    splat_run = tmp_path / "splat_run"
    checkpoint = splat_run / "checkpoint-20"
    checkpoint.mkdir(parents=True)
    (checkpoint / "config.json").write_text(json.dumps({"sh_degree": 1, "num_gaussians": 100}))
    example = _load_example()
    example.load_model = lambda *args, **kwargs: pytest.fail("nothing is loaded")
    out = tmp_path / "out"
    refusal = f"^--resume_from_checkpoint {checkpoint}: it holds no adapter_config.json, so no HaLoRA or LoRA adapter"
    with pytest.raises(ValueError, match=refusal):
        example.main(["--output_dir", str(out), "--resume_from_checkpoint", str(checkpoint)])
    assert not out.exists()
    with pytest.raises(ValueError, match=refusal):  # True: the last checkpoint of --output_dir
        example.main(["--output_dir", str(splat_run), "--resume_from_checkpoint", "True"])
    assert sorted(path.name for path in checkpoint.iterdir()) == ["config.json"]

def test_stuck_at_fractions_above_one_are_refused_before_any_work():
    with pytest.raises(ValueError, match="eval_sigmas: with stuck_at noise"):
        parse_and_resolve(["--output_dir", "unused", "--method", "lora", "--noise_mode", "stuck_at",
                           "--eval_sigmas", "0", "2"])


def test_recipes_parse():
    evaluation_noise = set()  # LoRA and HaLoRA are evaluated under the same noise, the recipes' noise model
    for name, method in (("smollm2_mixed.yaml", "halora"), ("smollm2_mixed_lora.yaml", "lora")):
        model_args, data_args, training_args = parse_and_resolve([str(EXAMPLE.parents[1] / "trainers" / "halora" / name)])
        assert model_args.method == method and model_args.lora_r == 4
        assert model_args.target_modules == ["q_proj", "k_proj", "v_proj", "up_proj", "down_proj"]
        assert training_args.eval_sigmas == [0.0, 0.005, 0.01, 0.02] and training_args.eval_noise_seeds == 5
        evaluation_noise.add((model_args.noise_mode, model_args.noise_tile_size, training_args.eval_noise_mode,
                              training_args.eval_noise_tile_size, str(training_args.eval_noise_target_modules)))
    assert evaluation_noise == {("tile_additive", 64, "tile_additive", 64, "None")}


def test_recipe_with_overriding_flags():
    recipe = str(EXAMPLE.parents[1] / "trainers" / "halora" / "smollm2_mixed.yaml")
    model_args, _, training_args = _load_example().parse_args([recipe, "--method", "lora", "--max_steps", "7"])
    assert (model_args.method, training_args.max_steps, model_args.lora_r) == ("lora", 7, 4)


def test_example_trains_on_the_users_own_dataset(tmp_path, char_tokenizer):
    from datasets import Dataset

    model_dir = tmp_path / "base"
    make_tiny_llama(vocab_size=len(char_tokenizer)).save_pretrained(model_dir)
    char_tokenizer.save_pretrained(model_dir)
    rows = [{"question": f"Is {i} even?", "choices": ["yes", "no"], "answer": i % 2} for i in range(30)]
    Dataset.from_list(rows).save_to_disk(tmp_path / "mine")
    out = tmp_path / "run"
    results = _load_example().main([
        "--model_name_or_path", str(model_dir), "--dataset", str(tmp_path / "mine"), "--method", "lora",
        "--output_dir", str(out), "--max_steps", "1", "--per_device_train_batch_size", "4", "--max_length", "48",
        "--eval_sigmas", "0", "--report_to", "none", "--use_cpu", "--save_strategy", "no", "--disable_tqdm", "true",
    ])
    assert (results["train_questions"], results["eval_questions"]) == (27, 3)  # a single split: 10% held out
    assert results["dataset_name"] == str(tmp_path / "mine")
    assert (out / "adapter_config.json").is_file()


def test_a_hub_dataset_is_loaded_at_the_config_and_revision_given_and_records_them(tmp_path, char_tokenizer,
                                                                                    monkeypatch, caplog):
    import datasets
    from datasets import Dataset, DatasetDict

    from hf_eff.hub import dataset_commits

    model_dir = tmp_path / "base"
    make_tiny_llama(vocab_size=len(char_tokenizer)).save_pretrained(model_dir)
    char_tokenizer.save_pretrained(model_dir)
    rows = [{"question": f"Is {i} even?", "choices": ["yes", "no"], "answer": i % 2} for i in range(12)]
    loaded = []

    def hub_dataset(path, name=None, revision=None):
        loaded.append((path, name, revision))
        return DatasetDict({"train": Dataset.from_list(rows[:8]), "validation": Dataset.from_list(rows[8:])})

    monkeypatch.setattr(datasets, "load_dataset", hub_dataset)
    # the questions are held in memory, which names no commit: the Hub's dataset_info does
    commits = {"v2": "2" * 40, "v3": "3" * 40}
    monkeypatch.setattr(dataset_commits, "HfApi", lambda: SimpleNamespace(
        dataset_info=lambda repo_id, revision=None: SimpleNamespace(sha=commits[revision])))
    out = tmp_path / "run"
    results = _load_example().main([
        "--model_name_or_path", str(model_dir), "--dataset", "me/questions", "--dataset_config_name", "easy",
        "--dataset_revision", "v2", "--method", "lora", "--output_dir", str(out), "--max_steps", "1",
        "--per_device_train_batch_size", "4", "--max_length", "48", "--eval_sigmas", "0", "--report_to", "none",
        "--use_cpu", "--save_strategy", "no", "--disable_tqdm", "true",
    ])
    assert loaded == [("me/questions", "easy", "v2")]
    recorded = json.loads((out / "all_results.json").read_text())
    assert (recorded["dataset_name"], recorded["dataset_config_name"], recorded["dataset_revision"]) == (
        "me/questions", "easy", "v2") == (results["dataset_name"], results["dataset_config_name"],
                                          results["dataset_revision"])
    assert recorded["dataset_commit"] == commits["v2"]
    assert recorded["data_split"] == {"dataset": "me/questions", "dataset_config_name": "easy",
                                      "dataset_revision": "v2", "dataset_commit": commits["v2"], "data_seed": 0}
    card = (out / "README.md").read_text()
    assert "name: me/questions\n      type: me/questions\n      config: easy\n      revision: v2\n" in card

    def evaluate(name: str, *flags: str) -> dict:
        caplog.clear()
        return _load_example().main([
            "--adapter_name_or_path", str(out), "--no_do_train", "--dataset", "me/questions", "--dataset_config_name",
            "easy", *flags, "--output_dir", str(tmp_path / name), "--max_length", "48", "--eval_sigmas", "0",
            "--report_to", "none", "--use_cpu", "--disable_tqdm", "true"])

    # evaluated on the commit it trained on, as its base is on its revision: a single split is divided by revision too
    assert evaluate("same")["dataset_revision"] == commits["v2"] and loaded[-1] == ("me/questions", "easy", commits["v2"])
    assert "differ from the training" not in caplog.text
    assert evaluate("other", "--dataset_revision", "v3")["dataset_revision"] == "v3"
    assert (f"--dataset_revision v3 at commit {commits['v3']} (the adapter's: v2 at commit {commits['v2']}) differ "
            "from the training of --adapter_name_or_path "
            f"{out} on --dataset me/questions") in caplog.text
    assert "give its --data_seed, its --dataset_revision and no more questions" in caplog.text


@pytest.mark.parametrize("data", [["--dataset", "{tmp_path}/mine.jsonl"], ["--dataset", "{tmp_path}/folder"],
                                  ["--task_name", "comparison"]])
@pytest.mark.parametrize("flag", ["--dataset_config_name", "--dataset_revision"])
def test_dataset_config_and_revision_are_refused_without_a_hub_dataset(tmp_path, data, flag):
    (tmp_path / "mine.jsonl").write_text("")
    (tmp_path / "folder").mkdir()
    data = [part.format(tmp_path=tmp_path) for part in data]
    refusal = (f"^--dataset {re.escape(data[1])} is local data, which has no Hub configuration or revision: leave out {flag}$"
               if data[0] == "--dataset" else f"^{flag} is for a Hub --dataset: --task_name comparison has no "
                                              f"configurations or revisions to choose; give --dataset <Hub id>, or "
                                              f"leave {flag} out$")
    with pytest.raises(ValueError, match=refusal):
        _load_example().parse_args(data + [flag, "x", "--output_dir", str(tmp_path / "out")])


@pytest.mark.parametrize("method", ["lora", "halora"])
def test_target_modules_all_linear_from_the_command_line_adapts_every_linear_layer(method):
    from peft import get_peft_model

    from hf_eff.halora.experiment import adapter_config

    model_args, _, _ = _load_example().parse_args(["--target_modules", "all-linear", "--output_dir", "unused"])
    model = get_peft_model(make_tiny_llama(), adapter_config(method, target_modules=model_args.target_modules))
    adapted = {name.rsplit(".", 1)[-1] for name, module in model.named_modules() if hasattr(module, "lora_A")}
    assert adapted == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}


def test_gpt2_conv1d_targets_get_fan_in_fan_out_from_the_example_without_peft_warning(tmp_path, char_tokenizer):
    """GPT-2's Conv1D layers store their weights transposed: PEFT needs fan_in_fan_out=True and, given False, sets it
    with a warning at every such layer. The example's adapter is built for its base model."""
    import warnings

    from transformers import GPT2Config, GPT2LMHeadModel

    from hf_eff.halora.experiment import adapter_config

    model_dir = tmp_path / "gpt2"
    gpt2 = GPT2LMHeadModel(GPT2Config(vocab_size=len(char_tokenizer), n_embd=32, n_layer=2, n_head=4, n_positions=128))
    gpt2.save_pretrained(model_dir)
    char_tokenizer.save_pretrained(model_dir)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _load_example().main(["--model_name_or_path", str(model_dir), "--target_modules", "c_attn", "c_fc",
                              "--task_name", "comparison", "--train_size", "8", "--eval_size", "4", "--max_length", "64",
                              "--max_steps", "1", "--per_device_train_batch_size", "4", "--eval_sigmas", "0",
                              "--report_to", "none", "--use_cpu", "--save_strategy", "no", "--disable_tqdm", "true",
                              "--output_dir", str(tmp_path / "run")])
    assert [str(w.message) for w in caught if "fan_in_fan_out" in str(w.message)] == []
    assert json.loads((tmp_path / "run" / "adapter_config.json").read_text())["fan_in_fan_out"] is True
    for model, targets, fan_in_fan_out in ((gpt2, "all-linear", True), (gpt2, ["lm_head"], False),
                                           (make_tiny_llama(), "all-linear", False)):
        assert adapter_config("lora", target_modules=targets, model=model).fan_in_fan_out is fan_in_fan_out, targets


def test_a_training_run_into_a_finished_run_is_refused_before_any_work(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "adapter_model.safetensors").write_bytes(b"an earlier run's adapter")
    # the base model named does not exist: the refusal comes before any model is looked for
    flags = ["--model_name_or_path", str(tmp_path / "absent"), "--output_dir", str(out)]
    with pytest.raises(FileExistsError, match=f"--output_dir {out} already holds a run \\(adapter_model.safetensors\\)"):
        _load_example().main(flags)
    _load_example().parse_args([*flags, "--overwrite_output_dir"])
    (out / "all_results.json").write_text(json.dumps({"eval_accuracy_sigma_0_mean": 0.5}))  # an evaluation's
    _load_example().parse_args([*flags, "--no_do_train"])  # evaluations are check_evaluation_only's to judge


@pytest.mark.parametrize("name, why", [
    ("train_results.json", r"\(train metrics in its results\), which an evaluation would overwrite"),
    ("trainer_state.json", r"\(its log, trainer_state.json\): an evaluation writes no trainer_state.json to replace "
                           "it, and the training's log would pass for the evaluation's"),
])
def test_an_evaluation_into_a_folder_holding_a_trainings_results_or_log_is_refused(tmp_path, name, why):
    # an evaluation writes neither: one left beside its all_results.json would pass for its own
    out = tmp_path / "run"
    out.mkdir()
    (out / name).write_text("{}")
    with pytest.raises(ValueError, match=f"--output_dir {out} holds a training run {why}"):
        _load_example().parse_args(["--model_name_or_path", "unused", "--no_do_train", "--output_dir", str(out)])


def test_a_diverged_run_stops_by_name_and_leaves_the_earlier_run_it_overwrites_as_it_was(tmp_path, char_tokenizer):
    model_dir = tmp_path / "base"
    make_tiny_llama(vocab_size=len(char_tokenizer)).save_pretrained(model_dir)
    char_tokenizer.save_pretrained(model_dir)
    out = tmp_path / "run"
    flags = ["--model_name_or_path", str(model_dir), "--task_name", "comparison", "--train_size", "16", "--eval_size", "4",
             "--max_length", "64", "--max_steps", "3", "--per_device_train_batch_size", "4", "--eval_sigmas", "0",
             "--eval_noise_seeds", "1", "--report_to", "none", "--use_cpu", "--save_strategy", "no",
             "--disable_tqdm", "true", "--output_dir", str(out)]
    _load_example().main(flags)
    saved = {name: (out / name).read_bytes() for name in ("adapter_model.safetensors", "all_results.json", "README.md")}
    with pytest.raises(FloatingPointError, match=r"training diverged at step \d: .*--learning_rate, now 1e\+30"):
        _load_example().main([*flags, "--overwrite_output_dir", "--learning_rate", "1e30", "--max_grad_norm", "0"])
    assert {name: (out / name).read_bytes() for name in saved} == saved


def test_halora_only_flags_given_to_lora_are_named_in_one_warning(caplog):
    with caplog.at_level("WARNING"):
        parse_and_resolve(["--method", "lora", "--noise_sigma", "0.05", "--reg_weight", "5", "--output_dir", "unused"])
    warnings = [record.getMessage() for record in caplog.records if "not used: --method lora" in record.getMessage()]
    assert warnings == ["--noise_sigma 0.05, --reg_weight 5.0 not used: --method lora trains without HaLoRA's noise "
                        "and regulariser"]
    caplog.clear()
    with caplog.at_level("WARNING"):
        parse_and_resolve(["--method", "halora", "--noise_sigma", "0.05", "--output_dir", "unused"])
        parse_and_resolve(["--method", "lora", "--noise_mode", "multiplicative", "--output_dir", "unused"])  # LoRA's too
    assert "not used: --method lora" not in caplog.text


def test_a_halora_recipe_run_as_lora_names_only_the_halora_flags_given(caplog):
    """`--method lora` on the HaLoRA recipe is its LoRA baseline: the recipe's HaLoRA settings (noise_resample_steps
    10, away from the default) are not the user's to remove, a flag given after it is."""
    recipe = str(EXAMPLE.parents[1] / "trainers" / "halora" / "smollm2_mixed.yaml")
    with caplog.at_level("WARNING"):
        parse_and_resolve([recipe, "--method", "lora", "--output_dir", "unused"])
    assert "not used: --method lora" not in caplog.text
    with caplog.at_level("WARNING"):
        parse_and_resolve([recipe, "--method", "lora", "--reg_weight", "0.1", "--output_dir", "unused"])
    warnings = [record.getMessage() for record in caplog.records if "not used: --method lora" in record.getMessage()]
    assert warnings == ["--reg_weight 0.1 not used: --method lora trains without HaLoRA's noise and regulariser"]


def test_an_evaluation_names_what_it_wrote_in_its_closing_line(tmp_path, char_tokenizer, caplog):
    model_dir = tmp_path / "base"
    make_tiny_llama(vocab_size=len(char_tokenizer)).save_pretrained(model_dir)
    char_tokenizer.save_pretrained(model_dir)
    caplog.set_level("INFO")
    out = tmp_path / "eval"
    _load_example().main(["--model_name_or_path", str(model_dir), "--no_do_train", "--task_name", "comparison",
                          "--eval_size", "4", "--max_length", "48", "--eval_sigmas", "0", "--log_samples", "True",
                          "--output_dir", str(out), "--report_to", "none", "--use_cpu", "--disable_tqdm", "true"])
    assert f"Wrote eval_results.json, all_results.json, samples_eval.jsonl to {out}" in caplog.text
    assert sorted(path.name for path in out.iterdir()) == ["all_results.json", "eval_results.json",
                                                           "samples_eval.jsonl"]
