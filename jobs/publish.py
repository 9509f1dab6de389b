"""publish: the online store's state for one day, from the Delta tables (payments profile).

    ./spark-submit.sh publish --env payments                    # today on the profile's clock
    ./spark-submit.sh publish --env payments --date 2018-09-24  # the state to serve 2018-09-24

Run after the nightly ``score`` (and ``label``), before the day it serves begins: each card's
transactions over its longest window merged into the card's history by transaction id (the
service's own appends stay), each terminal's delayed windows with the labels known when the day
begins, then the day's marker with the Delta versions read. Safe to run again. The service
refuses a day's transactions until its state is published (docs/online-features.md).

Exit 2, nothing marked as published: not the payments profile, no store configured, no
transactions in the day's history, a date that is not a real calendar date. Exit 3: the store
does not answer.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from datetime import timedelta
from zoneinfo import ZoneInfo

from pyspark.sql import functions as F

from pipelines.core.cli import calendar_date, job_parser, run_main
from pipelines.core.clock import utc_now
from pipelines.core.config import load_settings
from pipelines.core.errors import InvalidArgumentError, NoDataError
from pipelines.core.session import get_spark
from pipelines.data.schema import TXN_DATE
from pipelines.data.tables import current_version, read_version
from pipelines.online.publish import publish_day


def last_day(transactions):
    day = transactions.agg(F.max(TXN_DATE)).first()[0]
    if day is None:
        raise NoDataError("publish: transactions is empty: ingest first")
    return day


def main(argv: Sequence[str] | None = None) -> int:
    parser = job_parser(__doc__.splitlines()[0])
    parser.add_argument("--date", type=calendar_date,
                        help="the day whose transactions the state serves, YYYY-MM-DD (default: today on the "
                             "profile's clock)")
    parser.add_argument("--after-last-day", action="store_true",
                        help="the day after the last day of transactions (a demo's data ends in the past)")
    args = parser.parse_args(argv)
    if args.date and args.after_last_day:
        raise InvalidArgumentError("give --date or --after-last-day, not both")
    now = utc_now()
    settings = load_settings(args.env)
    spark = get_spark(settings.spark)
    if args.after_last_day:
        last = last_day(read_version(spark, settings.tables.transactions_path,
                                     current_version(spark, settings.tables.transactions_path)))
        day = last + timedelta(days=1)
    else:
        day = args.date or now.astimezone(ZoneInfo(settings.profile.time_zone)).date()
    run = publish_day(spark, settings, day, published_at=now)
    print(f"published {run.day}: generation {run.generation}, transactions version {run.transactions_version}, "
          f"labels version {run.labels_version}; {run.card_entries} card entries in {run.cards} cards "
          f"({run.cards_added} added, {run.cards_changed} changed), {run.terminal_instants} terminal instants in "
          f"{run.terminals} terminals; {run.seconds:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
