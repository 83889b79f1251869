-- Generation jobs (prompt to video): the record of each job's prompt,
-- storyboard and attempts, next to the job (the same table as
-- migrations/sqlite/0005_generations.sql).
CREATE TABLE IF NOT EXISTS generations (
    job_id     TEXT PRIMARY KEY,
    prompt     TEXT   NOT NULL,
    record     TEXT   NOT NULL,          -- Generation as JSON
    updated_ms BIGINT NOT NULL
);
