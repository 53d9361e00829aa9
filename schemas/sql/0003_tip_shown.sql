-- Production shows as served, for off-policy evaluation (`tipstream evaluate`): the
-- propensity and the candidate list let other policies be scored on logged traffic.
CREATE TABLE IF NOT EXISTS tip_shown (
    event_id    text PRIMARY KEY,
    tip_id      text NOT NULL,
    user_id     text NOT NULL,
    served_at   timestamptz NOT NULL,
    policy      text NOT NULL,
    propensity  double precision NOT NULL,
    features    jsonb NOT NULL,   -- {hourOfDay, dayOfWeek, priority, isOverdue, taskAgeDays}
    candidates  jsonb,            -- [{tipId, priority, isOverdue, taskAgeDays}] or NULL if not sent
    processed_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS tip_shown_user_tip_idx ON tip_shown (user_id, tip_id);
