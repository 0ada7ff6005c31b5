-- Named per-item fields beyond the one label (a speaker id, a note-list file): a JSON object of strings,
-- so one item can be scored by tasks that need different ground truth (a transcript and a voice).
ALTER TABLE items ADD COLUMN IF NOT EXISTS fields VARCHAR;
