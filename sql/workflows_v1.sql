-- Workflows: chains, groups, chords and dependencies. Python's own tables (Go never reads them);
-- the jobs themselves are ordinary rows of job, a held one SCHEDULED at 9999-12-31 until released.
CREATE TABLE IF NOT EXISTS queuer_py_workflow (
    rid UUID PRIMARY KEY,
    kind VARCHAR(10) NOT NULL,
    created_at TIMESTAMP NOT NULL DEFAULT (now() AT TIME ZONE 'UTC')
);

CREATE TABLE IF NOT EXISTS queuer_py_member (
    workflow_rid UUID NOT NULL,
    position INT NOT NULL,
    stage INT NOT NULL,
    job_rid UUID NOT NULL,
    PRIMARY KEY (workflow_rid, position)
);
CREATE INDEX IF NOT EXISTS queuer_py_member_job ON queuer_py_member (job_rid);

-- A held job and how many of its dependencies have not succeeded yet. Counted down in the
-- statement that archives a dependency (row locks make concurrent archives count correctly).
CREATE TABLE IF NOT EXISTS queuer_py_wait (
    job_rid UUID PRIMARY KEY,
    remaining INT NOT NULL
);

-- Which job waits for which (position: the order of results a step receives).
CREATE TABLE IF NOT EXISTS queuer_py_dependency (
    job_rid UUID NOT NULL,
    depends_on UUID NOT NULL,
    position INT NOT NULL,
    PRIMARY KEY (job_rid, depends_on)
);
CREATE INDEX IF NOT EXISTS queuer_py_dependency_on ON queuer_py_dependency (depends_on);

-- The progress a running task reports (queuer.report_progress), the latest per job.
CREATE TABLE IF NOT EXISTS queuer_py_progress (
    job_rid UUID PRIMARY KEY,
    fraction FLOAT8 NOT NULL,
    message TEXT NOT NULL DEFAULT '',
    updated_at TIMESTAMP NOT NULL DEFAULT (now() AT TIME ZONE 'UTC')
);

-- Periodic tasks declared in code (q.periodic): one row per schedule, written by every worker that
-- declares it. last_tick (UTC) moves forward by compare-and-set in the transaction that enqueues
-- the tick's job, so each tick runs once across the fleet.
CREATE TABLE IF NOT EXISTS queuer_py_periodic (
    name VARCHAR(100) PRIMARY KEY,
    task_name VARCHAR(100) NOT NULL,
    cron TEXT,
    every_seconds FLOAT8,
    timezone TEXT NOT NULL DEFAULT 'UTC',
    catch_up VARCHAR(10) NOT NULL DEFAULT 'latest',
    args JSONB NOT NULL DEFAULT '[]',
    kwargs JSONB NOT NULL DEFAULT '{}',
    options JSONB NOT NULL DEFAULT '{}',
    last_tick TIMESTAMP,
    declared_at TIMESTAMP NOT NULL DEFAULT (now() AT TIME ZONE 'UTC'),
    created_at TIMESTAMP NOT NULL DEFAULT (now() AT TIME ZONE 'UTC')
);
