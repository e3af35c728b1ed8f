-- Baseline 2: the event store's write path reduced to its essentials: lock the
-- table (serialises writers so positions commit in order), NOTIFY the
-- listeners, insert one row, commit. Run with 8 connections.
BEGIN;
LOCK TABLE bench_baseline_events IN EXCLUSIVE MODE;
NOTIFY bench_baseline_events;
INSERT INTO bench_baseline_events (originator_id, originator_version, topic, state)
VALUES (gen_random_uuid(), 1, 'domain.profile.RacerProfile.Created', convert_to(repeat('x', 550), 'UTF8'));
END;
