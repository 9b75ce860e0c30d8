-- where a seat's login or logout came from (docs/trust.md): 'seat' (its own agent_login/agent_logout event) or
-- 'cti' (the CTI's cmd/login, cmd/logout, which only the cti and hub broker users may publish). Rows from before
-- this migration are the seats' own. From a seat's first 'cti' row on, its own rows no longer attribute calls.
ALTER TABLE seat_logins ADD COLUMN source TEXT;
UPDATE seat_logins SET source = 'seat' WHERE source IS NULL;
CREATE INDEX IF NOT EXISTS seat_logins_source ON seat_logins (site, seat, source)
