-- Per monitored day: the verdict, which columns drifted or were out of band, and the realized
-- AUC-PR and recall with their bootstrap intervals (once the day has labels).
SELECT v.txn_date,
       v.model_version,
       v.verdict,
       array_join(v.drifted_columns, ',')     AS drifted,
       array_join(v.out_of_band_columns, ',') AS out_of_band,
       v.rows,
       format_string('%.3f [%.3f, %.3f]', a.value, a.lower, a.upper) AS auc_pr,
       format_string('%.3f [%.3f, %.3f]', r.value, r.lower, r.upper) AS recall
FROM monitor_verdicts v
LEFT JOIN monitor_performance a
       ON a.txn_date = v.txn_date AND a.model_version = v.model_version AND a.metric = 'auc_pr'
LEFT JOIN monitor_performance r
       ON r.txn_date = v.txn_date AND r.model_version = v.model_version AND r.metric = 'recall'
ORDER BY v.txn_date, v.model_version
