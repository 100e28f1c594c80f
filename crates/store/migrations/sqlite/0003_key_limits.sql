-- A key's own rate limits, tighter than its account's (NULL or 0: not limited by the key).
ALTER TABLE api_keys ADD COLUMN rl_rpm INTEGER;
ALTER TABLE api_keys ADD COLUMN rl_rps INTEGER;
ALTER TABLE api_keys ADD COLUMN rl_tpm INTEGER;
ALTER TABLE api_keys ADD COLUMN rl_tps INTEGER;
