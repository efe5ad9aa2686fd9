"""`Trainer.push_to_hub` with the hf-eff card of the trained artifact, and without pickles."""

from __future__ import annotations

import contextlib
import inspect
import os
import shutil
from pathlib import Path

import transformers.trainer as transformers_trainer
from huggingface_hub import ModelHubMixin
from transformers.trainer_utils import HubStrategy

from hf_eff.hub.cards import card_datasets
from hf_eff.hub.push import (
    PICKLE_PATTERNS,
    SAMPLES_PATTERNS,
    build_card,
    ensure_branch,
    refuse_unwritable_repo,
    upload_folder,
)


class _TrainerUploads:
    """transformers' shared ``HfApi``, with ``patterns`` added to every ``upload_folder``'s ignore_patterns and
    ``delete_patterns`` as its delete_patterns (repo files the folder uploaded lacks are deleted), and its uploads
    hf-eff's (``hf_eff.hub.push.upload_folder``: recorded local paths reduced to their last part)."""

    def __init__(self, api, patterns: list[str], delete_patterns: list[str]):
        self._api, self._patterns, self._delete_patterns = api, patterns, delete_patterns

    def upload_folder(self, *, ignore_patterns=None, **kwargs):
        ignore = [ignore_patterns] if isinstance(ignore_patterns, str) else list(ignore_patterns or [])
        return upload_folder(self._api, ignore_patterns=ignore + self._patterns,
                             delete_patterns=self._delete_patterns or None, **kwargs)

    def __getattr__(self, name):
        return getattr(self._api, name)


@contextlib.contextmanager
def _trainer_uploads(patterns: list[str], delete_patterns: list[str]):
    """While the Trainer pushes: its ``hf_api()`` uploads leave ``patterns`` out, and delete the repo's files matching
    ``delete_patterns`` that the folder uploaded lacks. transformers hard-codes the ignore_patterns of its three
    uploads (none at all for the checkpoint folder), so this is the one place to add to them without copying
    ``push_to_hub`` and ``_push_from_checkpoint``. The patterns are bound when each upload is called, so its
    background thread needs nothing from here."""
    original = transformers_trainer.hf_api
    transformers_trainer.hf_api = lambda: _TrainerUploads(original(), patterns, delete_patterns)
    try:
        yield
    finally:
        transformers_trainer.hf_api = original


def _mirror_file(source: Path, target: Path) -> None:
    """``target`` becomes a copy of ``source`` (written beside it, then renamed: never half-written), or is removed
    where there is no ``source``."""
    if not source.is_file():
        target.unlink(missing_ok=True)
        return
    partial = target.with_name(f"_{target.name}.partial")  # "_*": left out of the Trainer's uploads
    shutil.copy(source, partial)
    os.replace(partial, target)


# What reproduces a run of each kind beside the common TrainingArguments (HubCardTrainerMixin.card_training_procedure):
# the method's arguments, and for adapters their config's rank, noise and regulariser.
_METHOD_ARGUMENTS = {
    "halora_adapter": ("noise_seed",),
    "grant_model": ("teacher", "variant", "start_ratio", "ratio_schedule", "ratio_stages", "reselect_schedule",
                    "reselect_interval_start", "reselect_interval_end", "selection"),
    "splat_model": ("means_lr", "means_lr_decay", "scales_lr", "quats_lr", "opacities_lr", "sh0_lr", "ssim_weight"),
}
_ADAPTER_SETTINGS = ("r", "lora_alpha", "noise_mode", "noise_sigma", "noise_sigma_sampling", "noise_resample_steps",
                     "noise_warmup_steps", "reg_weight", "reg_norm")


class HubCardTrainerMixin:
    """Base for the hf-eff trainers: the Trainer's pushes carry the artifact's hf-eff card and no pickles.

    ``Trainer.push_to_hub`` (also called by ``save_model`` when ``push_to_hub=True``) saves the
    model, calls ``create_model_card`` and uploads the output folder. transformers' own card is a
    generic training summary that knows nothing of noise tables, teaching or splats; this one is
    the card ``hf-eff push`` writes. Its results are the latest value of every key in the log
    history (once training reloaded its best checkpoint, that checkpoint's evaluation), overridden by what this trainer passed to ``save_metrics`` (the examples' closing
    ``all_results.json``); the run settings the card shows and the results lack come from
    ``card_run_settings``. A results file an earlier run left in a reused
    ``output_dir`` is not read: its figures would describe another model.

    The checkpoint pushes (``hub_strategy`` ``checkpoint``, ``all_checkpoints``, ``every_save``) carry
    the same card, built from the results so far, in place of the one the model's ``save_pretrained``
    wrote into the checkpoint. Like ``hf-eff push``, no push uploads ``hf_eff.hub.push.PICKLE_PATTERNS``:
    ``training_args.bin`` stays in the local folders (for tools that read it) but not on the Hub; nor
    ``SAMPLES_PATTERNS``, the per-question samples of an evaluation; and the records of local paths (the data in
    ``all_results.json``, ``training_data_splits.json``, ``config.json``, the base model in ``adapter_config.json``, the
    best checkpoint in ``trainer_state.json``, if absolute: ``PATH_RECORDING_PATTERNS``) go up with each path reduced
    to its last part, as the card names it (the local files keep them). A pushed
    checkpoint keeps the optimizer, scheduler and RNG states (``*.pt``, ``*.pth``): resuming from it needs
    them, and transformers reads them with ``torch.load(weights_only=True)``.

    Use: ``class MyTrainer(HubCardTrainerMixin, Trainer)`` with ``card_kind`` set to one of
    ``hf_eff.hub.cards.KINDS``.
    """

    card_kind: str
    # Files beside the model that belong to it and that only some runs write (the splat trainer's pose corrections):
    # a checkpoint push carries the checkpoint's into the output folder with its model, as transformers carries the
    # model's own files, and a push deletes the repo's copy where the folder uploaded has none (an earlier run's).
    hub_model_side_files: tuple[str, ...] = ()

    def save_metrics(self, split, metrics, combined=True):
        super().save_metrics(split, metrics, combined)
        self._saved_metrics = {**getattr(self, "_saved_metrics", {}), **metrics}

    def _card_model_args(self) -> dict:
        """What the card needs to know of the model in memory: it may not be saved yet (TRL's trainers
        write the card of a checkpoint before its files), and a reused ``output_dir`` may hold another
        run's files. An adapter's config (enums as PEFT saves them; for a config without a task type, the
        base class PEFT would record in ``auto_mapping``); a GraNT model's class and whether it is a
        ``PyTorchModelHubMixin``."""
        model = self.accelerator.unwrap_model(self.model)
        model = getattr(model, "_orig_mod", model)  # torch.compile's wrapper: the card names the user's class
        if self.card_kind == "halora_adapter" and getattr(model, "peft_config", None):
            name = model.active_adapter
            config = model.peft_config[name[0] if isinstance(name, list) else name].to_dict()
            config = {key: getattr(value, "value", value) for key, value in config.items()}
            if config.get("task_type") is None:
                base = type(model.get_base_model())
                config["auto_mapping"] = {"base_model_class": base.__name__, "parent_library": base.__module__}
            return {"adapter_config": config}
        if self.card_kind == "grant_model":
            return {"model_class": type(model).__name__, "hub_mixin": isinstance(model, ModelHubMixin)}
        return {}

    def card_run_settings(self) -> dict:
        """Settings of the run that its card shows, by result name (the splats' strategy, GraNT's teacher,
        HaLoRA's evaluation noise). The log history holds none of them; only the examples' closing
        ``save_metrics`` does, so without this a user's own script would get a card without them."""
        return {}

    def card_training_procedure(self) -> dict:
        """The settings that reproduce this run, by name, for its card's "Training procedure" section: read from the
        arguments (the learning rate, its schedule and optimizer; for splats, each parameter group's rate and the means'
        decay), the batch size, seed, length and the optimizer steps trained so far, then the method's own: an
        adapter's rank and its HaLoRA noise and regulariser (its config), GraNT's teacher, ratio and reselection
        schedules, the splats' densification strategy (``card_run_settings``). Settings a run leaves unset are left
        out."""
        args = self.args
        settings: dict = {}
        if self.card_kind != "splat_model":  # a SplatTrainer sets each parameter group's rate (_METHOD_ARGUMENTS)
            settings.update(learning_rate=args.learning_rate, lr_scheduler_type=args.lr_scheduler_type,
                            optim=args.optim, weight_decay=args.weight_decay, warmup_steps=args.warmup_steps or None)
        settings["per_device_train_batch_size"] = args.per_device_train_batch_size
        total_batch_size = args.train_batch_size * args.gradient_accumulation_steps * args.world_size
        if total_batch_size != args.per_device_train_batch_size:
            settings.update(gradient_accumulation_steps=args.gradient_accumulation_steps,
                            total_train_batch_size=total_batch_size)
        settings["seed"] = args.seed
        if args.max_steps > 0:
            settings["max_steps"] = args.max_steps
        else:
            settings["num_train_epochs"] = args.num_train_epochs
        settings["global_step"] = self.state.global_step  # the optimizer steps trained so far
        settings.update({name: getattr(args, name, None) for name in _METHOD_ARGUMENTS.get(self.card_kind, ())})
        if self.card_kind == "splat_model":
            settings["strategy"] = self.card_run_settings().get("strategy")
        adapter_config = self._card_model_args().get("adapter_config") or {}
        settings.update({name: adapter_config.get(name) for name in _ADAPTER_SETTINGS})
        # enums (the scheduler, the optimizer) by their names, as TrainingArguments takes them
        return {name: getattr(value, "value", value) for name, value in settings.items() if value is not None}

    def _hf_eff_card(self, folder: Path, model_name: str | None = None, **user_args):
        results: dict = {}
        best_step = self.state.best_global_step if self.args.load_best_model_at_end else None
        best_evaluations = [entry for entry in self.state.log_history if best_step is not None
                            and entry.get("step") == best_step and any(key.startswith("eval_") for key in entry)]
        for entry in self.state.log_history:
            results.update(entry)
            if "train_runtime" in entry:
                # Training ended by reloading the best checkpoint: its evaluation describes the model now
                # held (a later evaluate() comes after this entry and wins).
                for best in best_evaluations:
                    results.update(best)
        results.update(getattr(self, "_saved_metrics", {}))
        for name, value in self.card_run_settings().items():
            if results.get(name) is None:
                results[name] = value
        # After a dict eval_dataset the card reports the split this names (hf_eff.hub.cards.reported_split)
        results.setdefault("metric_for_best_model", self.args.metric_for_best_model)
        # model_name is only the card's title, as in transformers
        return build_card(self.card_kind, folder, self._hub_repo_and_token()[0], results, revision=self._push_branch,
                          model_name=model_name, training_procedure=self.card_training_procedure(),
                          **user_args, **self._card_model_args())

    def create_model_card(self, language: str | None = None, license: str | None = None,
                          tags: str | list[str] | None = None, model_name: str | None = None,
                          finetuned_from: str | None = None, tasks: str | list[str] | None = None,
                          dataset_tags: str | list[str] | None = None, dataset: str | list[str] | None = None,
                          dataset_args: str | list[str] | None = None) -> None:
        """The hf-eff card, as README.md of ``output_dir``, before or after ``save_model``. ``license``,
        ``finetuned_from`` (the base model) and the datasets the model was trained and evaluated on go into
        the metadata, the model-index and the card's text; ``language`` and ``tags`` into the metadata.
        The datasets are read as transformers reads them: ``dataset_tags`` the Hub ids, ``dataset`` their
        shown names and ``dataset_args`` their configs, at most one per tag; ``dataset`` alone names Hub ids
        (or local data), with ``dataset_args`` their configs. transformers' ``tasks`` is accepted, so
        ``push_to_hub(**kwargs)`` calls work, but not used: the task comes from the run."""
        if not self.is_world_process_zero():
            return
        if dataset_tags is not None:
            dataset = card_datasets(dataset_tags, dataset, dataset_args)
        elif dataset is not None and dataset_args is not None:
            dataset = card_datasets(dataset, dataset_args=dataset_args, tags_label="dataset")
        output_dir = Path(self.args.output_dir)
        card = self._hf_eff_card(output_dir, model_name, license=license, dataset=dataset, base_model=finetuned_from)
        if language is not None:
            card.data.language = language
        if tags is not None:
            extra = [tags] if isinstance(tags, str) else list(tags)
            card.data.tags = list(card.data.tags or []) + [t for t in extra if t not in (card.data.tags or [])]
        output_dir.mkdir(parents=True, exist_ok=True)
        card.save(output_dir / "README.md")

    def init_hf_repo(self, token: str | None = None, private: bool | None = None) -> None:
        """transformers' repo set-up (when the trainer is built with ``push_to_hub=True``, else at the first push),
        then the branch the pushes go to (this push's revision, else ``hub_revision``), created from main if
        missing, as ``Scene.push_to_hub`` does: a push to a new branch works. A repo the token cannot write to is
        refused before training rather than at the first upload: when whoami says so (a token it does not know, a
        read token, another's namespace: ``refuse_unwritable_repo``), else by the branch's creation, with a
        ``hub_revision``."""
        if self.is_world_process_zero():
            refuse_unwritable_repo(transformers_trainer.hf_api(), *self._hub_repo_and_token(token),
                                   given_as="hub_token" if token is None else "push_to_hub's token")
        super().init_hf_repo(token=token, private=private)
        if self.is_world_process_zero():
            self._create_push_branch(self._push_branch, token)

    def _hub_repo_and_token(self, token: str | None = None) -> tuple[str, str | None]:
        """The repo the pushes go to, as transformers' ``init_hf_repo`` names it (the one it created, else
        ``hub_model_id``, else ``output_dir``'s folder name), and the token they push with (``token``, else
        ``hub_token``)."""
        repo_id = self.hub_model_id or self.args.hub_model_id or Path(self.args.output_dir).absolute().name
        return repo_id, token if token is not None else self.args.hub_token

    @property
    def _push_branch(self) -> str | None:
        """The branch this push goes to: its own revision, else hub_revision (None: main)."""
        return getattr(self, "_push_revision", None) or self.args.hub_revision

    def _create_push_branch(self, revision: str | None, token: str | None) -> None:
        repo_id, token = self._hub_repo_and_token(token)
        ensure_branch(transformers_trainer.hf_api(), repo_id, revision, token=token)

    def push_to_hub(self, *args, **kwargs):
        # transformers uploads to this call's revision (else hub_revision) but builds the card without it
        arguments = inspect.signature(transformers_trainer.Trainer.push_to_hub).bind(self, *args, **kwargs).arguments
        self._push_revision = arguments.get("revision")
        try:
            if self.hub_model_id is not None and self.is_world_process_zero():  # else init_hf_repo creates the branch
                self._create_push_branch(self._push_revision, arguments.get("token"))
            with _trainer_uploads(PICKLE_PATTERNS + SAMPLES_PATTERNS, list(self.hub_model_side_files)):
                return super().push_to_hub(*args, **kwargs)
        finally:
            self._push_revision = None

    def _push_from_checkpoint(self, checkpoint_folder: str) -> None:
        if self.is_world_process_zero() and self.args.hub_strategy != HubStrategy.END:
            # The checkpoint's README.md is the model's own card (PEFT's, or PyTorchModelHubMixin's with
            # a "<repo_id>" placeholder); the output folder, pushed beside it, gets the same hf-eff card.
            card_path = Path(checkpoint_folder) / "README.md"
            self._hf_eff_card(Path(checkpoint_folder)).save(card_path)
            shutil.copy(card_path, Path(self.args.output_dir) / "README.md")
            # Where transformers copies the checkpoint's model files into the output folder to push them, and only
            # then: a push still running skips this one, and must not see the output folder's files change.
            if self.args.hub_always_push or self.push_in_progress is None or self.push_in_progress.is_done():
                for name in self.hub_model_side_files:
                    _mirror_file(Path(checkpoint_folder) / name, Path(self.args.output_dir) / name)
        with _trainer_uploads(PICKLE_PATTERNS + SAMPLES_PATTERNS, list(self.hub_model_side_files)):
            super()._push_from_checkpoint(checkpoint_folder)
