-- The issuers whose spend cap and limits bound a key (JSON list; NULL: none).
ALTER TABLE api_keys ADD COLUMN lineage TEXT;
