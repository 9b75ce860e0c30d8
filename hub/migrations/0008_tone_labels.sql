-- tone labels (hub/tone.py, docs/hub.md "Tone"): what each reviewer heard of each party's tone on a call, with
-- who and when, and every anger alert threshold an admin sent a site's stations as signed config (seat '' is
-- the whole site, retained, a seat id a canary), the one in force being the latest site-wide row
CREATE TABLE IF NOT EXISTS tone_labels (
    call_id TEXT NOT NULL,
    reviewer TEXT NOT NULL,
    party TEXT NOT NULL,
    label TEXT NOT NULL,
    created TEXT NOT NULL,
    PRIMARY KEY (call_id, reviewer, party)
);
CREATE INDEX IF NOT EXISTS tone_labels_party ON tone_labels (party, call_id);
CREATE TABLE IF NOT EXISTS tone_thresholds (
    id {pk},
    site TEXT NOT NULL,
    seat TEXT NOT NULL,
    threshold {real} NOT NULL,
    version TEXT NOT NULL,
    labels {int} NOT NULL,
    sent_by TEXT NOT NULL,
    sent_at TEXT NOT NULL,
    topic TEXT NOT NULL,
    sha256 TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS tone_thresholds_site ON tone_thresholds (site, id)
