-- Rate curves per codec: BD-rate against the modality's anchor codec and the highest ratio that
-- keeps >= 95% of the uncompressed score. A NULL number always comes with its *_note saying why.
CREATE TABLE IF NOT EXISTS rate_curves (
    experiment       VARCHAR NOT NULL,
    codec            VARCHAR NOT NULL,
    measure          VARCHAR NOT NULL,       -- 'task.metric' (classification.top1) or a quality metric (psnr)
    kind             VARCHAR NOT NULL,       -- 'task' | 'quality'
    higher_is_better BOOLEAN NOT NULL,
    rate_unit        VARCHAR NOT NULL,       -- bpp (images) | kbps (audio)
    points           BIGINT NOT NULL,        -- codec x ratio partitions on this codec's curve
    anchor           VARCHAR NOT NULL,       -- codec the BD-rate is measured against (jpeg / mp3)
    bd_rate          DOUBLE,                 -- percent; negative: fewer bits than the anchor for the same score
    bd_rate_note     VARCHAR,                -- why bd_rate is NULL (too few points, no overlap, ...)
    reference        DOUBLE,                 -- score on the uncompressed items (task measures)
    kept_fraction    DOUBLE,                 -- 0.95: the share of the reference score that must be kept
    kept_ratio       DOUBLE,                 -- highest mean achieved ratio keeping kept_fraction of reference
    kept_note        VARCHAR,                -- why kept_ratio is NULL
    created_at       TIMESTAMP DEFAULT current_timestamp
);
