import warnings
import weakref

import pytest
import torch
from peft import LoraConfig, get_peft_model
from torch import nn

from hf_eff import HaLoRAConfig, RRAMNoise, rram_noise
from hf_eff.halora import noise as noise_module
from hf_eff.halora import rram_linear_modules
from hf_eff.halora.noise import _expand_tiles, _scale_by_tiles_, canonical_layer_name, draw_seed
from tests.halora.conftest import make_tiny_llama

MODES = ("tile_additive", "multiplicative", "absolute", "stuck_at")


def _snapshot(model):
    return {name: tensor.clone() for name, tensor in model.state_dict().items()}


def _bit_equal(a, b):
    return a.dtype == b.dtype and torch.equal(a.view(torch.uint8), b.view(torch.uint8))


def test_default_targets_are_block_linears_without_adapter_weights():
    model = get_peft_model(make_tiny_llama(), LoraConfig(r=4, target_modules=["q_proj", "up_proj"]))
    names = {canonical_layer_name(n) for n in rram_linear_modules(model)}
    assert len(names) == 2 * 7  # q, k, v, o, gate, up, down per block
    assert "model.layers.0.self_attn.q_proj" in names and "model.layers.1.mlp.down_proj" in names
    assert not any("lora" in n or "lm_head" in n for n in names)
    assert set(map(canonical_layer_name, rram_linear_modules(model, ["down_proj"]))) == {
        "model.layers.0.mlp.down_proj", "model.layers.1.mlp.down_proj"}
    with pytest.raises(ValueError, match="matches no"):
        rram_linear_modules(model, ["nothing_here"])
    with pytest.raises(ValueError, match=r"'all-linear' matches no .*a string is a regex .*a list holds name suffixes"):
        rram_linear_modules(model, "all-linear")  # PEFT's shorthand is not a noise selection
    with pytest.raises(ValueError, match=r"\['all-linear'\] matches no .*None takes every Linear in the transformer blocks"):
        rram_linear_modules(model, ["all-linear"])  # as a command line gives it


def _tiny_mixtral():
    from transformers import MixtralConfig, MixtralForCausalLM

    torch.manual_seed(0)
    return MixtralForCausalLM(MixtralConfig(vocab_size=128, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                            num_attention_heads=4, num_key_value_heads=2, num_local_experts=4))


def test_block_weights_that_are_not_linear_layers_are_named_in_a_warning(recwarn):
    moe = _tiny_mixtral()
    # transformers keeps each block's experts as fused 3-D parameters, not nn.Linear layers
    with pytest.warns(UserWarning, match=r"6 weight tensor\(s\) .*model.layers.0.mlp.experts.gate_up_proj \(4, 256, 64\).*stay exact"):
        assert len(rram_linear_modules(moe)) == 8  # the attention projections only
    rram_linear_modules(make_tiny_llama())
    rram_linear_modules(_tiny_roberta_classifier())  # its blocks include the embeddings: lookups, not matrix products
    assert not [w for w in recwarn if "RRAM noise" in str(w.message)]


def test_the_unsimulated_weights_warning_is_shown_once_per_model_at_the_users_line(tmp_path):
    from hf_eff import HaLoRATrainer, HaLoRATrainingArguments

    model = get_peft_model(_tiny_mixtral(), LoraConfig(r=4, target_modules=["q_proj"]))
    args = HaLoRATrainingArguments(output_dir=str(tmp_path), eval_sigmas=[0.0, 0.01], report_to=[], use_cpu=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")  # not Python's once per code line: hf-eff's own once per model
        HaLoRATrainer(model=model, args=args)  # checks the noise selection
        for seed in range(2):
            with rram_noise(model, 0.01, seed=seed):
                pass
    unsimulated = [w for w in caught if "not simulated on RRAM" in str(w.message)]
    assert len(unsimulated) == 1 and unsimulated[0].filename == __file__
    assert "e.g. model.layers.0.mlp.experts.gate_up_proj (4, 256, 64)" in str(unsimulated[0].message)


def test_tile_noise_statistics_match_sigma():
    torch.manual_seed(0)
    layer = nn.Linear(256, 256, bias=False)
    with torch.no_grad():  # tiles with very different magnitudes: the noise must follow each tile's max
        layer.weight.mul_(torch.logspace(-2, 1, 4).repeat_interleave(64).unsqueeze(1))
    model = nn.Sequential(layer)
    clean = layer.weight.detach().clone()
    with rram_noise(model, sigma=0.02, seed=5, target_modules=["0"]):
        delta = layer.weight.detach() - clean
    tiles = delta.view(4, 64, 4, 64).permute(0, 2, 1, 3).reshape(16, -1)
    tile_max = clean.abs().view(4, 64, 4, 64).amax(dim=(1, 3)).reshape(16)
    relative_std = tiles.std(dim=1) / tile_max
    torch.testing.assert_close(relative_std, torch.full_like(relative_std, 0.02), rtol=0.05, atol=0)
    assert tiles.mean(dim=1).abs().div(tile_max).max() < 0.002  # zero mean


def test_even_tiles_broadcast_to_the_same_bits_as_the_expanded_scales():
    values, tile_values = torch.randn(128, 192), torch.rand(2, 3)
    expected = _expand_tiles(tile_values, 64, values.shape) * values
    assert torch.equal(_scale_by_tiles_(values.clone(), tile_values, 64), expected)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_lora_untouched_and_clean_weights_restored_bit_exactly(mode, dtype):
    model = get_peft_model(make_tiny_llama().to(dtype), HaLoRAConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    before = _snapshot(model)
    with rram_noise(model, sigma=0.02, mode=mode, seed=1) as noise:
        during = _snapshot(model)
        assert noise.overhead_bytes > 0
    changed = {n for n in before if not torch.equal(before[n], during[n])}
    assert changed and not any("lora_" in n for n in changed)
    assert all("layers" in n for n in changed)  # embeddings, norms and lm_head stay exact
    after = _snapshot(model)
    assert all(_bit_equal(before[n], after[n]) for n in before)


def test_a_draw_at_another_level_is_restored_bit_exactly():
    model = make_tiny_llama()
    before = _snapshot(model)
    noise = RRAMNoise(model, sigma=0.01)
    layer = next(iter(noise.layers.values()))
    clean = layer.weight.detach().clone()
    deltas = {}
    for sigma in (None, 0.03):  # None: the level given at construction
        noise.apply(seed=0, sigma=sigma)
        deltas[sigma] = (layer.weight.detach() - clean).std().item()
        noise.restore()
        assert all(_bit_equal(before[n], t) for n, t in model.state_dict().items())
    assert noise.sigma == 0.03
    assert deltas[0.03] / deltas[None] == pytest.approx(3.0, rel=1e-3)  # same draw, three times the level
    with pytest.raises(ValueError, match="^sigma must be a finite number"):
        noise.apply(seed=0, sigma=-1.0)


def test_restored_even_when_the_body_raises():
    model = make_tiny_llama()
    before = _snapshot(model)
    with pytest.raises(KeyError), rram_noise(model, sigma=0.05, seed=0):
        raise KeyError("boom")
    assert all(_bit_equal(before[n], t) for n, t in model.state_dict().items())


def test_a_model_built_under_inference_mode_is_noised_and_restored_bit_exactly():
    with torch.inference_mode():  # its weights are inference tensors: no autograd version counter
        model = make_tiny_llama()
        before = _snapshot(model)
        ids = torch.randint(0, 128, (1, 8))
        clean = model(ids).logits
        with rram_noise(model, sigma=0.02, seed=0):
            assert not torch.equal(model(ids).logits, clean)
    assert all(_bit_equal(before[n], t) for n, t in model.state_dict().items())


def test_a_weight_trained_while_noised_is_named_at_restore_and_the_others_come_back_exactly():
    model = make_tiny_llama()  # a plain model: every block Linear is on RRAM, whatever requires_grad says
    before = _snapshot(model)
    trained = model.model.layers[1].mlp.up_proj.weight
    optimizer = torch.optim.SGD([trained], lr=0.1)
    ids = torch.randint(0, 128, (2, 8))
    with pytest.raises(RuntimeError, match=r"\['model.layers.1.mlp.up_proj'\] changed or replaced.*could not be restored"):
        with rram_noise(model, sigma=0.02, seed=0):
            model(ids, labels=ids).loss.backward()
            optimizer.step()
    assert all(_bit_equal(before[n], t) for n, t in model.state_dict().items() if n != "model.layers.1.mlp.up_proj.weight")


def test_weights_cast_while_noised_are_named_at_restore_not_written_with_the_old_record():
    model = make_tiny_llama()
    with pytest.raises(RuntimeError, match=r"model.layers.0.self_attn.q_proj.*\] and 11 more changed or replaced.*a dtype cast"):
        with rram_noise(model, sigma=0.02, seed=0):
            model.to(torch.bfloat16)  # new tensors: the fix-up record is of the float32 ones


def test_draws_are_reproducible_and_independent_of_wrappers():
    plain, adapted = make_tiny_llama(), get_peft_model(make_tiny_llama(), LoraConfig(r=4, target_modules=["q_proj"]))
    name = "model.layers.1.self_attn.q_proj"
    with rram_noise(plain, 0.01, seed=7):
        plain_noisy = plain.get_submodule(name).weight.detach().clone()
    with rram_noise(adapted, 0.01, seed=7):
        adapted_noisy = adapted.base_model.model.get_submodule(name).base_layer.weight.detach().clone()
    with rram_noise(plain, 0.01, seed=8):
        other_seed = plain.get_submodule(name).weight.detach().clone()
    assert torch.equal(plain_noisy, adapted_noisy)
    assert not torch.equal(plain_noisy, other_seed)
    assert draw_seed(1, 2, "module.base_model.model." + name) == draw_seed(1, 2, name) != draw_seed(1, 3, name)


def test_a_peft_tuner_given_on_its_own_draws_its_peft_models_noise():
    adapted = get_peft_model(make_tiny_llama(), LoraConfig(r=4, target_modules=["q_proj"]))
    name = "model.layers.1.self_attn.q_proj"
    weight = adapted.base_model.model.get_submodule(name).base_layer.weight
    with rram_noise(adapted, 0.01, seed=7):
        through_peft_model = weight.detach().clone()
    with rram_noise(adapted.base_model, 0.01, seed=7):  # the tuner's own names carry one more "model."
        through_tuner = weight.detach().clone()
    assert torch.equal(through_peft_model, through_tuner)
    assert set(map(canonical_layer_name, rram_linear_modules(adapted.base_model, r"model\.layers\.1\.self_attn\.q_proj"))) == {name}


@pytest.mark.parametrize("mode", MODES)
def test_noising_merged_adapters_warns_but_for_absolute_noise(mode):
    model = get_peft_model(make_tiny_llama(), HaLoRAConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with rram_noise(model, 0.02, mode=mode, seed=0):  # unmerged: the adapter stays on SRAM
            pass
    model.merge_adapter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with rram_noise(model, 0.02, mode=mode, seed=0):
            pass
    merged = [w for w in caught if "merged adapter" in str(w.message)]
    if mode == "absolute":  # W0 + BA + n == (W0 + n) + BA: the simulation is the chip's
        assert not merged
    else:
        assert len(merged) == 1 and merged[0].filename == __file__
        assert "model.layers.0.self_attn.q_proj and 3 more hold their merged adapter" in str(merged[0].message)


def test_a_compiled_model_draws_the_same_noise_and_matches_the_same_names():
    plain = make_tiny_llama()
    compiled = torch.compile(make_tiny_llama())  # wraps lazily: nothing is compiled here
    name = "model.layers.1.self_attn.q_proj"
    with rram_noise(plain, 0.01, seed=7):
        plain_noisy = plain.get_submodule(name).weight.detach().clone()
    with rram_noise(compiled, 0.01, seed=7):
        compiled_noisy = compiled.get_submodule("_orig_mod." + name).weight.detach().clone()
    assert torch.equal(plain_noisy, compiled_noisy)
    assert len(rram_linear_modules(compiled, r"model\.layers\.0\..*")) == 7


def test_overhead_is_a_small_fraction_of_the_noised_weights():
    model = make_tiny_llama(hidden_size=128)
    with torch.no_grad():  # trained-like weights: Gaussian, not the tiny init's uniform
        for module in rram_linear_modules(model).values():
            module.weight.normal_(0, 0.05)
    with rram_noise(model, sigma=0.01, seed=0) as noise:
        fraction = noise.overhead_bytes / noise.noised_weight_bytes
    assert fraction < 0.15


def test_bad_input_raises():
    model = make_tiny_llama()
    with pytest.raises(ValueError, match="^mode must be one of"):
        RRAMNoise(model, 0.01, mode="pink")
    model.model.layers[0].mlp.up_proj.weight.data[0, 0] = float("nan")
    before = _snapshot(model)
    with pytest.raises(ValueError, match="layers.0.mlp.up_proj.*NaN"):
        RRAMNoise(model, 0.01).apply(seed=0)
    after = _snapshot(model)  # layers noised before the NaN one were put back
    assert all(_bit_equal(before[n], after[n]) for n in before if "up_proj" not in n)
    noise = RRAMNoise(make_tiny_llama(), 0.01)
    noise.apply(seed=0)
    with pytest.raises(RuntimeError, match="already applied"):
        noise.apply(seed=1)


def test_sharded_weights_are_refused():
    model = make_tiny_llama()
    # what FSDP leaves on a rank that does not hold this weight: an empty flat view
    model.model.layers[0].self_attn.q_proj.weight = nn.Parameter(torch.empty(0), requires_grad=False)
    with pytest.raises(ValueError, match="layers.0.self_attn.q_proj.*sharded.*not FSDP"):
        RRAMNoise(model, 0.01)


def test_offloaded_and_meta_weights_are_refused_by_name(tmp_path):
    from transformers import AutoModelForCausalLM

    make_tiny_llama().save_pretrained(tmp_path / "model")
    # accelerate keeps a disk-offloaded layer's weights as meta placeholders, loaded inside each forward
    device_map = {"model.embed_tokens": "cpu", "model.layers.0": "cpu", "model.layers.1": "disk",
                  "model.norm": "cpu", "model.rotary_emb": "cpu", "lm_head": "cpu"}
    offloaded = AutoModelForCausalLM.from_pretrained(tmp_path / "model", device_map=device_map,
                                                     offload_folder=str(tmp_path / "offload"))
    with pytest.raises(ValueError, match=r"layers.1.self_attn.q_proj: weight is on the meta device.*offloaded"):
        RRAMNoise(offloaded, 0.01)
    assert len(RRAMNoise(offloaded, 0.01, target_modules=r"model\.layers\.0\..*").layers) == 7
    with torch.device("meta"):
        empty = make_tiny_llama()
    with pytest.raises(ValueError, match="layers.0.self_attn.q_proj: weight is on the meta device"):
        RRAMNoise(empty, 0.01)


def test_quantised_weights_are_refused():
    model = make_tiny_llama()
    # what bitsandbytes' Linear4bit holds: packed uint8 codes in an nn.Linear subclass
    layer = model.model.layers[1].mlp.up_proj
    layer.weight = nn.Parameter(torch.zeros(layer.weight.numel() // 2, 1, dtype=torch.uint8), requires_grad=False)
    with pytest.raises(ValueError, match=r"layers.1.mlp.up_proj: weight is torch.uint8 \(a quantised layer"):
        RRAMNoise(model, 0.01)


def test_gpt2_conv1d_layers_are_noised_and_restored_bit_exactly():
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    gpt2 = GPT2LMHeadModel(GPT2Config(vocab_size=64, n_positions=32, n_embd=32, n_layer=2, n_head=2))
    model = get_peft_model(gpt2, LoraConfig(r=2, target_modules=["c_attn"], init_lora_weights=False))
    names = {canonical_layer_name(n) for n in rram_linear_modules(model)}
    assert names == {f"transformer.h.{i}.{layer}" for i in range(2)
                     for layer in ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")}
    before = _snapshot(model)
    with rram_noise(model, sigma=0.02, seed=0):
        during = _snapshot(model)
    changed = {n for n in before if not torch.equal(before[n], during[n])}
    assert changed and not any("lora_" in n for n in changed)
    assert all(_bit_equal(before[n], tensor) for n, tensor in _snapshot(model).items())


def _tiny_roberta_classifier(seed=0, **halora):
    from transformers import RobertaConfig, RobertaForSequenceClassification

    torch.manual_seed(seed)
    config = RobertaConfig(vocab_size=100, hidden_size=64, num_hidden_layers=1, num_attention_heads=2, intermediate_size=128,
                           num_labels=2, max_position_embeddings=64, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    # task_type SEQ_CLS puts the classifier head in modules_to_save: a trainable copy, adapter-side.
    return get_peft_model(RobertaForSequenceClassification(config),
                          HaLoRAConfig(task_type="SEQ_CLS", r=4, target_modules=["query", "value"], **halora))


def test_trainable_head_copy_and_unfrozen_weights_are_never_on_rram():
    model = _tiny_roberta_classifier()
    head = model.base_model.model.classifier
    assert "classifier" in model.modules_to_save and head.modules_to_save["default"].dense.weight.requires_grad
    layers = rram_linear_modules(model, ["dense"])  # RoBERTa's attention, MLP and head layers are all "dense"
    assert not any(module.weight.requires_grad for module in layers.values())
    assert head.modules_to_save["default"].dense not in layers.values()
    # The wrapper's frozen original is the pretrained head (it runs when the adapter is disabled): on
    # RRAM, drawing the noise a plain model's classifier.dense draws.
    assert set(map(canonical_layer_name, layers)) == {
        "roberta.encoder.layer.0.attention.output.dense", "roberta.encoder.layer.0.intermediate.dense",
        "roberta.encoder.layer.0.output.dense", "classifier.dense"}
    before = {n: p.detach().clone() for n, p in head.modules_to_save.named_parameters()}
    with rram_noise(model, 0.1, seed=0, target_modules=["dense"]):
        assert all(torch.equal(p, before[n]) for n, p in head.modules_to_save.named_parameters())
    # A layer unfrozen by hand in a PEFT model is being trained: left out too, and a selection of
    # only adapter-side layers is refused, naming them.
    unfrozen = model.base_model.model.roberta.encoder.layer[0].output.dense
    unfrozen.weight.requires_grad_(True)
    assert unfrozen not in rram_linear_modules(model, ["dense"]).values()
    with pytest.raises(ValueError, match=r"matches only adapter-side.*layer\.0\.output\.dense"):
        rram_linear_modules(model, ["layer.0.output.dense"])
    with pytest.raises(ValueError, match="matches only adapter-side.*lora_A"):
        rram_linear_modules(model, r".*\.lora_A\..*")


def test_defaults_come_from_the_active_halora_adapter_and_explicit_arguments_win():
    config = HaLoRAConfig(r=4, target_modules=["q_proj"], noise_target_modules=["q_proj", "k_proj"],
                          noise_mode="multiplicative", noise_tile_size=32)
    halora = get_peft_model(make_tiny_llama(), config)
    with rram_noise(halora, sigma=0.02) as noise:
        assert (noise.mode, noise.tile_size, len(noise.layers)) == ("multiplicative", 32, 4)
    with rram_noise(halora, sigma=0.02, mode="absolute", tile_size=16, target_modules=["v_proj"]) as noise:
        assert (noise.mode, noise.tile_size, len(noise.layers)) == ("absolute", 16, 2)
    lora = get_peft_model(make_tiny_llama(), LoraConfig(r=4, target_modules=["q_proj"]))
    for model in (lora, make_tiny_llama()):  # no HaLoRA adapter: the documented defaults
        noise = RRAMNoise(model, sigma=0.02)
        assert (noise.mode, noise.tile_size, len(noise.layers)) == ("tile_additive", 64, 14)


def _noisy_by_the_whole_layer_formula(clean, mode, sigma, tile, seed):
    """The noisy weight computed on the whole layer at once (the formula before the redraw went band by
    band): one generator call, float32 arithmetic, one rounding to the weight's dtype."""
    generator = torch.Generator().manual_seed(seed)
    clean32 = clean.float()
    rows, cols = clean.shape
    tile_max = torch.zeros_like(clean32)
    for r in range(0, rows, tile):
        for c in range(0, cols, tile):
            tile_max[r:r + tile, c:c + tile] = clean32[r:r + tile, c:c + tile].abs().max()
    if mode == "stuck_at":
        uniform = torch.rand(clean.shape, generator=generator)
        stuck = torch.where(uniform < sigma / 2, torch.sign(clean32) * tile_max, torch.zeros_like(clean32))
        return torch.where(uniform < sigma, stuck, clean32).to(clean.dtype)
    normal = torch.randn(clean.shape, generator=generator)
    if mode == "multiplicative":
        return (clean32 * (1 + sigma * normal)).to(clean.dtype)
    if mode == "absolute":
        return (clean32 + normal * sigma).to(clean.dtype)
    return (clean32 + normal * (sigma * tile_max)).to(clean.dtype)


@pytest.mark.parametrize("mode", MODES)
def test_a_transposed_weight_is_restored_bit_exactly(mode):
    layer = nn.Linear(96, 160, bias=False).to(torch.bfloat16)
    layer.weight = nn.Parameter(torch.randn(96, 160, dtype=torch.bfloat16).t(), requires_grad=False)
    assert not layer.weight.is_contiguous()
    clean = layer.weight.detach().contiguous()
    with rram_noise(nn.Sequential(layer), sigma=0.3 if mode == "stuck_at" else 0.05, mode=mode, target_modules=["0"]):
        assert not torch.equal(layer.weight, clean)
    assert _bit_equal(layer.weight.detach().contiguous(), clean)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("shape", [(256, 192), (200, 130)])  # whole tiles, and ragged ones
@pytest.mark.parametrize("bands", [1, 4])  # one band takes no slices; four are noised band by band
def test_banded_redraw_gives_the_whole_layer_formulas_bits(monkeypatch, mode, dtype, shape, bands):
    if bands == 4:
        monkeypatch.setattr(noise_module, "_MIN_BAND_ELEMENTS", 1)
    torch.manual_seed(0)
    layer = nn.Linear(shape[1], shape[0], bias=False).to(dtype)
    with torch.no_grad():  # tiles of different magnitudes, and exact zeros
        layer.weight.mul_(torch.logspace(-2, 1, shape[0]).unsqueeze(1).to(dtype))
        layer.weight[:5, :7] = 0
    clean = layer.weight.detach().clone()
    noise = RRAMNoise(nn.Sequential(layer), sigma=0.3 if mode == "stuck_at" else 0.05, mode=mode, target_modules=["0"])
    assert len(noise_module._row_bands(layer.weight.shape, 64)) == bands
    for draw_index in (0, 1):  # a redraw, as training makes them
        noise.redraw(seed=4, draw_index=draw_index)
        expected = _noisy_by_the_whole_layer_formula(clean, mode, noise.sigma, 64, draw_seed(4, draw_index, "0"))
        assert _bit_equal(layer.weight.detach(), expected) and not torch.equal(expected, clean)
    noise.restore()
    assert _bit_equal(layer.weight.detach(), clean)


def test_bands_hold_whole_tiles_and_at_least_min_band_elements_and_are_at_most_four():
    for shape in [(2048, 8192), (4096, 4096), (11008, 4096), (896, 4864), (200, 130), (64, 64)]:
        bands = noise_module._row_bands(torch.Size(shape), 64)
        sizes = [(band.stop - band.start) * shape[1] for band in bands]
        assert 1 <= len(bands) <= 4 and bands[0].start == 0 and bands[-1].stop == shape[0]
        assert all(a.stop == b.start for a, b in zip(bands, bands[1:]))
        assert all(band.start % 64 == 0 for band in bands)
        assert all(size >= 2**22 for size in sizes[:-1])
    assert len(noise_module._row_bands(torch.Size((2048, 8192)), 64)) == 4
    assert len(noise_module._row_bands(torch.Size((896, 4864)), 64)) == 1  # 4.4M elements: one band


def _two_layer_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(64, 64), nn.Linear(64, 256))  # one band, then four (bands of 64 rows)


def _fail_on_call(n, error, wrapped, counted=lambda *args, **kwargs: True):
    """``wrapped`` raising ``error`` on its n-th counted call (once), with the counted calls' first arguments."""
    calls = []

    def failing(*args, **kwargs):
        if len(calls) < n and counted(*args, **kwargs):
            calls.append(args[1] if isinstance(args[0], RRAMNoise) else args[0])
            if len(calls) == n:
                raise error
        return wrapped(*args, **kwargs)

    return failing, calls


@pytest.mark.parametrize("point", ["approx_clean", "index_conversion"])
def test_an_apply_interrupted_between_bands_is_undone_bit_exactly(monkeypatch, point):
    monkeypatch.setattr(noise_module, "_MIN_BAND_ELEMENTS", 1)
    model = _two_layer_model()
    before = _snapshot(model)
    noise = RRAMNoise(model, 0.05, target_modules=["0", "1"])
    # the second band of the second layer: before anything of it is written, or while converting its
    # fix-up indices (which must come before the write)
    if point == "approx_clean":
        failing, calls = _fail_on_call(3, KeyboardInterrupt, RRAMNoise._approx_clean)
        monkeypatch.setattr(RRAMNoise, "_approx_clean", failing)
    else:
        failing, calls = _fail_on_call(3, KeyboardInterrupt, torch.Tensor.to,
                                       lambda tensor, *args, **kwargs: args[:1] in ((torch.int32,), (torch.int64,)))
        monkeypatch.setattr(torch.Tensor, "to", failing)
    with pytest.raises(KeyboardInterrupt):
        noise.apply(seed=0)
    monkeypatch.undo()
    assert len(calls) == 3
    assert not noise.active and all(_bit_equal(before[n], t) for n, t in model.state_dict().items())


def test_an_apply_out_of_memory_in_a_band_frees_that_layers_draw_before_restoring(monkeypatch):
    """Recovering from an out-of-memory error must not need more memory than the apply held: the failed
    layer's draw (referenced by the traceback's frames) is gone before restore draws again."""
    model = _two_layer_model()
    before = _snapshot(model)
    noise = RRAMNoise(model, 0.05, target_modules=["0", "1"])
    draws, alive_at_restore = [], []
    original_draw, original_restore_layer = RRAMNoise._draw, RRAMNoise._restore_layer

    def recorded_draw(self, weight, seed):
        draw = original_draw(self, weight, seed)
        draws.append(weakref.ref(draw))
        return draw

    def restore_layer(self, weight, state):
        alive_at_restore.append([ref() is not None for ref in draws])
        return original_restore_layer(self, weight, state)

    def out_of_memory_in_the_second_layer(self, weight, band, draw, state):
        raise torch.OutOfMemoryError("CUDA out of memory")

    original_band = RRAMNoise._apply_band
    monkeypatch.setattr(RRAMNoise, "_draw", recorded_draw)
    monkeypatch.setattr(RRAMNoise, "_restore_layer", restore_layer)
    monkeypatch.setattr(RRAMNoise, "_apply_band", lambda self, weight, band, draw, state: (
        out_of_memory_in_the_second_layer if len(draws) == 2 else original_band)(self, weight, band, draw, state))
    with pytest.raises(torch.OutOfMemoryError):
        noise.apply(seed=0)
    assert len(draws) == 3  # two in apply, one by restore for the first layer
    assert alive_at_restore == [[False, False]]  # both apply-time draws freed when restore began
    assert not noise.active and all(_bit_equal(before[n], t) for n, t in model.state_dict().items())


def test_an_apply_out_of_memory_in_a_draw_is_undone_and_leaves_no_noise_applied(monkeypatch):
    model = _two_layer_model()
    before = _snapshot(model)
    noise = RRAMNoise(model, 0.05, target_modules=["0", "1"])
    original = RRAMNoise._draw

    def out_of_memory_on_the_larger_layer(self, weight, seed):  # every time, as a real OOM would
        if weight.shape[0] == 256:
            raise torch.OutOfMemoryError("CUDA out of memory")
        return original(self, weight, seed)

    monkeypatch.setattr(RRAMNoise, "_draw", out_of_memory_on_the_larger_layer)
    with pytest.raises(torch.OutOfMemoryError):
        noise.apply(seed=0)
    assert not noise.active and all(_bit_equal(before[n], t) for n, t in model.state_dict().items())
    noise.restore()  # nothing left to undo: the clean layers stay clean
    assert all(_bit_equal(before[n], t) for n, t in model.state_dict().items())


# restore undoes layer "0" (one band), then layer "1" from its last band: its draw is the second draw,
# its second band undone the third _approx_clean call
@pytest.mark.parametrize(("method", "n"), [("_draw", 2), ("_approx_clean", 3)])
def test_a_restore_that_fails_part_way_can_be_retried(monkeypatch, method, n):
    monkeypatch.setattr(noise_module, "_MIN_BAND_ELEMENTS", 1)
    model = _two_layer_model()
    before = _snapshot(model)
    noise = RRAMNoise(model, 0.05, target_modules=["0", "1"])
    noise.apply(seed=0)
    failing, calls = _fail_on_call(n, torch.OutOfMemoryError("CUDA out of memory"), getattr(RRAMNoise, method))
    monkeypatch.setattr(RRAMNoise, method, failing)
    with pytest.raises(torch.OutOfMemoryError):
        noise.restore()
    assert len(calls) == n and noise.active
    noise.restore()  # neither the first layer nor the last band of the second is undone twice
    assert not noise.active and all(_bit_equal(before[n], t) for n, t in model.state_dict().items())


def test_apply_reads_the_device_at_most_once_per_band_plus_once_per_layer(monkeypatch):
    monkeypatch.setattr(noise_module, "_MIN_BAND_ELEMENTS", 1)
    model = _two_layer_model()
    noise = RRAMNoise(model, 0.05, target_modules=["0", "1"])
    reads = []
    for name in ("__bool__", "item", "tolist", "nonzero"):  # what makes a CUDA host synchronisation here
        original = getattr(torch.Tensor, name)
        monkeypatch.setattr(torch.Tensor, name, lambda self, *a, _o=original, _n=name, **k: reads.append(_n) or _o(self, *a, **k))
    noise.apply(seed=0)
    noise.restore()
    monkeypatch.undo()
    assert sorted(reads) == sorted(["__bool__"] * 2 + ["nonzero"] * (1 + 4))  # (bands + 1) per layer, none in restore


@pytest.mark.parametrize("arguments, message", [
    ({"sigma": -0.1}, "sigma must be a finite number >= 0, got -0.1"),
    ({"sigma": 1.5, "mode": "stuck_at"}, "sigma is the stuck-cell fraction for stuck_at"),
    ({"mode": "pink"}, "mode must be one of"),
    ({"tile_size": 0}, "tile_size must be a positive integer, got 0"),
    ({"seed": -1}, "seed must be an integer >= 0, got -1"),
    ({"seed": 3.0}, "seed must be an integer >= 0, got 3.0"),  # hashed as "3.0": other noise than seed 3
    ({"draw_index": True}, "draw_index must be an integer, got True"),
    ({"target_modules": ["nonexistent"]}, r"target_modules=\['nonexistent'\] matches no frozen"),
])
def test_rram_noise_errors_name_the_argument_given(arguments, message):
    model = make_tiny_llama()
    before = _snapshot(model)
    with pytest.raises(ValueError, match="^" + message):
        with rram_noise(model, **{"sigma": 0.01, **arguments}):
            pass
    assert all(_bit_equal(before[n], t) for n, t in model.state_dict().items())


@pytest.mark.parametrize("fields, message", [
    ({"noise_sigma": -0.1}, r"HaLoRAConfig\.noise_sigma must be a finite number"),
    ({"noise_sigma": 1.5, "noise_mode": "stuck_at"}, r"HaLoRAConfig\.noise_sigma is the stuck-cell fraction"),
    ({"noise_mode": "pink"}, r"HaLoRAConfig\.noise_mode must be one of"),
    ({"noise_tile_size": 0}, r"HaLoRAConfig\.noise_tile_size must be a positive integer"),
])
def test_config_errors_name_its_fields(fields, message):
    with pytest.raises(ValueError, match="^" + message):
        HaLoRAConfig(**fields)


def test_targets_left_to_the_adapter_are_named_as_the_adapters():
    model = get_peft_model(make_tiny_llama(), HaLoRAConfig(r=2, target_modules=["q_proj"], noise_target_modules=["v_proj"]))
    model.base_model.model.model.layers[0].self_attn.v_proj = nn.Identity()  # gone since the adapter was made
    model.base_model.model.model.layers[1].self_attn.v_proj = nn.Identity()
    with pytest.raises(ValueError, match=r"^the adapter's noise_target_modules=\['v_proj'\] matches no frozen"):
        with rram_noise(model, sigma=0.01):
            pass


def test_a_setting_is_named_as_the_adapters_only_where_the_adapter_set_it():
    from hf_eff.halora.noise import setting_field

    model = get_peft_model(make_tiny_llama(), HaLoRAConfig(r=2, target_modules=["q_proj"], noise_target_modules=["v_proj"]))
    assert setting_field(model, "target_modules", None, "target_modules") == "the adapter's noise_target_modules"
    assert setting_field(model, "target_modules", ["o_proj"], "target_modules") == "target_modules"  # given wins
    assert setting_field(model, "mode", None, "eval_noise_mode") == "the adapter's noise_mode"
    # the adapter's default selection (None) and a model without a HaLoRA adapter: the caller's own field
    plain = get_peft_model(make_tiny_llama(), HaLoRAConfig(r=2, target_modules=["q_proj"]))
    assert setting_field(plain, "target_modules", None, "target_modules") == "target_modules"
    assert setting_field(make_tiny_llama(), "mode", None, "eval_noise_mode") == "eval_noise_mode"
