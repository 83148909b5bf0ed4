-- Several instances may share one database: each replaces only its own actions each minute, and
-- rows whose action has expired are pruned by whichever instance writes next. A restarting
-- instance restores every unexpired action, whoever wrote it.
-- Rows written before this migration get instance '' and expiry 0: they are restored once, then
-- pruned at the next write.
ALTER TABLE anomaly_actions ADD COLUMN instance TEXT NOT NULL DEFAULT '';
ALTER TABLE anomaly_actions ADD COLUMN expires_at_ms BIGINT NOT NULL DEFAULT 0;
