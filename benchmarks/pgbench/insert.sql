-- Baseline 1: one single-row INSERT per transaction (autocommit), like one
-- event of ~550 bytes. Run with one connection.
-- (No colon in literals: pgbench would read :name as a variable.)
INSERT INTO bench_baseline_events (originator_id, originator_version, topic, state)
VALUES (gen_random_uuid(), 1, 'domain.profile.RacerProfile.Created', convert_to(repeat('x', 550), 'UTF8'));
