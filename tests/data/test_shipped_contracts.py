"""Data-contract tests on the data sets the repository ships.

Each shipped config is loaded the way a user's is (``load_config``: validated,
contract inlined) and checked against its own data:

* the shipped data passes its contract and the whole validate stage, and the
  report's figures are what the CSV file holds (counted from the raw text with
  the ``csv`` module, independently of pandas);
* each contract is strict enough to matter: a copy of the data, corrupted in a
  few rows the way real data goes wrong and read back from a CSV file like a
  source, yields exactly the violation line naming the column and the rule;
* the contract and the config agree on the target and on the model's features.

No model is trained here; the suite reads four CSV files and stays fast.
"""

from __future__ import annotations

import csv
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pandas as pd
import pytest

from tabpipe.config import PipelineConfig, SourceFormat, load_config
from tabpipe.contract import ColumnType
from tabpipe.features import feature_columns
from tabpipe.io import read_table
from tabpipe.stages.validate import check_contract, validate_frame

REPO = Path(__file__).resolve().parents[2]

#: The shipped configs, by a short name used in test ids.
CONFIGS: dict[str, Path] = {
    "phishing": REPO / "configs" / "phishing.yaml",
    "housing": REPO / "configs" / "housing.yaml",
    "wine": REPO / "configs" / "wine.yaml",
    "phishing_small": REPO / "tests" / "fixtures" / "e2e" / "phishing_small.yaml",
}
PHISHING_LIKE = ("phishing", "phishing_small")

#: Rows a corruption touches (wine, the smallest data set, has 178 rows).
ROWS = [3, 42, 117]
N = len(ROWS)


@cache
def _shipped(name: str) -> tuple[PipelineConfig, pd.DataFrame]:
    """The config and its source table, read once per session (tests copy before mutating)."""
    config = load_config(CONFIGS[name])
    frame, _sha256 = read_table(config.source.uri, config.source.resolved_format)
    return config, frame


def _raw_csv(path: Path) -> tuple[list[str], list[list[str]]]:
    """The header and the data rows of a CSV file, as text."""
    with path.open(newline="") as handle:
        header, *rows = csv.reader(handle)
    return header, rows


# --------------------------------------------------------------------------- the data passes


@pytest.mark.parametrize("name", CONFIGS)
def test_shipped_data_passes_its_contract(name: str) -> None:
    config, frame = _shipped(name)
    assert check_contract(frame, config.contract) == []


@pytest.mark.parametrize("name", CONFIGS)
def test_validate_stage_passes_and_reports_what_the_file_holds(name: str) -> None:
    config, frame = _shipped(name)
    path = Path(config.source.uri)
    n_lines = len(path.read_text().splitlines())
    header, rows = _raw_csv(path)
    n = len(rows)
    assert n == n_lines - 1  # no quoted line breaks: one record per line

    report = validate_frame(frame, config, None, config.name)

    assert report.violations == []
    assert report.passed
    assert report.n_rows == n_lines - 1
    assert report.n_columns == len(header) == len(config.contract.columns)
    assert set(header) == set(config.contract.columns)  # every contract column present, nothing else
    quality = report.quality
    assert quality["n_rows"] == n
    empty_cells = {col: sum(row[i] == "" for row in rows) for i, col in enumerate(header)}
    assert quality["missing_ratio"] == pytest.approx({col: k / n for col, k in empty_cells.items()})
    assert quality["duplicate_rows"] == n - len({tuple(row) for row in rows})
    assert quality["constant_columns"] == []
    target_at = header.index(config.target)
    if config.task.is_classification:
        counts = Counter(row[target_at] for row in rows)
        assert quality["class_balance"] == pytest.approx({label: k / n for label, k in counts.items()})
    else:
        assert quality["class_balance"] is None


def test_report_figures_are_not_vacuous() -> None:
    # The comparisons above must compare something: housing has missing cells, phishing duplicates.
    housing, frame = _shipped("housing")
    missing = validate_frame(frame, housing, None, "housing").quality["missing_ratio"]
    assert {col for col, ratio in missing.items() if ratio > 0} == {
        "rooms",
        "age_years",
        "neighbourhood",
        "energy_label",
        "heating",
    }
    phishing, frame = _shipped("phishing")
    assert validate_frame(frame, phishing, None, "phishing").quality["duplicate_rows"] > 0


# --------------------------------------------------------------------------- corruptions are caught


def _set(column: str, value: object) -> Callable[[pd.DataFrame], pd.DataFrame]:
    """Put ``value`` in :data:`ROWS` of ``column`` (as object, so any value fits)."""

    def corrupt(frame: pd.DataFrame) -> pd.DataFrame:
        series = frame[column].astype(object)
        series.iloc[ROWS] = value
        frame[column] = series
        return frame

    return corrupt


def _drop(column: str) -> Callable[[pd.DataFrame], pd.DataFrame]:
    return lambda frame: frame.drop(columns=[column])


def _add(column: str) -> Callable[[pd.DataFrame], pd.DataFrame]:
    return lambda frame: frame.assign(**{column: "x"})


@dataclass(frozen=True)
class Corruption:
    """A way the data goes wrong, and the exact lines the contract check must give."""

    id: str
    datasets: tuple[str, ...]
    corrupt: Callable[[pd.DataFrame], pd.DataFrame]
    expected: list[str]


PHISHING_ALLOWED = "[-1, 0, 1]"
NEIGHBOURHOODS = "['centre', 'riverside', 'old_town', 'university', 'harbour', 'suburbs']"

CORRUPTIONS = [
    # phishing (the full data set and the e2e fixture share the column rules)
    Corruption(
        "code-outside-allowed-set",
        PHISHING_LIKE,
        _set("URL_Length", 7),
        [f"column 'URL_Length': {N} value(s) not in allowed set {PHISHING_ALLOWED} (e.g. 7)"],
    ),
    Corruption(
        "label-recoded-0-1",
        PHISHING_LIKE,
        _set("Result", 0),
        [f"column 'Result': {N} value(s) not in allowed set [-1, 1] (e.g. 0)"],
    ),
    Corruption(
        "fractional-code",
        PHISHING_LIKE,
        _set("SSLfinal_State", 0.5),
        [f"column 'SSLfinal_State': {N} non-integer value(s) (e.g. 0.5)"],
    ),
    Corruption(
        "null-code",
        PHISHING_LIKE,
        _set("Favicon", None),
        [f"column 'Favicon': {N} null value(s) but nullable is false"],
    ),
    Corruption(
        "text-in-integer-column",
        PHISHING_LIKE,
        _set("port", "yes"),
        ["column 'port' expected dtype integer, found str"],
    ),
    Corruption("missing-column", PHISHING_LIKE, _drop("Page_Rank"), ["missing column(s): ['Page_Rank']"]),
    Corruption("extra-column", PHISHING_LIKE, _add("url"), ["unexpected column(s): ['url']"]),
    # housing
    Corruption(
        "unknown-neighbourhood",
        ("housing",),
        _set("neighbourhood", "downtown"),
        [f"column 'neighbourhood': {N} value(s) not in allowed set {NEIGHBOURHOODS} (e.g. 'downtown')"],
    ),
    Corruption(
        "energy-label-a-plus",
        ("housing",),
        _set("energy_label", "A+"),
        [
            f"column 'energy_label': {N} value(s) not in allowed set "
            "['A', 'B', 'C', 'D', 'E', 'F', 'G'] (e.g. 'A+')"
        ],
    ),
    Corruption(
        "area-above-max",
        ("housing",),
        _set("area_sqm", 4000.0),
        [f"column 'area_sqm': {N} value(s) above max 400 (e.g. 4000)"],
    ),
    Corruption(
        "zero-rooms",
        ("housing",),
        _set("rooms", 0),
        [f"column 'rooms': {N} value(s) below min 1 (e.g. 0)"],
    ),
    Corruption(
        "negative-price",
        ("housing",),
        _set("price", -100.0),
        [f"column 'price': {N} value(s) below min 0 (e.g. -100)"],
    ),
    Corruption(
        "null-distance",
        ("housing",),
        _set("distance_km", None),
        [f"column 'distance_km': {N} null value(s) but nullable is false"],
    ),
    Corruption(
        "text-in-float-column",
        ("housing",),
        _set("age_years", "new build"),
        ["column 'age_years' expected dtype float, found str"],
    ),
    Corruption(
        "duplicated-listing-id",
        ("housing",),
        _set("listing_id", "L999999"),
        [f"column 'listing_id': 1 duplicated value(s) in {N} row(s) but unique is true (e.g. 'L999999')"],
    ),
    Corruption("missing-column", ("housing",), _drop("heating"), ["missing column(s): ['heating']"]),
    Corruption("extra-column", ("housing",), _add("agent_email"), ["unexpected column(s): ['agent_email']"]),
    # ... and what the housing contract tolerates: nulls where the data has them
    Corruption("null-in-nullable-rooms", ("housing",), _set("rooms", None), []),
    # wine
    Corruption(
        "unknown-cultivar",
        ("wine",),
        _set("cultivar", "cultivar_d"),
        [
            f"column 'cultivar': {N} value(s) not in allowed set "
            "['cultivar_a', 'cultivar_b', 'cultivar_c'] (e.g. 'cultivar_d')"
        ],
    ),
    Corruption(
        "negative-hue",
        ("wine",),
        _set("hue", -0.5),
        [f"column 'hue': {N} value(s) below min 0 (e.g. -0.5)"],
    ),
    Corruption(
        "fractional-proline",
        ("wine",),
        _set("proline", 1065.5),
        [f"column 'proline': {N} non-integer value(s) (e.g. 1065.5)"],
    ),
    Corruption(
        "null-flavanoids",
        ("wine",),
        _set("flavanoids", None),
        [f"column 'flavanoids': {N} null value(s) but nullable is false"],
    ),
    Corruption(
        "decimal-comma",
        ("wine",),
        _set("alcohol", "13,2"),
        ["column 'alcohol' expected dtype float, found str"],
    ),
    Corruption(
        "missing-column", ("wine",), _drop("color_intensity"), ["missing column(s): ['color_intensity']"]
    ),
    Corruption("extra-column", ("wine",), _add("vintage"), ["unexpected column(s): ['vintage']"]),
]


@pytest.mark.parametrize(
    ("name", "case"),
    [pytest.param(name, case, id=f"{name}-{case.id}") for case in CORRUPTIONS for name in case.datasets],
)
def test_contract_catches_corrupted_rows(name: str, case: Corruption, tmp_path: Path) -> None:
    config, frame = _shipped(name)
    # Written and read back like a source, so the dtypes are the ones a real file would get.
    path = tmp_path / "corrupted.csv"
    case.corrupt(frame.copy()).to_csv(path, index=False)
    corrupted, _sha256 = read_table(str(path), SourceFormat.CSV)

    assert check_contract(corrupted, config.contract) == case.expected

    report = validate_frame(corrupted, config, None, config.name)
    assert set(case.expected) <= set(report.violations)
    if case.expected:
        assert not report.passed


def test_every_shipped_data_set_has_corruption_cases() -> None:
    covered = {name for case in CORRUPTIONS for name in case.datasets}
    assert covered == set(CONFIGS)


@pytest.mark.parametrize("name", CONFIGS)
def test_contract_constrains_every_column(name: str) -> None:
    contract = _shipped(name)[0].contract
    assert contract.allow_extra_columns is False
    unconstrained = [
        col
        for col, rules in contract.columns.items()
        if rules.allowed is None and rules.min is None and rules.max is None and not rules.unique
    ]
    assert unconstrained == []


@pytest.mark.parametrize("name", CONFIGS)
def test_contract_catches_a_truncated_table(name: str) -> None:
    config, frame = _shipped(name)
    min_rows = config.contract.min_rows
    assert len(frame) >= min_rows > 1
    short = frame.head(min_rows - 1)
    assert check_contract(short, config.contract) == [
        f"table has {min_rows - 1} row(s), fewer than min_rows {min_rows}"
    ]


# --------------------------------------------------------------------------- the config agrees


@pytest.mark.parametrize("name", CONFIGS)
def test_config_and_contract_agree(name: str) -> None:
    config, frame = _shipped(name)
    columns = config.contract.columns
    assert config.target in columns

    features = feature_columns(config)
    raw = features.raw
    assert raw, "the model would have no input"
    assert set(raw) <= set(columns)
    pii = set(config.contract.pii_columns)
    identifiers = {col for col, rules in columns.items() if rules.unique}
    assert config.target not in raw
    assert not set(raw) & pii
    assert not set(raw) & identifiers
    # No contract column is silently left out: each is a feature or excluded for a stated reason.
    datetimes = {col for col, rules in columns.items() if rules.dtype is ColumnType.DATETIME}
    excluded = {config.target, *pii, *identifiers, *datetimes, *config.features.drop}
    assert set(raw) == set(columns) - excluded
    # The engineered features are computed from model inputs, the slices are real columns.
    for feature in config.features.engineered:
        assert set(feature.inputs) <= set(features.numeric), feature.name
    assert set(config.evaluation.slices) <= set(columns)


def test_housing_identifier_is_not_a_feature() -> None:
    # The one shipped PII column: declared as such, and kept away from the model.
    config, _ = _shipped("housing")
    assert config.contract.pii_columns == {"listing_id": "drop"}
    assert "listing_id" not in feature_columns(config).raw


@pytest.mark.parametrize("name", ["phishing", "phishing_small", "wine"])
def test_classification_target_allows_exactly_the_classes_present(name: str) -> None:
    config, frame = _shipped(name)
    assert config.task.is_classification
    allowed = config.contract.columns[config.target].allowed
    assert allowed is not None
    assert set(frame[config.target].unique().tolist()) == set(allowed)
