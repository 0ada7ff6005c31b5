-- Views for the common questions; recreated on every open so they track the code.

CREATE OR REPLACE VIEW rate_summary AS
SELECT
    experiment,
    codec,
    bitrate,
    any_value(target_ratio)                       AS target_ratio,
    count(*)                                      AS items,
    avg(achieved_ratio)                           AS mean_ratio,
    avg(bpp)                                      AS mean_bpp,
    avg(kbps)                                     AS mean_kbps,
    count(*) FILTER (WHERE NOT rate_met)          AS missed_target,
    avg(encode_s)                                 AS mean_encode_s,
    avg(decode_s)                                 AS mean_decode_s
FROM compressed
GROUP BY experiment, codec, bitrate;

CREATE OR REPLACE VIEW codec_summary AS
SELECT
    experiment,
    codec,
    count(DISTINCT bitrate)                       AS bitrates,
    count(*)                                      AS encoded_items,
    min(achieved_ratio)                           AS min_ratio,
    max(achieved_ratio)                           AS max_ratio,
    max(CASE WHEN rate_met THEN target_ratio END) AS highest_met_target,
    count(*) FILTER (WHERE NOT rate_met)          AS missed_target
FROM compressed
GROUP BY experiment, codec;

CREATE OR REPLACE VIEW failures AS
SELECT experiment, stage, codec, bitrate, item_id, error, created_at
FROM errors
ORDER BY experiment, stage, codec, bitrate, item_id;

CREATE OR REPLACE VIEW rate_quality AS
SELECT c.experiment, c.codec, c.bitrate, c.item_id, c.achieved_ratio, c.bpp, c.kbps, c.rate_met,
       q.metric, q.value
FROM compressed c
JOIN quality q USING (experiment, codec, bitrate, item_id);

-- One row per experiment x codec x bitrate x measure: mean quality per metric and the
-- partition-level task scores (item_id IS NULL rows), ready to pivot against rate.
CREATE OR REPLACE VIEW partition_scores AS
SELECT experiment, codec, bitrate, 'quality' AS kind, metric AS measure, avg(value) AS value, count(*) AS n
FROM quality
WHERE value IS NOT NULL AND isfinite(value)
GROUP BY experiment, codec, bitrate, metric
UNION ALL
SELECT experiment, codec, bitrate, 'task' AS kind, task || '.' || metric AS measure, value, n
FROM task_scores
WHERE item_id IS NULL;

-- Rate vs task: every partition's task scores beside its achieved rate and the score on the
-- uncompressed items (relative_to_reference = value / reference_value).
CREATE OR REPLACE VIEW rate_task AS
SELECT r.experiment, r.codec, r.bitrate, r.target_ratio, r.mean_ratio, r.mean_bpp, r.mean_kbps, r.missed_target,
       t.task, t.metric, t.value, t.n, ref.value AS reference_value,
       t.value / nullif(ref.value, 0) AS relative_to_reference, t.model
FROM rate_summary r
JOIN task_scores t ON t.experiment = r.experiment AND t.codec = r.codec AND t.bitrate = r.bitrate
                  AND t.item_id IS NULL
LEFT JOIN task_scores ref ON ref.experiment = t.experiment AND ref.codec = 'reference' AND ref.item_id IS NULL
                         AND ref.task = t.task AND ref.metric = t.metric;

-- Correlations ranked: rank 1 is the quality metric that best predicts the task metric (largest |r|);
-- rank is NULL where r is (too few pairs, a constant side), so a rank always names a real correlation.
CREATE OR REPLACE VIEW correlation_ranking AS
SELECT *, abs(r) AS abs_r,
       CASE WHEN r IS NOT NULL AND isfinite(r) THEN
           row_number() OVER (PARTITION BY experiment, level, task, task_metric, method
                              ORDER BY abs(r) DESC NULLS LAST, quality_metric) END AS rank
FROM correlations;
