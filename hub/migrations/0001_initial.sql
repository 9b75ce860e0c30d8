-- callqa hub schema v1, portable SQL: the type placeholders in braces are filled in per backend by hub/db.py
CREATE TABLE IF NOT EXISTS events (
    id TEXT PRIMARY KEY,
    site TEXT NOT NULL,
    seat TEXT NOT NULL,
    seq {int} NOT NULL,
    epoch TEXT,
    call_id TEXT,
    agent_id TEXT,
    type TEXT NOT NULL,
    ts TEXT NOT NULL,
    start_s {real} NOT NULL,
    end_s {real} NOT NULL,
    payload TEXT NOT NULL,
    received {real} NOT NULL
);
CREATE INDEX IF NOT EXISTS events_seat_seq ON events (site, seat, seq);
CREATE INDEX IF NOT EXISTS events_call ON events (call_id);
CREATE TABLE IF NOT EXISTS seats (site TEXT, seat TEXT, max_seq {int} NOT NULL, PRIMARY KEY (site, seat));
CREATE TABLE IF NOT EXISTS gaps (site TEXT, seat TEXT, first {int}, last {int}, PRIMARY KEY (site, seat, first));
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value {int} NOT NULL);
CREATE TABLE IF NOT EXISTS seat_logins (
    event_id TEXT PRIMARY KEY,
    site TEXT NOT NULL,
    seat TEXT NOT NULL,
    at {real} NOT NULL,
    agent_id TEXT
);
CREATE INDEX IF NOT EXISTS seat_logins_seat ON seat_logins (site, seat, at);
CREATE TABLE IF NOT EXISTS sites (site TEXT PRIMARY KEY, name TEXT NOT NULL, tz TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS teams (team_id TEXT PRIMARY KEY, name TEXT NOT NULL, site TEXT);
CREATE TABLE IF NOT EXISTS agents (agent_id TEXT PRIMARY KEY, name TEXT NOT NULL, team_id TEXT);
CREATE INDEX IF NOT EXISTS agents_team ON agents (team_id);
CREATE TABLE IF NOT EXISTS calls (
    call_id TEXT PRIMARY KEY,
    site TEXT NOT NULL,
    seat TEXT NOT NULL,
    agent_id TEXT,
    agent_source TEXT,
    started {real},
    day TEXT,
    week TEXT,
    duration {real},
    summary_id TEXT,
    low_confidence {int} NOT NULL DEFAULT 0,
    flags TEXT NOT NULL DEFAULT '',
    n_events {int} NOT NULL DEFAULT 0,
    score_id {int},
    scorecard TEXT,
    scorecard_version {int},
    auto_score {real},
    score {real},
    weight {real},
    excluded {int} NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS calls_agent ON calls (agent_id, started);
CREATE INDEX IF NOT EXISTS calls_seat ON calls (site, seat, started);
CREATE INDEX IF NOT EXISTS calls_day ON calls (day);
CREATE TABLE IF NOT EXISTS scorecards (
    name TEXT NOT NULL,
    version {int} NOT NULL,
    body TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    created TEXT NOT NULL,
    created_by TEXT,
    active {int} NOT NULL DEFAULT 0,
    PRIMARY KEY (name, version)
);
CREATE TABLE IF NOT EXISTS scores (
    id {pk},
    call_id TEXT NOT NULL,
    scorecard TEXT NOT NULL,
    version {int} NOT NULL,
    score {real} NOT NULL,
    max_score {real} NOT NULL,
    weight {real} NOT NULL,
    excluded {int} NOT NULL,
    note TEXT NOT NULL,
    items TEXT NOT NULL,
    created TEXT NOT NULL,
    current {int} NOT NULL
);
CREATE INDEX IF NOT EXISTS scores_call ON scores (call_id, current);
CREATE TABLE IF NOT EXISTS call_rules (
    call_id TEXT NOT NULL,
    rule_id TEXT NOT NULL,
    auto_points {real} NOT NULL,
    points {real} NOT NULL,
    n {int} NOT NULL,
    PRIMARY KEY (call_id, rule_id)
);
CREATE TABLE IF NOT EXISTS agent_daily (
    agent_id TEXT NOT NULL,
    day TEXT NOT NULL,
    week TEXT NOT NULL,
    calls {int} NOT NULL,
    scored {int} NOT NULL,
    excluded {int} NOT NULL,
    weight_sum {real} NOT NULL,
    score_wsum {real} NOT NULL,
    talk_time {real} NOT NULL,
    PRIMARY KEY (agent_id, day)
);
CREATE INDEX IF NOT EXISTS agent_daily_day ON agent_daily (day);
CREATE TABLE IF NOT EXISTS agent_rule_daily (
    agent_id TEXT NOT NULL,
    day TEXT NOT NULL,
    rule_id TEXT NOT NULL,
    points {real} NOT NULL,
    n {int} NOT NULL,
    calls {int} NOT NULL,
    PRIMARY KEY (agent_id, day, rule_id)
);
CREATE INDEX IF NOT EXISTS agent_rule_daily_day ON agent_rule_daily (day);
CREATE TABLE IF NOT EXISTS users (
    username TEXT PRIMARY KEY,
    pw_hash TEXT NOT NULL,
    role TEXT NOT NULL,
    agent_id TEXT,
    team_id TEXT,
    created TEXT NOT NULL,
    disabled {int} NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS sessions (
    token_hash TEXT PRIMARY KEY,
    username TEXT NOT NULL,
    expires {real} NOT NULL
);
CREATE TABLE IF NOT EXISTS reviews (
    id {pk},
    call_id TEXT NOT NULL,
    score_id {int},
    rule_id TEXT,
    kind TEXT NOT NULL,
    author TEXT NOT NULL,
    points {real},
    reason TEXT NOT NULL,
    status TEXT NOT NULL,
    created TEXT NOT NULL,
    resolved_by TEXT,
    resolved_at TEXT,
    resolution TEXT
);
CREATE INDEX IF NOT EXISTS reviews_call ON reviews (call_id);
CREATE TABLE IF NOT EXISTS calibrations (
    call_id TEXT NOT NULL,
    reviewer TEXT NOT NULL,
    rule_id TEXT NOT NULL,
    points {real} NOT NULL,
    created TEXT NOT NULL,
    PRIMARY KEY (call_id, reviewer, rule_id)
);
CREATE TABLE IF NOT EXISTS audit (
    id {pk},
    ts TEXT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS devices (
    site TEXT NOT NULL,
    seat TEXT NOT NULL,
    status TEXT,
    status_at {real},
    last_seen {real},
    health TEXT,
    model TEXT,
    PRIMARY KEY (site, seat)
)
