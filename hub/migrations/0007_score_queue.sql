-- durable scoring (hub/scores.py, docs/hub.md): the calls waiting for a score. A row is written in the
-- transaction that stores the call's summary, a late event or a re-attribution, and deleted in the one that
-- saves the call's score, so a hub killed anywhere in between leaves the call queued, never silently unscored.
-- attempts / last_error / failed: a call whose scoring keeps failing is set apart after a few tries (counted,
-- shown) instead of failing the calls scored with it. claimed_by / claimed_at: a scale-out worker's claim on
-- the calls it is scoring (other workers skip them until the claim is old).
CREATE TABLE IF NOT EXISTS score_queue (
    call_id TEXT PRIMARY KEY,
    queued_at {real} NOT NULL,
    attempts {int} NOT NULL DEFAULT 0,
    last_error TEXT,
    failed {int} NOT NULL DEFAULT 0,
    claimed_by TEXT,
    claimed_at {real}
);
CREATE INDEX IF NOT EXISTS score_queue_ready ON score_queue (failed, queued_at);
-- (agent, day) rollups that lost a call to a re-attribution: rebuilt by the scorer, marked in the transaction
-- that moved the call
CREATE TABLE IF NOT EXISTS score_stale (
    agent_id TEXT NOT NULL,
    day TEXT NOT NULL,
    marked {real} NOT NULL,
    PRIMARY KEY (agent_id, day)
);
-- calls an earlier hub stored a summary for and never scored (it was stopped in between): scored now
INSERT INTO score_queue (call_id, queued_at) SELECT call_id, 0 FROM calls WHERE summary_id IS NOT NULL AND score_id IS NULL
