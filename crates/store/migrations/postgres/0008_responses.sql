-- Stored Responses API answers (store: true), per account, so previous_response_id can
-- continue a conversation on any instance. body: the Response object; conversation: the chat
-- messages it answered plus its own output (JSON).
CREATE TABLE responses (
    id           TEXT PRIMARY KEY,
    account_id   TEXT NOT NULL,
    body         TEXT NOT NULL,
    conversation TEXT NOT NULL,
    created_at   BIGINT NOT NULL
);
CREATE INDEX responses_account ON responses (account_id, created_at);
