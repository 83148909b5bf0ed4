-- Denials by reason per minute, endpoint and tier: of `denied`, those by an anomaly action and
-- those by a limit cut under pressure (the rest were limits). Rows written before read 0.
ALTER TABLE endpoint_traffic ADD COLUMN denied_anomaly BIGINT NOT NULL DEFAULT 0;
ALTER TABLE endpoint_traffic ADD COLUMN denied_cut BIGINT NOT NULL DEFAULT 0;
