-- A wallet is what spend is drawn from: an account's balance, or a key's spend limit.
CREATE TABLE wallets (
    id         TEXT PRIMARY KEY,
    balance    BIGINT NOT NULL,
    reserved   BIGINT NOT NULL DEFAULT 0,
    last_grant BIGINT NOT NULL DEFAULT 0,
    CHECK (reserved >= 0)
);
INSERT INTO wallets (id, balance) SELECT id, 0 FROM accounts;

-- A lease is a slice of a wallet reserved by one Sluice instance and spent locally.
CREATE TABLE leases (
    id         TEXT PRIMARY KEY,
    wallet_id  TEXT NOT NULL REFERENCES wallets(id),
    holder     TEXT NOT NULL,
    amount     BIGINT NOT NULL,
    spent      BIGINT NOT NULL DEFAULT 0,
    expires_at BIGINT NOT NULL,
    closed_at  BIGINT
);
CREATE INDEX leases_open ON leases(expires_at) WHERE closed_at IS NULL;

-- Every change to a wallet: topup (+balance), reservation (+reserved),
-- settlement (-balance, -reserved), refund (-reserved).
CREATE TABLE ledger (
    seq        BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id         TEXT NOT NULL UNIQUE,
    wallet_id  TEXT NOT NULL REFERENCES wallets(id),
    kind       TEXT NOT NULL,
    amount     BIGINT NOT NULL,
    lease_id   TEXT,
    reason     TEXT,
    created_at BIGINT NOT NULL
);
CREATE INDEX ledger_wallet ON ledger(wallet_id, seq);

ALTER TABLE api_keys ADD COLUMN max_spend BIGINT;

CREATE TABLE usage_records (
    seq               BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    request_id        TEXT NOT NULL UNIQUE,
    account_id        TEXT NOT NULL,
    key_id            TEXT NOT NULL,
    model             TEXT,
    provider          TEXT,
    prompt_tokens     BIGINT NOT NULL,
    completion_tokens BIGINT NOT NULL,
    cost              BIGINT NOT NULL,
    latency_ms        BIGINT NOT NULL,
    ttfb_ms           BIGINT,
    status            BIGINT NOT NULL,
    error_code        TEXT,
    created_at        BIGINT NOT NULL
);
CREATE INDEX usage_account_time ON usage_records(account_id, created_at);
