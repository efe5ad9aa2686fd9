"""hf_eff/hub/dataset_commits.py: the commit a Hub dataset was read at, from its cache folder or, for data held in
memory, from the Hub; and how runs' records of it are compared."""

import datasets
import pytest

from hf_eff.hub import dataset_commits
from hf_eff.hub.dataset_commits import (
    check_commit_read,
    check_offline_revision,
    read_commit,
    recorded_revision,
    same_revision,
    shown_revision,
)

FIRST, SECOND = "1" * 40, "2" * 40


@pytest.fixture
def no_hub(monkeypatch):
    def refuse():
        raise AssertionError("the Hub was asked")

    monkeypatch.setattr(dataset_commits, "HfApi", refuse)


def test_the_cache_folder_names_the_commit_also_of_a_shuffled_selection(tmp_path, no_hub):
    # as datasets prepares a Hub dataset: in a folder named by the commit it was read at
    datasets.Dataset.from_dict({"x": list(range(6))}).save_to_disk(str(tmp_path / FIRST))
    loaded = datasets.load_from_disk(str(tmp_path / FIRST))
    drawn = loaded.shuffle(seed=0).select(range(3))
    assert read_commit([loaded, drawn], "me/data", "main") == FIRST


def test_data_in_memory_is_at_the_commit_hash_given_and_offline_at_none_known(monkeypatch, no_hub):
    in_memory = datasets.Dataset.from_dict({"x": [1, 2]})
    assert read_commit([in_memory], "me/data", SECOND) == SECOND
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    # offline datasets read the latest cached copy whatever the revision: a commit hash asked for says nothing
    assert read_commit([in_memory], "me/data", "main") is None
    assert read_commit([in_memory], "me/data", SECOND) is None
    with pytest.raises(ValueError, match=f"^--dataset_revision {SECOND}: offline .* the cached copy of me/data read is "
                                         "held in memory, with no cache folder to show its commit; go online"):
        check_commit_read(None, SECOND, "me/data")
    check_commit_read(SECOND, SECOND, "me/data")
    with pytest.raises(ValueError, match="^--dataset_revision main: offline .* cannot show which commit this branch"):
        check_offline_revision("main")
    check_offline_revision(SECOND)


def test_data_in_memory_is_at_the_commit_the_hub_names_for_its_revision(tmp_path, local_hub, monkeypatch):
    api, repo_id = local_hub.api(), local_hub.repo_id("data")
    api.create_repo(repo_id, repo_type="dataset")
    first = api.upload_file(path_or_fileobj=b"x\n1\n", path_in_repo="data.csv", repo_id=repo_id,
                            repo_type="dataset").oid
    api.create_tag(repo_id, tag="v1", revision=first, repo_type="dataset")
    api.upload_file(path_or_fileobj=b"x\n2\n", path_in_repo="data.csv", repo_id=repo_id, repo_type="dataset")
    monkeypatch.setattr(dataset_commits, "HfApi", lambda: api)
    assert read_commit([datasets.Dataset.from_dict({"x": [1]})], repo_id, "v1") == first


def test_records_are_compared_by_commit_where_both_have_one():
    main_at_first = {"dataset_revision": "main", "dataset_commit": FIRST}
    assert same_revision(main_at_first, {"dataset_revision": FIRST, "dataset_commit": FIRST})
    assert not same_revision(main_at_first, {"dataset_revision": "main", "dataset_commit": SECOND})
    assert same_revision({"dataset_revision": "main"}, {"dataset_revision": "main", "dataset_commit": SECOND})
    assert not same_revision({"dataset_revision": "v1"}, {"dataset_revision": "main", "dataset_commit": SECOND})
    assert (recorded_revision(main_at_first), recorded_revision({"dataset_revision": "v1"})) == (FIRST, "v1")
    assert (shown_revision(main_at_first), shown_revision({"dataset_commit": FIRST}),
            shown_revision({"dataset_revision": FIRST, "dataset_commit": FIRST})) == (
        f"main at commit {FIRST}", f"the default at commit {FIRST}", FIRST)
