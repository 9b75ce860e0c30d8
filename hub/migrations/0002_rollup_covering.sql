-- index-only scans for the agents table and page: a period's rows are read by day, grouped by agent
CREATE INDEX IF NOT EXISTS agent_daily_cover ON agent_daily (day, agent_id, week, calls, scored, excluded, weight_sum, score_wsum);
CREATE INDEX IF NOT EXISTS agent_rule_daily_cover ON agent_rule_daily (day, agent_id, rule_id, points, calls)
;
-- the score distribution and coverage of a period read calls by day
CREATE INDEX IF NOT EXISTS calls_day_score ON calls (day, excluded, score, agent_id)
