-- The webhook outbox: a job with a webhook_url gets its row here when it is
-- stored; once the job has ended, any node that has the webhook secret
-- claims the row (a lease, like a job's), makes one attempt and records it,
-- so a delivery survives a restart and retries wherever a node runs.
CREATE TABLE IF NOT EXISTS webhook_deliveries (
    job_id           TEXT PRIMARY KEY,
    attempts         INTEGER NOT NULL DEFAULT 0,
    last_status      INTEGER,            -- the receiver's HTTP status, last attempt
    last_error       TEXT,               -- why the last attempt failed
    next_ms          INTEGER,            -- no attempt before this (NULL: once the job ends)
    delivered_ms     INTEGER,
    gave_up_ms       INTEGER,
    lease_owner      TEXT,
    lease_expires_ms INTEGER
);
CREATE INDEX IF NOT EXISTS webhook_deliveries_due ON webhook_deliveries (delivered_ms, gave_up_ms, next_ms);
