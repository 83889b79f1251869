-- Render jobs. A job is stored before it is acknowledged and changes state
-- only through fenced updates (lease_owner and attempts must match).
CREATE TABLE IF NOT EXISTS jobs (
    id               TEXT PRIMARY KEY,
    status           TEXT    NOT NULL,
    spec             TEXT    NOT NULL,   -- RenderSpec as JSON, the code included
    attempts         INTEGER NOT NULL DEFAULT 0,
    lease_owner      TEXT,
    lease_expires_ms INTEGER,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    progress         TEXT,               -- JobProgress as JSON
    error            TEXT,               -- the typed error as JSON
    result           TEXT,               -- JobResult as JSON
    created_ms       INTEGER NOT NULL,
    started_ms       INTEGER,
    finished_ms      INTEGER
);
CREATE INDEX IF NOT EXISTS jobs_queue ON jobs (status, created_ms);
CREATE INDEX IF NOT EXISTS jobs_newest ON jobs (created_ms DESC, id DESC);
