-- Views for the common questions; recreated on every open so they track the code.

-- Pooled rates: a partition's ratio is its summed raw bytes over its summed bytes written, bpp and
-- kbps likewise over summed pixels and seconds, so one tiny item cannot dominate its partition.
-- Per-item values stay in `compressed`.
CREATE OR REPLACE VIEW rate_summary AS
SELECT
    experiment,
    codec,
    bitrate,
    any_value(target_ratio)                       AS target_ratio,
    count(*)                                      AS items,
    sum(raw_bytes) / sum(bytes)                   AS ratio,
    8.0 * sum(bytes) / nullif(sum(pixels), 0)     AS bpp,
    8.0 * sum(bytes) / nullif(sum(duration_s), 0) / 1000 AS kbps,
    count(*) FILTER (WHERE NOT rate_met)          AS missed_target,
    avg(encode_s)                                 AS mean_encode_s,
    avg(decode_s)                                 AS mean_decode_s
FROM compressed
GROUP BY experiment, codec, bitrate;

-- Each partition's distinct operating point: partitions of one codec whose items carry identical
-- bitstreams (same item ids, same content hash) are one point, named after its lowest target
-- (jpeg@200x). Rows without a hash (written before hashes were recorded) are never merged.
CREATE OR REPLACE VIEW partition_points AS
WITH signed AS (
    SELECT experiment, codec, bitrate,
           any_value(target_ratio)                AS target_ratio,
           md5(string_agg(item_id || '=' || coalesce(sha256, 'file:' || path), '|' ORDER BY item_id)) AS signature,
           count(*)                               AS items,
           count(*) FILTER (WHERE NOT rate_met)   AS missed_items
    FROM compressed
    GROUP BY experiment, codec, bitrate
)
SELECT experiment, codec, bitrate, target_ratio, signature, items, missed_items,
       codec || '@' || first_value(bitrate) OVER (PARTITION BY experiment, codec, signature
                                                  ORDER BY target_ratio, bitrate) AS point
FROM signed;

-- What every curve, correlation, BD-rate and kept ratio counts: one row per distinct operating point
-- at its achieved pooled rate, with the partitions merged into it and the items that missed.
CREATE OR REPLACE VIEW operating_points AS
SELECT p.experiment, p.codec, p.point,
       count(*)                                          AS partitions,
       count(*) - 1                                      AS merged,
       string_agg(p.bitrate, ',' ORDER BY p.target_ratio) AS bitrates,
       min(p.target_ratio)                               AS lowest_target,
       max(p.target_ratio)                               AS highest_target,
       max(CASE WHEN p.missed_items = 0 THEN p.target_ratio END) AS highest_met_target,
       min(p.items)                                      AS items,
       min(p.missed_items)                               AS missed_items,      -- missed even the lowest target
       count(*) FILTER (WHERE p.missed_items > 0)        AS missed_partitions,
       min(r.ratio)                                      AS ratio,
       min(r.bpp)                                        AS bpp,
       min(r.kbps)                                       AS kbps
FROM partition_points p
JOIN rate_summary r USING (experiment, codec, bitrate)
GROUP BY p.experiment, p.codec, p.point;

-- Per codec: how many partitions and how many distinct operating points they are.
CREATE OR REPLACE VIEW codec_summary AS
WITH rows_ AS (
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
    GROUP BY experiment, codec
), points AS (
    SELECT experiment, codec, count(DISTINCT point) AS points FROM partition_points GROUP BY experiment, codec
)
SELECT r.experiment, r.codec, r.bitrates, p.points, r.encoded_items, r.min_ratio, r.max_ratio,
       r.highest_met_target, r.missed_target
FROM rows_ r
JOIN points p USING (experiment, codec);

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
SELECT r.experiment, r.codec, r.bitrate, p.point, r.target_ratio, r.ratio, r.bpp, r.kbps, r.missed_target,
       t.task, t.metric, t.value, t.n, ref.value AS reference_value,
       t.value / nullif(ref.value, 0) AS relative_to_reference, t.model
FROM rate_summary r
JOIN partition_points p USING (experiment, codec, bitrate)
JOIN task_scores t ON t.experiment = r.experiment AND t.codec = r.codec AND t.bitrate = r.bitrate
                  AND t.item_id IS NULL
LEFT JOIN task_scores ref ON ref.experiment = t.experiment AND ref.codec = 'reference' AND ref.item_id IS NULL
                         AND ref.task = t.task AND ref.metric = t.metric;

-- Correlations ranked: rank 1 is the quality metric that best predicts the task metric (largest |r|
-- among those with the sign their directions imply: a distance against an accuracy should be negative).
-- A correlation of the wrong sign (worse quality, better task) is flagged `wrong_sign` and never ranked;
-- rank is NULL where r is too (too few points, a constant side), so a rank always names a real correlation.
CREATE OR REPLACE VIEW correlation_ranking AS
SELECT *, abs(r) AS abs_r,
       coalesce(r IS NOT NULL AND isfinite(r) AND r * expected_sign < 0, false) AS wrong_sign,
       CASE WHEN r IS NOT NULL AND isfinite(r) AND coalesce(r * expected_sign > 0, true) THEN
           row_number() OVER (PARTITION BY experiment, level, task, task_metric, method,
                                           (r IS NOT NULL AND isfinite(r) AND coalesce(r * expected_sign > 0, true))
                              ORDER BY abs(r) DESC NULLS LAST, quality_metric) END AS rank
FROM correlations;

-- Where compression helped: the compressed score is better than on the uncompressed items with the
-- paired 95% interval excluding 0 (q_value: the false-discovery rate among the flagged of the experiment).
CREATE OR REPLACE VIEW compression_gains AS
SELECT experiment, task, metric, codec, point, bitrates, ratio, items, reference, compressed, difference,
       ci_low, ci_high, p_value, q_value, note
FROM paired_differences
WHERE helped
ORDER BY experiment, task, metric, ratio;

-- The train-variant x test-variant matrix over distinct operating points: partitions whose items carry
-- the same bitstreams are one variant (named after the lowest target, as in operating_points; the
-- uncompressed items are 'uncompressed'), with its pooled ratio; mean, spread and range over seeds.
CREATE OR REPLACE VIEW transfer_matrix AS
WITH scored AS (
    SELECT t.experiment, t.metric, t.seed, t.value, t.n,
           coalesce(tp.point, 'uncompressed') AS train_variant,
           coalesce(sp.point, 'uncompressed') AS test_variant,
           t.train_codec || '@' || t.train_bitrate AS train_partition,
           t.test_codec || '@' || t.test_bitrate AS test_partition
    FROM transfer_scores t
    LEFT JOIN partition_points tp ON tp.experiment = t.experiment || '_train' AND tp.codec = t.train_codec
                                 AND tp.bitrate = t.train_bitrate
    LEFT JOIN partition_points sp ON sp.experiment = t.experiment AND sp.codec = t.test_codec
                                 AND sp.bitrate = t.test_bitrate
), one AS (  -- one score per (train point, seed, test point): duplicates carry the same bitstreams
    SELECT experiment, metric, train_variant, test_variant, seed,
           arg_min(value, train_partition || test_partition) AS value, any_value(n) AS n,
           string_agg(DISTINCT train_partition, ',' ORDER BY train_partition) AS train_partitions,
           string_agg(DISTINCT test_partition, ',' ORDER BY test_partition) AS test_partitions
    FROM scored
    GROUP BY ALL
)
SELECT o.experiment, o.train_variant, o.test_variant, o.metric,
       any_value(tr.ratio)          AS train_ratio,
       any_value(te.ratio)          AS test_ratio,
       count(*)                     AS seeds,
       avg(o.value)                 AS mean,
       stddev_samp(o.value)         AS sd,
       min(o.value)                 AS min,
       max(o.value)                 AS max,
       any_value(o.n)               AS items,
       any_value(o.train_partitions) AS train_partitions,
       any_value(o.test_partitions)  AS test_partitions
FROM one o
LEFT JOIN operating_points tr ON tr.experiment = o.experiment || '_train' AND tr.point = o.train_variant
LEFT JOIN operating_points te ON te.experiment = o.experiment AND te.point = o.test_variant
GROUP BY o.experiment, o.train_variant, o.test_variant, o.metric;

-- Which model breaks first: per codec and task metric, every model (task) of the experiment by the
-- highest achieved ratio up to which it keeps 95% of its own uncompressed score (rate_curves'
-- kept_ratio; a model below 95% already at the codec's lowest ratio keeps none). Rank 1 breaks first.
-- Metrics without a kept ratio for any reason but that one (KL: no bounded complement) are left out.
CREATE OR REPLACE VIEW model_degradation AS
WITH kept AS (
    SELECT experiment, codec, split_part(measure, '.', 1) AS task, split_part(measure, '.', 2) AS metric,
           kept_ratio, reference, points, kept_note
    FROM rate_curves
    WHERE kind = 'task' AND (kept_ratio IS NOT NULL OR kept_note LIKE '%already keeps less%')
), models AS (
    SELECT experiment, task, any_value(model) AS model FROM task_scores WHERE codec = 'reference' GROUP BY ALL
)
SELECT k.experiment, k.codec, k.metric, k.task, m.model, k.reference, k.kept_ratio, k.points,
       count(*) OVER (PARTITION BY k.experiment, k.codec, k.metric) AS models,
       rank() OVER (PARTITION BY k.experiment, k.codec, k.metric ORDER BY coalesce(k.kept_ratio, 0)) AS breaks_first
FROM kept k
LEFT JOIN models m USING (experiment, task);

-- Which task breaks first: per codec, every task (model) of the experiment by the first of its measures
-- to fall below 95% of its own uncompressed score (the lowest kept_ratio over the task's measures, as in
-- model_degradation; none: below 95% already at the codec's lowest ratio). Tasks of different kinds
-- (ASR, speaker verification, OCR) compare on the one scale they share: compression ratio. Rank 1 first.
CREATE OR REPLACE VIEW task_degradation AS
WITH per_task AS (
    SELECT experiment, codec, task, any_value(model) AS model,
           arg_min(metric, coalesce(kept_ratio, 0)) AS first_measure,
           nullif(min(coalesce(kept_ratio, 0)), 0) AS kept_ratio,
           count(*) AS measures
    FROM model_degradation
    GROUP BY ALL
)
SELECT experiment, codec, task, model, first_measure, kept_ratio, measures,
       count(*) OVER (PARTITION BY experiment, codec) AS tasks,
       rank() OVER (PARTITION BY experiment, codec ORDER BY coalesce(kept_ratio, 0)) AS breaks_first
FROM per_task;
