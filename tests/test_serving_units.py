"""fraud-serve's parts that need no model or Spark: starting without a token, the token file
(created owner-only, git-ignored, read again for rotations, refused when others can read it),
and the request parser against any body."""

from __future__ import annotations

import json
import os
import stat
import subprocess

import pytest

from pipelines.core.config import PROJECT_ROOT
from pipelines.core.errors import ConfigError
from pipelines.data.schema import FEATURE_COLS
from pipelines.serving.app import RequestRefused, parse_transactions
from pipelines.serving.tokens import MIN_TOKEN_LENGTH, TokenChecker, create_token_file, load_tokens
from tests.test_serving import FRAUD_SERVE, free_port, serve_conf


def test_without_a_token_the_service_refuses_to_start(tmp_path):
    conf = serve_conf(tmp_path, f"sqlite:///{tmp_path / 'mlflow.db'}")
    environment = {k: v for k, v in os.environ.items() if not k.startswith("FRAUD_SERVE_TOKEN")}
    done = subprocess.run([FRAUD_SERVE, "--env", str(conf), "--port", str(free_port())], env=environment,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "no bearer token is configured" in done.stderr
    short = subprocess.run([FRAUD_SERVE, "--env", str(conf), "--port", str(free_port())],
                           env={**environment, "FRAUD_SERVE_TOKEN": "short"}, capture_output=True, text=True,
                           timeout=60)
    assert short.returncode == 2 and f"shorter than {MIN_TOKEN_LENGTH} characters" in short.stderr
    assert "short" not in short.stderr.replace("shorter", "")


def test_the_local_token_file_is_created_once_and_only_its_owner_reads_it(tmp_path):
    path = tmp_path / ".secrets" / "serve-token"
    assert create_token_file(path) is True
    token = path.read_text()
    assert create_token_file(path) is False and path.read_text() == token
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert len(token.strip()) >= 43


def test_the_token_file_is_git_ignored():
    ignored = subprocess.run(["git", "-C", str(PROJECT_ROOT), "check-ignore", ".secrets/serve-token"],
                             capture_output=True, text=True)
    assert ignored.returncode == 0


def test_a_token_is_rotated_by_editing_the_file_without_a_restart(tmp_path):
    path = tmp_path / "tokens"
    old, new = "old-token-" + "a" * 30, "new-token-" + "b" * 30
    path.write_text(old + "\n")
    path.chmod(0o600)
    tokens, _, reread = load_tokens(str(path), {})
    checker = TokenChecker(tokens, path=reread, recheck_seconds=0.0)
    assert checker.allows(f"Bearer {old}") and not checker.allows(f"Bearer {new}")
    path.write_text(f"{old}\n{new}\n")  # both, while the callers move over
    assert checker.allows(f"Bearer {old}") and checker.allows(f"Bearer {new}")
    path.write_text(new + "\n")
    assert checker.allows(f"Bearer {new}") and not checker.allows(f"Bearer {old}")
    path.write_text("")  # emptied by mistake: the tokens before stay
    assert checker.allows(f"Bearer {new}")


@pytest.mark.parametrize("body", [
    b"[" * 100_000 + b"]" * 100_000, b"\xff\xfe not utf-8", b"\x00", b"", b"null", b"[null]", b"[[]]",
    b'{"V1": {"a": 1}}', b'{"Time": "x"}', b'{"transaction_id": true}', b"1" * 5000,
    json.dumps({c: 10 ** 400 for c in FEATURE_COLS}).encode(), json.dumps({"Time": 10 ** 400}).encode(),
], ids=["deep", "not-utf8", "nul", "empty", "null", "null-row", "array-row", "object-value", "bad-time",
        "bool-id", "long-number", "huge-ints", "huge-time"])
def test_any_body_is_refused_with_a_422_never_an_error(body):
    """The parser alone (no server): whatever arrives is a refusal naming what is wrong."""
    with pytest.raises(RequestRefused) as refused:
        parse_transactions(body, FEATURE_COLS, max_batch=10)
    assert refused.value.status == 422
    assert refused.value.detail and all("loc" in problem for problem in refused.value.detail)


def test_a_token_file_others_can_read_is_refused(tmp_path):
    path = tmp_path / "serve-token"
    path.write_text("t" * 40 + "\n")
    path.chmod(0o644)
    with pytest.raises(ConfigError, match="can be read by others than its owner: chmod 600 it"):
        load_tokens(str(path), {})
    path.chmod(0o600)
    assert load_tokens(str(path), {})[0] == "t" * 40


def test_a_transaction_of_another_feature_set_is_a_409_and_a_feature_set_that_is_not_text_a_422():
    """A payments model scores features computed with its own definitions only (#23)."""
    columns = ["amount", "card_tx_count_1d"]
    row = {"amount": 12.5, "card_tx_count_1d": 2}
    features, _, _ = parse_transactions(json.dumps({**row, "feature_set": "fs-aaa"}).encode(), columns,
                                        max_batch=10, feature_set="fs-aaa")
    assert features.tolist() == [[12.5, 2.0]]
    with pytest.raises(RequestRefused) as other:
        parse_transactions(json.dumps([row, {**row, "feature_set": "fs-bbb"}]).encode(), columns, max_batch=10,
                           feature_set="fs-aaa")
    assert other.value.status == 409 and other.value.detail[0]["loc"] == ["body", 1, "feature_set"]
    assert "fs-bbb" in other.value.detail[0]["msg"] and "fs-aaa" in other.value.detail[0]["msg"]
    with pytest.raises(RequestRefused) as untyped:
        parse_transactions(json.dumps({**row, "feature_set": 7}).encode(), columns, max_batch=10, feature_set="fs-aaa")
    assert untyped.value.status == 422
    with pytest.raises(RequestRefused) as no_set:  # a credit-card model has none
        parse_transactions(json.dumps({**row, "feature_set": "fs-aaa"}).encode(), columns, max_batch=10)
    assert no_set.value.status == 409
