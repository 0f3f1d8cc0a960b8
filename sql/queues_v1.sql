-- Queues, priorities and flow control: Python's own objects (Go ignores them, docs/go-interop.md).
-- {queue}, {priority}, {ready_at}, {unique_key} and {expires_at} are the expressions of database/fragments.py
-- on job.options.metadata.queuer_py, filled in by the installer so that indexes and queries agree.

-- The claim walks one of these in order, whatever the backlog: every queue by priority, or one
-- queue by priority (a worker's list of queues is walked queue by queue); within a priority by
-- when the job became ready (READY_AT), so scheduled jobs not yet due (far ahead, or held by a
-- workflow) come after every job a claim can take. They replace the creation-order indexes of
-- earlier versions.
DROP INDEX IF EXISTS queuer_py_job_claim;
DROP INDEX IF EXISTS queuer_py_job_claim_any;
DROP INDEX IF EXISTS queuer_py_job_claim_queue;
CREATE INDEX IF NOT EXISTS queuer_py_job_ready_any
    ON job (({priority}) DESC, ({ready_at}), id) WHERE status IN ('QUEUED', 'SCHEDULED');
CREATE INDEX IF NOT EXISTS queuer_py_job_ready_queue
    ON job (({queue}), ({priority}) DESC, ({ready_at}), id) WHERE status IN ('QUEUED', 'SCHEDULED');

-- Scheduled jobs by due time: a worker's wait for the next one it can run reads the first few
-- entries, not every scheduled row (a scheduled job's notification asks again).
CREATE INDEX IF NOT EXISTS queuer_py_job_due ON job (scheduled_at) WHERE status = 'SCHEDULED';

-- Every row of job is queued, scheduled or running: a key is unique among live jobs, and free
-- again once its job is archived.
CREATE UNIQUE INDEX IF NOT EXISTS queuer_py_job_unique ON job (({unique_key})) WHERE {unique_key} IS NOT NULL;

-- Jobs that expire, for the master's sweep of those nobody started in time.
CREATE INDEX IF NOT EXISTS queuer_py_job_expires
    ON job (({expires_at})) WHERE {expires_at} IS NOT NULL AND status IN ('QUEUED', 'SCHEDULED');

-- A row per queue with settings (queues without one are unpaused and unlimited). Changes are
-- announced on channel queuer_py_queue so that workers act on them at once.
CREATE TABLE IF NOT EXISTS queuer_py_queue (
    name VARCHAR(100) PRIMARY KEY,
    paused BOOLEAN NOT NULL DEFAULT FALSE,
    concurrency INT,
    rate INT,
    per INTERVAL,
    rate_head INT NOT NULL DEFAULT 0,
    updated_at TIMESTAMP NOT NULL DEFAULT (now() AT TIME ZONE 'UTC')
);

-- A rate limit of R starts per period keeps the times of the last R starts as a ring (slot 0 to
-- R-1, the oldest at rate_head): a start is allowed when the oldest is a period old. Only "at"
-- changes, so updates stay HOT and the ring needs no vacuum to stay small.
CREATE TABLE IF NOT EXISTS queuer_py_queue_start (
    queue VARCHAR(100) NOT NULL,
    slot INT NOT NULL,
    at TIMESTAMP NOT NULL,
    PRIMARY KEY (queue, slot)
) WITH (fillfactor = 50);
