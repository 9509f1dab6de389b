"""[profile] (pipelines/core/config.py) and the card key's secret (pipelines/core/secrets.py):
checked when the file is loaded, each problem named in one line, before any Spark. No JVM."""

from __future__ import annotations

import pytest

from pipelines.core.config import CONF_DIR, ProfileSettings, load_settings
from pipelines.core.errors import ConfigError
from pipelines.core.secrets import CARD_KEY_SECRET_ENV, card_key_secret


def payments_with(tmp_path, *lines: str) -> str:
    """conf/payments.toml with ``lines`` added to its [profile]."""
    path = tmp_path / "profile.toml"
    path.write_text('extends = "payments"\n\n[profile]\n' + "\n".join(lines) + "\n")
    return str(path)


def test_no_profile_is_creditcard_and_payments_has_the_handbooks_columns_its_own_tables_and_model():
    assert "[profile]" not in (CONF_DIR / "local.toml").read_text()
    assert load_settings("local").profile == ProfileSettings()
    assert ProfileSettings().kind == "creditcard"
    local, payments = load_settings("local"), load_settings("payments")
    assert payments.profile.required_columns() == ["TRANSACTION_ID", "TX_DATETIME", "CUSTOMER_ID", "TERMINAL_ID",
                                                   "TX_AMOUNT", "TX_FRAUD"]
    assert (payments.profile.time_zone, payments.profile.time_format) == ("UTC", "yyyy-MM-dd HH:mm:ss")
    assert payments.tables.transactions_path.endswith("/lake/payments/transactions")
    assert local.tables.transactions_path.endswith("/lake/transactions")
    assert (payments.mlflow.model_name, local.mlflow.model_name) == ("payments_fraud_detector", "fraud_detector")
    assert payments.profile.card_key_secret_file == str(CONF_DIR.parent / ".secrets" / "card-key")


def test_other_names_an_empty_label_and_extra_columns_are_read_from_the_file(tmp_path):
    profile = load_settings(payments_with(tmp_path, 'id_column = "txn"', 'label_column = ""',
                                          'extra_numeric_columns = ["risk", "age_days"]',
                                          'time_zone = "America/Sao_Paulo"')).profile
    assert profile.label_column is None
    assert profile.required_columns() == ["txn", "TX_DATETIME", "CUSTOMER_ID", "TERMINAL_ID", "TX_AMOUNT",
                                          "risk", "age_days"]
    assert profile.time_zone == "America/Sao_Paulo"


@pytest.mark.parametrize(("line", "message"), [
    ('time_zone = "Mars/Olympus"', r"\[profile\] time_zone: expected an IANA time zone name .*'Mars/Olympus'"),
    ('time_format = "YYYY-MM-DD HH:MM:SS"', r"\[profile\] time_format: expected a Spark datetime pattern"),
    ('time_format = "yyyy-MM-dd HH:mm:ssXXX"', r"\[profile\] time_format: expected a wall-clock pattern"),
    ('card_column = "TERMINAL_ID"', r"\[profile\] a column can play one role only: TERMINAL_ID is named twice"),
    ('extra_numeric_columns = ["amount"]', r"\[profile\] extra_numeric_columns: amount is a column of the "
                                           r"transactions table itself"),
    ('id_column = "tx id"', r"\[profile\] id_column: expected a column name"),
    ('kind = "crypto"', r"\[profile\] kind: expected 'creditcard' or 'payments'"),
    ('card_colum = "PAN"', r"\[profile\] card_colum: unknown key \(known: kind, id_column"),
])
def test_a_bad_profile_is_refused_naming_the_key(tmp_path, line, message):
    with pytest.raises(ConfigError, match=message):
        load_settings(payments_with(tmp_path, line))


def test_the_secret_comes_from_the_variable_first_then_from_a_file_its_owner_alone_reads(tmp_path):
    secret_file = tmp_path / "card-key"
    secret_file.write_text("from-the-file-0123456789\n")
    secret_file.chmod(0o600)
    assert card_key_secret(str(secret_file), environ={}) == b"from-the-file-0123456789"
    assert card_key_secret(str(secret_file), environ={CARD_KEY_SECRET_ENV: "from-the-variable-0123"}) == \
        b"from-the-variable-0123"
    for mode in (0o640, 0o604, 0o660):
        secret_file.chmod(mode)
        with pytest.raises(ConfigError, match=rf"{secret_file} has mode 0{mode:o}: .*chmod 600") as refused:
            card_key_secret(str(secret_file), environ={})
        assert "from-the-file" not in str(refused.value)


@pytest.mark.parametrize(("secret_file", "environ", "message"), [
    (None, {}, rf"no secret to pseudonymise card numbers with: set {CARD_KEY_SECRET_ENV}, or write"),
    ("missing", {}, r"card-key-missing does not exist: set FRAUD_CARD_KEY_SECRET"),
    ("short", {}, r"is shorter than 16 characters"),
    (None, {CARD_KEY_SECRET_ENV: "qwerty"}, r"card key secret in \$FRAUD_CARD_KEY_SECRET is shorter than 16"),
])
def test_a_missing_or_short_secret_is_refused_saying_how_to_set_one(tmp_path, secret_file, environ, message):
    path = None
    if secret_file == "missing":
        path = str(tmp_path / "card-key-missing")
    elif secret_file == "short":
        path = tmp_path / "card-key"
        path.write_text("qwerty\n")
        path.chmod(0o600)
    with pytest.raises(ConfigError, match=message) as refused:
        card_key_secret(str(path) if path else None, environ=environ)
    assert "qwerty" not in str(refused.value)


def test_the_names_an_extra_column_may_not_take_are_the_payments_tables_own_columns():
    # core cannot import the data stage, so config.py keeps its own list of the table's columns
    # (to refuse an extra column that would take one's name): it must be the table's.
    from pipelines.core.config import PAYMENTS_TABLE_COLUMNS
    from pipelines.data.payments import table_columns

    extra = ProfileSettings(kind="payments", extra_numeric_columns=("merchant_risk",))
    assert [name for name in table_columns(extra) if name != "merchant_risk"] == list(PAYMENTS_TABLE_COLUMNS)
    with pytest.raises(ValueError, match="card_key is a column of the transactions table"):
        ProfileSettings(kind="payments", extra_numeric_columns=("card_key",))


def features_with(tmp_path, text: str) -> str:
    path = tmp_path / "features.toml"
    path.write_text('extends = "payments"\n\n' + text + "\n")
    return str(path)


def test_the_default_features_are_the_handbooks_and_a_file_declares_others_per_entity(tmp_path):
    from pipelines.features.definitions import feature_columns, history_span_days

    handbook = load_settings("payments").features
    assert feature_columns(handbook) == [
        "card_tx_count_1d", "card_mean_amount_1d", "card_tx_count_7d", "card_mean_amount_7d", "card_tx_count_30d",
        "card_mean_amount_30d", "terminal_tx_count_1d", "terminal_fraud_share_1d", "terminal_tx_count_7d",
        "terminal_fraud_share_7d", "terminal_tx_count_30d", "terminal_fraud_share_30d", "is_weekend", "is_night"]
    assert history_span_days(handbook) == 37
    other = load_settings(features_with(tmp_path, '[features]\nnight_flag = false\n\n[features.card]\n'
                                                  'windows_days = [3]\naggregates = ["mean_amount"]\n')).features
    assert feature_columns(other) == ["card_mean_amount_3d", *feature_columns(handbook)[6:13]]
    assert other.terminal == handbook.terminal


@pytest.mark.parametrize(("text", "message"), [
    ('[features.card]\nwindows_days = [1, 1]\naggregates = ["count"]', r"\[features\.card\] windows_days: expected "
                                                                        r"one or more different numbers of days"),
    ('[features.card]\nwindows_days = [0]\naggregates = ["count"]',
     r"\[features\.card\] windows_days\[0\]: must be at least 1, got 0"),
    ('[features.card]\nwindows_days = [1]\naggregates = ["fraud_share"]',
     r"fraud_share needs delay_days of at least 2"),
    ('[features.terminal]\nwindows_days = [1]\naggregates = ["median"]', r"\[features\.terminal\] aggregates\[0\]: "
                                                                         r"expected 'count', 'mean_amount' or"),
    ('[features]\nnight_hours = [6, 0]', r"\[features\] night_hours: expected \[first, last\] with first <= last"),
    ('[features]\nwindows = [1]', r"\[features\] windows: unknown key"),
])
def test_bad_features_are_refused_naming_the_key(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message):
        load_settings(features_with(tmp_path, text))
