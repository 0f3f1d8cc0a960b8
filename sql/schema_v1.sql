-- queuer schema, version 1. Runs with search_path set to the configured schema only.
-- Tables, columns, defaults, keys and index names follow docs/go-interop.md §1 exactly, so Go workers share
-- them. Everything is "if not exists": a schema a Go process created first is adopted unchanged.

CREATE TABLE IF NOT EXISTS job (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    rid UUID UNIQUE DEFAULT gen_random_uuid(),
    worker_id BIGINT DEFAULT 0,
    worker_rid UUID DEFAULT NULL,
    options JSONB DEFAULT '{}',
    task_name VARCHAR(100) DEFAULT '',
    parameters JSONB DEFAULT '[]',
    parameters_encrypted BYTEA DEFAULT '',
    parameters_keyed JSONB DEFAULT '{}',
    parameters_keyed_encrypted BYTEA DEFAULT '',
    status VARCHAR(50) DEFAULT 'QUEUED',
    scheduled_at TIMESTAMP DEFAULT NULL,
    started_at TIMESTAMP DEFAULT NULL,
    schedule_count INT DEFAULT 0,
    attempts INT DEFAULT 0,
    results JSONB DEFAULT '[]',
    results_encrypted BYTEA DEFAULT '',
    error TEXT DEFAULT '',
    created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
    updated_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP
);

-- Same columns and defaults, no identity, composite key so a TimescaleDB conversion stays possible.
CREATE TABLE IF NOT EXISTS job_archive (
    LIKE job INCLUDING DEFAULTS INCLUDING CONSTRAINTS,
    PRIMARY KEY (id, updated_at)
);

CREATE INDEX IF NOT EXISTS idx_next_interval ON job USING HASH ((options -> 'schedule' ->> 'next_interval'));
CREATE INDEX IF NOT EXISTS idx_job_parent_rid ON job ((options ->> 'parent_rid'));
CREATE INDEX IF NOT EXISTS idx_job_worker_id ON job (worker_id);
CREATE INDEX IF NOT EXISTS idx_job_worker_rid ON job (worker_rid);
CREATE INDEX IF NOT EXISTS idx_job_status ON job (status);
CREATE INDEX IF NOT EXISTS idx_job_created_at ON job (created_at);
CREATE INDEX IF NOT EXISTS idx_job_updated_at ON job (updated_at);

-- Python's own indexes (allowed by §1.5, ignored by Go): lookups by rid in the archive
-- (wait_for_job_finished, get_job_ended) and the master's retention deletes. The claim's indexes
-- are in queues_v1.sql.
CREATE INDEX IF NOT EXISTS queuer_py_job_archive_rid ON job_archive (rid);
CREATE INDEX IF NOT EXISTS queuer_py_job_archive_updated_at ON job_archive (updated_at);
-- The dashboard's reads of the archive: a job's children, and the failed and cancelled jobs
-- newest first. Both partial, so archiving a job that succeeded and has no parent only tests
-- their predicates.
CREATE INDEX IF NOT EXISTS queuer_py_job_archive_parent ON job_archive ((options ->> 'parent_rid'))
    WHERE options ->> 'parent_rid' IS NOT NULL;
CREATE INDEX IF NOT EXISTS queuer_py_job_archive_unsucceeded ON job_archive (status, id)
    WHERE status <> 'SUCCEEDED';

CREATE TABLE IF NOT EXISTS worker (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    rid UUID UNIQUE DEFAULT gen_random_uuid(),
    name VARCHAR(100) DEFAULT '',
    options JSONB DEFAULT '{}',
    available_tasks VARCHAR[] DEFAULT ARRAY[]::VARCHAR[],
    available_next_interval VARCHAR[] DEFAULT ARRAY[]::VARCHAR[],
    current_concurrency INT DEFAULT 0,
    max_concurrency INT DEFAULT 1,
    status VARCHAR(50) DEFAULT 'READY',
    created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
    updated_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP
);

CREATE INDEX IF NOT EXISTS idx_worker_rid ON worker (rid);
CREATE INDEX IF NOT EXISTS idx_worker_name ON worker (name);
CREATE INDEX IF NOT EXISTS idx_worker_status ON worker (status);

CREATE TABLE IF NOT EXISTS master (
    id INTEGER PRIMARY KEY DEFAULT 1,
    worker_id BIGINT DEFAULT 0,
    worker_rid UUID,
    settings JSONB DEFAULT '{}',
    created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
    updated_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP
);

CREATE INDEX IF NOT EXISTS idx_master_worker_id ON master (worker_id);
CREATE INDEX IF NOT EXISTS idx_master_worker_rid ON master (worker_rid);

INSERT INTO master DEFAULT VALUES ON CONFLICT (id) DO NOTHING;

-- Python's own table (Go never reads it): how long each started Python worker may go without a
-- heartbeat before the master declares it dead. Workers without a row here (Go workers, and
-- Python processes never started) get the Go threshold. No foreign key: Go's tables stay as Go
-- made them; the master deletes rows whose worker is gone.
CREATE TABLE IF NOT EXISTS queuer_py_worker (
    worker_id BIGINT PRIMARY KEY,
    stale_after INTERVAL NOT NULL
);
