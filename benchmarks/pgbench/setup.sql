-- The baselines' table: shaped like the event store's (uuid, version, topic,
-- bytea state, bigserial position; the same two unique indexes).
DROP TABLE IF EXISTS bench_baseline_events;
CREATE TABLE bench_baseline_events (
    originator_id uuid NOT NULL,
    originator_version bigint NOT NULL,
    topic text,
    state bytea,
    notification_id bigserial,
    PRIMARY KEY (originator_id, originator_version)
);
CREATE UNIQUE INDEX bench_baseline_events_notification_id_idx
    ON bench_baseline_events (notification_id ASC);
