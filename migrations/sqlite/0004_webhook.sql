-- Where to POST the job record when the job ends (checked at submit).
ALTER TABLE jobs ADD COLUMN webhook_url TEXT;
