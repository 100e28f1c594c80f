-- An execution is also its own queue entry: run_after / lease_owner / lease_until say who may
-- work on it and when. Times in this table are Unix milliseconds.
CREATE TABLE executions (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    id          TEXT NOT NULL UNIQUE,
    account_id  TEXT NOT NULL,
    workflow_id TEXT NOT NULL,
    version     INTEGER NOT NULL,
    key_id      TEXT NOT NULL,
    status      TEXT NOT NULL,
    input       TEXT NOT NULL,
    output      TEXT,
    error       TEXT,
    timeout_at  INTEGER NOT NULL,
    created_at  INTEGER NOT NULL,
    started_at  INTEGER,
    finished_at INTEGER,
    run_after   INTEGER NOT NULL,
    lease_owner TEXT,
    lease_until INTEGER
);
CREATE INDEX executions_account ON executions(account_id, seq);
CREATE INDEX executions_pending ON executions(run_after);

CREATE TABLE node_runs (
    execution_id TEXT NOT NULL,
    node_id      TEXT NOT NULL,
    status       TEXT NOT NULL,
    attempts     INTEGER NOT NULL,
    output       TEXT,
    error        TEXT,
    started_at   INTEGER,
    finished_at  INTEGER,
    resume_at    INTEGER,
    PRIMARY KEY (execution_id, node_id)
);

CREATE TABLE execution_events (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    execution_id TEXT NOT NULL,
    n            INTEGER NOT NULL,
    kind         TEXT NOT NULL,
    data         TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    UNIQUE (execution_id, n)
);
