"""The examples' command line: a recipe file from trainers/ (YAML or JSON) followed by flags that
override it, as in `accelerate launch examples/grant_train.py trainers/grant/gen_reg.yaml --seed 1`.
HfArgumentParser reads a recipe or flags, not both; TRL's TrlParser layers them the same way."""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

import yaml
from transformers import HfArgumentParser

RECIPE_SUFFIXES = (".yaml", ".yml", ".json")


def load_recipe(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"recipe {path} does not exist")
    text = path.read_text()
    recipe = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    if not isinstance(recipe, dict):
        raise ValueError(f"recipe {path} must hold a mapping of argument names to values, got {type(recipe).__name__}")
    return recipe


@dataclass
class CommandLine:
    """What a command line gave besides the dataclasses: its recipe's settings ({} without one) and the names of
    the arguments its flags set (as the parser reads them: abbreviations, --name=value, --no_name)."""

    recipe: dict
    given: set[str]


def parse_recipe_and_flags(parser: HfArgumentParser, argv: list[str], return_command_line: bool = False) -> tuple:
    """The dataclasses of `parser` from an optional leading recipe file and then flags, which win; with
    `return_command_line`, followed by a `CommandLine`."""
    recipe = {}
    if argv and is_recipe(argv[0]):
        recipe = load_recipe(argv[0])
        actions = {action.dest: action for action in parser._actions}
        unknown = sorted(set(recipe) - set(actions))
        if unknown:
            raise ValueError(f"recipe {argv[0]}: unknown argument(s) {unknown}; see --help for the names")
        for name in recipe:
            actions[name].required = False  # the recipe gives it
        parser.set_defaults(**recipe)
        argv = argv[1:]
    # A recipe after the flags would be left over, but the dataclasses are checked first, so the user would
    # see a required setting missing (argparse's, or e.g. GraNT's task) instead: the left-overs are looked at first.
    # argparse fills in defaults only where the namespace holds nothing: one holding a placeholder for every
    # argument keeps it where no flag set the argument.
    unset = object()
    placeholders = argparse.Namespace(**{action.dest: unset for action in parser._actions if action.dest != argparse.SUPPRESS})
    required = [action for action in parser._actions if action.required]
    for action in required:
        action.required = False
    try:
        flags, left_over = parser.parse_known_args(argv, namespace=placeholders)
    finally:
        for action in required:
            action.required = True
    misplaced = [arg for arg in left_over if is_recipe(arg)]
    if misplaced:
        raise ValueError(f"recipe {misplaced[0]} must come right after the script, before the flags that override it")
    given = {name for name, value in vars(flags).items() if value is not unset}
    parsed = tuple(_resume_as_train_takes_it(args) for args in parser.parse_args_into_dataclasses(argv))
    return (*parsed, CommandLine(recipe, given)) if return_command_line else parsed


def is_recipe(arg: str) -> bool:
    return not arg.startswith("-") and arg.lower().endswith(RECIPE_SUFFIXES)


def _resume_as_train_takes_it(args):
    """`--resume_from_checkpoint True` arrives as the string "True"; `Trainer.train` takes True (the
    last checkpoint in output_dir), False, or a checkpoint folder."""
    value = getattr(args, "resume_from_checkpoint", None)
    if isinstance(value, str) and value.lower() in ("true", "false"):
        args.resume_from_checkpoint = value.lower() == "true"
    return args
