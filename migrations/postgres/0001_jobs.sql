-- The same jobs table as the embedded store's migrations 0001-0004 (see
-- migrations/sqlite), in one step: PostgreSQL deployments start here.
-- Times are milliseconds since the epoch, as BIGINT, so that both databases
-- store and compare them the same way; JSON stays TEXT for the same reason.
CREATE TABLE IF NOT EXISTS jobs (
    id               TEXT PRIMARY KEY,
    status           TEXT    NOT NULL,
    spec             TEXT    NOT NULL,   -- RenderSpec as JSON, the code included
    attempts         BIGINT  NOT NULL DEFAULT 0,
    lease_owner      TEXT,
    lease_expires_ms BIGINT,
    cancel_requested BIGINT  NOT NULL DEFAULT 0,
    progress         TEXT,               -- JobProgress as JSON
    error            TEXT,               -- the typed error as JSON
    result           TEXT,               -- JobResult as JSON
    created_ms       BIGINT  NOT NULL,
    started_ms       BIGINT,
    finished_ms      BIGINT,
    cache_key        TEXT,
    follows          TEXT,
    owner            TEXT,               -- an API key's fingerprint, never the key
    webhook_url      TEXT
);
CREATE INDEX IF NOT EXISTS jobs_queue ON jobs (status, created_ms);
CREATE INDEX IF NOT EXISTS jobs_newest ON jobs (created_ms DESC, id DESC);
CREATE INDEX IF NOT EXISTS jobs_cache ON jobs (cache_key, status);
CREATE INDEX IF NOT EXISTS jobs_follows ON jobs (follows);
CREATE INDEX IF NOT EXISTS jobs_owner ON jobs (owner, status);
