-- Days whose scores do not match their transactions: rows not scored yet (late data, a day never
-- scored) or scored rows whose transaction is no longer there. Compares the two tables row by
-- row, so it reads both whole: a check independent of the change data feed that
-- `score --list-stale` and `score --catch-up` use. `score --catch-up` rescores these days.
SELECT coalesce(t.txn_date, s.txn_date)                  AS txn_date,
       count(t.transaction_id)                           AS transactions,
       count(s.transaction_id)                           AS scored_rows,
       count_if(s.transaction_id IS NULL)                AS unscored_rows,
       count_if(t.transaction_id IS NULL)                AS scored_without_transaction,
       max(s.source_table_version)                       AS scored_from_version,
       max(s.scored_at)                                  AS scored_at
FROM (SELECT txn_date, transaction_id FROM transactions) t
FULL OUTER JOIN (SELECT txn_date, transaction_id, source_table_version, scored_at FROM scored_transactions) s
  ON t.txn_date = s.txn_date AND t.transaction_id = s.transaction_id
GROUP BY coalesce(t.txn_date, s.txn_date)
HAVING count_if(s.transaction_id IS NULL) > 0 OR count_if(t.transaction_id IS NULL) > 0
ORDER BY txn_date
