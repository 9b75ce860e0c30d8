-- scale-out workers (Store(shared=True)): events stored but not yet counted in their seat's seq watermark. The
-- ingest transaction adds a row per new event, and a short transaction under the seat's lock consumes them
-- (hub/storage.py, Store.settle_seqs), so ingest itself never waits on another worker's seat bookkeeping
CREATE TABLE IF NOT EXISTS seq_pending (
    n {pk},
    id TEXT NOT NULL,
    site TEXT NOT NULL,
    seat TEXT NOT NULL,
    seq {int} NOT NULL,
    epoch TEXT,
    call_id TEXT,
    type TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS seq_pending_seat ON seq_pending (site, seat, n);
CREATE INDEX IF NOT EXISTS seq_pending_id ON seq_pending (id)
