-- An execution is also its own queue entry: run_after / lease_owner / lease_until say who may
-- work on it and when. Times in this table are Unix milliseconds.
CREATE TABLE executions (
    seq         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id          TEXT NOT NULL UNIQUE,
    account_id  TEXT NOT NULL,
    workflow_id TEXT NOT NULL,
    version     BIGINT NOT NULL,
    key_id      TEXT NOT NULL,
    status      TEXT NOT NULL,
    input       TEXT NOT NULL,
    output      TEXT,
    error       TEXT,
    timeout_at  BIGINT NOT NULL,
    created_at  BIGINT NOT NULL,
    started_at  BIGINT,
    finished_at BIGINT,
    run_after   BIGINT NOT NULL,
    lease_owner TEXT,
    lease_until BIGINT
);
CREATE INDEX executions_account ON executions(account_id, seq);
CREATE INDEX executions_pending ON executions(run_after);

CREATE TABLE node_runs (
    execution_id TEXT NOT NULL,
    node_id      TEXT NOT NULL,
    status       TEXT NOT NULL,
    attempts     BIGINT NOT NULL,
    output       TEXT,
    error        TEXT,
    started_at   BIGINT,
    finished_at  BIGINT,
    resume_at    BIGINT,
    PRIMARY KEY (execution_id, node_id)
);

CREATE TABLE execution_events (
    seq          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    execution_id TEXT NOT NULL,
    n            BIGINT NOT NULL,
    kind         TEXT NOT NULL,
    data         TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    UNIQUE (execution_id, n)
);
