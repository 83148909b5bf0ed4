-- The learning loop's history and state (sqlite). Same text for both databases: no
-- auto-increment keys, types both accept.

-- Every scored client-minute: score, features (JSON object by name), action in force, model.
CREATE TABLE anomaly_scores (
    minute_ms BIGINT NOT NULL,
    client TEXT NOT NULL,
    score DOUBLE PRECISION NOT NULL,
    requests BIGINT NOT NULL,
    features TEXT NOT NULL,
    action TEXT,
    model_version BIGINT NOT NULL
);
CREATE INDEX anomaly_scores_by_minute ON anomaly_scores (minute_ms);
CREATE INDEX anomaly_scores_by_client ON anomaly_scores (client, minute_ms);

-- Requests per minute per endpoint and tier (what the forecaster trains on).
CREATE TABLE endpoint_traffic (
    minute_ms BIGINT NOT NULL,
    endpoint TEXT NOT NULL,
    tier TEXT NOT NULL,
    requests BIGINT NOT NULL,
    allowed BIGINT NOT NULL,
    denied BIGINT NOT NULL,
    errors BIGINT NOT NULL,
    PRIMARY KEY (minute_ms, endpoint, tier)
);

-- Every change to a client's adaptive limit.
CREATE TABLE limit_adjustments (
    at_ms BIGINT NOT NULL,
    client TEXT NOT NULL,
    from_action TEXT,
    to_action TEXT,
    score DOUBLE PRECISION NOT NULL,
    cause TEXT NOT NULL,
    shadow BOOLEAN NOT NULL,
    expires_at_ms BIGINT
);
CREATE INDEX limit_adjustments_by_time ON limit_adjustments (at_ms);

-- Isolation forests, newest version last; the newest is loaded at start-up.
CREATE TABLE learner_models (
    version BIGINT PRIMARY KEY,
    trained_at_ms BIGINT NOT NULL,
    trained_on BIGINT NOT NULL,
    body TEXT NOT NULL
);

-- The anomaly actions in force (replaced whole each minute), so a restart keeps them.
CREATE TABLE anomaly_actions (
    client TEXT PRIMARY KEY,
    body TEXT NOT NULL
);
