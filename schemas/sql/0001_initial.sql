-- tipstream schema v1: production feedback, simulation runs and their judgments.
CREATE TABLE IF NOT EXISTS tip_feedback (
    event_id      text PRIMARY KEY,
    tip_id        text NOT NULL,
    user_id       text NOT NULL,
    action        text,                 -- NULL for a show that expired without feedback
    dwell_ms      bigint,               -- NULL if unknown
    reward_milli  integer,              -- NULL if not learned from
    policy        text,
    propensity    double precision,
    status        text NOT NULL CHECK (status IN ('applied', 'duplicate', 'legacy', 'expired')),
    occurred_at   timestamptz NOT NULL,
    processed_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS tip_feedback_user_idx ON tip_feedback (user_id, occurred_at);

CREATE TABLE IF NOT EXISTS sim_runs (
    run_id                 text PRIMARY KEY,
    status                 text NOT NULL CHECK (status IN ('running', 'finished', 'failed', 'cancelled')),
    config                 jsonb NOT NULL,
    created_at             timestamptz NOT NULL DEFAULT now(),
    finished_at            timestamptz,
    events                 bigint NOT NULL DEFAULT 0,
    mean_reward            double precision,
    error                  text,
    llm_input_tokens       bigint NOT NULL DEFAULT 0,
    llm_output_tokens      bigint NOT NULL DEFAULT 0,
    llm_cache_read_tokens  bigint NOT NULL DEFAULT 0,
    llm_cache_write_tokens bigint NOT NULL DEFAULT 0,
    llm_calls              bigint NOT NULL DEFAULT 0,
    llm_fallbacks          jsonb NOT NULL DEFAULT '{}'::jsonb
);

CREATE TABLE IF NOT EXISTS sim_events (
    run_id           text NOT NULL REFERENCES sim_runs (run_id) ON DELETE CASCADE,
    event_id         text NOT NULL,
    round            integer NOT NULL,
    user_id          text NOT NULL,
    persona          text NOT NULL,
    tip_id           text NOT NULL,
    action           text NOT NULL,
    dwell_ms         bigint,
    reward_milli     integer,
    policy           text NOT NULL,
    propensity       double precision NOT NULL,
    explored         boolean NOT NULL,
    features         jsonb NOT NULL,
    expected_reward  double precision,
    occurred_at      timestamptz NOT NULL,
    PRIMARY KEY (run_id, event_id)
);
CREATE INDEX IF NOT EXISTS sim_events_run_round_idx ON sim_events (run_id, round);
