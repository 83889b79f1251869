-- Generation jobs (POST /v1/generations): a job with a row here is a
-- generation. `record` is the Generation as JSON: the prompt, the storyboard
-- and every attempt with its code, typed error, tokens and render seconds.
-- The job's spec holds engine, quality and format, and the code of the
-- latest attempt (empty until one is written). No API key is ever stored.
CREATE TABLE IF NOT EXISTS generations (
    job_id     TEXT PRIMARY KEY,
    prompt     TEXT    NOT NULL,
    record     TEXT    NOT NULL,
    updated_ms INTEGER NOT NULL
);
