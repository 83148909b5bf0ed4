-- Several instances may share one database: each keeps its own models (two replicas training
-- their version 3 must not overwrite each other's). A restarting instance loads its own newest
-- model, else the newest of any. Rows written before this migration get instance ''.
ALTER TABLE learner_models ADD COLUMN instance TEXT NOT NULL DEFAULT '';
ALTER TABLE learner_models DROP CONSTRAINT learner_models_pkey;
ALTER TABLE learner_models ADD PRIMARY KEY (instance, version);
