"""TokenFreeArgumentsMixin: TrainingArguments that keep their token out of training_args.bin."""

import copy
import io
import pickle
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


def test_copies_keep_the_token_that_pickles_drop(tmp_path):
    token = "hf_" + "k3" * 16
    args = _Arguments(output_dir=str(tmp_path), hub_token=token, report_to=[], eval_steps=7)
    shallow, deep = copy.copy(args), copy.deepcopy(args)  # transformers' W&B integration deepcopies them
    for clone in (shallow, deep):
        assert type(clone) is _Arguments and clone is not args
        assert clone.hub_token == token and clone.eval_steps == 7 and clone.output_dir == str(tmp_path)
        assert token.encode() not in pickle.dumps(clone)
    assert deep.report_to == [] and deep.report_to is not args.report_to
    assert shallow.report_to is args.report_to
    assert token.encode() not in pickle.dumps(args) and args.hub_token == token
