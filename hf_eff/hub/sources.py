"""One error for a model source that is neither a local folder nor a Hub repo that could be loaded."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

from huggingface_hub.errors import (
    HFValidationError,
    LocalEntryNotFoundError,
    RepositoryNotFoundError,
)

# What huggingface_hub raises for a source it reads as a repo id: no repo id at all, no such repo (or
# none this token can read), or no connection and no cached copy.
_NOT_FOUND = (HFValidationError, RepositoryNotFoundError, LocalEntryNotFoundError)


@contextmanager
def naming_missing_folder(what: str, source):
    """Re-raises a failed load of ``source``, when no such local path exists, as a FileNotFoundError that
    names both readings of it.

    A mistyped relative folder (``runs/out``) is a valid repo id, so huggingface_hub answers with a
    connection or repo error that says nothing of the folder the user meant. ``what`` names the loader
    or the flag. Errors for a path that exists, and any other error, pass unchanged.
    """
    try:
        yield
    except Exception as error:
        # PEFT re-raises huggingface_hub's error as a ValueError of its own
        cause = error if isinstance(error, _NOT_FOUND) else error.__cause__
        if not isinstance(cause, _NOT_FOUND) or Path(source).exists():
            raise
        if isinstance(cause, HFValidationError):
            hub = "it is not a Hub repo id either"
        elif isinstance(cause, RepositoryNotFoundError):
            hub = f"no Hub repo {source} that this token can read"
        else:
            hub = f"the Hub could not be reached to look for a repo {source}, which is not in the local cache"
        raise FileNotFoundError(
            f"{what} {source}: there is no such folder ({Path(source).absolute()}), and {hub}"
        ) from error
