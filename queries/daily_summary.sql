-- Per scored day: rows, predicted and actual frauds, and the model version that scored them.
SELECT s.txn_date,
       s.model_name,
       s.model_version,
       count(*)                                 AS scored_rows,
       sum(CAST(s.is_fraud AS INT))             AS predicted_frauds,
       sum(t.Class)                             AS actual_frauds,
       sum(CAST(s.is_fraud AND t.Class = 1 AS INT)) AS caught_frauds,
       round(avg(s.fraud_probability), 4)       AS mean_probability,
       max(s.source_table_version)              AS source_table_version,
       max(s.scored_at)                         AS scored_at
FROM scored_transactions s
JOIN transactions t USING (transaction_id, txn_date)
GROUP BY s.txn_date, s.model_name, s.model_version
ORDER BY s.txn_date
