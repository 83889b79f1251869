-- Which API key a job belongs to (a fingerprint, never the key): with keys
-- configured, callers see only their own jobs and quotas count per owner.
ALTER TABLE jobs ADD COLUMN owner TEXT;
CREATE INDEX IF NOT EXISTS jobs_owner ON jobs (owner, status);
