"""The commit a Hub dataset was read at: a run records it beside the revision it was given (a branch or tag moves), and
a later run reads that commit, online or, from the cache, offline."""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

import datasets
from huggingface_hub import HfApi

COMMIT_HASH = re.compile(r"[0-9a-f]{40}")


def cached_commits(splits: Iterable[datasets.Dataset]) -> set[str]:
    """The commits named by the cache folders holding ``splits``' files. datasets prepares a Hub dataset in a folder
    named by the commit it resolved the revision to (its DatasetModule hash), also offline for the cached copy it
    reads; selections and shuffles of it keep their indices beside those files."""
    folders = {Path(file["filename"]).parent.name for split in splits for file in split.cache_files}
    return {folder for folder in folders if COMMIT_HASH.fullmatch(folder)}


OFFLINE = "offline (HF_HUB_OFFLINE or HF_DATASETS_OFFLINE)"


def check_offline_revision(revision: str | None) -> None:
    """Offline, datasets reads the latest cached copy of a Hub dataset whatever the revision asked for, and the cache
    cannot tell which commit a branch or tag names now: only a full commit hash can be checked (`check_commit_read`).
    Called before the load."""
    if datasets.config.HF_HUB_OFFLINE and revision is not None and not COMMIT_HASH.fullmatch(revision):
        raise ValueError(f"--dataset_revision {revision}: {OFFLINE} the datasets cache cannot show which commit this "
                         "branch or tag names; go online, or pin the dataset's 40-character commit hash")


def read_commit(splits: Iterable[datasets.Dataset], repo_id: str, revision: str | None) -> str | None:
    """The commit of the Hub dataset ``repo_id`` that ``splits`` (what ``datasets.load_dataset(repo_id,
    revision=revision)`` returned, or datasets drawn from it) were read at.

    Their cache folder names it (`cached_commits`): no Hub call, and no push to the branch since the load can change the
    answer. Data held in memory (HF_DATASETS_IN_MEMORY_MAX_SIZE, keep_in_memory) has no files: offline nothing tells
    its commit (None: datasets read the latest cached copy, whatever the revision); online, a ``revision`` that is a
    commit hash is its own commit, and else the Hub's ``dataset_info`` names the commit the revision is at now (the
    documented way; a push between the load and this call would be missed)."""
    commits = cached_commits(splits)
    if len(commits) == 1:
        return commits.pop()
    if datasets.config.HF_HUB_OFFLINE:  # set by HF_HUB_OFFLINE or HF_DATASETS_OFFLINE
        return None
    if revision is not None and COMMIT_HASH.fullmatch(revision):
        return revision
    return HfApi().dataset_info(repo_id, revision=revision).sha


def check_commit_read(commit: str | None, revision: str | None, source: str) -> None:
    """Offline, refuses data of ``source`` read at another ``commit`` (`read_commit`; None: unknown) than the commit
    hash ``revision`` asked for (`check_offline_revision` refused any other revision): datasets then reads the latest
    cached copy whatever the revision. Online it reads the revision asked for."""
    if datasets.config.HF_HUB_OFFLINE and revision is not None and commit != revision:
        read = f"of commit {commit}" if commit else "held in memory, with no cache folder to show its commit"
        raise ValueError(f"--dataset_revision {revision}: {OFFLINE} the cached copy of {source} read is {read}; go "
                         "online, or pin the commit cached")


def recorded_revision(record: dict) -> str | None:
    """The revision to read a Hub dataset at again as a run's ``record`` (its data split) saw it: the commit it records,
    else (a record written before commits were kept) the revision it was given."""
    return record.get("dataset_commit") or record.get("dataset_revision")


def same_revision(recorded: dict, settings: dict) -> bool:
    """Whether two data splits read a Hub dataset at the same revision: at the same commit where both record one (a
    branch named alike may have moved; a commit given by hash and a branch at it are alike), else by the revision
    given."""
    if recorded.get("dataset_commit") and settings.get("dataset_commit"):
        return recorded["dataset_commit"] == settings["dataset_commit"]
    return recorded.get("dataset_revision") == settings.get("dataset_revision")


def shown_revision(record: dict) -> str:
    """A data split's revision as a warning names it: as given (no revision: the default), with the commit it was at."""
    revision, commit = record.get("dataset_revision"), record.get("dataset_commit")
    given = "the default" if revision is None else revision
    return given if commit is None or commit == revision else f"{given} at commit {commit}"


def commit_sentence(results: dict) -> str | None:
    """A card's sentence naming the commit a run read its Hub dataset at (``dataset_commit`` in its results, beside the
    ``dataset_revision`` given) and the call that reads the same rows; None for a run that records no commit."""
    commit, name = results.get("dataset_commit"), results.get("dataset_name")
    if not commit or not isinstance(name, str):
        return None
    config, revision = results.get("dataset_config_name"), results.get("dataset_revision")
    at = f"revision `{revision}`, commit `{commit}`" if revision and revision != commit else f"commit `{commit}`"
    arguments = ", ".join([f'"{name}"', *([f'"{config}"'] if config else []), f'revision="{commit}"'])
    return (f"Data: the Hub dataset `{name}`{f' (configuration `{config}`)' if config else ''} at {at}; "
            f"`load_dataset({arguments})` reads the same rows.")
