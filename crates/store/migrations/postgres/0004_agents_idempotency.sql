-- Counted in the account row so a plan limit is checked and taken in one conditional UPDATE.
ALTER TABLE accounts ADD COLUMN agent_count BIGINT NOT NULL DEFAULT 0;
ALTER TABLE accounts ADD COLUMN workflow_count BIGINT NOT NULL DEFAULT 0;

CREATE TABLE agents (
    seq        BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id         TEXT NOT NULL UNIQUE,
    account_id TEXT NOT NULL REFERENCES accounts(id),
    name       TEXT NOT NULL,
    spec       TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    UNIQUE (account_id, name)
);

-- Idempotency-Key records: the first request's body hash and, once done, its response.
CREATE TABLE idempotency (
    account_id   TEXT NOT NULL,
    key          TEXT NOT NULL,
    route        TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    status       BIGINT,
    response     TEXT,
    created_at   BIGINT NOT NULL,
    PRIMARY KEY (account_id, route, key)
);
