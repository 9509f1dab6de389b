"""score's modes on the command line: options that do not go together are refused before Spark starts."""

from __future__ import annotations

import pytest

from jobs import score
from pipelines.core.errors import InvalidArgumentError


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--list-stale", "--date", "2013-09-01"], "--list-stale takes no other option"),
        (["--list-stale", "--catch-up"], "--list-stale takes no other option"),
        (["--list-stale", "--shadow"], "--list-stale takes no other option"),
        (["--list-stale", "--model-uri", "models:/fraud_detector/1"], "--list-stale takes no other option"),
        (["--shadow", "--catch-up"], "--shadow scores named days"),
    ],
)
def test_modes_that_do_not_go_together_are_refused(argv, message, monkeypatch):
    def no_settings(env):
        raise AssertionError("the config was read: the options should have been refused before")

    monkeypatch.setattr(score, "load_settings", no_settings)
    with pytest.raises(InvalidArgumentError, match=message):
        score.main(argv)
