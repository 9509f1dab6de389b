-- The payments profile, per scored day: rows, alerts, frauds caught, and Card Precision@100
-- as monitoring measured it (the share of compromised cards among the day's 100 riskiest).
SELECT s.txn_date,
       s.model_version,
       count(*)                                       AS scored_rows,
       sum(CAST(s.is_fraud AS INT))                   AS alerts,
       sum(f.label)                                   AS frauds,
       sum(CAST(s.is_fraud AND f.label = 1 AS INT))   AS frauds_caught,
       max(p.value)                                   AS card_precision_at_100
FROM scored_transactions s
JOIN features f USING (transaction_id, txn_date)
LEFT JOIN monitor_performance p
       ON p.txn_date = s.txn_date AND p.model_version = s.model_version AND p.metric = 'card_precision_at_100'
GROUP BY s.txn_date, s.model_version
ORDER BY s.txn_date
