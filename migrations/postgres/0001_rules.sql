-- Rules, the revision counter and the audit log (PostgreSQL).
CREATE TABLE sluice_state (
    id INT PRIMARY KEY CHECK (id = 1),
    revision BIGINT NOT NULL
);
INSERT INTO sluice_state (id, revision) VALUES (1, 0);

-- One row per rule; `body` is the rule as JSON (see src/store/mod.rs).
CREATE TABLE rules (
    rule_id TEXT PRIMARY KEY,
    domain TEXT NOT NULL,
    body TEXT NOT NULL,
    revision BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL
);
CREATE INDEX rules_by_domain ON rules (domain);

-- Every change: who, when, what, before and after.
CREATE TABLE rule_audit (
    id BIGSERIAL PRIMARY KEY,
    revision BIGINT NOT NULL,
    at_ms BIGINT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    rule_id TEXT NOT NULL,
    before_body TEXT,
    after_body TEXT
);
CREATE INDEX rule_audit_by_rule ON rule_audit (rule_id);
