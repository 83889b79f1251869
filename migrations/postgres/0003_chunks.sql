-- Chunks of split renders: each a range of one job's plays, claimed, leased
-- and heartbeated like a job by any worker of the cluster. They belong to
-- one attempt of their job (`job_attempt`): a new attempt plans anew. When
-- done, `keys` lists the cache keys of the pieces drawn, by play.
CREATE TABLE IF NOT EXISTS chunks (
    id               TEXT PRIMARY KEY,   -- "<job>.<attempt>.<index>"
    job_id           TEXT    NOT NULL,
    job_attempt      BIGINT NOT NULL,
    idx              BIGINT NOT NULL,
    first_play       BIGINT NOT NULL,
    last_play        BIGINT NOT NULL,
    seconds          DOUBLE PRECISION    NOT NULL,   -- planned seconds of video
    status           TEXT    NOT NULL,   -- queued, running, done, failed, canceled
    attempts         BIGINT NOT NULL DEFAULT 0,
    lease_owner      TEXT,
    lease_expires_ms BIGINT,
    frames           BIGINT NOT NULL DEFAULT 0,
    keys             TEXT,
    node             TEXT,
    render_secs      DOUBLE PRECISION,
    error            TEXT,
    created_ms       BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS chunks_queue ON chunks (status, created_ms);
CREATE INDEX IF NOT EXISTS chunks_job ON chunks (job_id, job_attempt);
-- The workers alive, for how far a render can be split: each node upserts
-- its number of slots while it runs and deletes its row when it stops.
CREATE TABLE IF NOT EXISTS workers (
    owner   TEXT PRIMARY KEY,
    slots   BIGINT NOT NULL,
    seen_ms BIGINT NOT NULL
);
