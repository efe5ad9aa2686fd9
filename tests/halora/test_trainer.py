import copy
import math
import warnings

import pytest
import torch
from datasets import Dataset
from peft import LoraConfig, get_peft_model
from safetensors.torch import load_file
from transformers import (
    DataCollatorForSeq2Seq,
    DataCollatorWithPadding,
    TrainerCallback,
    default_data_collator,
)

from hf_eff import HaLoRAConfig
from hf_eff.halora import noise as noise_module
from hf_eff.halora import trainer as trainer_module
from hf_eff.halora.base_model import load_base_model
from hf_eff.halora.tasks import (
    MultipleChoiceScorer,
    builtin_task,
    choice_logprob_sums,
    tokenize_for_scoring,
    tokenize_for_training,
)
from hf_eff.halora.trainer import HaLoRATrainer, HaLoRATrainingArguments, training_noise_sigma
from tests.halora.conftest import make_tiny_llama
from tests.halora.test_noise import _tiny_roberta_classifier


def _args(tmp_path, **kwargs):
    defaults = dict(output_dir=str(tmp_path), report_to=[], use_cpu=True, save_strategy="no", disable_tqdm=True,
                    dataloader_num_workers=0, seed=0)
    return HaLoRATrainingArguments(**{**defaults, **kwargs})


def _token_dataset(rows=8, length=12):
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(3, 128, (rows, length), generator=generator).tolist()
    return Dataset.from_dict({"input_ids": ids, "attention_mask": [[1] * length] * rows, "labels": ids})


def _halora_model(reg_weight, reg_application):
    torch.manual_seed(0)
    config = HaLoRAConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False, noise_sigma=0.0,
                          reg_weight=reg_weight, reg_application=reg_application)
    return get_peft_model(make_tiny_llama(), config)


def _bit_equal(a, b):
    return a.dtype == b.dtype and torch.equal(a.view(torch.uint8), b.view(torch.uint8))


def _lora_params(model):
    return torch.cat([p.detach().flatten() for n, p in model.named_parameters() if "lora_" in n])


def _lora_after_one_step(tmp_path, batch_size, accumulation, reg_weight, token_normalised, reg_application="loss",
                         optim="sgd", learning_rate=0.5):
    model = _halora_model(reg_weight, reg_application)
    args = _args(tmp_path, per_device_train_batch_size=batch_size, gradient_accumulation_steps=accumulation, max_steps=1,
                 optim=optim, learning_rate=learning_rate, lr_scheduler_type="constant", max_grad_norm=0.0)
    trainer = HaLoRATrainer(model=model, args=args, train_dataset=_token_dataset(), data_collator=default_data_collator)
    # Both of the Trainer's paths: the model normalises by the accumulated token count (the
    # Trainer then does not divide by the accumulation steps), or returns a per-batch mean.
    trainer.model_accepts_loss_kwargs = token_normalised
    trainer.train()
    return _lora_params(model)


@pytest.mark.parametrize("reg_application", ["loss", "decoupled"])
@pytest.mark.parametrize("token_normalised", [True, False])
def test_regulariser_counts_once_per_optimizer_step_under_accumulation(tmp_path, token_normalised, reg_application):
    one_batch = _lora_after_one_step(tmp_path, 4, 1, 1.0, token_normalised, reg_application)
    accumulated = _lora_after_one_step(tmp_path, 2, 2, 1.0, token_normalised, reg_application)
    without_reg = _lora_after_one_step(tmp_path, 2, 2, 0.0, token_normalised, reg_application)
    reg_effect = (one_batch - without_reg).abs().max()
    assert reg_effect > 1e-3  # the regulariser moved the adapter
    assert (one_batch - accumulated).abs().max() < 1e-3 * reg_effect


def test_decoupled_regulariser_is_a_plain_gradient_step_after_adam(tmp_path):
    lr, mu = 1e-2, 0.5
    adam_only = _lora_after_one_step(tmp_path, 4, 1, 0.0, True, "decoupled", optim="adamw_torch", learning_rate=lr)
    with_reg = _lora_after_one_step(tmp_path, 4, 1, mu, True, "decoupled", optim="adamw_torch", learning_rate=lr)
    # Expected: Adam's task step, then -lr * mu * grad(L_reg) taken at the parameters Adam left.
    model = _halora_model(mu, "decoupled")
    lora_params = [p for n, p in model.named_parameters() if "lora_" in n]
    with torch.no_grad():
        torch.nn.utils.vector_to_parameters(adam_only, lora_params)
    grads = torch.autograd.grad(model.base_model.get_regularization_loss(), lora_params)
    expected = adam_only - lr * mu * torch.cat([g.flatten() for g in grads])
    assert (with_reg - adam_only).abs().max() > 1e-4
    torch.testing.assert_close(with_reg, expected, rtol=0, atol=1e-6)


def test_decoupled_regulariser_steps_once_per_optimizer_step_across_train_calls(tmp_path, monkeypatch):
    """A second train() (and a resume) on the same trainer finds accelerate's wrapper as its optimizer:
    the regulariser must still step once per optimizer step, on the torch optimizer."""
    model = _halora_model(0.1, "decoupled")
    args = _args(tmp_path, per_device_train_batch_size=4, max_steps=4, save_strategy="steps", save_steps=2)
    trainer = HaLoRATrainer(model=model, args=args, train_dataset=_token_dataset(), data_collator=default_data_collator)
    steps, original = [], trainer._decoupled_regulariser_step
    monkeypatch.setattr(trainer, "_decoupled_regulariser_step",
                        lambda optimizer: (steps.append((trainer.state.global_step, type(optimizer).__name__)), original(optimizer)))
    trainer.train()
    trainer.train()
    trainer.train(resume_from_checkpoint=str(tmp_path / "checkpoint-2"))
    assert steps == [(step, "AdamW") for step in (0, 1, 2, 3, 0, 1, 2, 3, 2, 3)]


@pytest.mark.parametrize("reg_application", ["loss", "decoupled"])
def test_training_draws_noise_per_interval_logs_and_ends_clean(tmp_path, monkeypatch, reg_application):
    draws = []
    original_apply = noise_module.RRAMNoise.apply
    monkeypatch.setattr(noise_module.RRAMNoise, "apply",
                        lambda self, seed, draw_index=0, sigma=None: (draws.append((seed, draw_index)),
                                                                   original_apply(self, seed, draw_index, sigma))[1])
    model = get_peft_model(make_tiny_llama(), HaLoRAConfig(r=4, target_modules=["q_proj"], noise_sigma=0.05, noise_resample_steps=2,
                                                           reg_application=reg_application))
    clean = {n: p.detach().clone() for n, p in model.named_parameters() if "lora_" not in n}
    args = _args(tmp_path, per_device_train_batch_size=2, max_steps=5, logging_steps=1, noise_seed=11)
    trainer = HaLoRATrainer(model=model, args=args, train_dataset=_token_dataset(), data_collator=default_data_collator)
    trainer.train()
    assert draws == [(11, 0), (11, 1), (11, 2)]
    assert all(torch.equal(p, clean[n]) for n, p in model.named_parameters() if "lora_" not in n)
    logged = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert len(logged) == 5
    for entry in logged:
        assert entry["noise_sigma"] == 0.05 and entry["reg_loss"] > 0
        in_loss = 0.1 * entry["reg_loss"] if reg_application == "loss" else 0.0
        assert entry["task_loss"] == pytest.approx(entry["loss"] - in_loss)


def test_training_noise_sigma_warms_up_and_samples_per_draw():
    fixed = HaLoRAConfig(noise_sigma=0.02, noise_resample_steps=2)
    assert [training_noise_sigma(fixed, draw, seed=0) for draw in range(3)] == [0.02] * 3
    ramp = HaLoRAConfig(noise_sigma=0.02, noise_resample_steps=2, noise_warmup_steps=8)
    # draw d starts at step 2d: the level is 0.02 * min(1, 2d / 8)
    assert [training_noise_sigma(ramp, draw, seed=0) for draw in range(6)] == pytest.approx([0, 0.005, 0.01, 0.015, 0.02, 0.02])
    uniform = HaLoRAConfig(noise_sigma=0.02, noise_resample_steps=1, noise_sigma_sampling="uniform")
    levels = [training_noise_sigma(uniform, draw, seed=0) for draw in range(400)]
    assert levels == [training_noise_sigma(uniform, draw, seed=0) for draw in range(400)]  # seeded
    assert levels != [training_noise_sigma(uniform, draw, seed=1) for draw in range(400)]
    assert all(0 <= s < 0.02 for s in levels) and len(set(levels)) == 400
    assert sum(levels) / 400 == pytest.approx(0.01, abs=0.001)  # U(0, 0.02) has mean 0.01, sd of the mean 0.0003


def test_trainer_draws_each_interval_at_the_scheduled_level(tmp_path, monkeypatch):
    levels = []
    original_apply = noise_module.RRAMNoise.apply
    monkeypatch.setattr(noise_module.RRAMNoise, "apply",
                        lambda self, seed, draw_index=0, sigma=None: (levels.append(sigma), original_apply(self, seed, draw_index, sigma))[1])
    config = HaLoRAConfig(r=4, target_modules=["q_proj"], noise_sigma=0.04, noise_resample_steps=1, noise_warmup_steps=4)
    model = get_peft_model(make_tiny_llama(), config)
    args = _args(tmp_path, per_device_train_batch_size=2, max_steps=6, logging_steps=1)
    trainer = HaLoRATrainer(model=model, args=args, train_dataset=_token_dataset(), data_collator=default_data_collator)
    trainer.train()
    assert levels == pytest.approx([0.0, 0.01, 0.02, 0.03, 0.04, 0.04])
    logged = [entry["noise_sigma"] for entry in trainer.state.log_history if "loss" in entry]
    assert logged == pytest.approx(levels)


def test_a_warm_up_within_the_first_draw_is_named(tmp_path):
    def trainer(warmup, resample):
        config = HaLoRAConfig(r=4, target_modules=["q_proj"], noise_resample_steps=resample, noise_warmup_steps=warmup)
        return HaLoRATrainer(model=get_peft_model(make_tiny_llama(), config), args=_args(tmp_path, eval_sigmas=[0.0]))

    # draws at steps 0 and 400, at levels 0 and 0.01: 400 noise-free steps, then the full level
    with pytest.warns(UserWarning, match="noise_warmup_steps=100 is not longer than noise_resample_steps=400: training "
                                         "runs noise-free for the first 400 steps, then at the full noise_sigma"):
        trainer(100, 400)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*noise_warmup_steps")
        trainer(400, 100)  # levels 0, 1/4, 1/2, 3/4, then 1
        trainer(0, 400)


def test_a_run_within_one_noise_draw_is_named_at_train_start(tmp_path):
    def train(resample, noise_sigma=0.05, **steps):
        config = HaLoRAConfig(r=2, target_modules=["q_proj"], noise_sigma=noise_sigma, noise_resample_steps=resample)
        args = _args(tmp_path, eval_sigmas=[0.0], per_device_train_batch_size=4, **steps)
        HaLoRATrainer(model=get_peft_model(make_tiny_llama(), config), args=args, train_dataset=_token_dataset(),
                      data_collator=default_data_collator).train()

    one_draw = r"the run's 2 optimizer steps are no more than HaLoRAConfig.noise_resample_steps=400: the whole run " \
               r"trains under one noise draw; for several, set noise_resample_steps to a fraction of 2"
    with pytest.warns(UserWarning, match=one_draw) as caught:
        train(400, max_steps=2)
    assert len([w for w in caught if "one noise draw" in str(w.message)]) == 1
    with pytest.warns(UserWarning, match=one_draw):
        train(400, num_train_epochs=1)  # 8 rows, 4 a step: the epochs' 2 steps
    with pytest.warns(UserWarning, match="the run's 2 optimizer steps are no more than HaLoRAConfig.noise_resample_steps=2"):
        train(2, max_steps=2)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*one noise draw")
        train(1, max_steps=2)  # a draw per step
        train(400, noise_sigma=0.0, max_steps=2)  # noise-free: no draws at all


def test_a_run_within_its_warm_up_draw_is_named_noise_free(tmp_path):
    config = HaLoRAConfig(r=2, target_modules=["q_proj"], noise_sigma=0.05, noise_resample_steps=400,
                          noise_warmup_steps=800)  # warm-up over 2 draws: no warm-up warning at construction
    args = _args(tmp_path, eval_sigmas=[0.0], per_device_train_batch_size=4, max_steps=2, logging_steps=1)
    trainer = HaLoRATrainer(model=get_peft_model(make_tiny_llama(), config), args=args, train_dataset=_token_dataset(),
                            data_collator=default_data_collator)
    with pytest.warns(UserWarning, match=r"noise_resample_steps=400: the whole run trains under its first noise draw, "
                                         r"at level 0 within noise_warmup_steps=800, so without any noise") as caught:
        trainer.train()
    assert not [w for w in caught if "one noise draw" in str(w.message)]
    assert [entry["noise_sigma"] for entry in trainer.state.log_history if "loss" in entry] == [0.0, 0.0]


def test_saving_a_builtin_base_adapter_restores_save_pretrained(tmp_path, monkeypatch):
    """The trainer passes PEFT's save_embedding_layers through the model's save_pretrained for one save: the model's
    own one (the class's, or an instance's) is back after the save, whether it succeeded or failed."""
    monkeypatch.setattr(trainer_module, "save_embedding_layers", lambda model: False)
    model = get_peft_model(make_tiny_llama(), LoraConfig(r=2, target_modules=["q_proj"]))
    trainer = HaLoRATrainer(model=model, args=_args(tmp_path, eval_sigmas=[0.0]))
    trainer.save_model(str(tmp_path / "plain"))
    assert "save_pretrained" not in vars(model) and (tmp_path / "plain" / "adapter_model.safetensors").is_file()

    calls = []

    def own_save(*args, **kwargs):
        calls.append(kwargs["save_embedding_layers"])
        return type(model).save_pretrained(model, *args, **kwargs)

    model.save_pretrained = own_save
    trainer.save_model(str(tmp_path / "own"))
    assert calls == [False] and vars(model)["save_pretrained"] is own_save

    def failing_save(*args, **kwargs):
        raise OSError("disk full")

    model.save_pretrained = failing_save
    with pytest.raises(OSError, match="disk full"):
        trainer.save_model(str(tmp_path / "failed"))
    assert vars(model)["save_pretrained"] is failing_save


def test_a_compiled_builtin_base_adapter_is_saved_with_the_embedding_rule_of_the_model_inside(tmp_path, monkeypatch):
    asked = []
    monkeypatch.setattr(trainer_module, "save_embedding_layers", lambda model: asked.append(model) or False)
    model = get_peft_model(make_tiny_llama(), LoraConfig(r=2, target_modules=["q_proj"]))
    trainer = HaLoRATrainer(model=model, args=_args(tmp_path, eval_sigmas=[0.0]))
    saves = []
    model.save_pretrained = lambda *args, **kwargs: saves.append(kwargs.get("save_embedding_layers"))
    trainer.model = torch.compile(model)  # Trainer._save saves the model inside
    trainer.save_model(str(tmp_path / "compiled"))
    assert asked == [model] and saves == [False]


def test_a_builtin_base_adapter_is_saved_by_the_trainer_with_peft_rule_and_no_hub_lookup(tmp_path, builtin_folder,
                                                                                          hub_lookups):
    """PEFT's rule answered locally saves the resized embeddings, which PEFT, offline, would assume unchanged."""
    model, _ = load_base_model()
    model.resize_token_embeddings(130)
    model = get_peft_model(model, LoraConfig(r=2, target_modules=["q_proj"]))
    HaLoRATrainer(model=model, args=_args(tmp_path, eval_sigmas=[0.0])).save_model(str(tmp_path / "adapter"))
    weights = load_file(tmp_path / "adapter" / "adapter_model.safetensors")
    assert weights["base_model.model.model.embed_tokens.weight"].shape[0] == 130
    assert hub_lookups == []


def _eval_trainer(tmp_path, tokenizer, model, **kwargs):
    train, evaluation = builtin_task(train_size=16, eval_size=12)
    scoring, scorer = tokenize_for_scoring(evaluation, tokenizer, max_length=96)
    args = _args(tmp_path, per_device_eval_batch_size=16, eval_sigmas=[0.0, 0.05], eval_noise_seeds=2, **kwargs)
    return HaLoRATrainer(model=model, args=args, train_dataset=tokenize_for_training(train, tokenizer, 96),
                         eval_dataset=scoring, data_collator=DataCollatorForSeq2Seq(tokenizer, padding=True),
                         compute_metrics=scorer.compute_metrics, preprocess_logits_for_metrics=choice_logprob_sums)


def _model_metrics(metrics):
    return {k: v for k, v in metrics.items() if not k.endswith(("runtime", "per_second"))}


def test_evaluation_under_noise_is_reproducible(tmp_path, char_tokenizer):
    model = get_peft_model(make_tiny_llama(), LoraConfig(r=4, target_modules=["q_proj"], init_lora_weights=False))
    trainer = _eval_trainer(tmp_path, char_tokenizer, model, noise_seed=3)
    first, second = _model_metrics(trainer.evaluate()), _model_metrics(trainer.evaluate())
    assert first == second
    for key in ("eval_accuracy", "eval_loss", "eval_accuracy_sigma_0_mean", "eval_accuracy_sigma_0.05_mean",
                "eval_accuracy_sigma_0.05_std", "eval_loss_sigma_0.05_std"):
        assert key in first, key
    assert first["eval_loss_sigma_0.05_mean"] != first["eval_loss"]
    assert first["eval_loss_sigma_0.05_std"] > 0
    other_seed = _model_metrics(_eval_trainer(tmp_path, char_tokenizer, model, noise_seed=4).evaluate())
    assert other_seed["eval_loss_sigma_0.05_mean"] != first["eval_loss_sigma_0.05_mean"]
    assert other_seed["eval_loss"] == first["eval_loss"]


def test_eval_steps_per_second_counts_every_runs_batches(tmp_path, char_tokenizer, monkeypatch):
    model = get_peft_model(make_tiny_llama(), LoraConfig(r=4, target_modules=["q_proj"]))
    trainer = _eval_trainer(tmp_path, char_tokenizer, model)
    batches = []

    class CountBatches(TrainerCallback):
        def on_prediction_step(self, args, state, control, **kwargs):
            batches.append(state.global_step)

    trainer.add_callback(CountBatches())
    timed = []
    monkeypatch.setattr(trainer_module, "speed_metrics", lambda *args, **kwargs: timed.append(kwargs) or {})
    trainer.evaluate()
    rows = len(trainer.eval_dataset)
    assert rows % 16  # each run's last batch is short
    assert timed[0]["num_steps"] == len(batches) == 3 * math.ceil(rows / 16)  # sigma 0 once, 0.05 over two seeds


@pytest.mark.parametrize("full_eval", ["bf16_full_eval", "fp16_full_eval"])
def test_a_half_precision_evaluation_noises_and_restores_the_cast_weights(tmp_path, char_tokenizer, full_eval):
    model = get_peft_model(make_tiny_llama(), LoraConfig(r=4, target_modules=["q_proj"], init_lora_weights=False))
    trainer = _eval_trainer(tmp_path, char_tokenizer, model, **{full_eval: True})
    trainer.args.eval_sigmas = [0.05, 0.0]  # the first run noisy: the Trainer casts the model inside it
    dtype = torch.bfloat16 if full_eval == "bf16_full_eval" else torch.float16
    clean = {name: tensor.to(dtype) for name, tensor in model.state_dict().items()}
    metrics = trainer.evaluate()
    assert metrics["eval_loss_sigma_0.05_mean"] != metrics["eval_loss"]
    assert all(_bit_equal(clean[name], tensor) for name, tensor in model.state_dict().items())


def test_evaluation_noise_of_the_arguments_applies_to_lora_and_halora_alike(tmp_path, char_tokenizer):
    """One adapter, loaded once as LoRA and once as HaLoRA (whose own noise settings differ): with the
    evaluation noise given in the arguments both are scored under the same noise; without it, HaLoRA's
    adapter settings apply."""
    evaluation_noise = dict(eval_noise_mode="multiplicative", eval_noise_tile_size=16, eval_noise_target_modules=["up_proj"])
    halora = dict(noise_mode="absolute", noise_tile_size=32, noise_target_modules=["q_proj"])
    metrics = {}
    for name, config in (("lora", LoraConfig(r=4, target_modules=["q_proj"], init_lora_weights=False)),
                         ("halora", HaLoRAConfig(r=4, target_modules=["q_proj"], init_lora_weights=False, **halora))):
        torch.manual_seed(0)
        model = get_peft_model(make_tiny_llama(vocab_size=len(char_tokenizer)), config)
        trainer = _eval_trainer(tmp_path, char_tokenizer, model, **evaluation_noise)
        assert trainer.eval_noise_settings() == {"mode": "multiplicative", "tile_size": 16, "target_modules": ["up_proj"]}
        metrics[name] = _model_metrics(trainer.evaluate())
        if name == "halora":
            adapter_noise = _eval_trainer(tmp_path, char_tokenizer, model).eval_noise_settings()
            assert adapter_noise == {"mode": "absolute", "tile_size": 32, "target_modules": ["q_proj"]}
    assert metrics["lora"]["eval_loss_sigma_0.05_mean"] != metrics["lora"]["eval_loss"]
    assert metrics["lora"] == metrics["halora"]


def _tiny_gpt2(vocab_size):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    return GPT2LMHeadModel(GPT2Config(vocab_size=vocab_size, n_positions=128, n_embd=16, n_layer=1, n_head=2)).eval()


def test_a_scorer_without_a_collator_pads_every_row_on_the_right(tmp_path, char_tokenizer):
    """No data_collator: the trainer pads the scored and the training rows on the right, from a copy of the
    scorer's tokenizer, so that an absolute-position model (GPT-2) scores each row in a batch as alone."""
    left = copy.deepcopy(char_tokenizer)
    left.padding_side = "left"
    train, evaluation = builtin_task("mixed", train_size=8, eval_size=9)
    scoring, scorer = tokenize_for_scoring(evaluation, left, max_length=96)
    training = tokenize_for_training(train, left, 96)
    model = _tiny_gpt2(len(left))
    args = _args(tmp_path, eval_sigmas=[0.0], per_device_eval_batch_size=32, per_device_train_batch_size=8, max_steps=1)
    trainer = HaLoRATrainer(model=model, args=args, train_dataset=training, eval_dataset=scoring, scorer=scorer)
    assert left.padding_side == "left"  # the caller's tokenizer is left as it was
    assert len(set(map(len, training["input_ids"]))) > 1
    batch = trainer.data_collator([training[i] for i in range(len(training))])
    lengths = torch.tensor(list(map(len, training["input_ids"])))
    right_padded = torch.arange(batch["input_ids"].shape[1]) < lengths[:, None]
    assert torch.equal(batch["attention_mask"].bool(), right_padded)
    assert (batch["labels"][~right_padded] == -100).all()

    batched = trainer.predict(scoring).predictions
    trainer.args.per_device_eval_batch_size = 1
    alone = trainer.predict(scoring).predictions
    assert len(set(map(len, scoring["input_ids"]))) > 1
    torch.testing.assert_close(torch.as_tensor(batched), torch.as_tensor(alone))
    trainer.train()  # the training rows' batches pad too


def test_a_scorer_collator_comes_from_processing_class_and_a_collator_padding_no_labels_is_refused(tmp_path,
                                                                                                  char_tokenizer):
    left = copy.deepcopy(char_tokenizer)
    left.padding_side = "left"
    scoring, scorer = tokenize_for_scoring(builtin_task(train_size=0, eval_size=4)[1], left, max_length=96)
    built_by_hand = MultipleChoiceScorer(scorer.example_index, scorer.choice_index, scorer.answers)
    model = make_tiny_llama(vocab_size=len(left))
    args = _args(tmp_path, eval_sigmas=[0.0])
    trainer = HaLoRATrainer(model=model, args=args, eval_dataset=scoring, scorer=built_by_hand, processing_class=left)
    assert trainer.data_collator.tokenizer.padding_side == "right" and left.padding_side == "left"
    assert isinstance(trainer.data_collator, DataCollatorForSeq2Seq) and trainer.data_collator.label_pad_token_id == -100
    with pytest.raises(ValueError, match="neither the scorer .* nor processing_class holds the tokenizer to pad them "
                                         "with; give processing_class=tokenizer"):
        HaLoRATrainer(model=model, args=args, eval_dataset=scoring, scorer=built_by_hand)
    for collator in (default_data_collator, DataCollatorWithPadding(left)):
        with pytest.raises(ValueError, match="which the given data_collator does not pad; give none"):
            HaLoRATrainer(model=model, args=args, eval_dataset=scoring, scorer=scorer, data_collator=collator)
        with pytest.raises(ValueError, match="which the given data_collator does not pad"):  # given positionally
            HaLoRATrainer(model, args, collator, eval_dataset=scoring, scorer=scorer)


@pytest.mark.parametrize("dataset_argument", ["train_dataset", "eval_dataset"])
def test_training_rows_without_a_scorer_are_padded_from_processing_class_or_refused(tmp_path, char_tokenizer,
                                                                                     dataset_argument):
    """tokenize_for_training's rows differ in length: transformers' default collators (DataCollatorWithPadding
    with processing_class, default_data_collator without) cannot batch them, scorer or not."""
    rows = tokenize_for_training(builtin_task("mixed", train_size=8, eval_size=0)[0], char_tokenizer, 96)
    assert len(set(map(len, rows["labels"]))) > 1
    args = _args(tmp_path, eval_sigmas=[0.0], per_device_train_batch_size=8, max_steps=1)
    model = get_peft_model(make_tiny_llama(), HaLoRAConfig(r=2, target_modules=["q_proj"], noise_sigma=0.0))
    trainer = HaLoRATrainer(model=model, args=args, processing_class=char_tokenizer, **{dataset_argument: rows})
    assert isinstance(trainer.data_collator, DataCollatorForSeq2Seq) and trainer.data_collator.label_pad_token_id == -100
    if dataset_argument == "train_dataset":
        trainer.train()
    else:
        assert trainer.evaluate()["eval_loss"] > 0
    with pytest.raises(ValueError, match=f"{dataset_argument}: its rows differ in length and carry labels, and no "
                                         "processing_class gives the tokenizer to pad them with; give "
                                         "processing_class=tokenizer, or data_collator=hf_eff.choice_rows_collator"):
        HaLoRATrainer(model=model, args=args, **{dataset_argument: rows})
    with pytest.raises(ValueError, match=f"{dataset_argument}: its rows .* which the given data_collator does not pad"):
        HaLoRATrainer(model=model, args=args, data_collator=default_data_collator, **{dataset_argument: rows})
    equal = _token_dataset()  # rows of one length: the default collators batch them, and stay
    assert HaLoRATrainer(model=model, args=args, train_dataset=equal).data_collator is default_data_collator
    assert type(HaLoRATrainer(model=model, args=args, train_dataset=equal,
                              processing_class=char_tokenizer).data_collator) is DataCollatorWithPadding


def test_arguments_validate(tmp_path):
    with pytest.raises(ValueError, match="eval_sigmas"):
        _args(tmp_path, eval_sigmas=[-0.1])
    for one_level in (0.02, "0.02"):  # a list is meant
        with pytest.raises(ValueError, match=r"eval_sigmas must be a list of noise levels \(e.g. \[0.0, 0.02\]\)"):
            _args(tmp_path, eval_sigmas=one_level)
    with pytest.raises(ValueError, match="eval_noise_seeds"):
        _args(tmp_path, eval_noise_seeds=0)
    with pytest.raises(ValueError, match="eval_noise_mode"):
        _args(tmp_path, eval_noise_mode="pink")
    with pytest.raises(ValueError, match="eval_noise_tile_size"):
        _args(tmp_path, eval_noise_tile_size=0)
    for seed in (-1, 1.5):  # the samples' -1 means no seed; a float would be hashed as written
        with pytest.raises(ValueError, match=rf"noise_seed \(default: seed\) must be an integer >= 0, got {seed}"):
            _args(tmp_path, noise_seed=seed)


def test_eval_sigmas_get_one_metric_name_each(tmp_path):
    # a level listed twice, or two that sigma_<s>'s 6 significant digits spell alike, would overwrite each other
    for sigmas in ([0.0, 0.01, 0.01], [0.01, 0.010000001]):
        with pytest.raises(ValueError, match=r"eval_sigmas: levels that metric names spell alike .*\('0.01', 0.01\)"):
            _args(tmp_path, eval_sigmas=sigmas)
    args = _args(tmp_path, eval_sigmas=[-0.0, 0.0025, 1e-3], metric_for_best_model="loss_sigma_0_mean")
    assert [f"{sigma:g}" for sigma in args.eval_sigmas] == ["0", "0.0025", "0.001"]  # not sigma_-0


def test_stuck_at_fractions_above_one_are_refused_before_training(tmp_path):
    with pytest.raises(ValueError, match="eval_sigmas: with stuck_at noise"):
        _args(tmp_path, eval_sigmas=[0.0, 2.0], eval_noise_mode="stuck_at")
    # the adapter's stuck_at mode: refused when the trainer is built
    model = get_peft_model(make_tiny_llama(), HaLoRAConfig(r=4, target_modules=["q_proj"], noise_mode="stuck_at"))
    with pytest.raises(ValueError, match="eval_sigmas: with stuck_at noise .the adapter's noise_mode"):
        HaLoRATrainer(model=model, args=_args(tmp_path, eval_sigmas=[0.0, 2.0]))
    HaLoRATrainer(model=model, args=_args(tmp_path, eval_sigmas=[0.0, 2.0], eval_noise_mode="absolute"))


@pytest.mark.parametrize(("sigmas", "metric"), [([0.02], "loss"), ([0.02], "eval_accuracy"), ([0.0, 0.02], "loss_sigma_0.05_mean")])
def test_a_best_model_metric_evaluation_does_not_report_is_refused(tmp_path, sigmas, metric):
    with pytest.raises(ValueError, match="metric_for_best_model.*eval_sigmas"):
        _args(tmp_path, eval_sigmas=sigmas, metric_for_best_model=metric)


def test_load_best_models_default_metric_needs_a_clean_evaluation(tmp_path):
    with pytest.raises(ValueError, match="metric_for_best_model.*eval_sigmas"):  # "loss" is load_best's default
        _args(tmp_path, eval_sigmas=[0.02], load_best_model_at_end=True, eval_strategy="steps", save_strategy="steps")


def test_best_model_on_a_noisy_metric_without_a_clean_run(tmp_path):
    model = get_peft_model(make_tiny_llama(), HaLoRAConfig(r=4, target_modules=["q_proj"], noise_sigma=0.02))
    args = _args(tmp_path, per_device_train_batch_size=4, max_steps=2, eval_sigmas=[0.02], eval_noise_seeds=1,
                 eval_strategy="steps", eval_steps=1, save_strategy="steps", save_steps=1, load_best_model_at_end=True,
                 metric_for_best_model="loss_sigma_0.02_mean")
    assert args.greater_is_better is False
    trainer = HaLoRATrainer(model=model, args=args, train_dataset=_token_dataset(), eval_dataset=_token_dataset(4),
                            data_collator=default_data_collator)
    trainer.train()
    evaluated = [entry["eval_loss_sigma_0.02_mean"] for entry in trainer.state.log_history if "eval_loss_sigma_0.02_mean" in entry]
    assert trainer.state.best_metric == min(evaluated[:2])


def test_a_trainable_head_keeps_its_update_under_training_noise(tmp_path):
    """SEQ_CLS trains a copy of the classifier head (modules_to_save), on SRAM: noise_target_modules
    naming "dense" must not noise it, or restoring the clean weights would undo its updates."""
    lr, sigma = 0.5, 0.1
    halora = dict(noise_target_modules=["dense"], noise_sigma=sigma, noise_resample_steps=1, reg_weight=0.0)
    generator = torch.Generator().manual_seed(0)
    data = Dataset.from_dict({"input_ids": torch.randint(3, 100, (8, 12), generator=generator).tolist(),
                              "labels": torch.randint(0, 2, (8,), generator=generator).tolist()})
    model = _tiny_roberta_classifier(**halora)
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    args = _args(tmp_path, per_device_train_batch_size=8, max_steps=1, optim="sgd", learning_rate=lr,
                 lr_scheduler_type="constant", max_grad_norm=0.0)
    HaLoRATrainer(model=model, args=args, train_dataset=data, data_collator=default_data_collator).train()
    assert all(_bit_equal(p, frozen[n]) for n, p in model.named_parameters() if n in frozen)

    # The same SGD step by hand: backbone under the same draw, the head (and the adapter) exact.
    reference = _tiny_roberta_classifier(**halora)
    head_params = dict(reference.base_model.model.classifier.modules_to_save.named_parameters())
    start = {n: p.detach().clone() for n, p in head_params.items()}
    batch = default_data_collator([data[i] for i in range(8)])
    with noise_module.rram_noise(reference, sigma, seed=args.noise_seed, draw_index=0):
        reference(**batch).loss.backward()
    trained = dict(model.base_model.model.classifier.modules_to_save.named_parameters())
    for name, param in head_params.items():
        expected = start[name] - lr * param.grad
        assert not torch.equal(expected, start[name])
        torch.testing.assert_close(trained[name].detach(), expected, rtol=0, atol=1e-6)


def test_a_model_without_noisable_layers_is_refused_before_training(tmp_path):
    class NoBlocks(torch.nn.Module):  # declares no transformer blocks: nothing to put on RRAM by default
        def __init__(self):
            super().__init__()
            self.linear = torch.nn.Linear(4, 4)

    with pytest.raises(ValueError, match="noise_target_modules"):
        HaLoRATrainer(model=NoBlocks(), args=_args(tmp_path, eval_sigmas=[0.0, 0.01]))
    HaLoRATrainer(model=NoBlocks(), args=_args(tmp_path, eval_sigmas=[0.0]))  # no noise asked for: fine


def test_training_a_halora_adapter_outside_halora_trainer_warns_once(tmp_path, recwarn):
    from transformers import Trainer, TrainingArguments

    model = get_peft_model(make_tiny_llama(), HaLoRAConfig(r=4, target_modules=["q_proj"], noise_sigma=0.05))
    args = dict(output_dir=str(tmp_path), report_to=[], use_cpu=True, save_strategy="no", per_device_train_batch_size=2,
                max_steps=2)
    HaLoRATrainer(model=model, args=_args(tmp_path, **args), train_dataset=_token_dataset(),
                  data_collator=default_data_collator).train()
    with torch.no_grad():
        model(**default_data_collator([_token_dataset()[0]]))  # inference in train mode: no warning either
    assert not [w for w in recwarn if "outside HaLoRATrainer" in str(w.message)]
    Trainer(model=model, args=TrainingArguments(**args), train_dataset=_token_dataset(), data_collator=default_data_collator).train()
    assert len([w for w in recwarn if "outside HaLoRATrainer" in str(w.message)]) == 1
