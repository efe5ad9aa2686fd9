from transformers import HfArgumentParser

from hf_eff.grant import GraNTTrainingArguments


def test_help_renders():
    # argparse %-formats every help string: a bare "%" crashes `--help`
    text = " ".join(HfArgumentParser(GraNTTrainingArguments).format_help().split())
    assert "--stratify_selection" in text and "top 5% (and 20%)" in text
