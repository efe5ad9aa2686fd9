import pytest

from hf_eff.splat.config import SplatTrainingArguments


@pytest.mark.parametrize("name, value, least", [
    ("reset_every", 0, 1),
    ("reset_every", -100, 1),
    ("refine_every", 0, 1),
    ("sh_degree_interval", 0, 1),
    ("refine_start_steps", -5, 0),
])
def test_step_counts_are_none_or_valid(tmp_path, name, value, least):
    # 0 used to become the scaled default (`value or default`) and negatives passed.
    with pytest.raises(ValueError, match=rf"{name} must be None \(the paper's value scaled by max_steps\) "
                                         rf"or >= {least}, got {value}"):
        SplatTrainingArguments(output_dir=str(tmp_path), max_steps=3000, **{name: value})


def test_the_smallest_step_counts_are_taken_as_given(tmp_path):
    args = SplatTrainingArguments(output_dir=str(tmp_path), max_steps=3000, refine_start_steps=0, refine_every=1,
                                  reset_every=1, sh_degree_interval=1)
    strategy = args.build_strategy()
    assert (strategy.refine_start_iter, strategy.refine_every, strategy.reset_every) == (0, 1, 1)
    assert args.active_sh_interval == 1


@pytest.mark.parametrize("strategy", ["default", "g2l"])
def test_reset_every_error_names_the_way_to_turn_resets_off_and_that_way_works(tmp_path, strategy):
    with pytest.raises(ValueError, match="to turn opacity resets off, set reset_stop_fraction=0"):
        SplatTrainingArguments(output_dir=str(tmp_path), max_steps=3000, strategy=strategy, reset_every=0)
    built = SplatTrainingArguments(output_dir=str(tmp_path), max_steps=3000, strategy=strategy,
                                   reset_stop_fraction=0).build_strategy()
    assert not any(built.is_reset_step(step) for step in range(3001))