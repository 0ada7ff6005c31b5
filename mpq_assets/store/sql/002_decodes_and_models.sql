-- Decode once per partition: the reconstruction is cached next to the bitstream and
-- quality and predictions both read it. Predictions and scores name the model that
-- made them, so real and test weights can never be mixed unnoticed.
ALTER TABLE compressed ADD COLUMN IF NOT EXISTS decoded_path VARCHAR;
ALTER TABLE predictions ADD COLUMN IF NOT EXISTS model VARCHAR;
ALTER TABLE task_scores ADD COLUMN IF NOT EXISTS model VARCHAR;
