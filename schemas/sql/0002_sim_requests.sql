-- Simulator additions (additive only):
-- * sim_runs.stats: what a run measured (its --json summary, load mode's achieved rate).
-- * sim_requests: the external judge's pending requests between phase 1 (requests written,
--   shows published, run stays 'running') and phase 2 (judgments read, feedback published).
ALTER TABLE sim_runs ADD COLUMN IF NOT EXISTS stats jsonb;

CREATE TABLE IF NOT EXISTS sim_requests (
    run_id   text NOT NULL REFERENCES sim_runs (run_id) ON DELETE CASCADE,
    user_id  text NOT NULL,
    round    integer NOT NULL,
    request  jsonb NOT NULL,
    PRIMARY KEY (run_id, user_id, round)
);
