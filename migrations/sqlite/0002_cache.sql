-- The result cache: a job's key covers everything that determines its
-- output. A succeeded job with a key serves later identical requests; a
-- queued job may follow an identical one in flight instead of rendering.
ALTER TABLE jobs ADD COLUMN cache_key TEXT;
ALTER TABLE jobs ADD COLUMN follows TEXT;
CREATE INDEX IF NOT EXISTS jobs_cache ON jobs (cache_key, status);
CREATE INDEX IF NOT EXISTS jobs_follows ON jobs (follows);
