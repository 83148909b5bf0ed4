-- Each minute's forecasts beside what happened (sqlite): per series (a watched endpoint, or `*` for
-- all traffic) and instance, the minute that closed, its actual requests, the next 15 minutes as
-- served (a JSON array) and the candidate that spoke at 1 and at 15 minutes. Pruned with the
-- rest of the history (--history-retention-days).
CREATE TABLE forecast_history (
    minute_ms BIGINT NOT NULL,
    instance TEXT NOT NULL,
    series TEXT NOT NULL,
    actual DOUBLE PRECISION NOT NULL,
    forecast TEXT NOT NULL,
    method_1 TEXT NOT NULL,
    method_15 TEXT NOT NULL,
    PRIMARY KEY (series, minute_ms, instance)
);
CREATE INDEX forecast_history_by_minute ON forecast_history (minute_ms);
