-- Counted in the account row so a plan limit is checked and taken in one conditional UPDATE.
ALTER TABLE accounts ADD COLUMN agent_count INTEGER NOT NULL DEFAULT 0;
ALTER TABLE accounts ADD COLUMN workflow_count INTEGER NOT NULL DEFAULT 0;

CREATE TABLE agents (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    id         TEXT NOT NULL UNIQUE,
    account_id TEXT NOT NULL REFERENCES accounts(id),
    name       TEXT NOT NULL,
    spec       TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    UNIQUE (account_id, name)
);

-- Idempotency-Key records: the first request's body hash and, once done, its response.
CREATE TABLE idempotency (
    account_id   TEXT NOT NULL,
    key          TEXT NOT NULL,
    route        TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    status       INTEGER,
    response     TEXT,
    created_at   INTEGER NOT NULL,
    PRIMARY KEY (account_id, route, key)
);
