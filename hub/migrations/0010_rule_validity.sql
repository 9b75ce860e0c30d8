-- rule validity (hub/validity.py, issue 22): per call and scorecard version it was scored with, the call's
-- covariates (length bin, customer anger at the start, the rules whose automatic points were non-zero, the
-- automatic score), and per (version, outcome, stratum, fired set) the sufficient statistics of the outcome and
-- the score, kept up to date in the transactions that save a score or import an outcome, so the report reads a
-- few hundred cells instead of a million calls. Outcome '' counts every call of a version, '*' the calls with
-- any outcome (neither is an outcome name an import accepts).
CREATE TABLE IF NOT EXISTS call_validity (
    call_id TEXT NOT NULL,
    scorecard TEXT NOT NULL,
    version {int} NOT NULL,
    length_bin {int} NOT NULL,
    anger {int} NOT NULL,
    fired TEXT NOT NULL,
    score {real} NOT NULL,
    PRIMARY KEY (call_id, scorecard, version)
);
CREATE TABLE IF NOT EXISTS validity_cells (
    scorecard TEXT NOT NULL,
    version {int} NOT NULL,
    outcome TEXT NOT NULL,
    length_bin {int} NOT NULL,
    anger {int} NOT NULL,
    fired TEXT NOT NULL,
    n {int} NOT NULL,
    sum_y {real} NOT NULL,
    sum_y2 {real} NOT NULL,
    sum_s {real} NOT NULL,
    sum_s2 {real} NOT NULL,
    sum_sy {real} NOT NULL,
    PRIMARY KEY (scorecard, version, outcome, length_bin, anger, fired)
);
-- a hub without scores has nothing to rebuild: the hooks keep both tables from the first score on. A hub with
-- scores gets them rebuilt by the first report (or qa-hub validity rebuild), which sets this counter
INSERT INTO counters (name, value) SELECT 'validity_built', 1 WHERE NOT EXISTS (SELECT 1 FROM scores)
;
-- the outcomes' (name, call_id) index was for a report that read one outcome across every call, the cells above
-- replaced that scan, no query reads by name any more, and the index cost every import a second b-tree write
DROP INDEX IF EXISTS call_outcomes_name
