"""Keeping Hub tokens out of what the Trainer saves and pushes."""

from __future__ import annotations


class TokenFreeArgumentsMixin:
    """Base for ``TrainingArguments`` subclasses: pickles without their ``*_token`` values.

    ``Trainer`` saves its arguments with ``torch.save(self.args, "training_args.bin")`` into the
    output folder and every checkpoint, and pushes both to the Hub with ``push_to_hub=True``.
    ``TrainingArguments.to_dict`` masks ``hub_token``, but the pickle keeps it, so a token given
    as ``--hub_token`` would land on the Hub. The live object keeps its token for the pushes.

    Use: ``class MyArguments(TokenFreeArgumentsMixin, TrainingArguments)``.
    """

    def __getstate__(self):
        state = dict(self.__dict__)
        for key in state:
            if key.endswith("_token") and state[key] is not None:
                state[key] = None
        return state
