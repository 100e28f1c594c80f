-- A key's own rate limits, tighter than its account's (NULL or 0: not limited by the key).
ALTER TABLE api_keys ADD COLUMN rl_rpm BIGINT;
ALTER TABLE api_keys ADD COLUMN rl_rps BIGINT;
ALTER TABLE api_keys ADD COLUMN rl_tpm BIGINT;
ALTER TABLE api_keys ADD COLUMN rl_tps BIGINT;
