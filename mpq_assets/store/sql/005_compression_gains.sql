-- Compression against the uncompressed items: per task measure and distinct operating point, the paired
-- difference (compressed - reference) over the items both sides have, with an item-resampling paired
-- bootstrap interval, a two-sided bootstrap p-value and its Benjamini-Hochberg q-value over the experiment.
CREATE TABLE IF NOT EXISTS paired_differences (
    experiment       VARCHAR NOT NULL,
    task             VARCHAR NOT NULL,
    metric           VARCHAR NOT NULL,
    codec            VARCHAR NOT NULL,
    point            VARCHAR NOT NULL,          -- codec@bitrate of the distinct operating point
    bitrates         VARCHAR,                   -- the partitions merged into it
    ratio            DOUBLE,                    -- achieved pooled ratio
    higher_is_better BOOLEAN NOT NULL,
    items            BIGINT NOT NULL,           -- items scored on both sides
    reference        DOUBLE,                    -- the task's aggregate on the uncompressed items
    compressed       DOUBLE,                    -- ... on the reconstructions of the same items
    difference       DOUBLE,                    -- compressed - reference
    ci_low           DOUBLE,                    -- 95% paired bootstrap interval of the difference
    ci_high          DOUBLE,
    p_value          DOUBLE,
    q_value          DOUBLE,
    helped           BOOLEAN NOT NULL,          -- better in the measure's direction, interval excludes 0
    hurt             BOOLEAN NOT NULL,          -- worse, interval excludes 0
    note             VARCHAR,                   -- why an interval is NULL, or which items were left out
    created_at       TIMESTAMP DEFAULT current_timestamp
);
