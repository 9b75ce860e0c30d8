-- call outcomes (hub/outcomes.py, issue 22): what became of a call after it ended, imported from the center's
-- survey, CRM and complaint systems. One row per call and outcome (long form: the rule validity report reads one
-- outcome across every call), `name` is csat, fcr, repeat, complaint or custom.<name>, booleans are 0/1,
-- lo..hi is the value's stated range (csat 1..5, booleans 0..1, custom: none), window_days is repeat's N.
-- Each row says where it came from: the import, who ran it and when (a later import of the same call and
-- outcome replaces it, and says so). Every import that stored rows is one outcome_imports row, a refused one
-- stores nothing and is counted (counters outcome_import_refused.*).
CREATE TABLE IF NOT EXISTS outcome_imports (
    import_id TEXT PRIMARY KEY,
    imported_by TEXT NOT NULL,
    imported_at TEXT NOT NULL,
    source TEXT NOT NULL,
    filename TEXT,
    rows_total {int} NOT NULL,
    rows_imported {int} NOT NULL,
    rows_unmatched {int} NOT NULL,
    partial {int} NOT NULL
);
CREATE INDEX IF NOT EXISTS outcome_imports_by ON outcome_imports (imported_by, imported_at);
CREATE TABLE IF NOT EXISTS call_outcomes (
    call_id TEXT NOT NULL,
    name TEXT NOT NULL,
    value {real} NOT NULL,
    lo {real},
    hi {real},
    window_days {int},
    import_id TEXT NOT NULL,
    imported_by TEXT NOT NULL,
    imported_at TEXT NOT NULL,
    PRIMARY KEY (call_id, name)
);
CREATE INDEX IF NOT EXISTS call_outcomes_name ON call_outcomes (name, call_id)
