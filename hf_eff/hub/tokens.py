"""Keeping Hub tokens out of what the Trainer saves and pushes."""

from __future__ import annotations

import copy


class TokenFreeArgumentsMixin:
    """Base for ``TrainingArguments`` subclasses: pickles without their ``*_token`` values.

    ``Trainer`` saves its arguments with ``torch.save(self.args, "training_args.bin")`` into the
    output folder and every checkpoint, and pushes both to the Hub with ``push_to_hub=True``.
    ``TrainingArguments.to_dict`` masks ``hub_token``, but the pickle keeps it, so a token given
    as ``--hub_token`` would land on the Hub. The live object keeps its token for the pushes, and so
    do its ``copy.copy`` and ``copy.deepcopy`` (transformers' W&B integration deepcopies the
    arguments): copies are live objects, not saved files.

    Use: ``class MyArguments(TokenFreeArgumentsMixin, TrainingArguments)``.
    """

    def __getstate__(self):
        state = dict(self.__dict__)
        for key in state:
            if key.endswith("_token") and state[key] is not None:
                state[key] = None
        return state

    # copy's default goes through __getstate__ (as pickle does), which would drop the token.
    def __copy__(self):
        clone = type(self).__new__(type(self))
        clone.__dict__.update(self.__dict__)
        return clone

    def __deepcopy__(self, memo):
        clone = type(self).__new__(type(self))
        memo[id(self)] = clone
        clone.__dict__.update(copy.deepcopy(self.__dict__, memo))
        return clone
