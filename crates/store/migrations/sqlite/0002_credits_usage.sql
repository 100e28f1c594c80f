-- A wallet is what spend is drawn from: an account's balance, or a key's spend limit.
CREATE TABLE wallets (
    id         TEXT PRIMARY KEY,
    balance    INTEGER NOT NULL,
    reserved   INTEGER NOT NULL DEFAULT 0,
    last_grant INTEGER NOT NULL DEFAULT 0,
    CHECK (reserved >= 0)
);
INSERT INTO wallets (id, balance) SELECT id, 0 FROM accounts;

-- A lease is a slice of a wallet reserved by one Sluice instance and spent locally.
CREATE TABLE leases (
    id         TEXT PRIMARY KEY,
    wallet_id  TEXT NOT NULL REFERENCES wallets(id),
    holder     TEXT NOT NULL,
    amount     INTEGER NOT NULL,
    spent      INTEGER NOT NULL DEFAULT 0,
    expires_at INTEGER NOT NULL,
    closed_at  INTEGER
);
CREATE INDEX leases_open ON leases(expires_at) WHERE closed_at IS NULL;

-- Every change to a wallet: topup (+balance), reservation (+reserved),
-- settlement (-balance, -reserved), refund (-reserved).
CREATE TABLE ledger (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    id         TEXT NOT NULL UNIQUE,
    wallet_id  TEXT NOT NULL REFERENCES wallets(id),
    kind       TEXT NOT NULL,
    amount     INTEGER NOT NULL,
    lease_id   TEXT,
    reason     TEXT,
    created_at INTEGER NOT NULL
);
CREATE INDEX ledger_wallet ON ledger(wallet_id, seq);

ALTER TABLE api_keys ADD COLUMN max_spend INTEGER;

CREATE TABLE usage_records (
    seq               INTEGER PRIMARY KEY AUTOINCREMENT,
    request_id        TEXT NOT NULL UNIQUE,
    account_id        TEXT NOT NULL,
    key_id            TEXT NOT NULL,
    model             TEXT,
    provider          TEXT,
    prompt_tokens     INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    cost              INTEGER NOT NULL,
    latency_ms        INTEGER NOT NULL,
    ttfb_ms           INTEGER,
    status            INTEGER NOT NULL,
    error_code        TEXT,
    created_at        INTEGER NOT NULL
);
CREATE INDEX usage_account_time ON usage_records(account_id, created_at);
