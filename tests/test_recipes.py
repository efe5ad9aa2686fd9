import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml
from transformers import HfArgumentParser, TrainingArguments
from transformers.trainer_utils import SaveStrategy

from hf_eff.utils.recipes import RECIPE_DESCRIPTION, parse_recipe_and_flags
from tests.scripts import load_script


@dataclass
class Settings:
    name: str  # required on the command line unless the recipe gives it
    steps: int = 10
    sigmas: list[float] = field(default_factory=lambda: [0.0])
    noisy: bool = True


def _parse(argv):
    return parse_recipe_and_flags(HfArgumentParser(Settings), argv)[0]


def test_flags_after_a_recipe_override_it(tmp_path):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("name: run\nsteps: 50\nsigmas: [0.0, 0.02]\nnoisy: false\n")
    assert _parse([str(recipe)]) == Settings("run", 50, [0.0, 0.02], False)
    assert _parse([str(recipe), "--steps", "3", "--noisy"]) == Settings("run", 3, [0.0, 0.02], True)
    assert _parse(["--name", "cli"]) == Settings("cli")
    as_json = tmp_path / "recipe.json"
    as_json.write_text(json.dumps({"name": "j", "steps": 2}))
    assert _parse([str(as_json), "--name", "k"]) == Settings("k", 2)


def test_the_command_line_names_the_recipe_and_the_arguments_its_flags_set(tmp_path):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("name: run\nsteps: 50\n")
    parser = HfArgumentParser(Settings)
    # as the parser reads flags: an abbreviation, --name=value, a bool's --no_ form; the recipe's steps are not given
    settings, command_line = parse_recipe_and_flags(parser, [str(recipe), "--sig", "0.1", "--name=cli", "--no_noisy"],
                                                    return_command_line=True)
    assert settings == Settings("cli", 50, [0.1], False)
    assert (command_line.recipe, command_line.given) == ({"name": "run", "steps": 50}, {"sigmas", "name", "noisy"})
    _, command_line = parse_recipe_and_flags(parser, ["--name", "cli"], return_command_line=True)
    assert (command_line.recipe, command_line.given) == ({}, {"name"})
    assert parser.parse_args([]).steps == 50  # the recipe's defaults are back after the pass without them


def test_bad_recipes_name_the_problem(tmp_path):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("name: run\nstpes: 5\n")
    with pytest.raises(ValueError, match=r"unknown argument\(s\) \['stpes'\]"):
        _parse([str(recipe)])
    with pytest.raises(FileNotFoundError, match="missing.yaml"):
        _parse([str(tmp_path / "missing.yaml")])
    recipe.write_text("- a list\n")
    with pytest.raises(ValueError, match="mapping"):
        _parse([str(recipe)])
    recipe.write_text("name: run\n")
    with pytest.raises(ValueError, match="not used"):
        _parse([str(recipe), "--unknown_flag", "1"])
    # after the flags, the recipe is named (not the required field it would have given)
    with pytest.raises(ValueError, match=r"recipe .*recipe.yaml must come right after the script, before the flags"):
        _parse(["--steps", "3", str(recipe)])


def test_recipe_suffix_in_any_case(tmp_path):
    for name, text in (("RECIPE.YAML", "name: run\nsteps: 4\n"), ("recipe.JSON", '{"name": "run", "steps": 4}')):
        (tmp_path / name).write_text(text)
        assert _parse([str(tmp_path / name)]) == Settings("run", 4)



@dataclass
class Typed:
    width: int = 64
    rate: float = 0.1
    strategy: SaveStrategy = "steps"
    scales: list[float] = field(default_factory=lambda: [1.0])
    noisy: bool = True
    limit: int | None = None
    note: str = ""
    options: dict | str | None = None  # as TrainingArguments' deepspeed
    tags: list[str] | str | None = None  # as TrainingArguments' report_to


def _parse_typed(tmp_path, text):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(text)
    return parse_recipe_and_flags(HfArgumentParser(Typed), [str(recipe)])[0]


def test_recipe_values_pass_as_their_flags_would(tmp_path):
    # an int for a float, a string argparse converts, a single value for a list, null for an Optional, 1 for a bool
    parsed = _parse_typed(tmp_path, 'width: "32"\nrate: 1\nstrategy: "no"\nscales: 2\nnoisy: 0\nlimit: null\n')
    assert parsed == Typed(32, 1.0, SaveStrategy.NO, [2.0], False, None)
    assert type(parsed.rate) is float
    parsed = _parse_typed(tmp_path, "scales: [1, '2.5']\nnoisy: yes\nlimit: 3\n")
    assert (parsed.scales, parsed.noisy, parsed.limit) == ([1.0, 2.5], True, 3)


@pytest.mark.parametrize(("text", "note"), [
    ("note: 2024", "2024"), ("note: 1.5", "1.5"), ("note: 2024-01-31", "2024-01-31"),
    ("note: yes", "True"),  # YAML reads an unquoted yes as true, which arrives as --note True would
    ("note: on the run", "on the run"),
])
def test_a_str_field_gets_a_str_as_its_flag_would_give(tmp_path, text, note):
    assert _parse_typed(tmp_path, text + "\n").note == note


def test_a_field_taking_a_dict_or_a_list_besides_str_keeps_them(tmp_path):
    parsed = _parse_typed(tmp_path, "options: {stage: 2, offload: true}\ntags: [wandb, trackio]\n")
    assert (parsed.options, parsed.tags) == ({"stage": 2, "offload": True}, ["wandb", "trackio"])
    assert _parse_typed(tmp_path, "options: ds.json\ntags: 7\n").tags == "7"


@pytest.mark.parametrize(("text", "refusal"), [
    ("width: 32.5", "width: 32.5 is not a valid int"),
    ("width: true", "width: True is not a valid int"),
    ("width: [32]", r"width: \[32\] is not a valid int"),
    ("width: null", "width: null is not a valid int"),
    ("rate: fast", "rate: 'fast' is not a valid float"),
    ("scales: [1, x]", "scales: 'x' is not a valid float"),
    ("noisy: maybe", r"noisy: 'maybe' is not a valid bool \(true or false\)"),
    ("note: {a: 1}", r"note: \{'a': 1\} is not a valid str"),
    ("note: [a, b]", r"note: \['a', 'b'\] is not a valid str"),
    ("strategy: sometimes", r"strategy: 'sometimes' is not a valid choice, one of \['no', 'steps', 'epoch', 'best'\]$"),
    ("strategy: no", "strategy: False is not a valid choice, .*; YAML reads unquoted yes/no/on/off as booleans: "
                     'quote the value, e.g. strategy: "no"'),
    ("strategy: on", "strategy: True is not a valid choice, .*; YAML reads unquoted yes/no/on/off as booleans: "
                     "quote the value$"),
])
def test_recipe_values_their_flags_would_refuse_are_refused(tmp_path, text, refusal):
    named = re.escape(f"recipe {tmp_path / 'recipe.yaml'}:")
    with pytest.raises(ValueError, match=f"^{named} {refusal}"):
        _parse_typed(tmp_path, text + "\n")


ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = {"halora": "halora_finetune.py", "grant": "grant_train.py", "splat": "splat_train.py"}


def _example(name):
    script = ROOT / "examples" / EXAMPLES[name]
    return load_script(script)


@pytest.mark.parametrize("recipe", sorted(p.relative_to(ROOT / "trainers") for p in (ROOT / "trainers").glob("*/*.yaml")
                                          if p.parent.name in EXAMPLES), ids=str)
def test_every_shipped_recipe_parses_with_an_override(recipe, monkeypatch):
    argv = [str(ROOT / "trainers" / recipe), "--seed", "5"]
    monkeypatch.setattr(sys, "argv", ["example", *argv])
    parsed = _example(recipe.parent.name).parse_args()
    assert parsed[-1].seed == 5


def test_every_grant_builtin_data_set_has_a_recipe_and_so_has_a_csv_of_your_own():
    recipes = {recipe.name: yaml.safe_load(recipe.read_text()) for recipe in (ROOT / "trainers" / "grant").glob("*.yaml")}
    assert {settings.get("builtin") for settings in recipes.values()} == {*_example("grant").BUILTIN_TASKS, None}
    # it names no data: its header says to give --dataset, with the settings of the molecule recipes
    own_csv = recipes.pop("smiles_csv.yaml")
    assert not {"builtin", "dataset"} & set(own_csv)
    molecules = {key: value for key, value in recipes["solubility.yaml"].items() if key not in ("builtin", "output_dir")}
    assert {key: value for key, value in own_csv.items() if key != "output_dir"} == molecules


@pytest.mark.parametrize(("given", "passed"), [
    (["--resume_from_checkpoint", "True"], True), (["--resume_from_checkpoint", "true"], True),
    (["--resume_from_checkpoint", "False"], False), ([], None),
    (["--resume_from_checkpoint", "out/checkpoint-3"], "out/checkpoint-3"),
])
def test_resume_from_checkpoint_arrives_as_train_takes_it(tmp_path, given, passed):
    parser = HfArgumentParser(TrainingArguments)
    (args,) = parse_recipe_and_flags(parser, ["--output_dir", str(tmp_path), *given])
    assert args.resume_from_checkpoint == passed and type(args.resume_from_checkpoint) is type(passed)
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(f"output_dir: {tmp_path}\nresume_from_checkpoint: true\n")
    assert parse_recipe_and_flags(parser, [str(recipe)])[0].resume_from_checkpoint is True


@pytest.mark.parametrize(("example", "recipe", "line", "refusal"), [
    # each failed deep inside: torch's empty() in torch_geometric, Trainer's loop, SaveStrategy(False)
    ("grant", "gen_reg.yaml", "hidden_channels: 32.5", "hidden_channels: 32.5 is not a valid int"),
    ("splat", "procedural_default.yaml", "max_steps: 40.0", "max_steps: 40.0 is not a valid int"),
    ("halora", "smollm2_mixed.yaml", "save_strategy: no", "save_strategy: False is not a valid choice.*quote the value, "
                                                          'e.g. save_strategy: "no"'),
])
def test_a_shipped_recipe_with_a_value_its_flag_would_refuse(tmp_path, monkeypatch, example, recipe, line, refusal):
    settings = yaml.safe_load((ROOT / "trainers" / example / recipe).read_text())
    settings.pop(line.split(":")[0], None)
    bad = tmp_path / recipe
    bad.write_text(yaml.safe_dump(settings) + line + "\n")
    monkeypatch.setattr(sys, "argv", ["example", str(bad)])
    with pytest.raises(ValueError, match=f"^{re.escape(f'recipe {bad}:')} {refusal}"):
        _example(example).parse_args()


@pytest.mark.parametrize("example", sorted(EXAMPLES))
def test_help_shows_the_recipe_first(example, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", [f"examples/{EXAMPLES[example]}", "--help"])
    with pytest.raises(SystemExit):
        _example(example).parse_args()
    shown = capsys.readouterr().out
    assert shown.startswith(f"usage: {EXAMPLES[example]} [RECIPE.yaml] [--flags]\n")
    assert RECIPE_DESCRIPTION in " ".join(shown.split())


@pytest.mark.parametrize("example", sorted(EXAMPLES))
def test_a_recipe_after_a_flag_is_named_by_every_example(example, monkeypatch):
    recipe = next((ROOT / "trainers" / example).glob("*.yaml"))
    monkeypatch.setattr(sys, "argv", ["example", "--seed", "1", str(recipe)])
    with pytest.raises(ValueError, match=f"^{re.escape(f'recipe {recipe} must come right after the script')}, before the"):
        _example(example).parse_args()


@pytest.mark.parametrize("recipe", ["grant/qm9.yaml", "halora/smollm2_mixed.yaml", "halora/smollm2_mixed_lora.yaml"])
def test_a_recipe_of_an_hour_or_more_keeps_its_last_two_checkpoints(recipe, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["example", str(ROOT / "trainers" / recipe)])
    args = _example(recipe.split("/")[0]).parse_args()[-1]
    assert (args.save_strategy, args.save_total_limit) == (SaveStrategy.STEPS, 2)
    assert args.save_steps > 0 and (args.max_steps < 0 or args.save_steps < args.max_steps)
