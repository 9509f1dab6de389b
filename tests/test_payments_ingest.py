"""ingest for the payments profile (conf/payments.toml): a bank's files, columns named in
[profile], the card replaced by an HMAC computed in the JVM, many files in one commit, and every
bad input refused with exit 2, a message naming file, column, count and one value, and the table
left as it was. The job runs through its real ``main`` (exit codes by ``run_main``) on the
suite's session; one test runs it through ./spark-submit.sh as a user would."""

from __future__ import annotations

import gzip
import hashlib
import hmac
import logging
from datetime import date, datetime, timezone
from decimal import Decimal
from pathlib import Path

import pytest
from deltalake import DeltaTable, QueryBuilder
from pyspark.sql import functions as F

from jobs import ingest
from pipelines.core.cli import run_main
from pipelines.core.config import load_settings
from pipelines.core.secrets import CARD_KEY_SECRET_ENV
from pipelines.data.payments import event_time, hmac_pads, hmac_sha256_hex, table_columns, with_card_key
from tests.test_end_to_end import submit

SECRET = "a-test-secret-of-some-length-0123456789"
HEADER = "TRANSACTION_ID,TX_DATETIME,CUSTOMER_ID,TERMINAL_ID,TX_AMOUNT,TX_FRAUD"


def pan(number: int) -> str:
    """A card number (PAN) as a bank's file holds it; grepped for in what the job writes."""
    return f"4929{number:012d}"


def line(txn: int, when: str, card: str | None = None, terminal: str | None = None, amount: str | None = None,
         label: str | None = None) -> str:
    return ",".join([str(txn), when, pan(txn % 7) if card is None else card,
                     f"T{txn % 3:04d}" if terminal is None else terminal,
                     f"{txn}.{txn % 100:02d}" if amount is None else amount,
                     str(txn % 2) if label is None else label])


def day_lines(day: str, first: int, count: int = 10) -> list[str]:
    return [line(txn, f"{day} {8 + (txn % 12):02d}:{txn % 60:02d}:{(txn * 7) % 60:02d}")
            for txn in range(first, first + count)]


def write_csv(path: Path, lines: list[str], header: str = HEADER) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join([header, *lines]) + "\n")
    return str(path)


def payments_conf(folder: Path, profile: str = "") -> Path:
    """conf/payments.toml with its tables and MLflow store in ``folder``, the card key's secret
    in a mode-600 file there, and ``profile`` lines added to [profile]."""
    secret_file = folder / "card-key"
    secret_file.write_text(SECRET + "\n")
    secret_file.chmod(0o600)
    path = folder / "payments-test.toml"
    path.write_text(f'extends = "payments"\n\n[tables]\nroot = "{folder / "lake"}"\n\n'
                    f'[mlflow]\ntracking_uri = "sqlite:///{folder / "mlflow.db"}"\n'
                    f'artifact_location = "{folder / "artifacts"}"\n\n'
                    f'[profile]\ncard_key_secret_file = "{secret_file}"\n{profile}\n')
    return path


@pytest.fixture
def job(spark, monkeypatch, capsys, caplog):
    """Run ingest's ``main`` as the wrapper does (exit code, ``error:`` line) on the suite's
    session; what it printed and logged."""
    monkeypatch.setattr(ingest, "get_spark", lambda settings: spark)
    monkeypatch.delenv(CARD_KEY_SECRET_ENV, raising=False)
    caplog.set_level(logging.INFO, logger="fraud_scoring")

    def run(conf: Path, *inputs: str) -> tuple[int, str]:
        capsys.readouterr()
        caplog.clear()
        code = run_main(ingest.main, ["--env", str(conf), "--input", *inputs])
        captured = capsys.readouterr()
        return code, captured.out + captured.err + caplog.text

    return run


def table_path(conf: Path) -> str:
    return load_settings(str(conf)).tables.transactions_path


def state(path: str) -> tuple[int, int]:
    """(Delta version, rows), read with delta-rs, a reader independent of Spark."""
    table = DeltaTable(path)
    count = QueryBuilder().register("t", table).execute("SELECT count(*) AS n FROM t").read_all()
    return table.version(), count.column("n")[0].as_py()


def python_hmac(card: str) -> str:
    return hmac.new(SECRET.encode(), card.encode(), hashlib.sha256).hexdigest()


# --- The card key -----------------------------------------------------------------------------

@pytest.mark.parametrize("secret", [b"k" * 16, b"s" * 64, bytes(range(100)), "sécret-ünïcode-✓-0123".encode()],
                         ids=["short", "one block", "longer than a block", "unicode"])
def test_the_jvm_hmac_equals_pythons(spark, secret):
    messages = ["4111111111111111", "é✓ カード", "x", "0", "a" * 300, "card\twith\ttabs", "  padded  "]
    inner_pad, outer_pad = hmac_pads(secret)
    source_df = spark.createDataFrame([(message, bytearray(inner_pad), bytearray(outer_pad)) for message in messages],
                                      "message string, ipad binary, opad binary")
    actual = {row.message: row.key for row in source_df.select(
        "message", hmac_sha256_hex(source_df.message, inner_pad=source_df.ipad, outer_pad=source_df.opad)
        .alias("key")).collect()}
    assert actual == {message: hmac.new(secret, message.encode(), hashlib.sha256).hexdigest()
                      for message in messages}


def test_the_card_key_trims_the_card_is_null_when_empty_and_no_plan_shows_the_secret(spark):
    source_df = spark.createDataFrame([("1", "4111111111111111"), ("2", " 4111111111111111 "), ("3", ""),
                                       ("4", "   "), ("5", None)], "id string, card string")
    keyed = with_card_key(source_df, card_column="card", secret=SECRET.encode())
    assert keyed.columns == ["id", "card_key"]
    expected = python_hmac("4111111111111111")
    assert {row.id: row.card_key for row in keyed.collect()} == {"1": expected, "2": expected, "3": None,
                                                                  "4": None, "5": None}
    plan = keyed._jdf.queryExecution().toString()
    assert all(text not in plan for text in [SECRET, SECRET.encode().hex(), *[pad.hex() for pad in hmac_pads(
        SECRET.encode())]])


# --- Good input ------------------------------------------------------------------------------

def test_many_files_a_folder_and_a_glob_land_in_one_commit_and_a_rerun_adds_nothing(job, spark, tmp_path):
    conf = payments_conf(tmp_path)
    day1 = write_csv(tmp_path / "in" / "2018-04-01.csv", day_lines("2018-04-01", 0))
    write_csv(tmp_path / "in" / "2018-04-02.csv", day_lines("2018-04-02", 10))
    write_csv(tmp_path / "more" / "a" / "2018-04-03.csv", day_lines("2018-04-03", 20))
    write_csv(tmp_path / "more" / "_ignored.csv", ["not,a,real,file"], header="x,y,z,w")
    code, output = job(conf, day1, str(tmp_path / "in" / "2018-04-0[2]*.csv"), str(tmp_path / "more"))
    assert code == 0, output
    path = table_path(conf)
    assert state(path) == (0, 30)
    assert [entry["operation"] for entry in DeltaTable(path).history()] == ["WRITE"]

    table = spark.read.format("delta").load(path)
    assert table.columns == table_columns(load_settings(str(conf)).profile)
    assert dict(table.dtypes) == {"transaction_id": "string", "event_time": "timestamp", "txn_date": "date",
                                  "card_key": "string", "terminal_id": "string", "amount": "decimal(18,2)",
                                  "label": "int", "source_file": "string", "ingested_at": "timestamp"}
    row = table.filter("transaction_id = '13'").first()
    assert (row.event_time.replace(tzinfo=timezone.utc), row.txn_date, row.card_key, row.terminal_id,
            row.amount, row.label, row.source_file) == (
        datetime(2018, 4, 2, 9, 13, 31, tzinfo=timezone.utc), date(2018, 4, 2), python_hmac(pan(6)), "T0001",
        Decimal("13.13"), 1, "2018-04-02.csv")
    assert sorted(r.txn_date.isoformat() for r in table.select("txn_date").distinct().collect()) == [
        "2018-04-01", "2018-04-02", "2018-04-03"]

    code, output = job(conf, day1, str(tmp_path / "in"), str(tmp_path / "more"))
    assert code == 0, output
    assert state(path) == (0, 30)


def test_an_identical_resend_is_fine_and_counts_once(job, tmp_path):
    conf = payments_conf(tmp_path)
    rows = day_lines("2018-04-01", 0, 5)
    first = write_csv(tmp_path / "a.csv", rows)
    # The same transactions again, in another file, with the amounts written differently.
    again = write_csv(tmp_path / "b.csv", [r.replace(",1.01,", ",1.010,") for r in rows[:3]])
    code, output = job(conf, first, again)
    assert code == 0, output
    assert state(table_path(conf)) == (0, 5)


def test_no_card_number_reaches_the_table_files(job, spark, tmp_path):
    conf = payments_conf(tmp_path)
    lines = day_lines("2018-04-01", 0, 14)
    # Uncompressed Parquet, so that a value in a file shows as its bytes (and the grep can fail).
    previous = spark.conf.get("spark.sql.parquet.compression.codec")
    spark.conf.set("spark.sql.parquet.compression.codec", "uncompressed")
    try:
        code, output = job(conf, write_csv(tmp_path / "cards.csv", lines))
    finally:
        spark.conf.set("spark.sql.parquet.compression.codec", previous)
    assert code == 0, output
    written = b"".join(path.read_bytes() for path in (tmp_path / "lake").rglob("*") if path.is_file())
    assert b"T0002" in written and python_hmac(pan(3)).encode() in written  # the grep sees values
    for number in range(7):
        assert pan(number).encode() not in written
        assert pan(number) not in output


@pytest.mark.timezone
def test_the_profiles_time_zone_decides_the_day_not_the_sessions(job, spark, tmp_path):
    conf = payments_conf(tmp_path, 'time_zone = "America/Sao_Paulo"')
    late = write_csv(tmp_path / "late.csv", [line(1, "2018-04-01 23:30:00"), line(2, "2018-04-02 00:15:00")])
    previous = spark.conf.get("spark.sql.session.timeZone")
    spark.conf.set("spark.sql.session.timeZone", "Asia/Tokyo")  # must play no part
    try:
        code, output = job(conf, late)
    finally:
        spark.conf.set("spark.sql.session.timeZone", previous)
    assert code == 0, output
    rows = {row.transaction_id: row for row in spark.read.format("delta").load(table_path(conf))
            .selectExpr("transaction_id", "txn_date", "unix_seconds(event_time) AS seconds").collect()}
    # Sao Paulo was UTC-3 in April 2018: 23:30 there is 02:30 UTC the next day.
    assert rows["1"].txn_date == date(2018, 4, 1)
    assert rows["1"].seconds == datetime(2018, 4, 2, 2, 30, tzinfo=timezone.utc).timestamp()
    assert rows["2"].txn_date == date(2018, 4, 2)


def test_a_file_with_other_column_names_no_label_and_an_extra_column_is_mapped_in_conf(job, spark, tmp_path):
    conf = payments_conf(tmp_path, "\n".join([
        'id_column = "txn"', 'event_time_column = "ts"', 'card_column = "pan"', 'terminal_column = "merchant"',
        'amount_column = "value"', 'label_column = ""', 'extra_numeric_columns = ["risk_score"]',
        'time_format = "dd/MM/yyyy HH:mm"']))
    bank = write_csv(tmp_path / "bank.csv", ["A-1,01/04/2018 09:05,4111111111111111,M-7,12.5,0.25,x",
                                             "A-2,02/04/2018 17:45,4111111111111111,M-8,0.99,-1e3,y"],
                     header="txn,ts,pan,merchant,value,risk_score,note")
    code, output = job(conf, bank)
    assert code == 0, output
    assert "column(s) outside [profile], not ingested: note" in output
    table = spark.read.format("delta").load(table_path(conf))
    assert table.columns == ["transaction_id", "event_time", "txn_date", "card_key", "terminal_id", "amount",
                             "label", "risk_score", "source_file", "ingested_at"]
    rows = {row.transaction_id: row for row in table.collect()}
    assert (rows["A-1"].txn_date, rows["A-1"].terminal_id, rows["A-1"].amount, rows["A-1"].label,
            rows["A-1"].risk_score) == (date(2018, 4, 1), "M-7", Decimal("12.50"), None, 0.25)
    assert rows["A-2"].risk_score == -1000.0 and rows["A-1"].card_key == rows["A-2"].card_key


@pytest.mark.timezone
def test_a_time_the_clock_skips_moves_forward_and_one_it_shows_twice_is_the_earlier_instant(spark):
    source_df = spark.createDataFrame([("2018-03-25 02:30:00",), ("2018-10-28 02:30:00",)], "raw string")
    actual = [row.seconds for row in source_df.select(F.unix_seconds(event_time(
        F.col("raw"), time_format="yyyy-MM-dd HH:mm:ss", time_zone="Europe/Brussels")).alias("seconds")).collect()]
    # Brussels skips 02:00-03:00 on 25 March 2018 (02:30 is taken as 03:30 CEST) and shows
    # 02:00-03:00 twice on 28 October (the first, CEST, is taken).
    assert actual == [datetime(2018, 3, 25, 1, 30, tzinfo=timezone.utc).timestamp(),
                      datetime(2018, 10, 28, 0, 30, tzinfo=timezone.utc).timestamp()]


def test_creditcard_stays_the_default_profile(monkeypatch):
    for variable in ("FRAUD_SPARK_MASTER", "FRAUD_EXECUTOR_ENV", "FRAUD_CLUSTER_DIR", "MLFLOW_TRACKING_URI",
                     "SPARK_MASTER", "FRAUD_ENV_ARCHIVE", "FRAUD_DELTA_LOG_TABLE", "AWS_REGION", "FRAUD_IMAGE",
                     "FRAUD_LAKE_BUCKET"):
        monkeypatch.setenv(variable, "x")
    for env in ("local", "standalone", "cluster"):
        assert load_settings(env).profile.kind == "creditcard"
    payments = load_settings("payments")
    local = load_settings("local")
    assert payments.profile.kind == "payments"
    assert payments.tables.root != local.tables.root and payments.tables.root.endswith("lake/payments")
    assert payments.mlflow.model_name == "payments_fraud_detector" != local.mlflow.model_name


# --- Bad input: exit 2, the message, nothing written -------------------------------------------

@pytest.fixture
def day1(job, tmp_path):
    """A table holding 2018-04-01 (ids 0..9), and its conf."""
    conf = payments_conf(tmp_path)
    code, output = job(conf, write_csv(tmp_path / "day1.csv", day_lines("2018-04-01", 0)))
    assert code == 0, output
    assert state(table_path(conf)) == (0, 10)
    return conf


def refused(job, conf: Path, *inputs: str) -> str:
    code, output = job(conf, *inputs)
    assert code == 2, output
    assert "Traceback" not in output
    assert state(table_path(conf)) == (0, 10)
    return output


@pytest.mark.parametrize(("field", "value", "expected"), [
    ("when", "2018-04-02 25:00:00", "TX_DATETIME: 1 bad value(s), e.g. '2018-04-02 25:00:00' "
                                    "(expected a time written 'yyyy-MM-dd HH:mm:ss')"),
    ("when", "02/04/2018 10:00", "TX_DATETIME: 1 bad value(s), e.g. '02/04/2018 10:00'"),
    ("terminal", " ", "TERMINAL_ID: 1 bad value(s), e.g. the row of TRANSACTION_ID '12' (expected not empty)"),
    ("amount", "NaN", "TX_AMOUNT: 1 bad value(s), e.g. 'NaN' (expected a finite number, not negative"),
    ("amount", "Infinity", "TX_AMOUNT: 1 bad value(s), e.g. 'Infinity'"),
    ("amount", "-0.01", "TX_AMOUNT: 1 bad value(s), e.g. '-0.01'"),
    ("amount", "12.345", "TX_AMOUNT: 1 bad value(s), e.g. '12.345'"),
    ("amount", "twelve", "TX_AMOUNT: 1 bad value(s), e.g. 'twelve'"),
    ("label", "2", "TX_FRAUD: 1 bad value(s), e.g. '2' (expected 0 or 1)"),
    ("label", "", "TX_FRAUD: 1 bad value(s), e.g. ''"),
], ids=["hour 25", "other format", "blank terminal", "NaN amount", "infinite amount", "negative amount",
        "three decimals", "text amount", "label 2", "no label"])
def test_a_bad_value_exits_2_naming_file_column_count_and_value(job, day1, tmp_path, field, value, expected):
    lines = day_lines("2018-04-02", 10, 5)
    lines[2] = line(12, value if field == "when" else "2018-04-02 10:00:00", **(
        {field: value} if field != "when" else {}))
    bad = write_csv(tmp_path / "bad.csv", lines)
    output = refused(job, day1, bad)
    assert f"{bad}: {expected}" in output


def test_an_empty_card_is_named_by_its_rows_id_and_no_card_number_is_shown(job, day1, tmp_path):
    lines = day_lines("2018-04-02", 10, 5)
    lines[1] = line(11, "2018-04-02 10:00:00", card="")
    lines[3] = line(13, "2018-04-02 10:00:00", card="  ", amount="-4")
    bad = write_csv(tmp_path / "bad_card.csv", lines)
    output = refused(job, day1, bad)
    assert f"{bad}: CUSTOMER_ID: 2 bad value(s), e.g. the row of TRANSACTION_ID '1" in output
    assert "TX_AMOUNT: 1 bad value(s), e.g. '-4'" in output
    assert not any(pan(number) in output for number in range(7))


def test_bad_values_in_two_files_name_each_file(job, day1, tmp_path):
    good = write_csv(tmp_path / "good.csv", day_lines("2018-04-02", 10, 3))
    one = write_csv(tmp_path / "one.csv", [line(20, "2018-04-03 10:00:00", label="7")])
    two = write_csv(tmp_path / "two.csv", [line(21, "2018-04-03 10:00:00", label="x"),
                                           line(22, "2018-04-03 10:00:00", label="-1")])
    output = refused(job, day1, good, one, two)
    assert f"{one}: TX_FRAUD: 1 bad value(s), e.g. '7'" in output
    assert f"{two}: TX_FRAUD: 2 bad value(s)" in output
    assert str(good) + ":" not in output


def test_a_missing_declared_column_exits_2_naming_it(job, day1, tmp_path):
    bad = write_csv(tmp_path / "no_terminal.csv", ["30,2018-04-02 10:00:00,4111111111111111,5.00,0"],
                    header="TRANSACTION_ID,TX_DATETIME,CUSTOMER_ID,TX_AMOUNT,TX_FRAUD")
    output = refused(job, day1, bad)
    assert f"{bad} (for [profile] payments) is missing column(s) ['TERMINAL_ID']" in output


def test_a_column_named_twice_in_a_header_exits_2(job, day1, tmp_path):
    bad = write_csv(tmp_path / "twice.csv", ["30,2018-04-02 10:00:00,4111111111111111,T1,5.00,0,1.00"],
                    header=HEADER + ",TX_AMOUNT")
    output = refused(job, day1, bad)
    assert f"{bad} names column(s) ['TX_AMOUNT'] more than once in its header" in output


def test_one_id_with_two_contents_in_the_input_exits_2(job, day1, tmp_path):
    first = write_csv(tmp_path / "first.csv", [line(40, "2018-04-02 10:00:00")])
    second = write_csv(tmp_path / "second.csv", [line(40, "2018-04-02 10:00:00", amount="99.00")])
    output = refused(job, day1, first, second)
    assert (f"TRANSACTION_ID: 1 id(s) given with two different contents in the input, e.g. '40' "
            f"(in {first}, {second})") in output


def test_an_id_already_in_the_table_resent_on_another_day_exits_2(job, day1, tmp_path):
    # Id 3 was ingested on 2018-04-01; re-sent for 2018-04-09 it must not slip in as a new row.
    later = write_csv(tmp_path / "later.csv", [line(50, "2018-04-09 10:00:00"), line(3, "2018-04-09 10:00:00")])
    output = refused(job, day1, later)
    assert (f"{later}: TRANSACTION_ID: 1 id(s) already in the table with other contents, e.g. '3' "
            f"(event_time differ(s))") in output


def test_an_id_in_the_table_resent_with_another_card_or_label_exits_2(job, day1, tmp_path):
    resent = day_lines("2018-04-01", 0, 10)
    resent[4] = line(4, resent[4].split(",")[1], card=pan(6), label="1")
    bad = write_csv(tmp_path / "resent.csv", resent)
    output = refused(job, day1, bad)
    assert "e.g. '4' (card_key, label differ(s))" in output


def test_the_same_file_again_adds_nothing(job, day1, tmp_path):
    code, output = job(day1, str(tmp_path / "day1.csv"))
    assert code == 0, output
    assert state(table_path(day1)) == (0, 10)


def test_an_input_that_names_no_file_an_empty_file_and_a_header_without_rows_exit_2(job, day1, tmp_path):
    output = refused(job, day1, str(tmp_path / "nowhere" / "*.csv"))
    assert f"--input {tmp_path / 'nowhere' / '*.csv'}: no such file, or no file in that folder or glob" in output
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    assert f"{empty} is empty: expected a CSV header" in refused(job, day1, str(empty))
    header_only = write_csv(tmp_path / "header_only.csv", [])
    assert "the input files have a header but no rows" in refused(job, day1, header_only)


def test_a_truncated_gzip_file_exits_2_naming_it(job, day1, tmp_path):
    text = "\n".join([HEADER, *day_lines("2018-04-02", 100, 3000)]) + "\n"
    full = gzip.compress(text.encode())
    truncated = tmp_path / "truncated.csv.gz"
    truncated.write_bytes(full[: len(full) // 2])
    output = refused(job, day1, str(truncated))
    assert f"cannot read {truncated}: java.io.EOFException" in output


# --- The secret -------------------------------------------------------------------------------

def test_a_secret_file_others_can_read_exits_2_naming_it_and_its_mode(job, tmp_path):
    conf = payments_conf(tmp_path)
    (tmp_path / "card-key").chmod(0o644)
    code, output = job(conf, write_csv(tmp_path / "x.csv", day_lines("2018-04-01", 0, 2)))
    assert code == 2
    assert f"the card key secret file {tmp_path / 'card-key'} has mode 0644" in output
    assert "chmod 600" in output and SECRET not in output
    assert not (tmp_path / "lake").exists()


def test_no_secret_at_all_exits_2_saying_how_to_set_one(job, tmp_path):
    conf = payments_conf(tmp_path)
    (tmp_path / "card-key").unlink()
    code, output = job(conf, write_csv(tmp_path / "x.csv", day_lines("2018-04-01", 0, 2)))
    assert code == 2
    assert f"the card key secret file {tmp_path / 'card-key'} does not exist" in output
    assert f"set {CARD_KEY_SECRET_ENV}" in output and "make card-key" in output


def test_the_variable_wins_over_the_file(job, spark, tmp_path, monkeypatch):
    conf = payments_conf(tmp_path)
    (tmp_path / "card-key").chmod(0o644)  # not read at all when the variable is set
    monkeypatch.setenv(CARD_KEY_SECRET_ENV, "another-secret-0123456789")
    code, output = job(conf, write_csv(tmp_path / "x.csv", [line(1, "2018-04-01 10:00:00", card="4111")]))
    assert code == 0, output
    key = spark.read.format("delta").load(table_path(conf)).first().card_key
    assert key == hmac.new(b"another-secret-0123456789", b"4111", hashlib.sha256).hexdigest()


# --- As a user runs it --------------------------------------------------------------------------

@pytest.mark.e2e
def test_through_spark_submit_a_bad_file_exits_2_and_no_card_number_is_printed(tmp_path):
    conf = payments_conf(tmp_path)
    good = write_csv(tmp_path / "good.csv", day_lines("2018-04-01", 0, 14))
    result = submit("ingest", "--input", good, conf=conf)
    assert result.returncode == 0, result.output[-3000:]
    bad_lines = day_lines("2018-04-02", 14, 5)
    bad_lines[0] = line(14, "2018-04-02 10:00:00", card="")
    bad_lines[1] = line(15, "not a time")
    bad = write_csv(tmp_path / "bad.csv", bad_lines)
    refused_run = submit("ingest", "--input", bad, conf=conf)
    assert refused_run.returncode == 2, refused_run.output[-3000:]
    assert f"error: bad values, nothing was written:\n{bad}: TX_DATETIME: 1 bad value(s), e.g. 'not a time'" \
        in refused_run.output
    assert "CUSTOMER_ID: 1 bad value(s), e.g. the row of TRANSACTION_ID '14'" in refused_run.output
    for output in (result.output, refused_run.output):
        assert not any(pan(number) in output for number in range(7)) and SECRET not in output
    assert state(str(tmp_path / "lake" / "transactions")) == (0, 14)
