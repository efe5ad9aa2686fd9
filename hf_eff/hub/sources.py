"""Errors that name what a model or data source is not: a local folder, a Hub repo that could be loaded, or a folder
holding the weights; and the refusal of Hub-only options for local data."""

from __future__ import annotations

import os
import re
from contextlib import contextmanager
from pathlib import Path

from datasets.exceptions import DatasetNotFoundError
from huggingface_hub import constants
from huggingface_hub.errors import (
    GatedRepoError,
    HFValidationError,
    LocalEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

# What huggingface_hub raises for a source it reads as a repo id: no repo id at all, no such repo (or
# none this token can read), or no connection and no cached copy; and datasets' error for a dataset repo it cannot read.
_NOT_FOUND = (HFValidationError, RepositoryNotFoundError, LocalEntryNotFoundError, DatasetNotFoundError)
_CHECKPOINT_FOLDER = re.compile(rf"{PREFIX_CHECKPOINT_DIR}-([0-9]+)")  # as Trainer names its checkpoints


def missing_source_reason(error: Exception, source) -> str | None:
    """What huggingface_hub's ``error`` (raised, or re-raised by transformers or PEFT from it) says of ``source``
    read as a repo id, when no such local path exists: no repo id at all, no such repo (or none this token can read;
    also datasets' DatasetNotFoundError, whose words, kept, say which), or no connection and no cached copy (also
    datasets' plain ConnectionError, which re-raises that without it). None for any other error, for an existing path
    (whose loading may ask the Hub about another repo), and for huggingface_hub's gated repo (which exists: its error
    says how to get access)."""
    if type(error) is ConnectionError:  # datasets' "Couldn't reach ... on the Hub", raised after its cache missed too
        cause = error
    else:
        cause = error if isinstance(error, _NOT_FOUND) else error.__cause__
        # datasets' DatasetNotFoundError also says a revision is missing (the repo exists): its cause tells
        if (not isinstance(cause, _NOT_FOUND) or isinstance(cause, GatedRepoError)
                or isinstance(cause.__cause__, RevisionNotFoundError)):
            return None
    if Path(source).exists():
        return None
    if isinstance(cause, HFValidationError):
        return "it is not a Hub repo id either"
    if isinstance(cause, DatasetNotFoundError):  # datasets' words: no such dataset, or a gated one
        return f"no Hub dataset {source} that this token can read ({cause})"
    if isinstance(cause, RepositoryNotFoundError):
        return f"no Hub repo {source} that this token can read"
    # offline, or the Hub unreachable: huggingface_hub's words say which
    return f"the Hub could not be reached to look for a repo {source}, which is not in the local cache ({cause})"


@contextmanager
def naming_missing_folder(what: str, source):
    """Re-raises a failed load of ``source``, when no such local path exists, as a FileNotFoundError that
    names both readings of it (`missing_source_reason`).

    A mistyped relative folder (``runs/out``) is a valid repo id, so huggingface_hub answers with a
    connection or repo error that says nothing of the folder the user meant. ``what`` (a flag, or what
    was being loaded) starts the message. Errors for a path that exists, and any other error, pass unchanged.
    """
    try:
        yield
    except Exception as error:
        reason = missing_source_reason(error, source)
        if reason is None:
            raise
        folder = str(source) if Path(source).is_absolute() else f"{source} ({Path(source).absolute()})"
        # data/mols.cvs: a typo'd file, most likely; Qwen/Qwen2.5-0.5B: a repo id's version, no file suffix
        kind = "file or folder" if re.fullmatch(r"\.[A-Za-z]+", Path(source).suffix) else "folder"
        raise FileNotFoundError(f"{what}: there is no such {kind} {folder}, and {reason}") from error


def is_local_data(source: str, file_suffixes: tuple[str, ...]) -> bool:
    """Whether a data loader reads ``source`` from this machine rather than from the Hub: an existing path (~ expanded),
    or a name ending in one of ``file_suffixes`` (a missing data file, named as missing rather than looked for on the
    Hub)."""
    path = Path(source).expanduser()
    return path.exists() or path.name.lower().endswith(file_suffixes)


def refuse_hub_options_without_hub_data(options: dict, source: str | None, source_named: str,
                                        file_suffixes: tuple[str, ...], builtin_named: str | None = None) -> None:
    """Raises ``ValueError`` when any of ``options`` (a Hub dataset's configuration or revision, each keyed by what the
    caller calls it) is set and ``source`` is no Hub dataset: local data (`is_local_data`), or, where ``source`` is
    None, the built-in data ``builtin_named`` names. Neither has configurations or revisions. ``source_named``: what the
    caller calls ``source``."""
    given = [name for name, value in options.items() if value]
    if not given:
        return
    flags = " and ".join(given)
    if source is None:
        raise ValueError(f"{flags} {'are' if len(given) > 1 else 'is'} for a Hub {source_named}: {builtin_named} has no "
                         f"configurations or revisions to choose; give {source_named} <Hub id>, or leave {flags} out")
    if is_local_data(source, file_suffixes):
        raise ValueError(f"{source_named} {source} is local data, which has no Hub configuration or revision: leave "
                         f"out {flags}")


@contextmanager
def naming_missing_revision(revision_flag: str, revision: str | None, source):
    """Re-raises a revision the Hub repo ``source`` lacks, also when a library wraps huggingface_hub's error
    in its own (PEFT raises a ValueError saying the repo holds no adapter), as an error naming the flag."""
    try:
        yield
    except Exception as error:
        if not isinstance(error, RevisionNotFoundError) and not isinstance(error.__cause__, RevisionNotFoundError):
            raise
        raise FileNotFoundError(f"{revision_flag} {revision}: the Hub repo {source} has no such branch, tag or "
                                "commit") from error


@contextmanager
def naming_model_flags(source_flag: str, source, revision_flag: str, revision: str | None):
    """Errors of loading a model from ``source`` at ``revision`` start with the flag that gave them: a revision
    the Hub repo lacks its revision flag (`naming_missing_revision`); a missing folder, repo or weights file
    (FileNotFoundError) and a source holding no such model (ValueError) the source flag."""
    with naming_missing_revision(revision_flag, revision, source):
        try:
            yield
        except FileNotFoundError as error:
            raise FileNotFoundError(f"{source_flag} {source}: {error}") from error
        except ValueError as error:
            raise ValueError(f"{source_flag} {source}: {error}") from error


def check_weights_file(model_file: str, model_class: str) -> None:
    """For ``PyTorchModelHubMixin._load_as_safetensor``: huggingface_hub assumes a local folder holds the
    weights (a Hub download raises its own error first), and safetensors' error names no folder."""
    if not os.path.isfile(model_file):
        folder = os.path.dirname(model_file)
        raise FileNotFoundError(f"the folder {folder} holds no {model_class} weights: it has no "
                                f"{constants.SAFETENSORS_SINGLE_FILE} beside its {constants.CONFIG_NAME}"
                                + last_checkpoint_hint(folder))


def last_checkpoint_hint(folder, weights_files: tuple[str, ...] = (constants.SAFETENSORS_SINGLE_FILE,)) -> str:
    """For the output folder of a run that ended before saving its model: its newest checkpoint-N holding one
    of ``weights_files`` (a run stopped while saving leaves a newer checkpoint without them, which transformers'
    ``get_last_checkpoint`` would name)."""
    if not Path(folder).is_dir():
        return ""
    numbered = {}
    for path in Path(folder).iterdir():
        match = _CHECKPOINT_FOLDER.fullmatch(path.name)
        if match and path.is_dir():
            numbered[int(match.group(1))] = path
    for _, checkpoint in sorted(numbered.items(), reverse=True):
        if any((checkpoint / name).is_file() for name in weights_files):
            return f"; its last checkpoint that holds one: {checkpoint}"
    return ""


def check_model_source(source_flag: str, source: str | None, revision_flag: str, revision: str | None,
                       output_dir: str) -> None:
    """Refuses, before any work: a revision without the source it is a revision of, a revision of a local
    folder (loaders read a folder as it is, whatever the revision), and an ``output_dir`` that is or holds
    the source's folder (a run's own checkpoint-N: the run would overwrite the model it starts from, or the
    results beside it)."""
    if revision is not None and source is None:
        raise ValueError(f"{revision_flag} {revision} is a Hub revision of {source_flag}, which is not given")
    if source is None or not Path(source).is_dir():
        return
    if revision is not None:
        raise ValueError(f"{revision_flag} {revision} is a Hub revision, and {source_flag} {source} is a local folder "
                         f"(read as it is); leave {revision_flag} out")
    source_folder, output_folder = Path(source).resolve(), Path(output_dir).resolve()
    if source_folder == output_folder or output_folder in source_folder.parents:  # a checkpoint-N of the run
        raise ValueError(f"--output_dir {output_dir} is or holds the folder of {source_flag}: the run would overwrite "
                         "the model it starts from (or the results beside it); give another --output_dir")
