-- Training on compressed data. A training variant is the uncompressed training split (codec and
-- bitrate 'reference') or one codec x bitrate partition of it (experiment '<name>_train'); a test
-- variant likewise of the experiment's own items.
CREATE TABLE IF NOT EXISTS training_runs (
    experiment        VARCHAR NOT NULL,
    train_codec       VARCHAR NOT NULL,
    train_bitrate     VARCHAR NOT NULL,
    seed              INTEGER NOT NULL,
    recipe            VARCHAR NOT NULL,
    config            VARCHAR NOT NULL,      -- JSON: recipe, hyper-parameters, backbone
    items             BIGINT NOT NULL,       -- training items the variant had
    classes           BIGINT NOT NULL,
    epochs            BIGINT NOT NULL,
    final_loss        DOUBLE,
    final_train_accuracy DOUBLE,
    wall_s            DOUBLE,                -- training only (features excluded)
    device            VARCHAR,
    sha256            VARCHAR NOT NULL,      -- of the weights' tensors (same seed, same hash on one CPU setup)
    path              VARCHAR NOT NULL,      -- the safetensors file
    created_at        TIMESTAMP DEFAULT current_timestamp
);

CREATE TABLE IF NOT EXISTS training_curves (
    experiment        VARCHAR NOT NULL,
    train_codec       VARCHAR NOT NULL,
    train_bitrate     VARCHAR NOT NULL,
    seed              INTEGER NOT NULL,
    epoch             BIGINT NOT NULL,
    loss              DOUBLE,
    train_accuracy    DOUBLE,
    created_at        TIMESTAMP DEFAULT current_timestamp
);

CREATE TABLE IF NOT EXISTS transfer_scores (
    experiment        VARCHAR NOT NULL,
    train_codec       VARCHAR NOT NULL,
    train_bitrate     VARCHAR NOT NULL,
    seed              INTEGER NOT NULL,
    test_codec        VARCHAR NOT NULL,
    test_bitrate      VARCHAR NOT NULL,
    metric            VARCHAR NOT NULL,      -- accuracy
    value             DOUBLE,
    n                 BIGINT,                -- test items scored
    model_sha256      VARCHAR NOT NULL,
    created_at        TIMESTAMP DEFAULT current_timestamp
);
