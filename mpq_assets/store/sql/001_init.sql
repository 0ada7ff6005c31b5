-- Long-format result tables. Partition columns come first; every write replaces
-- one partition's rows (see ResultsStore.replace_partition).

CREATE TABLE IF NOT EXISTS items (
    experiment    VARCHAR NOT NULL,
    item_id       VARCHAR NOT NULL,
    modality      VARCHAR NOT NULL,          -- 'image' | 'audio'
    source        VARCHAR,                   -- where the item came from (file, package, dataset split)
    original_path VARCHAR,                   -- cached normalised original (PNG / 16-bit FLAC)
    label         VARCHAR,                   -- ground truth label / transcript / stem list, if any
    width         INTEGER,
    height        INTEGER,
    sample_rate   INTEGER,
    channels      INTEGER,
    frames        BIGINT,
    duration_s    DOUBLE,
    raw_bytes     BIGINT NOT NULL,           -- 8-bit RGB / 16-bit PCM size: the ratio denominator
    created_at    TIMESTAMP DEFAULT current_timestamp
);

CREATE TABLE IF NOT EXISTS compressed (
    experiment     VARCHAR NOT NULL,
    codec          VARCHAR NOT NULL,
    bitrate        VARCHAR NOT NULL,         -- target ratio partition, e.g. '100x'
    item_id        VARCHAR NOT NULL,
    target_ratio   DOUBLE NOT NULL,
    budget_bytes   BIGINT NOT NULL,
    bytes          BIGINT NOT NULL,          -- size of the file actually written
    bpp            DOUBLE,                   -- images: bytes*8 / pixels
    kbps           DOUBLE,                   -- audio: bytes*8 / seconds / 1000
    achieved_ratio DOUBLE NOT NULL,          -- raw_bytes / bytes
    setting        VARCHAR NOT NULL,         -- what rate control chose (q=37, 24kbps@24kHz, ...)
    rate_met       BOOLEAN NOT NULL,         -- false: the target was unreachable for this codec
    trials         INTEGER NOT NULL,         -- encodes rate control needed
    encode_s       DOUBLE NOT NULL,
    decode_s       DOUBLE NOT NULL,
    path           VARCHAR NOT NULL,         -- the bitstream file
    created_at     TIMESTAMP DEFAULT current_timestamp
);

CREATE TABLE IF NOT EXISTS errors (
    experiment VARCHAR NOT NULL,
    stage      VARCHAR NOT NULL,             -- asset that hit the error: dataset, compressed, ...
    codec      VARCHAR NOT NULL,             -- '' where not partitioned
    bitrate    VARCHAR NOT NULL,             -- '' where not partitioned
    item_id    VARCHAR NOT NULL,
    error      VARCHAR NOT NULL,             -- the reason, in words
    created_at TIMESTAMP DEFAULT current_timestamp
);

CREATE TABLE IF NOT EXISTS quality (
    experiment VARCHAR NOT NULL,
    codec      VARCHAR NOT NULL,
    bitrate    VARCHAR NOT NULL,
    item_id    VARCHAR NOT NULL,
    metric     VARCHAR NOT NULL,             -- psnr, ms_ssim, lpips_alex, si_sdr, cdpam, ...
    value      DOUBLE,
    created_at TIMESTAMP DEFAULT current_timestamp
);

CREATE TABLE IF NOT EXISTS predictions (
    experiment VARCHAR NOT NULL,
    codec      VARCHAR NOT NULL,             -- 'reference' for the uncompressed item
    bitrate    VARCHAR NOT NULL,             -- 'reference' for the uncompressed item
    item_id    VARCHAR NOT NULL,
    task       VARCHAR NOT NULL,
    prediction VARCHAR,                      -- JSON: top-k classes, transcript, ...
    created_at TIMESTAMP DEFAULT current_timestamp
);

CREATE TABLE IF NOT EXISTS task_scores (
    experiment VARCHAR NOT NULL,
    codec      VARCHAR NOT NULL,
    bitrate    VARCHAR NOT NULL,
    task       VARCHAR NOT NULL,
    item_id    VARCHAR,                      -- NULL for partition-level aggregates
    metric     VARCHAR NOT NULL,             -- top1, miou, wer, sdr, agreement, ...
    value      DOUBLE,
    n          BIGINT,
    created_at TIMESTAMP DEFAULT current_timestamp
);

CREATE TABLE IF NOT EXISTS correlations (
    experiment     VARCHAR NOT NULL,
    level          VARCHAR NOT NULL,         -- 'partition' (codec x ratio means) | 'item'
    task           VARCHAR NOT NULL,
    task_metric    VARCHAR NOT NULL,
    quality_metric VARCHAR NOT NULL,
    method         VARCHAR NOT NULL,         -- pearson | spearman | kendall
    r              DOUBLE,
    ci_low         DOUBLE,
    ci_high        DOUBLE,
    n              BIGINT,
    created_at     TIMESTAMP DEFAULT current_timestamp
);
