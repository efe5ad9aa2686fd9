"""The examples' command line: a recipe file from trainers/ (YAML or JSON) followed by flags that
override it, as in `accelerate launch examples/grant_train.py trainers/grant/gen_reg.yaml --seed 1`.
HfArgumentParser reads a recipe or flags, not both; TRL's TrlParser layers them the same way."""

from __future__ import annotations

import argparse
import dataclasses
import json
import typing
from dataclasses import dataclass
from pathlib import Path

import yaml
from transformers import HfArgumentParser
from transformers.hf_argparser import string_to_bool

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


RECIPE_USAGE = "%(prog)s [RECIPE.yaml] [--flags]"
RECIPE_DESCRIPTION = ("A recipe file from trainers/ (YAML or JSON) may come first; the flags after it override its "
                      "settings.")
# PyYAML reads these unquoted words as booleans (YAML 1.1), so `save_strategy: no` arrives as False
YAML_BOOLEAN_WORDS = {True: ("yes", "on", "true"), False: ("no", "off", "false")}
_INVALID = object()


def parse_recipe_and_flags(parser: HfArgumentParser, argv: list[str], return_command_line: bool = False) -> tuple:
    """The dataclasses of `parser` from an optional leading recipe file and then flags, which win; with
    `return_command_line`, followed by a `CommandLine`."""
    describe_recipe_usage(parser)
    recipe = {}
    if argv and is_recipe(argv[0]):
        recipe = load_recipe(argv[0])
        actions = _actions_by_name(parser)
        unknown = sorted(set(recipe) - set(actions))
        if unknown:
            raise ValueError(f"recipe {argv[0]}: unknown argument(s) {unknown}; see --help for the names")
        allows_none, takes_containers = _names_allowing_none_and_containers(parser)
        # argparse type-checks what the command line gives, not defaults: a recipe's values are checked here
        checked = {name: _as_the_command_line_gives(actions[name], name, value, name in allows_none,
                                                    name in takes_containers, argv[0])
                   for name, value in recipe.items()}
        for name in recipe:
            actions[name].required = False  # the recipe gives it
        parser.set_defaults(**checked)
        argv = argv[1:]
    given, left_over = _parse_flags(parser, argv)
    _refuse_recipes_in(left_over)
    parsed = tuple(_resume_as_train_takes_it(args) for args in parser.parse_args_into_dataclasses(argv))
    return (*parsed, CommandLine(recipe, given)) if return_command_line else parsed


def describe_recipe_usage(parser: argparse.ArgumentParser) -> None:
    """--help and the parser's errors show that a recipe may come first, in one short usage line (argparse's own
    lists every flag). parse_recipe_and_flags sets it; a caller that refuses flags before it sets it first."""
    if parser.usage is None:
        parser.usage = RECIPE_USAGE
    if RECIPE_DESCRIPTION not in (parser.description or ""):
        parser.description = "\n".join(filter(None, (RECIPE_DESCRIPTION, parser.description)))


def refuse_misplaced_recipe(parser: argparse.ArgumentParser, flags: list[str]) -> None:
    """Refuse a recipe among `flags` (a command line with no recipe first), for a caller that checks the flags
    before parse_recipe_and_flags would (as GraNT's example looks for its data)."""
    _refuse_recipes_in(_parse_flags(parser, flags)[1])


def _parse_flags(parser: argparse.ArgumentParser, argv: list[str]) -> tuple[set[str], list[str]]:
    """The names of the arguments the flags set, and what the parser leaves over, with no required argument missed.
    A recipe after the flags would be left over, but the dataclasses are checked first, so the user would see a
    required setting missing (argparse's, or e.g. GraNT's task) instead: the left-overs are looked at first."""
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
    return {name for name, value in vars(flags).items() if value is not unset}, left_over


def _refuse_recipes_in(left_over: list[str]) -> None:
    misplaced = [arg for arg in left_over if is_recipe(arg)]
    if misplaced:
        raise ValueError(f"recipe {misplaced[0]} must come right after the script, before the flags that override it")


def _actions_by_name(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    """Each argument's own action: a bool's --no_ complement shares its name and comes after it."""
    actions = {}
    for action in parser._actions:
        actions.setdefault(action.dest, action)
    return actions


def _names_allowing_none_and_containers(parser: HfArgumentParser) -> tuple[set[str], set[str]]:
    """Fields typed Optional or defaulting to None, and fields typed with a dict or a list besides str (deepspeed,
    report_to): HfArgumentParser keeps none of these on the action, whose type is str for the latter."""
    allows_none, takes_containers = set(), set()
    for dataclass_type in parser.dataclass_types:
        hints = typing.get_type_hints(dataclass_type)
        for field in dataclasses.fields(dataclass_type):
            kinds = {typing.get_origin(kind) or kind for kind in typing.get_args(hints[field.name])}
            if field.default is None or type(None) in kinds:
                allows_none.add(field.name)
            if kinds & {dict, list}:
                takes_containers.add(field.name)
    return allows_none, takes_containers


def _as_the_command_line_gives(action: argparse.Action, name: str, value, allows_none: bool, takes_containers: bool,
                               path: str):
    """A recipe's value as its flag would give it (e.g. an int for a float field becomes a float, a single value for a
    list field a list of one), or a ValueError naming the recipe, the argument and what it expects."""
    if value is None:
        if allows_none:
            return None
        raise ValueError(f"recipe {path}: {name}: null is not a valid {_expected(action)}; leave it out for the default")
    takes_a_list = action.nargs in ("+", "*") or isinstance(action.nargs, int)
    if takes_a_list:
        return [_one_value(action, name, item, False, path) for item in (value if isinstance(value, list) else [value])]
    return _one_value(action, name, value, takes_containers, path)


def _one_value(action: argparse.Action, name: str, value, takes_containers: bool, path: str):
    convert = action.type
    kind = typing.get_origin(convert) or convert
    if convert is None:
        converted = value
    elif convert is str:
        if isinstance(value, (dict, list)):
            converted = value if takes_containers else _INVALID  # what no flag spells: deepspeed's dict
        else:
            # as its flag gives it: run_name: 2024 is "2024", and resume_from_checkpoint: true is "True", which
            # _resume_as_train_takes_it makes True as it does the flag's
            converted = str(value)
    elif isinstance(kind, type) and isinstance(value, kind) and not isinstance(value, bool):
        converted = value  # already of the type: an int for an int field, a dict for a dict field
    else:
        try:
            converted = convert(value if isinstance(value, str) else str(value))
        except (ValueError, TypeError, argparse.ArgumentTypeError):
            converted = _INVALID
    if converted is not _INVALID and (action.choices is None or converted in action.choices):
        return converted
    message = f"recipe {path}: {name}: {value!r} is not a valid {_expected(action)}"
    if isinstance(value, bool) and any(isinstance(choice, str) for choice in action.choices or ()):
        quoted = [choice for choice in action.choices if str(choice).lower() in YAML_BOOLEAN_WORDS[value]]
        message += "; YAML reads unquoted yes/no/on/off as booleans: quote the value"
        message += f", e.g. {name}: \"{quoted[0]}\"" if quoted else ""
    raise ValueError(message)


def _expected(action: argparse.Action) -> str:
    if action.choices is not None:
        return f"choice, one of {[str(choice) for choice in action.choices]}"
    if action.type is string_to_bool:
        return "bool (true or false)"
    return getattr(action.type, "__name__", str(action.type))


def is_recipe(arg: str) -> bool:
    return not arg.startswith("-") and arg.lower().endswith(RECIPE_SUFFIXES)


def _resume_as_train_takes_it(args):
    """`--resume_from_checkpoint True` arrives as the string "True"; `Trainer.train` takes True (the
    last checkpoint in output_dir), False, or a checkpoint folder."""
    value = getattr(args, "resume_from_checkpoint", None)
    if isinstance(value, str) and value.lower() in ("true", "false"):
        args.resume_from_checkpoint = value.lower() == "true"
    return args
