-- rollups above the daily ones (hub/rollups.py): per agent and week for the sparkline, and per agent and day
-- the running totals since the agent's first day, so a period's totals are two rows per agent
CREATE TABLE IF NOT EXISTS agent_weekly (
    agent_id TEXT NOT NULL,
    week TEXT NOT NULL,
    calls {int} NOT NULL,
    scored {int} NOT NULL,
    excluded {int} NOT NULL,
    weight_sum {real} NOT NULL,
    score_wsum {real} NOT NULL,
    PRIMARY KEY (agent_id, week)
);
CREATE INDEX IF NOT EXISTS agent_weekly_cover ON agent_weekly (week, agent_id, weight_sum, score_wsum);
INSERT INTO agent_weekly SELECT agent_id, week, SUM(calls), SUM(scored), SUM(excluded), SUM(weight_sum), SUM(score_wsum)
    FROM agent_daily GROUP BY agent_id, week;
CREATE TABLE IF NOT EXISTS agent_cum (
    agent_id TEXT NOT NULL,
    day TEXT NOT NULL,
    calls {int} NOT NULL,
    scored {int} NOT NULL,
    excluded {int} NOT NULL,
    weight_sum {real} NOT NULL,
    score_wsum {real} NOT NULL,
    rules TEXT NOT NULL,
    PRIMARY KEY (agent_id, day)
);
-- every agent's running totals start out stale: built by the first settle (qa-hub serve does it at start),
-- read from the daily rows until then
CREATE TABLE IF NOT EXISTS agent_cum_stale (agent_id TEXT PRIMARY KEY, from_day TEXT NOT NULL);
INSERT INTO agent_cum_stale SELECT agent_id, MIN(day) FROM agent_daily GROUP BY agent_id
