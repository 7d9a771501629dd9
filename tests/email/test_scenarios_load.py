"""Scenario loaders: synthetic jsonl and the public parquet layout, filters, subsets, errors."""
from __future__ import annotations

import datetime as dt
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from inboxrl.email.scenarios import (ScenarioError, load_ids, load_scenarios, save_ids,
                                     select_ids, validation_subset)
from inboxrl.email.types import Scenario

ROWS = [  # synthetic layout: string ids, one reference each except "s3"
    dict(id="s1", question="Q1?", answer="$48,200", message_ids=["<a@x>"],
         inbox_address="Jane.Doe@X.com", query_date="2001-05-01", how_realistic=0.9, split="train"),
    dict(id="s2", question="Q2?", answer="Houston", message_ids=["<b@x>"],
         inbox_address="jane.doe@x.com", query_date="2001-06-01", how_realistic=0.5, split="test"),
    dict(id="s3", question="Q3?", answer="PO-58213", message_ids=["<c@x>", "<d@x>"],
         inbox_address="bob@x.com", query_date="2001-07-01", how_realistic=None, split="train"),
    dict(id="s4", question="Q4?", answer="March 14, 2001", message_ids=["<e@x>"],
         inbox_address="bob@x.com", query_date="2001-08-01", split="train"),
]


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _public_table(ids, split=None, timestamp_dates=False):
    """The enron_emails_sample_questions layout: integer ids, list of message ids."""
    n = len(ids)
    cols = {
        "id": pa.array(ids, pa.int64()),
        "question": [f"Question {i}?" for i in ids],
        "answer": [f"answer {i}" for i in ids],
        "message_ids": pa.array([[f"<{i}.JavaMail.evans@thyme>"] * (1 + i % 2) for i in ids],
                                pa.list_(pa.string())),
        "how_realistic": pa.array([0.25 * (i % 4) for i in ids], pa.float64()),
        "inbox_address": ["vince.kaminski@enron.com"] * n,
        "query_date": (pa.array([dt.datetime(2001, 5, 16)] * n, pa.timestamp("us"))
                       if timestamp_dates else ["2001-05-16"] * n),
    }
    if split is not None:
        cols["split"] = [split] * n
    return pa.table(cols)


def test_jsonl_synthetic_layout(tmp_path):
    got = load_scenarios(_jsonl(tmp_path / "s.jsonl", ROWS))
    assert [s.id for s in got] == ["s1", "s2", "s3", "s4"]
    assert got[0] == Scenario("s1", "Q1?", "$48,200", ["<a@x>"], "jane.doe@x.com", "2001-05-01",
                              0.9, "train")
    assert got[2].how_realistic is None and got[3].how_realistic is None


def test_parquet_public_layout(tmp_path):
    pq.write_table(_public_table([7, 8, 9], split="train"), tmp_path / "q.parquet")
    got = load_scenarios(tmp_path / "q.parquet")
    assert [s.id for s in got] == ["7", "8", "9"]  # ids become strings
    assert got[0].message_ids == ["<7.JavaMail.evans@thyme>"] * 2  # 1 + 7 % 2 ids
    assert got[1].message_ids == ["<8.JavaMail.evans@thyme>"]
    assert got[2].how_realistic == 0.25 and got[0].query_date == "2001-05-16"
    assert {s.split for s in got} == {"train"}


def test_parquet_timestamp_dates_and_split_from_file_names(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    pq.write_table(_public_table([1, 2], timestamp_dates=True), data / "train-00000-of-00001.parquet")
    pq.write_table(_public_table([3]), data / "test-00000-of-00001.parquet")
    got = load_scenarios(tmp_path)
    assert [(s.id, s.split) for s in got] == [("3", "test"), ("1", "train"), ("2", "train")]
    assert got[1].query_date == "2001-05-16"
    assert [s.id for s in load_scenarios(tmp_path, split="test")] == ["3"]


def test_ids_repeated_across_splits_are_qualified(tmp_path):
    pq.write_table(_public_table([0, 1]), tmp_path / "train.parquet")
    pq.write_table(_public_table([0]), tmp_path / "test.parquet")
    assert sorted(s.id for s in load_scenarios(tmp_path)) == ["test/0", "train/0", "train/1"]
    (tmp_path / "dup").mkdir()
    _jsonl(tmp_path / "dup" / "a.jsonl", [ROWS[0], ROWS[0]])
    with pytest.raises(ScenarioError, match="duplicate scenario ids: s1"):
        load_scenarios(tmp_path / "dup")


def test_directory_prefers_scenarios_file(tmp_path):
    _jsonl(tmp_path / "scenarios.jsonl", ROWS[:2])
    _jsonl(tmp_path / "emails.jsonl", [{"message_id": "<a@x>"}])
    _jsonl(tmp_path / "other.jsonl", ROWS[2:])
    assert [s.id for s in load_scenarios(tmp_path)] == ["s1", "s2"]


def test_parquet_written_by_pandas(tmp_path):
    import pandas as pd

    pd.DataFrame([dict(r, id=i) for i, r in enumerate(ROWS)]).to_parquet(tmp_path / "p.parquet")
    got = load_scenarios(tmp_path / "p.parquet", max_messages=1)
    assert [(s.id, s.message_ids) for s in got] == [("0", ["<a@x>"]), ("1", ["<b@x>"]),
                                                    ("3", ["<e@x>"])]
    assert got[2].how_realistic is None  # NaN in the frame


def test_filters_shuffle_and_limit(tmp_path):
    path = _jsonl(tmp_path / "s.jsonl", ROWS)
    assert [s.id for s in load_scenarios(path, split="train")] == ["s1", "s3", "s4"]
    assert [s.id for s in load_scenarios(path, max_messages=1)] == ["s1", "s2", "s4"]
    assert [s.id for s in load_scenarios(path, exclude_ids=["s2", "s4"])] == ["s1", "s3"]
    assert [s.id for s in load_scenarios(path, split="train", max_messages=1, limit=1)] == ["s1"]
    a = [s.id for s in load_scenarios(path, shuffle_seed=3)]
    assert a == [s.id for s in load_scenarios(path, shuffle_seed=3)]
    assert sorted(a) == ["s1", "s2", "s3", "s4"]
    orders = {tuple(s.id for s in load_scenarios(path, shuffle_seed=k)) for k in range(8)}
    assert len(orders) > 1  # different seeds give different orders
    assert [s.id for s in load_scenarios(path, shuffle_seed=3, limit=2)] == a[:2]
    pq.write_table(_public_table([5, 6]), tmp_path / "p.parquet")
    assert [s.id for s in load_scenarios(tmp_path / "p.parquet", exclude_ids=[5])] == ["6"]


def test_missing_columns_named_in_one_message(tmp_path):
    pq.write_table(_public_table([1]).drop(["answer", "query_date"]), tmp_path / "bad.parquet")
    with pytest.raises(ScenarioError) as e:
        load_scenarios(tmp_path / "bad.parquet")
    msg = str(e.value)
    assert "bad.parquet" in msg and "missing columns: answer, query_date" in msg
    assert "\n" not in msg
    rows = [{k: v for k, v in ROWS[0].items() if k != "message_ids"}]
    with pytest.raises(ScenarioError, match=r"s\.jsonl: missing columns: message_ids"):
        load_scenarios(_jsonl(tmp_path / "s.jsonl", rows))


@pytest.mark.parametrize("name, content, pattern", [
    ("broken.jsonl", '{"id": 1}\n{not json\n', r"broken\.jsonl: line 2 is not valid JSON"),
    ("corrupt.parquet", "not a parquet file", r"corrupt\.parquet: cannot read parquet"),
    ("notes.txt", "hello", r"notes\.txt: unsupported file type"),
])
def test_unreadable_files(tmp_path, name, content, pattern):
    (tmp_path / name).write_text(content)
    with pytest.raises(ScenarioError, match=pattern):
        load_scenarios(tmp_path / name)


def test_missing_path_empty_dir_and_bad_values(tmp_path):
    with pytest.raises(ScenarioError, match="no such file"):
        load_scenarios(tmp_path / "nope.jsonl")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ScenarioError, match="holds no"):
        load_scenarios(tmp_path / "empty")
    bad = dict(ROWS[0], message_ids=17)
    with pytest.raises(ScenarioError, match="record 1: 'message_ids' must be a list"):
        load_scenarios(_jsonl(tmp_path / "b.jsonl", [bad]))
    with pytest.raises(ScenarioError, match="record 2: empty 'answer'"):
        load_scenarios(_jsonl(tmp_path / "c.jsonl", [ROWS[0], dict(ROWS[1], answer="")]))


def _many(n):
    return [Scenario(f"id{i:03d}", "q?", "a", ["<m>"], "x@y.com", "2001-01-01") for i in range(n)]


def test_validation_subset_is_fixed_and_order_independent():
    items = _many(50)
    a = validation_subset(items, 10, seed=7)
    assert len(a) == 10 and len({s.id for s in a}) == 10
    assert [s.id for s in validation_subset(list(reversed(items)), 10, seed=7)] == [s.id for s in a]
    assert [s.id for s in validation_subset(items, 10, seed=8)] != [s.id for s in a]
    assert len(validation_subset(items, 500, seed=7)) == 50
    with pytest.raises(ValueError):
        validation_subset(items, -1, seed=0)


def test_save_and_load_ids(tmp_path):
    chosen = validation_subset(_many(20), 5, seed=1)
    path = save_ids(tmp_path / "run" / "validation_ids.json", chosen)
    assert json.loads(path.read_text()) == {"ids": [s.id for s in chosen]}
    ids = load_ids(path)
    assert select_ids(_many(20), ids) == chosen
    (tmp_path / "list.json").write_text('[3, "x"]')
    assert load_ids(tmp_path / "list.json") == ["3", "x"]
    with pytest.raises(ScenarioError, match="not in the scenario set"):
        select_ids(_many(2), ids)
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(ScenarioError, match="bad.json: cannot read scenario ids"):
        load_ids(tmp_path / "bad.json")
