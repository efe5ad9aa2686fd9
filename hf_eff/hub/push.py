"""`hf-eff push OUTPUT_DIR REPO_ID`: upload a finished example run, a saved model or a saved scene, with its card, to
the Hub."""

from __future__ import annotations

import contextlib
import fnmatch
import json
import os
import shutil
import tempfile
from concurrent.futures import Future
from pathlib import Path, PureWindowsPath

from huggingface_hub import HfApi, constants, get_token
from huggingface_hub.errors import (
    HfHubHTTPError,
    HFValidationError,
    HTTPError,
    OfflineModeIsEnabled,
)
from huggingface_hub.hf_api import DEFAULT_IGNORE_PATTERNS
from huggingface_hub.utils import filter_repo_objects, validate_repo_id
from transformers.trainer import TRAINER_STATE_NAME
from transformers.trainer_utils import get_last_checkpoint

from hf_eff.hub.cards import (
    eval_prefix,
    grant_card,
    halora_card,
    regulariser_description,
    reported_split,
    shown_name,
    splat_card,
    training_noise_description,
)

RESULTS_FILE = "all_results.json"
# Pickles that only a full (unsafe) torch.load / pickle.load reads, such as the Trainer's
# training_args.bin: no hf-eff upload sends them, neither `hf-eff push` nor the Trainers' own pushes.
PICKLE_PATTERNS = ["*.bin", "*.pkl", "*.ckpt"]
# Per-question evaluation samples (HaLoRA's log_samples) quote the evaluation questions, which may be private:
# as lm-evaluation-harness, which pushes its samples only when asked, no hf-eff upload sends them.
SAMPLES_PATTERNS = ["samples_*.jsonl"]
# Training leftovers that do not belong in a model repo: checkpoints (the Trainer pushes those
# itself with hub_strategy="checkpoint"), TensorBoard logs and the Trainer's states (*.pt, *.pth).
IGNORE_PATTERNS = ["checkpoint-*", "last-checkpoint/*", "runs/*", "*.pt", "*.pth", *PICKLE_PATTERNS, *SAMPLES_PATTERNS]
# The JSON files that record paths as given: hf-eff's (the examples' data, scene and base model in *_results.json,
# GraNT's config.json data_split, HaLoRA's training_data_splits.json), PEFT's adapter_config.json (its base model: a
# local folder, if the run's base was one) and transformers' trainer_state.json (its best checkpoint's folder). Every
# hf-eff upload sends them with each local path reduced to its last part, as the card names it (``upload_folder``);
# the local files keep the paths, so that a local rerun still finds its data and a resumed run its best checkpoint.
PATH_RECORDING_PATTERNS = ["*_results.json", "training_data_splits.json", "config.json", "adapter_config.json",
                           "trainer_state.json"]
# The keys those files record a path under (at any depth: data_split is nested). Only their values are rewritten, and
# only local paths among them (``shown_name``): other strings, such as target_names "logS(mol/L)", are names, not
# paths, and a Hub id (or the built-in base's name, which load_base_model records) loads anywhere.
PATH_KEYS = frozenset({"dataset_name", "dataset", "scene", "base_model", "model_name_or_path",
                       "adapter_name_or_path", "predict_file", "base_model_name_or_path", "best_model_checkpoint"})
# Keys whose relative paths stay whole: transformers resolves a resumed run's best checkpoint ("out/checkpoint-2", the
# output_dir as given) against the working directory, and a relative path names no folder of this machine.
ABSOLUTE_ONLY_KEYS = frozenset({"best_model_checkpoint"})


def _is_absolute(path: str) -> bool:
    """Whether ``path`` starts at a drive or a root, in POSIX or Windows spelling (Windows reads both separators)."""
    return bool(PureWindowsPath(path).anchor)


def _shown_path(key: str, path: str) -> str:
    if key in ABSOLUTE_ONLY_KEYS and not _is_absolute(path):
        return path
    return shown_name(path)


def without_local_paths(value):
    """A parsed JSON ``value`` with every string under a ``PATH_KEYS`` key that is a local path reduced to what a card
    shows of it (``hf_eff.hub.cards.shown_name``: its last part), but a relative one under an ``ABSOLUTE_ONLY_KEYS``
    key; Hub ids and all other values stay as they are."""
    if isinstance(value, dict):
        return {key: _shown_path(key, item) if key in PATH_KEYS and isinstance(item, str) else without_local_paths(item)
                for key, item in value.items()}
    if isinstance(value, list):
        return [without_local_paths(item) for item in value]
    return value


def _without_local_paths_text(path: Path) -> str | None:
    """The text ``path`` is uploaded as when it records local paths; None when it records none (or is no JSON:
    not ours to rewrite)."""
    try:
        recorded = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    shown = without_local_paths(recorded)
    return json.dumps(shown, indent=2) + "\n" if shown != recorded else None


def _staged_without_local_paths(folder: Path, allow_patterns, ignore_patterns) -> Path | None:
    """A temporary folder that mirrors the files of ``folder`` that an upload with these patterns sends (links to
    them), but for path-recording JSON files, written there without their local paths; None when no file records
    any, so the folder itself is uploaded."""
    files = {path.relative_to(folder).as_posix(): path for path in sorted(folder.rglob("*")) if path.is_file()}
    ignore = [ignore_patterns] if isinstance(ignore_patterns, str) else list(ignore_patterns or [])
    # as upload_folder filters them (its defaults leave .git out)
    uploaded = list(filter_repo_objects(files, allow_patterns=allow_patterns,
                                        ignore_patterns=ignore + DEFAULT_IGNORE_PATTERNS))
    rewritten = {}
    for name in uploaded:
        if any(fnmatch.fnmatch(Path(name).name, pattern) for pattern in PATH_RECORDING_PATTERNS):
            text = _without_local_paths_text(files[name])
            if text is not None:
                rewritten[name] = text
    if not rewritten:
        return None
    staged = Path(tempfile.mkdtemp(prefix="hf-eff-upload-"))
    try:
        for name in uploaded:
            target = staged / name
            target.parent.mkdir(parents=True, exist_ok=True)
            if name in rewritten:
                target.write_text(rewritten[name])
                continue
            try:
                os.symlink(files[name].resolve(), target)
            except OSError:  # no symlinks here (Windows without the privilege): a copy
                shutil.copy2(files[name], target)
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)
        raise
    return staged


def ensure_branch(api: HfApi, repo_id: str, revision: str | None, repo_type: str = "model", token=None) -> None:
    """Creates ``revision`` from main if missing, as datasets' push_to_hub does, so that a push to a new branch
    works; None (main) and a PR ref (the Hub's to create) are left alone."""
    if revision is not None and not revision.startswith("refs/pr/"):
        api.create_branch(repo_id, branch=revision, repo_type=repo_type, token=token, exist_ok=True)


def _token_origin(given_as: str, token) -> tuple[str, str]:
    """(where the token a request sends came from, how to replace it): ``given_as`` (what the caller calls the token it
    was given) when ``token`` is one, else the source holding the token ``get_token`` answers, found by its value, as
    huggingface_hub's versions try their sources in other orders: HF_TOKEN, HUGGING_FACE_HUB_TOKEN, the stored login,
    or another source of get_token's (an OIDC exchange, a Colab secret), named as such."""
    if token is not None:
        return given_as, "pass a valid one there"
    sent = get_token()
    for variable in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
        if sent and os.environ.get(variable, "").strip() == sent:
            return variable, f"set {variable} to a valid one, or unset it to use the stored login"
    try:
        stored = Path(constants.HF_TOKEN_PATH).read_text().strip()
    except OSError:
        stored = None
    if sent and stored == sent:
        return "the stored login", "log in again with `hf auth login`"
    return "huggingface_hub's get_token", "replace the token that source gives, or pass one"


def whoami_or_refuse_invalid_token(api: HfApi, repo_id: str, token=None, given_as: str = "token") -> dict | None:
    """The Hub's whoami for ``token`` (default: ``api``'s, else HF_TOKEN or the stored login); None when whoami
    cannot answer (offline, no token, a server without the route, a server error). Its 401 says that the Hub knows no
    such token: ``PermissionError`` naming the push to ``repo_id`` and where the token came from (``given_as``: what
    the caller calls a token it was given, such as "--token"), never the token itself."""
    try:
        return api.whoami(token=token)
    except HfHubHTTPError as error:
        if getattr(error.response, "status_code", None) != 401:
            return None
        origin, fix = _token_origin(given_as, token if token is not None else api.token)
        raise PermissionError(f"cannot push to {repo_id}: the Hugging Face token from {origin} is not valid (the "
                              f"Hub's whoami answered 401 Unauthorized); {fix}") from None
    except (OSError, HTTPError, ValueError):  # no answer
        return None


def refuse_unwritable_repo(api: HfApi, repo_id: str, token=None, repo_type: str = "model",
                           given_as: str = "token", identity: dict | None = None) -> None:
    """Raises ``PermissionError`` when the Hub's whoami makes it certain that ``token`` (default: ``api``'s, else the
    stored one) cannot push to the ``repo_type`` repo ``repo_id``: a token the Hub does not know (whoami's 401, named
    by its source: ``given_as`` for a ``token`` given, HF_TOKEN or the stored login otherwise); a read token; a repo
    in an organisation where its user's role (whoami's ``roleInOrg``) is "read", whatever the token; or a write token
    and a repo that exists in a namespace that is neither its user's nor one of their organisations'.
    ``create_repo(exist_ok=True)`` accepts an existing repo in each case but the first, so without this a push would
    fail only at its first upload. Says nothing when whoami cannot answer (offline, no token, a server without the
    route, a server error) or cannot tell (a fine-grained token, whose scopes it does not read; an organisation listed
    without the user's role). ``identity``: whoami's answer for ``token`` when the caller has it (one push asks
    once: the Hub rate-limits whoami, and a 429 would read as no answer); else whoami is asked here."""
    if identity is None:
        identity = whoami_or_refuse_invalid_token(api, repo_id, token, given_as)
    try:
        role = identity["auth"]["accessToken"]["role"]
        user = identity["name"]
        org_roles = {org["name"].casefold(): org.get("roleInOrg") for org in identity.get("orgs") or []}
        orgs = [org["name"] for org in identity.get("orgs") or []]
    except (KeyError, TypeError, AttributeError):  # no answer (None), or not the Hub's shape
        return
    if "/" not in repo_id:  # the Hub creates a bare name under the user: the refusals name that repo
        repo_id = f"{user}/{repo_id}"
    if role == "read":
        raise PermissionError(f"cannot push to {repo_id}: the Hugging Face token of {user} is a read token (role "
                              "'read'); give a write token (a trainer's hub_token, hf-eff push's --token, HF_TOKEN or "
                              "`hf auth login`)")
    namespace = repo_id.split("/")[0]
    if org_roles.get(namespace.casefold()) == "read":
        raise PermissionError(f"cannot push to {repo_id}: {user}'s role in the organisation {namespace} is 'read', "
                              "which writes nothing there; ask an admin of it for the 'write' role, or push to a "
                              "repo of your own (a trainer's hub_model_id, hf-eff push's REPO_ID)")
    owns = namespace.casefold() in {name.casefold() for name in (user, *orgs)}  # the Hub's names ignore case
    if role == "write" and not owns and _repo_exists(api, repo_id, repo_type, token):
        owned = ", ".join([user, *orgs])
        raise PermissionError(f"cannot push to {repo_id}: it belongs to {namespace}, and the token of {user} writes "
                              f"only to {owned}; push to a repo there (a trainer's hub_model_id, hf-eff push's "
                              "REPO_ID)")


def refuse_offline(repo_id: str) -> None:
    """Offline (``HF_HUB_OFFLINE``) every hf-eff push is refused before it saves, creates or asks anything: its first
    Hub call would fail anyway, with huggingface_hub's bare OfflineModeIsEnabled."""
    if constants.is_offline_mode():
        raise OfflineModeIsEnabled(f"cannot push to {repo_id}: offline mode is on (HF_HUB_OFFLINE)")


def _repo_exists(api: HfApi, repo_id: str, repo_type: str, token) -> bool:
    try:
        return api.repo_exists(repo_id, repo_type=repo_type, token=token)
    except (OSError, HTTPError):
        return False


def upload_folder(api: HfApi, *, folder_path, allow_patterns=None, ignore_patterns=None, **kwargs):
    """``api.upload_folder`` (same arguments, ``run_as_future`` too), with the ``PATH_RECORDING_PATTERNS`` files
    uploaded without local paths (``without_local_paths``) and left unchanged in ``folder_path``. The one upload of
    ``hf-eff push`` and of the hf-eff Trainers' pushes (``HubCardTrainerMixin``)."""
    staged = _staged_without_local_paths(Path(folder_path), allow_patterns, ignore_patterns)
    if staged is None:
        return api.upload_folder(folder_path=folder_path, allow_patterns=allow_patterns,
                                 ignore_patterns=ignore_patterns, **kwargs)
    try:
        result = api.upload_folder(folder_path=staged, allow_patterns=allow_patterns,
                                   ignore_patterns=ignore_patterns, **kwargs)
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)
        raise
    if isinstance(result, Future):  # run_as_future: the upload reads the files later, in its own thread
        result.add_done_callback(lambda _: shutil.rmtree(staged, ignore_errors=True))
    else:
        shutil.rmtree(staged, ignore_errors=True)
    return result


@contextlib.contextmanager
def created_repo_deleted_on_failure(api: HfApi, repo_id: str, private: bool | None = None, token=None):
    """Creates the model repo ``repo_id`` if missing and yields its ``RepoUrl``; when the push inside fails, a repo
    created here is deleted, so a failed first push leaves no empty repo behind. A repo that existed stays."""
    # Created here only if create_repo without exist_ok succeeds: a repo whose existence could not be read is
    # never taken for a new one, and so never deleted.
    try:
        url, created = api.create_repo(repo_id, private=private, exist_ok=False, token=token), True
    except HfHubHTTPError as error:
        if error.response is None or error.response.status_code not in (403, 409):  # 403: exists, no create right
            raise
        url, created = api.create_repo(repo_id, private=private, exist_ok=True, token=token), False
    try:
        yield url
    except BaseException:
        if created:
            with contextlib.suppress(OSError):  # the push's own error is the one to report
                api.delete_repo(url.repo_id, token=token, missing_ok=True)
        raise


class PushesWithoutLocalPaths:
    """For ``PyTorchModelHubMixin`` models (GrantGCN, GaussianModel): ``push_to_hub`` as the mixin's, but through
    ``upload_folder`` above, so that the ``data_split`` config.json records goes up without local paths, and with
    the repo checked by the Hub's whoami before it is created, as ``hf-eff push`` checks its own
    (``refuse_unwritable_repo``); offline, refused before the model is saved (``refuse_offline``). The card is the one
    ``hf-eff push`` writes for the saved folder (``build_card``: its tags, pipeline tag, target or class names and the
    no-results note), with loading lines that name the repo and ``branch``, in place of the mixin's template card,
    whose ``<repo_id>`` placeholder is for a local save. ``branch`` is created from main if missing (``ensure_branch``),
    as the trainers' and ``Scene``'s pushes do; a push that fails after creating the repo deletes it, so a failed first
    push leaves no empty repo. Written out because the mixin's ``push_to_hub`` has no hook between its
    ``save_pretrained`` and its upload."""

    def push_to_hub(self, repo_id: str, *, config=None, commit_message: str = "Push model using huggingface_hub.",
                    private: bool | None = None, token: str | None = None, branch: str | None = None,
                    create_pr: bool | None = None, allow_patterns=None, ignore_patterns=None, delete_patterns=None,
                    model_card_kwargs: dict | None = None) -> str:
        if model_card_kwargs:  # the mixin's template variables: the card pushed here has no template to fill
            raise ValueError(
                f"{type(self).__name__}.push_to_hub: model_card_kwargs {sorted(model_card_kwargs)} would be dropped: "
                "the pushed card is the one `hf-eff push` writes, built from the saved folder's config.json; to set "
                "its license, save_pretrained the model and run `hf-eff push FOLDER REPO_ID --license ...`")
        refuse_offline(repo_id)
        api = HfApi(token=token)
        with tempfile.TemporaryDirectory() as tmp:
            saved = Path(tmp) / "model"
            # saved before the repo is created: a model that refuses to save leaves no empty repo behind
            self.save_pretrained(saved, config=config)
            kind, saved_config = _detect_artifact(saved)
            refuse_unwritable_repo(api, repo_id, token, given_as=f"{type(self).__name__}.push_to_hub's token")
            with created_repo_deleted_on_failure(api, repo_id, private, token) as url:
                ensure_branch(api, url.repo_id, branch, token=token)
                build_card(kind, saved, url.repo_id, model_class=type(self).__name__, revision=branch,
                           config=saved_config).save(saved / "README.md")
                return upload_folder(api, repo_id=url.repo_id, repo_type="model", folder_path=saved,
                                     commit_message=commit_message, revision=branch, create_pr=create_pr,
                                     allow_patterns=allow_patterns, ignore_patterns=ignore_patterns,
                                     delete_patterns=delete_patterns)


def _read_json_object(path: Path, what: str, fix: str) -> dict:
    """``path`` parsed, with an error naming the file when it is no JSON object: ``what`` it should hold ("model
    settings") and ``fix``, how to mend it when it is no JSON at all."""
    try:
        parsed = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path} is not JSON ({error}): {fix}") from None
    if not isinstance(parsed, dict):
        raise ValueError(f"{path} must hold a JSON object of {what}, got {type(parsed).__name__}")
    return parsed


def read_config(output_dir: Path) -> dict:
    """The model's config.json in ``output_dir``, parsed, with an error naming the file when it is no JSON object."""
    return _read_json_object(Path(output_dir) / "config.json", "model settings",
                             "a GrantGCN or GaussianModel folder needs the config.json its save_pretrained wrote")


def read_adapter_config(path: Path) -> dict:
    """A HaLoRA adapter's adapter_config.json, parsed, with an error naming the file when it is no JSON object."""
    return _read_json_object(path, "adapter settings", "the card reads the adapter's base model and noise settings "
                             "from it; save the adapter again (save_pretrained writes it)")


def recorded_global_step(output_dir: Path) -> int | None:
    """The optimizer steps the run of ``output_dir`` trained, as transformers records them: its trainer_state.json
    (``Trainer.save_state``), else its last checkpoint's (a Trainer with a save strategy saves one at the end of
    training); None where neither records them (the Trainer's metrics in all_results.json count no steps)."""
    last_checkpoint = get_last_checkpoint(str(output_dir))
    for folder in (output_dir, *([Path(last_checkpoint)] if last_checkpoint else [])):
        path = folder / TRAINER_STATE_NAME
        if path.is_file():
            step = _read_json_object(path, "training state", "the card reads the run's step count from it; move it "
                                     "out of the folder to push a card without it").get("global_step")
            return step if isinstance(step, int) and not isinstance(step, bool) else None
    return None


def detect_artifact(output_dir: Path) -> str:
    """Which artifact an example run folder holds, from the files the examples save."""
    return _detect_artifact(Path(output_dir))[0]


def _detect_artifact(output_dir: Path) -> tuple[str, dict | None]:
    """The artifact kind and, for a model, its parsed config.json (which the card reads too)."""
    if not output_dir.is_dir():
        raise FileNotFoundError(f"{output_dir} is not a folder; pass the output_dir of a finished example run")
    if (output_dir / "adapter_config.json").is_file():
        return "halora_adapter", None
    if (output_dir / "model.safetensors").is_file() and (output_dir / "config.json").is_file():
        # Both are PyTorchModelHubMixin models; GaussianModel's config is its SH degree and size.
        config = read_config(output_dir)
        return ("splat_model" if "sh_degree" in config else "grant_model"), config
    if (output_dir / "views").is_dir():
        return "scene_dataset", None
    from hf_eff.splat.converters.colmap import find_colmap_model

    if any((output_dir / name).is_file() for name in ("transforms.json", "transforms_train.json")) or (
            find_colmap_model(output_dir) is not None):
        # load_scene reads these folders, so a user may expect push to take them too: say how
        raise ValueError(
            f"{output_dir} is a COLMAP or NeRF folder, not a stored scene: convert it first with "
            "`load_scene(folder).save(scene_folder)` and push that folder, or call "
            "`load_scene(folder).push_to_hub(repo_id)`"
        )
    raise ValueError(
        f"{output_dir} holds no hf-eff artifact: expected adapter_config.json (HaLoRA adapter), "
        "config.json + model.safetensors (GrantGCN or GaussianModel) or views/ (a scene)"
    )


def read_results(output_dir: Path) -> dict | None:
    """The run's ``all_results.json``, parsed; None for a folder without one (a model's own ``save_pretrained``); an
    error naming the file when it is no JSON object."""
    path = output_dir / RESULTS_FILE
    if not path.is_file():
        return None
    return _read_json_object(path, "metrics", "the card reads the run's metrics from it; repair it, or move it out "
                             "of the folder to push a card without metrics")


# What a card shows of a saved model's config.json when no run recorded results: {config key: result name}.
SAVED_SETTINGS = {
    "grant_model": {"task": "task", "target_names": "target_columns", "class_names": "class_names"},
    "splat_model": {"rasterize_mode": "rasterize_mode"},
}
NO_RESULTS_NOTE = ("No evaluation results were recorded: this card was built from the saved model's configuration "
                   "alone, without a training run's `all_results.json`, so it reports no metrics.")


def build_card(kind: str, output_dir: Path, repo_id: str, results: dict | None = None, *,
               license: str | None = None, dataset: str | list | None = None, base_model: str | None = None,
               adapter_config: dict | None = None, model_class: str = "GrantGCN", hub_mixin: bool = True,
               revision: str | None = None, model_name: str | None = None, config: dict | None = None,
               training_procedure: dict | None = None):
    """The filled card of a model run folder, from ``results`` or else its ``all_results.json``; a splat model's
    reads ``config`` (the folder's config.json, parsed; read here when not given). A folder without results (what a
    model's ``save_pretrained`` wrote) gets a card from its configs (an adapter's, GraNT's task and target or class
    names, the splats' rasterize mode) that says no evaluation results were recorded: no metrics, no model-index. A
    splat folder holding pose_adjustment.safetensors gets the card's pose_opt line, with results or without.
    ``revision``: the branch it is pushed to, which its loading lines then name; ``model_name``: the card's
    title and model-index name (a Trainer's ``push_to_hub(model_name=...)``; default: the repo's name, as a Trainer's
    push names it).

    ``license``, ``dataset`` and ``base_model`` (a Trainer's ``finetuned_from``) are what the user said
    of the run, and win over what the results say. An adapter's card reads ``adapter_config`` (a Trainer
    passes its model's config: the model may not be saved yet, as when TRL's trainers write a checkpoint's
    card before its files), else the folder's adapter_config.json. ``model_class`` and ``hub_mixin``: a
    GraNT model's class (``grant_card``). ``training_procedure``: a trainer's settings of the run, for the card's
    "Training procedure" section (``hf_eff.hub.cards.training_procedure_text``)."""
    output_dir = Path(output_dir)
    if results is None:
        results = read_results(output_dir)
    note = {} if results is not None else {"no_results_note": NO_RESULTS_NOTE}
    if results is None:
        if config is None and kind in SAVED_SETTINGS:
            config = read_config(output_dir)
        results = {result: config[key] for key, result in SAVED_SETTINGS.get(kind, {}).items()
                   if config.get(key) is not None}
    if base_model is not None:
        results = {**results, "base_model": base_model}
    if kind == "halora_adapter":
        config_file = output_dir / "adapter_config.json"
        if adapter_config is None:
            if not config_file.is_file():
                raise FileNotFoundError(f"{config_file} is missing and no adapter config was given: save the "
                                        "adapter first, or pass its config as adapter_config")
            adapter_config = read_adapter_config(config_file)
        return halora_card(results, repo_id, base_model=adapter_config.get("base_model_name_or_path"),
                           peft_type=str(adapter_config.get("peft_type", "HALORA")),
                           tile_size=adapter_config.get("noise_tile_size"),
                           regulariser=regulariser_description(adapter_config.get("reg_weight"),
                                                               adapter_config.get("reg_norm")),
                           task_type=adapter_config.get("task_type"), auto_mapping=adapter_config.get("auto_mapping"),
                           # how many noise draws the run trained under: a trainer's global_step, else the folder's
                           training_noise=training_noise_description(
                               adapter_config, training_procedure.get("global_step") if training_procedure
                               else recorded_global_step(output_dir)),
                           license=license, dataset=dataset, revision=revision, model_name=model_name,
                           training_procedure=training_procedure, **note)
    if kind == "grant_model":
        return grant_card(results, repo_id, license=license, dataset=dataset, model_class=model_class,
                          hub_mixin=hub_mixin, revision=revision, model_name=model_name,
                          training_procedure=training_procedure, **note)
    if kind == "splat_model":
        # After a dict eval_dataset, the renders of the split the card reports: another split may be training views.
        other_renders = {f"{eval_prefix(split)}renders" for split in reported_split(results)[1]}

        def newest(pattern: str, preferred: str) -> str | None:
            # Without the preferred file, the last one written: the eval renders of the trained model,
            # not the first evaluation's (step-000010.png sorts first by name).
            found = [p.relative_to(output_dir) for p in output_dir.rglob(pattern)]
            found = [p for p in found if not any(part.startswith(("checkpoint-", "runs")) or part in other_renders
                                                 for part in p.parts)]
            if not found:
                return None
            if Path(preferred) in found:
                return preferred
            return max(found, key=lambda p: ((output_dir / p).stat().st_mtime_ns, p.as_posix())).as_posix()

        trajectory = "trajectory.gif" if (output_dir / "trajectory.gif").is_file() else None
        if config is None and (output_dir / "config.json").is_file():
            config = read_config(output_dir)
        normalized = config is not None and config.get("world_to_normalized") is not None
        # here, not at the top: a HaLoRA or GraNT push must not import the splat package
        from hf_eff.splat.pose_adjustment import POSE_ADJUSTMENT_NAME

        if (output_dir / POSE_ADJUSTMENT_NAME).is_file():  # pose_opt's only record where no results say it
            results = {"pose_opt": True, **results}
        return splat_card(results, repo_id, ply=newest("*.ply", "splats.ply"), preview=newest("*.png", "preview.png"),
                          trajectory=trajectory, license=license, dataset=dataset, revision=revision,
                          model_name=model_name, normalized=normalized, training_procedure=training_procedure, **note)
    raise ValueError(f"no model card for artifact kind {kind!r}")


def namespaced_repo_id(api: HfApi, repo_id: str, given_as: str = "token",
                       identity: dict | None = None) -> tuple[str, dict | None]:
    """(``repo_id`` as USER/NAME, whoami's answer or None when it was not asked): a bare NAME gets USER, the token's
    user (whoami's name), as transformers names a trainer's bare ``hub_model_id`` from the repo it creates.
    ``create_repo`` puts a bare name under the user, but uploads and the card's loading lines need the whole id. A
    bare name is refused (``ValueError``) when whoami cannot answer; a token whoami does not know, as
    ``whoami_or_refuse_invalid_token`` says (``given_as``). The answer goes on to ``refuse_unwritable_repo``.
    ``identity``: whoami's answer when the caller has it; else whoami is asked here (for a bare name only)."""
    if "/" in repo_id:
        return repo_id, identity
    if identity is None:
        identity = whoami_or_refuse_invalid_token(api, repo_id, given_as=given_as)
    user = identity.get("name") if isinstance(identity, dict) else None
    if not isinstance(user, str) or not user:
        raise ValueError(f"the repo id {repo_id!r} names no user or organisation, and the Hub's whoami, which "
                         "names the token's user, did not answer: give the repo as USER/NAME")
    return f"{user}/{repo_id}", identity


def model_side_files(kind: str) -> list[str]:
    """The files beside a model of ``kind`` that only some runs write (``HubCardTrainerMixin.hub_model_side_files``):
    a push deletes the repo's copy where the folder has none, so that an earlier run's do not sit beside this model."""
    if kind != "splat_model":
        return []
    # here, not at the top: a HaLoRA or GraNT push must not import the splat package
    from hf_eff.splat.pose_adjustment import POSE_ADJUSTMENT_NAME

    return [POSE_ADJUSTMENT_NAME]


def push_output_dir(output_dir, repo_id: str, private: bool = False, token: str | None = None,
                    kind: str | None = None, commit_message: str | None = None, license: str | None = None,
                    revision: str | None = None, given_as: str = "push_output_dir's token") -> str:
    """Builds the card from ``all_results.json`` (a folder without one, a model's own ``save_pretrained``, from its
    configs, saying that no evaluation results were recorded: ``build_card``), uploads the folder and returns the
    repo URL; a scene folder (``Scene.save``'s) goes to a dataset repo through ``Scene.push_to_hub``, with the scene
    card. A bare ``repo_id`` (NAME) is the token's user's (``namespaced_repo_id``).

    ``token`` defaults to ``HF_TOKEN`` or the stored login; offline (``HF_HUB_OFFLINE``) the push is refused before
    the Hub is asked (``OfflineModeIsEnabled``); a repo that whoami says it cannot write to, or a token it
    does not know, is refused first (``refuse_unwritable_repo``: ``PermissionError``, naming a given token by
    ``given_as``, as hf-eff push's "--token"). The card is written into the run
    folder as README.md (replacing the one ``save_pretrained`` wrote; put back when the upload fails) before the upload,
    which sends the ``PATH_RECORDING_PATTERNS`` files without local paths (``upload_folder``). ``license``:
    the card's license (a Hub license id); without it only an adapter of the built-in base states one.
    ``revision``: the branch pushed to, created from main if missing (as ``Scene.push_to_hub`` does); the card's
    loading lines name it. A failed push deletes the repo it created (``created_repo_deleted_on_failure``).
    """
    output_dir = Path(output_dir)
    kind, config = (kind, None) if kind else _detect_artifact(output_dir)
    try:
        validate_repo_id(repo_id)  # before the Hub is asked: its answer to a malformed id is a bare 400
    except HFValidationError as error:
        # its hint names a Python argument; push chooses the repo type itself
        reason = str(error).replace(" Use `repo_type` argument if needed.", "")
        raise ValueError(f"{reason} (the repo type is the artifact's: a scene goes to a dataset repo, "
                         "so give no 'datasets/' prefix or URL)") from None
    if (token or get_token()) is None:
        raise PermissionError("no Hugging Face token: pass --token, set HF_TOKEN or run `hf auth login`")
    # Said before whoami, whose failure offline would read as no answer about a bare name's user.
    refuse_offline(repo_id)
    message = commit_message or f"Upload {kind.replace('_', ' ')} with hf-eff"
    api = HfApi(token=token)
    repo_id, identity = namespaced_repo_id(api, repo_id, given_as)  # before the card, whose loading lines name it
    # Before any repo is created: what is uploaded is read (the scene, or the run's card and results), so a folder
    # that does not load is refused; then whoami's answer (the one that named a bare name's user) refuses a repo the
    # token cannot write to, before the card replaces the run's README.md, not at the first upload.
    if kind == "scene_dataset":
        from hf_eff.splat import load_scene

        scene = load_scene(output_dir)
        # The scene's own push: one place checks the repo (with whoami's answer, if a bare name asked it), stages,
        # carries the card and replaces an earlier scene's shards.
        commit = scene._push_to_hub(repo_id, private=private, token=token, commit_message=message, license=license,
                                    revision=revision, given_as=given_as, identity=identity)
        return str(commit.repo_url)
    card = build_card(kind, output_dir, repo_id, license=license, revision=revision, config=config)
    refuse_unwritable_repo(api, repo_id, given_as=given_as, identity=identity)
    readme = output_dir / "README.md"
    earlier_readme = readme.read_bytes() if readme.is_file() else None
    with created_repo_deleted_on_failure(api, repo_id, private) as url:
        ensure_branch(api, repo_id, revision)
        try:
            card.save(readme)
            upload_folder(api, repo_id=repo_id, folder_path=output_dir, commit_message=message,
                          ignore_patterns=list(IGNORE_PATTERNS), revision=revision,
                          delete_patterns=model_side_files(kind) or None)
        except BaseException:
            # A failed card write or upload (the Hub unreachable or refusing, an interrupt) leaves the folder as it was.
            if earlier_readme is None:
                readme.unlink(missing_ok=True)
            else:
                readme.write_bytes(earlier_readme)
            raise
    return str(url)

