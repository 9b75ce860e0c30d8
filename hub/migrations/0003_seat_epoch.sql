-- the station outbox's epoch whose seqs a seat's max_seq and gaps count (a wiped outbox starts a new one)
ALTER TABLE seats ADD COLUMN epoch TEXT;
