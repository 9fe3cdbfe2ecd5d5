"""Unit tests of source reading and the ingest stage (hashing and splitting), on small real files."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from tabpipe.config import PipelineConfig, SourceConfig, SourceFormat, parse_config
from tabpipe.errors import ConfigError, SourceError
from tabpipe.io import read_table, sha256_file
from tabpipe.stages.ingest import ingest

# --------------------------------------------------------------------------- helpers


def sample_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "id": [1, 2, 3, 4],
            "amount": [0.5, 1.25, np.nan, -3.0],
            "city": ["paris", "oslo", None, "rome"],
            "flag": [True, False, True, False],
            "label": ["yes", "no", "no", "yes"],
        }
    )


def generated_frame(n: int = 200, seed: int = 0, yes_share: float = 0.3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n_yes = round(n * yes_share)
    labels = np.array(["yes"] * n_yes + ["no"] * (n - n_yes))
    rng.shuffle(labels)
    days = rng.integers(0, 60, size=n)  # many ties: several rows per day
    stamps = pd.Timestamp("2024-01-01") + pd.to_timedelta(days, unit="D")
    return pd.DataFrame(
        {
            "id": np.arange(n),
            "x": rng.normal(size=n).round(6),
            "when": stamps.strftime("%Y-%m-%dT%H:%M:%S"),
            "label": labels,
        }
    )


def make_config(uri: Path | str, *, task: str = "binary_classification", **extra: Any) -> PipelineConfig:
    classification = task != "regression"
    columns: dict[str, Any] = {
        "id": {"dtype": "integer", "unique": True},
        "x": {"dtype": "float"},
        "when": {"dtype": "datetime"},
        "label": {"dtype": "string"} if classification else {"dtype": "float"},
    }
    data: dict[str, Any] = {
        "name": "ingest-test",
        "task": task,
        "target": "label",
        "source": {"uri": str(uri)},
        "contract": {"name": "ingest-test", "columns": columns},
        "models": [{"estimator": "logistic_regression" if classification else "ridge"}],
        "evaluation": {"primary_metric": "accuracy" if classification else "rmse"},
        "registry": {"model_name": "ingest-test"},
        **extra,
    }
    return parse_config(data)


def write_csv(frame: pd.DataFrame, path: Path) -> Path:
    frame.to_csv(path, index=False)
    return path


def ids(frame: pd.DataFrame) -> set[int]:
    return set(frame["id"].tolist())


# --------------------------------------------------------------------------- read_table: formats


def test_csv_parquet_json_records_and_json_lines_read_equal(tmp_path: Path) -> None:
    frame = sample_frame()
    csv = tmp_path / "t.csv"
    frame.to_csv(csv, index=False)
    parquet = tmp_path / "t.parquet"
    frame.to_parquet(parquet, index=False)
    records = tmp_path / "t.json"
    frame.to_json(records, orient="records")
    lines = tmp_path / "t.jsonl"
    frame.to_json(lines, orient="records", lines=True)
    assert records.read_text().startswith("[")
    assert lines.read_text().count("\n") >= 3

    read = {
        "csv": read_table(str(csv), SourceFormat.CSV)[0],
        "parquet": read_table(str(parquet), SourceFormat.PARQUET)[0],
        "json": read_table(str(records), SourceFormat.JSON)[0],
        "jsonl": read_table(str(lines), SourceFormat.JSON)[0],
    }
    reference = read["csv"]
    assert list(reference.columns) == ["id", "amount", "city", "flag", "label"]
    assert reference["id"].tolist() == [1, 2, 3, 4]
    assert reference["amount"].isna().tolist() == [False, False, True, False]
    assert reference["city"].isna().tolist() == [False, False, True, False]
    assert reference["flag"].tolist() == [True, False, True, False]
    for name, other in read.items():
        pd.testing.assert_frame_equal(other, reference, obj=name)


def test_json_lines_with_one_record(tmp_path: Path) -> None:
    path = tmp_path / "one.jsonl"
    path.write_text('{"a": 1, "b": "x"}\n')
    frame, _ = read_table(str(path), SourceFormat.JSON)
    assert frame.to_dict("records") == [{"a": 1, "b": "x"}]


def test_file_uri_is_read_like_a_path(tmp_path: Path) -> None:
    path = write_csv(sample_frame(), tmp_path / "t.csv")
    by_path, sha_path = read_table(str(path), SourceFormat.CSV)
    by_uri, sha_uri = read_table(f"file://{path}", SourceFormat.CSV)
    pd.testing.assert_frame_equal(by_uri, by_path)
    assert sha_uri == sha_path


def test_read_table_returns_sha256_of_the_bytes(tmp_path: Path) -> None:
    path = write_csv(sample_frame(), tmp_path / "t.csv")
    _, sha = read_table(str(path), SourceFormat.CSV)
    assert sha == hashlib.sha256(path.read_bytes()).hexdigest()
    assert sha == sha256_file(path)


@pytest.mark.parametrize(
    ("name", "fmt"),
    [
        ("a.csv", SourceFormat.CSV),
        ("a.CSV", SourceFormat.CSV),
        ("a.parquet", SourceFormat.PARQUET),
        ("a.pq", SourceFormat.PARQUET),
        ("a.json", SourceFormat.JSON),
        ("a.jsonl", SourceFormat.JSON),
        ("s3://bucket/dir/a.parquet?versionId=3", SourceFormat.PARQUET),
    ],
)
def test_format_inferred_from_suffix(name: str, fmt: SourceFormat) -> None:
    assert SourceConfig(uri=name).resolved_format is fmt


def test_format_not_inferable_names_source_format() -> None:
    with pytest.raises(ConfigError, match=r"source\.format.*'data\.txt'"):
        SourceConfig(uri="data.txt").resolved_format  # noqa: B018 (property raises)
    assert SourceConfig(uri="data.txt", format="csv").resolved_format is SourceFormat.CSV


# --------------------------------------------------------------------------- read_table: bad sources


def _bad_source(tmp_path: Path, kind: str) -> tuple[str, SourceFormat]:
    rng = np.random.default_rng(1)
    if kind == "missing":
        return str(tmp_path / "nope.csv"), SourceFormat.CSV
    if kind == "directory":
        (tmp_path / "adir").mkdir()
        return str(tmp_path / "adir"), SourceFormat.CSV
    path = tmp_path / f"{kind}.bin"
    content = {
        "empty": b"",
        "whitespace": b"  \n\t\n   \r\n",
        "corrupt-parquet": rng.bytes(4096),
        "truncated-parquet": sample_frame().to_parquet(index=False)[:-20],
        "garbage-csv": b"\x00\x82\xff" + rng.bytes(2048),
        "garbage-json": b"\x93\xc6" + rng.bytes(512),
        "header-only-csv": b"id,amount,label\n",
        "empty-json-array": b"[]",
        "unterminated-quote-csv": b'a,b\n1,"2\n3,4\n',
    }[kind]
    path.write_bytes(content)
    fmt = {
        "corrupt-parquet": SourceFormat.PARQUET,
        "truncated-parquet": SourceFormat.PARQUET,
        "garbage-json": SourceFormat.JSON,
        "empty-json-array": SourceFormat.JSON,
    }.get(kind, SourceFormat.CSV)
    return str(path), fmt


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("missing", "file not found"),
        ("directory", "is a directory"),
        ("empty", "file is empty"),
        ("whitespace", "file is empty"),
        ("corrupt-parquet", "not a valid parquet file"),
        ("truncated-parquet", "not a valid parquet file"),
        ("garbage-csv", "not a valid csv file"),
        ("garbage-json", "not a valid json file"),
        ("header-only-csv", "the table has no rows"),
        ("empty-json-array", "the table has no rows"),
        ("unterminated-quote-csv", "not a valid csv file"),
    ],
)
def test_bad_source_raises_source_error(tmp_path: Path, kind: str, expected: str) -> None:
    uri, fmt = _bad_source(tmp_path, kind)
    with pytest.raises(SourceError) as info:
        read_table(uri, fmt)
    message = str(info.value)
    assert expected in message
    assert Path(uri).name in message  # the message names the source


def test_an_s3_uri_without_a_configured_store_names_what_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MINIO_ENDPOINT", raising=False)
    with pytest.raises(ConfigError) as info:
        read_table("s3://bucket/data.csv", SourceFormat.CSV)
    assert "MINIO_ENDPOINT is not set" in str(info.value)


# --------------------------------------------------------------------------- ingest: splits


def test_split_sizes_add_up_and_do_not_overlap(tmp_path: Path) -> None:
    frame = generated_frame(200)
    config = make_config(write_csv(frame, tmp_path / "d.csv"))
    result = ingest(config)
    s = result.splits

    assert result.n_rows == 200
    assert (len(s.train), len(s.validation), len(s.test)) == (140, 20, 40)
    assert ids(s.train).isdisjoint(ids(s.validation))
    assert ids(s.train).isdisjoint(ids(s.test))
    assert ids(s.validation).isdisjoint(ids(s.test))
    assert ids(s.train) | ids(s.validation) | ids(s.test) == set(range(200))
    for split in (s.train, s.validation, s.test):
        assert list(split.columns) == list(frame.columns)
        assert split.index.tolist() == list(range(len(split)))
    # rows are carried intact
    whole = pd.concat([s.train, s.validation, s.test]).sort_values("id").reset_index(drop=True)
    pd.testing.assert_frame_equal(whole, pd.read_csv(tmp_path / "d.csv"))


def test_split_is_seeded(tmp_path: Path) -> None:
    path = write_csv(generated_frame(200), tmp_path / "d.csv")
    first = ingest(make_config(path, split={"seed": 3})).splits
    again = ingest(make_config(path, split={"seed": 3})).splits
    other = ingest(make_config(path, split={"seed": 4})).splits

    for a, b in ((first.train, again.train), (first.validation, again.validation), (first.test, again.test)):
        pd.testing.assert_frame_equal(a, b)
    assert ids(first.test) != ids(other.test)
    assert ids(first.validation) != ids(other.validation)


def test_classification_split_is_stratified(tmp_path: Path) -> None:
    frame = generated_frame(400, yes_share=0.2)
    config = make_config(
        write_csv(frame, tmp_path / "d.csv"), split={"test_size": 0.25, "validation_size": 0.15}
    )
    s = ingest(config).splits
    overall = (frame["label"] == "yes").mean()
    assert overall == pytest.approx(0.2)
    for split in (s.train, s.validation, s.test):
        share = (split["label"] == "yes").mean()
        assert abs(share - overall) <= 0.02, (len(split), share)


def test_regression_split_sizes(tmp_path: Path) -> None:
    frame = generated_frame(100)
    frame["label"] = np.linspace(0.0, 1.0, 100)
    config = make_config(write_csv(frame, tmp_path / "d.csv"), task="regression")
    s = ingest(config).splits
    assert (len(s.train), len(s.validation), len(s.test)) == (70, 10, 20)
    assert ids(s.train) | ids(s.validation) | ids(s.test) == set(range(100))


def test_time_based_split_orders_train_before_validation_before_test(tmp_path: Path) -> None:
    frame = generated_frame(200, seed=5)  # rows are in random time order in the file
    assert not pd.to_datetime(frame["when"]).is_monotonic_increasing
    config = make_config(write_csv(frame, tmp_path / "d.csv"), split={"timestamp_column": "when"})
    s = ingest(config).splits

    assert (len(s.train), len(s.validation), len(s.test)) == (140, 20, 40)
    train_ts, val_ts, test_ts = (pd.to_datetime(x["when"]) for x in (s.train, s.validation, s.test))
    assert train_ts.max() <= val_ts.min()
    assert val_ts.max() <= test_ts.min()
    assert ids(s.train) | ids(s.validation) | ids(s.test) == set(range(200))
    # the newest rows are the test split
    newest = frame.assign(ts=pd.to_datetime(frame["when"])).sort_values("ts", kind="stable").tail(40)
    assert test_ts.min() == newest["ts"].min()


def test_time_based_split_with_unparseable_timestamps(tmp_path: Path) -> None:
    frame = generated_frame(50)
    frame.loc[7, "when"] = "not a date"
    config = make_config(write_csv(frame, tmp_path / "d.csv"), split={"timestamp_column": "when"})
    with pytest.raises(SourceError, match="split.timestamp_column 'when'"):
        ingest(config)


def test_ingest_from_parquet_source(tmp_path: Path) -> None:
    frame = generated_frame(60)
    path = tmp_path / "d.parquet"
    frame.to_parquet(path, index=False)
    result = ingest(make_config(path))
    assert result.n_rows == 60
    assert result.data_version == hashlib.sha256(path.read_bytes()).hexdigest()


# --------------------------------------------------------------------------- ingest: version and failures


def test_data_version_is_sha256_of_the_file_bytes(tmp_path: Path) -> None:
    path = write_csv(generated_frame(50), tmp_path / "d.csv")
    first = ingest(make_config(path)).data_version
    assert first == hashlib.sha256(path.read_bytes()).hexdigest()
    # a one-byte edit changes the version
    path.write_bytes(path.read_bytes().replace(b"yes", b"no ", 1))
    assert ingest(make_config(path)).data_version != first


def test_missing_target_column(tmp_path: Path) -> None:
    frame = generated_frame(50).drop(columns=["label"])
    config = make_config(write_csv(frame, tmp_path / "d.csv"))
    with pytest.raises(SourceError) as info:
        ingest(config)
    message = str(info.value)
    assert "target column 'label' is missing" in message
    assert "id" in message and "when" in message  # shows the columns it did find


@pytest.mark.parametrize("n_rows", [1, 2, 4])
def test_too_few_rows_to_split(tmp_path: Path, n_rows: int) -> None:
    frame = generated_frame(50).head(n_rows)
    config = make_config(write_csv(frame, tmp_path / "d.csv"))
    with pytest.raises(SourceError, match=rf"{n_rows} row\(s\): too few to split"):
        ingest(config)


def test_ingest_missing_source_file(tmp_path: Path) -> None:
    config = make_config(tmp_path / "absent.csv")
    with pytest.raises(SourceError, match="file not found"):
        ingest(config)


# --------------------------------------------------------------------------- leakage guard at the split


def _with_copies(n: int = 300, copies: int = 100, seed: int = 3) -> pd.DataFrame:
    frame = generated_frame(n, seed=seed).drop(columns=["id"])
    return pd.concat([frame, frame.iloc[:copies]], ignore_index=True)


def _keys(frame: pd.DataFrame) -> set[tuple]:
    return set(map(tuple, frame.astype(str).to_numpy()))


def _config_without_id(uri: Path, **extra: Any) -> PipelineConfig:
    config = make_config(uri, **extra)
    columns = {k: v for k, v in config.contract.columns.items() if k != "id"}
    contract = config.contract.model_copy(update={"columns": columns})
    return config.model_copy(update={"contract": contract})


def test_exact_duplicates_are_dropped_before_the_split_and_counted(tmp_path: Path) -> None:
    frame = _with_copies()
    result = ingest(_config_without_id(write_csv(frame, tmp_path / "d.csv")))
    assert result.n_rows == 400 and result.duplicates_removed == 100
    s = result.splits
    assert len(s.train) + len(s.validation) + len(s.test) == 300
    assert not (_keys(s.test) & _keys(s.train)) and not (_keys(s.validation) & _keys(s.train))


def test_duplicates_kept_together_in_one_split(tmp_path: Path) -> None:
    frame = _with_copies()
    config = _config_without_id(write_csv(frame, tmp_path / "d.csv"), split={"duplicates": "group"})
    result = ingest(config)
    s = result.splits
    assert result.duplicates_removed == 0
    assert len(s.train) + len(s.validation) + len(s.test) == 400
    assert not (_keys(s.test) & _keys(s.train)) and not (_keys(s.validation) & _keys(s.test))


def test_group_column_keeps_each_entity_in_one_split(tmp_path: Path) -> None:
    frame = generated_frame(400, seed=8)
    frame["id"] = np.arange(400) // 4  # 100 entities of 4 rows each
    config = make_config(write_csv(frame, tmp_path / "g.csv"), split={"group_column": "id"})
    s = ingest(config).splits
    assert not (ids(s.train) & ids(s.test)) and not (ids(s.train) & ids(s.validation))
    assert not (ids(s.validation) & ids(s.test))
    assert len(s.test) == pytest.approx(80, abs=4) and len(s.validation) == pytest.approx(40, abs=4)


def test_a_split_with_one_class_fails_with_a_clear_message(tmp_path: Path) -> None:
    from tabpipe.errors import DataValidationError

    frame = generated_frame(200, seed=1, yes_share=0.5)
    frame["id"] = np.where(frame["label"] == "yes", 0, np.arange(1, 201))  # every "yes" is one entity
    config = make_config(write_csv(frame, tmp_path / "one.csv"), split={"group_column": "id"})
    with pytest.raises(DataValidationError) as err:
        ingest(config)
    message = str(err.value)
    assert "split holds a single class (no)" in message and "a classifier needs at least two" in message


def test_rows_without_a_target_fail_at_ingest_with_the_count(tmp_path: Path) -> None:
    from tabpipe.errors import DataValidationError

    frame = generated_frame(100)
    frame.loc[[3, 7, 9], "label"] = None
    with pytest.raises(DataValidationError) as err:
        ingest(make_config(write_csv(frame, tmp_path / "nan.csv")))
    assert "target 'label': 3 row(s) have no value" in str(err.value)


def test_a_repeated_csv_header_is_refused_not_renamed(tmp_path: Path) -> None:
    path = tmp_path / "dup.csv"
    path.write_text("x,label,x,extra\n1,yes,2,a\n3,no,4,b\n")
    with pytest.raises(SourceError) as err:
        read_table(str(path), SourceFormat.CSV)
    assert "the header names column(s) ['x'] more than once" in str(err.value)


def test_ingest_reads_the_contracts_na_values_as_missing(tmp_path: Path) -> None:
    frame = generated_frame(100)
    frame["x"] = frame["x"].astype(object)
    frame.loc[[1, 2], "x"] = "?"
    config = make_config(write_csv(frame, tmp_path / "q.csv"))
    contract = config.contract.model_copy(update={"na_values": ["?"]})
    config = config.model_copy(update={"contract": contract})
    s = ingest(config).splits
    whole = pd.concat([s.train, s.validation, s.test])
    assert whole["x"].dtype == np.float64 and int(whole["x"].isna().sum()) == 2
