import pytest

from hf_eff.demo import grant


@pytest.mark.slow
def test_quick_demo_section(tmp_path):
    result = grant.run(tmp_path, quick=True)
    method, steps, selection = (grant.COLUMNS[key] for key in ("method", "steps", "selection_s"))  # the table's headers
    assert [row[method] for row in result.rows] == ["full", "GraNT(S)", "random(S)"]
    assert (tmp_path / "grant_curves.png").stat().st_size > 0
    full, teaching, random = result.rows
    assert teaching[steps] == full[steps] == random[steps]  # one step per epoch: same epoch budget
    assert teaching[selection] > 0 and full[selection] == 0
