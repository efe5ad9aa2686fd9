"""A user's data file given to load_multiple_choice_dataset (the example's --dataset): one of no rows, or of rows
without a needed column, is refused naming the file."""

import json
import re
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from hf_eff.halora.tasks import load_multiple_choice_dataset
from tests.halora.conftest import make_tiny_llama
from tests.scripts import load_script

EXAMPLE = Path(__file__).parents[2] / "examples" / "halora_finetune.py"

EMPTY_QUESTIONS = pa.table({"question": pa.array([], pa.string()), "choices": pa.array([], pa.list_(pa.string())),
                            "answer": pa.array([], pa.int64())})


def _write(path, content):
    if isinstance(content, pa.Table):
        pq.write_table(content, path)
    else:
        path.write_text(content)
    return path


@pytest.mark.parametrize("name, content", [
    ("empty.jsonl", ""),
    ("blank_lines.jsonl", "\n  \n\n"),
    ("empty.json", ""),
    ("empty_list.json", "[]\n"),
    ("empty.parquet", ""),
    ("no_rows.parquet", EMPTY_QUESTIONS),
    ("empty.csv", ""),
    ("header_only.csv", "question,choices,answer\n"),
])
def test_a_data_file_of_no_rows_is_named(tmp_path, name, content):
    path = _write(tmp_path / name, content)
    with pytest.raises(ValueError, match=rf"^dataset {re.escape(str(path))}: the file holds no rows; a multiple-choice "
                                         r"dataset needs at least one, with columns \['question', 'choices', 'answer'\]$"):
        load_multiple_choice_dataset(str(path))


@pytest.mark.parametrize("name, content", [
    ("mine.jsonl", "\n".join(json.dumps({"question": f"q{i}", "answer": 0}) for i in range(4))),
    ("mine.parquet", pa.table({"question": [f"q{i}" for i in range(4)], "answer": [0] * 4})),
    ("mine.csv", "question,answer\n" + "".join(f"q{i},0\n" for i in range(4))),
])
def test_a_data_file_without_a_needed_column_is_named_with_the_column(tmp_path, name, content):
    path = _write(tmp_path / name, content)
    with pytest.raises(ValueError, match=rf"^dataset {re.escape(str(path))}: missing column\(s\) \['choices'\]"):
        load_multiple_choice_dataset(str(path))


def test_a_file_that_is_not_parquet_keeps_datasets_error(tmp_path):
    path = _write(tmp_path / "mine.parquet", "question,choices,answer\n")
    with pytest.raises(pa.ArrowInvalid, match="Parquet magic bytes not found"):
        load_multiple_choice_dataset(str(path))


def test_the_example_refuses_an_empty_data_file_before_writing_over_an_earlier_run(tmp_path, char_tokenizer):
    model_dir = tmp_path / "base"
    make_tiny_llama(vocab_size=len(char_tokenizer)).save_pretrained(model_dir)
    char_tokenizer.save_pretrained(model_dir)
    out = tmp_path / "run"
    out.mkdir()
    earlier = _write(out / "all_results.json", '{"eval_accuracy": 0.75}')
    empty = _write(tmp_path / "mine.jsonl", "")
    with pytest.raises(ValueError, match=rf"^dataset {re.escape(str(empty))}: the file holds no rows"):
        load_script(EXAMPLE).main(["--model_name_or_path", str(model_dir), "--dataset", str(empty), "--method", "lora",
                              "--output_dir", str(out), "--overwrite_output_dir", "--max_steps", "1",
                              "--report_to", "none", "--use_cpu", "--save_strategy", "no"])
    assert [path.name for path in out.iterdir()] == ["all_results.json"]
    assert earlier.read_text() == '{"eval_accuracy": 0.75}'


@pytest.mark.parametrize("empty_split", ["train", "validation"])
def test_a_saved_folder_with_an_empty_split_is_named(tmp_path, empty_split):
    from datasets import Dataset, DatasetDict

    row = {"question": ["2 + 2?"], "choices": [["4", "5"]], "answer": [0]}
    splits = {"train": Dataset.from_dict(row), "validation": Dataset.from_dict(row)}
    splits[empty_split] = splits[empty_split].select([])
    DatasetDict(splits).save_to_disk(tmp_path / "saved")
    with pytest.raises(ValueError, match=re.escape(f"dataset {tmp_path / 'saved'} ({empty_split} split) holds no rows")):
        load_multiple_choice_dataset(str(tmp_path / "saved"))
    Dataset.from_dict(row).select([]).save_to_disk(tmp_path / "one")
    with pytest.raises(ValueError, match=re.escape(f"dataset {tmp_path / 'one'} holds no rows")):
        load_multiple_choice_dataset(str(tmp_path / "one"))
