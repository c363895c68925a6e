-- An operator's insert need not invent ids: every table's id defaults to a random UUID
-- (gen_random_uuid, built into Postgres 13+). Changes metadata only: no row is read or written.
-- squawk-ignore-file require-lock-timeout, require-statement-timeout
-- (agent-api migrate sets lock_timeout and statement_timeout for its own session, and tries
-- again a migration whose lock did not come in time: docs/operations.md, "Upgrade".)

alter table tenants alter column id set default gen_random_uuid();
alter table users alter column id set default gen_random_uuid();
alter table caller_lines alter column id set default gen_random_uuid();
