-- coaching (hub/coaching.py, issue 22, docs/hub.md "Coaching"): the score bands a center coaches by, the coaching
-- sessions a lead opens for an agent with the rules they target, what was said afterwards, and the calls a lead
-- or reviewer recognised.
-- coaching_tiers: one row per band, `site` '' is the center-wide list (a site's own list replaces it for that
-- site's agents), bands ordered by `position`, `min_score` the band's lower bound (NULL for the lowest band).
CREATE TABLE IF NOT EXISTS coaching_tiers (
    site TEXT NOT NULL,
    position {int} NOT NULL,
    level {int} NOT NULL,
    name_en TEXT NOT NULL,
    name_zh TEXT NOT NULL,
    min_score {real},
    updated_by TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (site, position)
);
-- coaching_sessions: the tier and score are what the suggestion said when the session was opened (kept as they
-- were: tiers and scores change later), period_start..period_end the days it looked at.
CREATE TABLE IF NOT EXISTS coaching_sessions (
    id {pk},
    agent_id TEXT NOT NULL,
    team_id TEXT,
    opened_by TEXT NOT NULL,
    opened_at TEXT NOT NULL,
    tier_level {int},
    tier_name_en TEXT,
    tier_name_zh TEXT,
    score {real},
    period_start TEXT NOT NULL,
    period_end TEXT NOT NULL,
    goals TEXT NOT NULL,
    notes TEXT NOT NULL,
    status TEXT NOT NULL,
    closed_by TEXT,
    closed_at TEXT,
    acknowledged_at TEXT
);
CREATE INDEX IF NOT EXISTS coaching_sessions_agent ON coaching_sessions (agent_id, opened_at);
-- the rules a session targets, with the points lost per call the suggestion showed for each
CREATE TABLE IF NOT EXISTS coaching_targets (
    session_id {int} NOT NULL,
    rule_id TEXT NOT NULL,
    per_call {real},
    PRIMARY KEY (session_id, rule_id)
);
-- follow-up notes (the coach) and comments (the agent), in order
CREATE TABLE IF NOT EXISTS coaching_notes (
    id {pk},
    session_id {int} NOT NULL,
    author TEXT NOT NULL,
    kind TEXT NOT NULL,
    body TEXT NOT NULL,
    created TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS coaching_notes_session ON coaching_notes (session_id, id);
-- kudos: a call a lead or reviewer recognised, with a short note (one per call and author, the latest kept)
CREATE TABLE IF NOT EXISTS coaching_kudos (
    call_id TEXT NOT NULL,
    author TEXT NOT NULL,
    agent_id TEXT NOT NULL,
    note TEXT NOT NULL,
    created TEXT NOT NULL,
    PRIMARY KEY (call_id, author)
);
CREATE INDEX IF NOT EXISTS coaching_kudos_agent ON coaching_kudos (agent_id, created)
