"""Nightly scoring: a day of transactions and a registered version in, scored rows with their
lineage out (:mod:`.batch`), the checks before a day is scored (:mod:`.checks`), and which days
are stale and must be scored again (:mod:`.catch_up`)."""
