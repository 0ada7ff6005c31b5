-- Operating points: what the analyses count. Each compressed row records the content hash of its
-- bitstream (partitions of one codec whose items carry identical bytes are one point) and the
-- denominators of its pooled rate (raw bytes, pixels or seconds), so a partition's rate is
-- sum(raw) / sum(bytes), never a mean of per-item ratios. Rows written before this migration get
-- their denominators back from their own ratio and rate; their hash stays NULL (never merged).
ALTER TABLE compressed ADD COLUMN IF NOT EXISTS sha256 VARCHAR;
ALTER TABLE compressed ADD COLUMN IF NOT EXISTS raw_bytes BIGINT;
ALTER TABLE compressed ADD COLUMN IF NOT EXISTS pixels BIGINT;
ALTER TABLE compressed ADD COLUMN IF NOT EXISTS duration_s DOUBLE;
UPDATE compressed SET raw_bytes = round(achieved_ratio * bytes) WHERE raw_bytes IS NULL;
UPDATE compressed SET pixels = round(8.0 * bytes / bpp) WHERE pixels IS NULL AND bpp > 0;
UPDATE compressed SET duration_s = 8.0 * bytes / (kbps * 1000) WHERE duration_s IS NULL AND kbps > 0;

-- Analyses say what they counted: distinct points, the partitions behind them, duplicates merged,
-- partitions that missed their target, and which sign a predictor's r should have.
ALTER TABLE rate_curves ADD COLUMN IF NOT EXISTS partitions BIGINT;
ALTER TABLE rate_curves ADD COLUMN IF NOT EXISTS merged BIGINT;
ALTER TABLE rate_curves ADD COLUMN IF NOT EXISTS missed BIGINT;
ALTER TABLE correlations ADD COLUMN IF NOT EXISTS partitions BIGINT;
ALTER TABLE correlations ADD COLUMN IF NOT EXISTS merged BIGINT;
ALTER TABLE correlations ADD COLUMN IF NOT EXISTS missed BIGINT;
ALTER TABLE correlations ADD COLUMN IF NOT EXISTS expected_sign INTEGER;
ALTER TABLE correlations ADD COLUMN IF NOT EXISTS note VARCHAR;

-- BD-rate of every codec against every anchor codec with enough distinct points on a measure.
CREATE TABLE IF NOT EXISTS bd_rates (
    experiment    VARCHAR NOT NULL,
    measure       VARCHAR NOT NULL,
    kind          VARCHAR NOT NULL,          -- 'task' | 'quality'
    anchor        VARCHAR NOT NULL,
    codec         VARCHAR NOT NULL,
    anchor_points BIGINT NOT NULL,           -- distinct operating points on the anchor's curve
    points        BIGINT NOT NULL,           -- distinct operating points on the codec's curve
    bd_rate       DOUBLE,                    -- percent; negative: fewer bits than the anchor
    bd_rate_note  VARCHAR,                   -- why bd_rate is NULL
    created_at    TIMESTAMP DEFAULT current_timestamp
);
