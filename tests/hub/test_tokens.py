"""TokenFreeArgumentsMixin: TrainingArguments that keep their token out of training_args.bin."""

import io
from dataclasses import dataclass

import torch
from transformers import TrainingArguments

from hf_eff.hub import TokenFreeArgumentsMixin


@dataclass
class _Arguments(TokenFreeArgumentsMixin, TrainingArguments):
    pass


def test_pickled_arguments_hold_no_token_but_the_live_ones_keep_it(tmp_path):
    token = "hf_" + "x7" * 16
    args = _Arguments(output_dir=str(tmp_path), hub_token=token, report_to=[])
    plain = TrainingArguments(output_dir=str(tmp_path), hub_token=token, report_to=[])
    saved, saved_plain = io.BytesIO(), io.BytesIO()
    torch.save(args, saved)
    torch.save(plain, saved_plain)
    assert token.encode() in saved_plain.getvalue()  # what the mixin is for
    assert token.encode() not in saved.getvalue()
    assert args.hub_token == token
    saved.seek(0)
    restored = torch.load(saved, weights_only=False)  # our own bytes, written just above
    assert restored.hub_token is None and restored.output_dir == str(tmp_path)
