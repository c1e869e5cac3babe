"""Data tests of the synthetic Home Credit generator, on real files of the ``tiny`` size."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest

from creditrisk.data import synthetic
from creditrisk.data.synthetic import (
    MARKER_FILE,
    SENTINEL_DAYS,
    SIZES,
    DriftSpec,
    generate,
    read_marker,
    resolve_size,
)
from creditrisk.data.tables import tables

pytestmark = pytest.mark.data

KAGGLE_FILES = {f"{name}.csv" for name in tables()}
SEED = 42


def _read(directory: Path, stem: str) -> pd.DataFrame:
    return pd.read_csv(directory / f"{stem}.csv", low_memory=False)


def _digests(directory: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in directory.iterdir()}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("tiny") / "raw"
    generate(out, "tiny", SEED)
    return out


@pytest.fixture(scope="module")
def frames(tiny: Path) -> dict[str, pd.DataFrame]:
    return {name: _read(tiny, name) for name in tables()}


@pytest.fixture(scope="module")
def applicants(frames: dict[str, pd.DataFrame]) -> pd.DataFrame:
    return pd.concat([frames["application_train"], frames["application_test"]])


@pytest.fixture(scope="module")
def batches(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("batches")
    generate(root / "null", "tiny", SEED, drift=DriftSpec())
    generate(root / "drift", "tiny", SEED, drift=DriftSpec.default())
    return {"null": root / "null", "drift": root / "drift"}


# ---------------------------------------------------------------- layout and types


def test_writes_exactly_the_kaggle_files_and_the_marker(tiny: Path) -> None:
    assert {p.name for p in tiny.iterdir()} == KAGGLE_FILES | {MARKER_FILE}


@pytest.mark.parametrize("name", list(tables()))
def test_header_is_the_canonical_column_list(tiny: Path, name: str) -> None:
    header = (tiny / f"{name}.csv").open(encoding="utf-8").readline().rstrip("\n")
    assert header == ",".join(tables()[name].column_names)


@pytest.mark.parametrize("name", list(tables()))
def test_columns_parse_with_the_declared_types(frames: dict[str, pd.DataFrame], name: str) -> None:
    expected_kind = {"int": "i", "float": "f", "string": "O"}
    df = frames[name]
    wrong = {
        col.name: str(df[col.name].dtype)
        for col in tables()[name].columns
        if df[col.name].dtype.kind != expected_kind[col.dtype]
    }
    assert wrong == {}


@pytest.mark.parametrize("name", list(tables()))
def test_duckdb_reads_every_row_with_the_declared_types(tiny: Path, name: str) -> None:
    spec = tables()[name]
    relation = duckdb.read_csv(str(tiny / spec.file_name), header=True, dtype=spec.duckdb_types)
    assert relation.columns == spec.column_names
    assert len(relation.fetchall()) == read_marker(tiny)["rows"][name]


def test_int_columns_are_never_null(frames: dict[str, pd.DataFrame]) -> None:
    nullable_ints = [
        (name, col.name)
        for name, spec in tables().items()
        for col in spec.columns
        if col.dtype == "int" and frames[name][col.name].isna().any()
    ]
    assert nullable_ints == []


def test_whole_floats_are_written_like_kaggle(tiny: Path) -> None:
    # CNT_FAM_MEMBERS is a float column of whole numbers: "2.0", never "2".
    first_row = (tiny / "application_train.csv").read_text().splitlines()[1].split(",")
    position = tables()["application_train"].column_names.index("CNT_FAM_MEMBERS")
    assert first_row[position].endswith(".0")


def test_only_values_with_commas_are_quoted(tiny: Path) -> None:
    text = (tiny / "application_train.csv").read_text()
    assert '"Spouse, partner"' in text
    assert '"Cash loans"' not in text and ",Cash loans," in text


# ---------------------------------------------------------------- keys and links


def test_applicant_ids_are_unique_and_start_like_kaggle(applicants: pd.DataFrame) -> None:
    ids = applicants["SK_ID_CURR"]
    assert ids.is_unique
    assert ids.min() == 100_002
    assert len(ids) == SIZES["tiny"] + round(SIZES["tiny"] * 48_744 / 307_511)


def test_parent_keys_are_unique(frames: dict[str, pd.DataFrame]) -> None:
    assert frames["bureau"]["SK_ID_BUREAU"].is_unique
    assert frames["bureau"]["SK_ID_BUREAU"].min() >= 5_000_000
    assert frames["previous_application"]["SK_ID_PREV"].is_unique
    assert frames["previous_application"]["SK_ID_PREV"].min() >= 1_000_000
    months = frames["bureau_balance"][["SK_ID_BUREAU", "MONTHS_BALANCE"]]
    assert not months.duplicated().any()


@pytest.mark.parametrize(
    "name",
    ["bureau", "previous_application", "installments_payments", "credit_card_balance",
     "POS_CASH_balance"],
)  # fmt: skip
def test_history_rows_belong_to_known_applicants(
    frames: dict[str, pd.DataFrame], applicants: pd.DataFrame, name: str
) -> None:
    assert frames[name]["SK_ID_CURR"].isin(applicants["SK_ID_CURR"]).all()


def test_a_small_share_of_bureau_balance_credits_are_orphans(
    frames: dict[str, pd.DataFrame],
) -> None:
    credits = frames["bureau_balance"]["SK_ID_BUREAU"].drop_duplicates()
    orphan_share = (~credits.isin(frames["bureau"]["SK_ID_BUREAU"])).mean()
    assert 0.003 < orphan_share < 0.04


@pytest.mark.parametrize(
    "name", ["installments_payments", "credit_card_balance", "POS_CASH_balance"]
)
def test_a_small_share_of_monthly_history_has_no_previous_application(
    frames: dict[str, pd.DataFrame], name: str
) -> None:
    loans = frames[name][["SK_ID_PREV", "SK_ID_CURR"]].drop_duplicates()
    previous = frames["previous_application"][["SK_ID_PREV", "SK_ID_CURR"]]
    linked = loans.merge(previous, on=["SK_ID_PREV", "SK_ID_CURR"], how="left", indicator=True)
    orphan_share = (linked["_merge"] == "left_only").mean()
    assert 0.0 < orphan_share < 0.05


def test_some_applicants_have_no_history_at_all(
    frames: dict[str, pd.DataFrame], applicants: pd.DataFrame
) -> None:
    with_history = set().union(
        *(frames[name]["SK_ID_CURR"] for name in ("bureau", "previous_application"))
    )
    without = ~applicants["SK_ID_CURR"].isin(with_history)
    assert 0 < without.sum() < 0.05 * len(applicants)


def test_about_86_percent_have_bureau_and_95_percent_previous_applications(
    frames: dict[str, pd.DataFrame], applicants: pd.DataFrame
) -> None:
    n = len(applicants)
    assert frames["bureau"]["SK_ID_CURR"].nunique() / n == pytest.approx(0.86, abs=0.04)
    previous = frames["previous_application"]["SK_ID_CURR"].nunique() / n
    assert previous == pytest.approx(0.95, abs=0.03)
    cards = frames["credit_card_balance"]["SK_ID_CURR"].nunique() / n
    assert 0.15 < cards < 0.35


# ---------------------------------------------------------------- marginals and quirks


def test_default_rate_is_about_8_percent(frames: dict[str, pd.DataFrame]) -> None:
    assert 0.06 <= frames["application_train"]["TARGET"].mean() <= 0.10


def test_days_employed_sentinel_marks_the_non_working(applicants: pd.DataFrame) -> None:
    sentinel = applicants["DAYS_EMPLOYED"] == SENTINEL_DAYS
    assert sentinel.mean() == pytest.approx(0.18, abs=0.04)
    assert set(applicants.loc[sentinel, "NAME_INCOME_TYPE"]) <= {"Pensioner", "Unemployed"}
    assert (applicants.loc[~sentinel, "DAYS_EMPLOYED"] <= 0).all()
    # Pensioners are older, and nobody worked before 18.
    age = -applicants["DAYS_BIRTH"] / 365.25
    assert age[sentinel].median() > age[~sentinel].median() + 10
    worked = applicants.loc[~sentinel]
    assert (worked["DAYS_EMPLOYED"] >= worked["DAYS_BIRTH"] + 18 * 365).all()


def test_employment_columns_agree_with_the_sentinel(applicants: pd.DataFrame) -> None:
    sentinel = applicants["DAYS_EMPLOYED"] == SENTINEL_DAYS
    assert (applicants["FLAG_EMP_PHONE"] == (~sentinel).astype(int)).all()
    assert (applicants.loc[sentinel, "ORGANIZATION_TYPE"] == "XNA").all()
    assert applicants.loc[sentinel, "OCCUPATION_TYPE"].isna().all()


def test_null_shares_follow_the_profile(applicants: pd.DataFrame) -> None:
    spec = tables()["application_train"]
    for column in ("EXT_SOURCE_1", "EXT_SOURCE_3", "APARTMENTS_AVG", "COMMONAREA_MODE"):
        expected = spec.column(column).null_share
        assert applicants[column].isna().mean() == pytest.approx(expected, abs=0.05), column


def test_family_size_counts_the_applicant_and_children(applicants: pd.DataFrame) -> None:
    assert (applicants["CNT_FAM_MEMBERS"] >= applicants["CNT_CHILDREN"] + 1).all()


def test_loan_amounts_are_consistent(applicants: pd.DataFrame) -> None:
    cash = applicants[applicants["NAME_CONTRACT_TYPE"] == "Cash loans"]
    assert (cash["AMT_CREDIT"] >= cash["AMT_GOODS_PRICE"]).all()
    assert (cash["AMT_ANNUITY"] < cash["AMT_CREDIT"] / 5).all()
    assert applicants["OWN_CAR_AGE"].notna().eq(applicants["FLAG_OWN_CAR"] == "Y").all()


def test_bureau_balance_status_levels(frames: dict[str, pd.DataFrame]) -> None:
    status = frames["bureau_balance"]["STATUS"].astype(str)
    assert set(status) <= {"C", "X", "0", "1", "2", "3", "4", "5"}
    assert status.value_counts(normalize=True)[["C", "0", "X"]].min() > 0.1


def test_previous_application_uses_the_365243_sentinel_only_when_approved(
    frames: dict[str, pd.DataFrame],
) -> None:
    previous = frames["previous_application"]
    approved = previous["NAME_CONTRACT_STATUS"] == "Approved"
    assert previous.loc[~approved, "DAYS_FIRST_DUE"].isna().all()
    assert (previous.loc[approved, "DAYS_LAST_DUE"] == SENTINEL_DAYS).mean() > 0.05


def test_history_is_internally_consistent(frames: dict[str, pd.DataFrame]) -> None:
    cards = frames["credit_card_balance"]
    with_limit = cards[cards["AMT_CREDIT_LIMIT_ACTUAL"] > 0]
    assert (with_limit["AMT_BALANCE"] <= 1.1 * with_limit["AMT_CREDIT_LIMIT_ACTUAL"]).all()
    instalments = frames["installments_payments"]
    assert (instalments["DAYS_INSTALMENT"] <= -1).all()
    assert (instalments["DAYS_ENTRY_PAYMENT"].dropna() <= -1).all()
    pos = frames["POS_CASH_balance"]
    known = pos.dropna(subset=["CNT_INSTALMENT", "CNT_INSTALMENT_FUTURE"])
    assert (known["CNT_INSTALMENT_FUTURE"] <= known["CNT_INSTALMENT"]).all()
    assert pos["MONTHS_BALANCE"].between(-96, -1).all()


# ---------------------------------------------------------------- the latent factor


def test_external_scores_rank_the_defaulters(frames: dict[str, pd.DataFrame]) -> None:
    train = frames["application_train"]
    score = train[["EXT_SOURCE_1", "EXT_SOURCE_2", "EXT_SOURCE_3"]].mean(axis=1)
    defaulted = train["TARGET"] == 1
    # Probability that a random defaulter scores lower than a random non-defaulter (AUC).
    ranks = score.rank()
    n_bad, n_good = defaulted.sum(), (~defaulted).sum()
    auc = (ranks[~defaulted].sum() - n_good * (n_good + 1) / 2) / (n_bad * n_good)
    assert 0.62 < auc < 0.82


def test_defaulters_have_worse_history(frames: dict[str, pd.DataFrame]) -> None:
    train = frames["application_train"].set_index("SK_ID_CURR")["TARGET"]
    instalments = frames["installments_payments"]
    late = instalments["DAYS_ENTRY_PAYMENT"] > instalments["DAYS_INSTALMENT"]
    late_share = late.groupby(instalments["SK_ID_CURR"]).mean()
    previous = frames["previous_application"]
    refused = previous["NAME_CONTRACT_STATUS"].eq("Refused").groupby(previous["SK_ID_CURR"])
    pos = frames["POS_CASH_balance"]
    dpd = pos["SK_DPD"].gt(0).groupby(pos["SK_ID_CURR"]).mean()
    for per_applicant in (late_share, refused.mean(), dpd):
        joined = pd.concat([per_applicant.rename("value"), train], axis=1, join="inner")
        by_outcome = joined.groupby("TARGET")["value"].mean()
        assert by_outcome[1] > 1.2 * by_outcome[0]


# ---------------------------------------------------------------- determinism and files


def test_same_seed_gives_identical_bytes(tiny: Path, tmp_path: Path) -> None:
    generate(tmp_path / "again", "tiny", SEED)
    assert _digests(tmp_path / "again") == _digests(tiny)


def test_another_seed_gives_other_data(tiny: Path, tmp_path: Path) -> None:
    generate(tmp_path / "other", "tiny", SEED + 1)
    other, base = _digests(tmp_path / "other"), _digests(tiny)
    assert all(other[name] != base[name] for name in KAGGLE_FILES)


@pytest.mark.slow
def test_output_does_not_depend_on_the_number_of_workers(tmp_path: Path) -> None:
    size = synthetic.CHUNK_APPLICANTS  # with the test applicants this spans two chunks
    generate(tmp_path / "serial", size, 7, workers=1)
    generate(tmp_path / "parallel", size, 7, workers=2)
    assert _digests(tmp_path / "serial") == _digests(tmp_path / "parallel")


def test_marker_describes_the_directory(tiny: Path) -> None:
    marker = read_marker(tiny)
    assert marker is not None
    assert marker["version"] == synthetic.GENERATOR_VERSION
    assert (marker["seed"], marker["size"], marker["n_applicants"]) == (SEED, "tiny", 2000)
    assert marker["drift"] is None
    for name in tables():
        with (tiny / f"{name}.csv").open() as fh:
            assert marker["rows"][name] == sum(1 for _ in fh) - 1


def test_read_marker_is_none_without_a_valid_marker(tmp_path: Path) -> None:
    assert read_marker(tmp_path) is None
    (tmp_path / MARKER_FILE).write_text("{not json")
    assert read_marker(tmp_path) is None


def test_a_failed_generation_leaves_nothing_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def crash(task: object) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(synthetic, "_generate_chunk", crash)
    with pytest.raises(RuntimeError, match="disk full"):
        generate(tmp_path / "raw", "tiny", SEED, workers=1)
    assert list(tmp_path.iterdir()) == []


def test_regenerating_replaces_the_previous_output(tmp_path: Path) -> None:
    out = tmp_path / "raw"
    generate(out, 50, SEED, drift=DriftSpec.default())
    assert (out / synthetic.LABELS_FILE).exists()
    result = generate(out, 60, SEED)
    assert not (out / synthetic.LABELS_FILE).exists()
    assert read_marker(out)["n_applicants"] == 60
    assert len(_read(out, "application_train")) == 60 == result.rows["application_train"]
    assert [p.name for p in tmp_path.iterdir()] == ["raw"]  # no staging directory left


# ---------------------------------------------------------------- production batches


def test_batch_has_new_applicants_and_labels(batches: dict[str, Path], tiny: Path) -> None:
    batch = batches["drift"]
    assert {p.name for p in batch.iterdir()} == (
        KAGGLE_FILES - {"application_train.csv"} | {"labels.csv", MARKER_FILE}
    )
    applicants = _read(batch, "application_test")
    labels = _read(batch, "labels")
    assert "TARGET" not in applicants.columns
    assert list(labels.columns) == ["SK_ID_CURR", "TARGET"]
    assert labels["SK_ID_CURR"].tolist() == applicants["SK_ID_CURR"].tolist()
    base_ids = set(_read(tiny, "application_train")["SK_ID_CURR"])
    base_ids |= set(_read(tiny, "application_test")["SK_ID_CURR"])
    assert base_ids.isdisjoint(applicants["SK_ID_CURR"])
    marker = read_marker(batch)
    assert marker["kind"] == "production_batch"
    assert marker["drift"] == {
        "income_shift": 0.15, "ext_source_shift": 0.3, "history_shift": 0.5,
        "default_shift": 0.0,
    }  # fmt: skip


def test_drift_shifts_income_scores_and_behaviour(batches: dict[str, Path]) -> None:
    null = _read(batches["null"], "application_test")
    drifted = _read(batches["drift"], "application_test")
    income_ratio = drifted["AMT_INCOME_TOTAL"].mean() / null["AMT_INCOME_TOTAL"].mean()
    assert income_ratio == pytest.approx(1.15, abs=0.05)
    for score in ("EXT_SOURCE_2", "EXT_SOURCE_3"):
        assert drifted[score].mean() < null[score].mean() - 0.03
    null_refused = _read(batches["null"], "previous_application")["NAME_CONTRACT_STATUS"]
    refused = _read(batches["drift"], "previous_application")["NAME_CONTRACT_STATUS"]
    assert (refused == "Refused").mean() > (null_refused == "Refused").mean() + 0.03
    null_default = _read(batches["null"], "labels")["TARGET"].mean()
    assert _read(batches["drift"], "labels")["TARGET"].mean() > null_default


def test_a_null_drift_batch_looks_like_the_base_data(
    batches: dict[str, Path], applicants: pd.DataFrame
) -> None:
    batch = _read(batches["null"], "application_test")
    for column in ("AMT_INCOME_TOTAL", "EXT_SOURCE_2", "DAYS_BIRTH"):
        assert batch[column].mean() == pytest.approx(applicants[column].mean(), rel=0.05)
    assert _read(batches["null"], "labels")["TARGET"].mean() == pytest.approx(0.08, abs=0.02)


def test_drift_spec_validates_and_defaults() -> None:
    assert DriftSpec().is_null and not DriftSpec.default().is_null
    with pytest.raises(ValueError, match="income_shift"):
        DriftSpec(income_shift=-1.0)
    with pytest.raises(ValueError, match="finite"):
        DriftSpec(history_shift=float("nan"))


# ---------------------------------------------------------------- sizes


@pytest.mark.parametrize(
    ("size", "expected"),
    [("tiny", 2000), ("small", 30000), ("FULL", 307511), ("12345", 12345), (777, 777),
     (np.int64(5), 5)],
)  # fmt: skip
def test_resolve_size(size: str | int, expected: int) -> None:
    assert resolve_size(size) == expected


@pytest.mark.parametrize("size", ["huge", "", "1.5", 0, -3, 10**9, 2.5, None, True])
def test_resolve_size_rejects_nonsense(size: object) -> None:
    with pytest.raises(ValueError, match="size"):
        resolve_size(size)  # type: ignore[arg-type]


def test_generate_rejects_a_negative_seed(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="seed"):
        generate(tmp_path / "raw", "tiny", -1)
    assert not (tmp_path / "raw").exists()


def test_marker_is_valid_json_with_row_counts_per_file(tiny: Path) -> None:
    marker = json.loads((tiny / MARKER_FILE).read_text())
    assert set(marker["files"]) == KAGGLE_FILES


# ---------------------------------------------------------------- pinned bytes

#: ``sha256sum *`` of three cheap snapshots, recorded with the generator as it was before its
#: split from one module (``synthetic.py``) into a package.
PINNED_SHA256: dict[str, str] = {
    "tiny seed 42": """
bb5b6d8bbd020904b56770254d1ed9776e3ae5a67dbfd05e623b54df391c4a80  POS_CASH_balance.csv
19faa5897281cce089477b0d90e59944cd268442f9b21c734e7f9734dc3862bd  _SYNTHETIC.json
7e7d4860d77f0912329c37227881ef8b3f308eff0e3fac8fbd26e8beae0ceeff  application_test.csv
4169af7aace7ac995e18ee52818751020f368109c089fc7a5f967f7ab210ce56  application_train.csv
c85d93492b9da84a1363ad1441ae1e7da8d3898fa6b5ee6325ae0d0019ae8721  bureau.csv
c17a037445d2045943b728ce34a9c3f3b2c0c7f113b4972bcf67390dc9a6afcc  bureau_balance.csv
4f6f6895eb60c1f631223eb20a2dab185a5f49468546bb9c73b627d0d75995d6  credit_card_balance.csv
d3522ff05cac226a0096c13fed4f624336140f1211023213b2911a1fc0407fc6  installments_payments.csv
637ceb1ec182dc40f0bce69e791641a451bf9f9bc3ad25080dc038912fc5350d  previous_application.csv
""",
    "tiny seed 7": """
9ec75d5bdea4c05bc27054d4708f9442763c6bbe525da589138764599a31d065  POS_CASH_balance.csv
05eb1b5b169d617339f1b3cc7ebb346b243ee55e6981a9d0cf45d3acb54748df  _SYNTHETIC.json
1fcb3ee6c0d1c3d5de06ee302da6442020020fa65a439ed8bb9cfa484fcc12b2  application_test.csv
41ae63e68253aa8ce5208d219507c232665f4bc8ef3f4eddcf170678b0d7a90e  application_train.csv
7ab4807f77cbb400409ee40574150ad4c9d840782aa338e1ffcebff3278d5de5  bureau.csv
777238668f792be586512831b405bb740e6303f18762eb85a400d3f1954079b6  bureau_balance.csv
41a904b371e72c3994a8eb05793212ac76b80b42f8261900adf82e2088746b6d  credit_card_balance.csv
f3509fa00f14665ce81782708ccff66ddd3c14bd305744242511fa793994f738  installments_payments.csv
37219b4073e8dd7c633c3e234e3b0938c98ab8ac1172673991143b066ba7bae3  previous_application.csv
""",
    "drifted tiny batch seed 42": """
3668687502bdb8b6e45383f3e22c86c7247a12420bd7f82a8e6d4a2de32dc48f  POS_CASH_balance.csv
10e2cd91672e0ff582453e27f4a586b7f7b4e5a1b0195fdf774c04efb9e9b57a  _SYNTHETIC.json
6567e9f226c42fae3a983595c040dd96749254800b4b8b9f98ec531fb0d22034  application_test.csv
8c7ce64cdfe272e15fb09ead95241a4ed2d5fdf0a1c6eab6b0208cb792bee05c  bureau.csv
750741d7e739f283cb0fc45388cfccf2e63d8e53dc886e8a595af654f33a4428  bureau_balance.csv
62a02d20e2ffc4ef0a59c653eab9a2b923e82f7105f66cc56e5c0500ffa890c5  credit_card_balance.csv
2cfd00d39904735d03abaf3a004922f78e1c77d28eb21f5d5a738d96ee2d7f6d  installments_payments.csv
87d925ff8293f1a162e8729d6cb6bb0666ea43ebf7ae3c847d702e3e49a04817  labels.csv
731af4295b30927308450a409db88779217d01114ac6c07789b2f90ee5ea2011  previous_application.csv
""",
}


#: Where each pinned snapshot comes from: fixtures that other tests build anyway (fixture name,
#: batch name). ``tiny_raw`` is the session snapshot of ``conftest.py`` (seed 7).
PINNED_SNAPSHOTS: dict[str, tuple[str, str | None]] = {
    "tiny seed 42": ("tiny", None),
    "tiny seed 7": ("tiny_raw", None),
    "drifted tiny batch seed 42": ("batches", "drift"),
}


@pytest.mark.parametrize("case", list(PINNED_SHA256))
def test_output_bytes_are_pinned(case: str, request: pytest.FixtureRequest) -> None:
    """Every file of a snapshot, the marker included, has the pinned SHA-256.

    Guards that the split of the generator kept its output byte-identical; a change of the
    generating process must update these hashes on purpose (``sha256sum *`` in a freshly
    generated directory). The drifted batch uses ``DriftSpec.default()``, as ``creditrisk
    generate --drift`` does. The snapshots are shared fixtures (``PINNED_SNAPSHOTS``), so this
    adds no generation of its own.
    """
    fixture, batch = PINNED_SNAPSHOTS[case]
    snapshot = request.getfixturevalue(fixture)
    directory = snapshot[batch] if batch is not None else snapshot
    expected = {
        name: digest
        for digest, name in (line.split() for line in PINNED_SHA256[case].strip().splitlines())
    }
    assert _digests(directory) == expected
