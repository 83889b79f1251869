-- The webhook outbox (the same table as migrations/sqlite/0007): a job
-- with a webhook_url gets its row when it is stored; once the job has
-- ended, any node that has the webhook secret claims the row (a lease),
-- makes one attempt and records it, so a delivery survives a restart.
CREATE TABLE IF NOT EXISTS webhook_deliveries (
    job_id           TEXT PRIMARY KEY,
    attempts         BIGINT NOT NULL DEFAULT 0,
    last_status      BIGINT,             -- the receiver's HTTP status, last attempt
    last_error       TEXT,               -- why the last attempt failed
    next_ms          BIGINT,             -- no attempt before this (NULL: once the job ends)
    delivered_ms     BIGINT,
    gave_up_ms       BIGINT,
    lease_owner      TEXT,
    lease_expires_ms BIGINT
);
CREATE INDEX IF NOT EXISTS webhook_deliveries_due ON webhook_deliveries (delivered_ms, gave_up_ms, next_ms);
