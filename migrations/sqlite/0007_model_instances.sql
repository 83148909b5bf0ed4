-- Several instances may share one database: each keeps its own models (two replicas training
-- their version 3 must not overwrite each other's). A restarting instance loads its own newest
-- model, else the newest of any. Rows written before this migration get instance ''.
CREATE TABLE learner_models_by_instance (
    instance TEXT NOT NULL DEFAULT '',
    version BIGINT NOT NULL,
    trained_at_ms BIGINT NOT NULL,
    trained_on BIGINT NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (instance, version)
);
INSERT INTO learner_models_by_instance (instance, version, trained_at_ms, trained_on, body)
    SELECT '', version, trained_at_ms, trained_on, body FROM learner_models;
DROP TABLE learner_models;
ALTER TABLE learner_models_by_instance RENAME TO learner_models;
