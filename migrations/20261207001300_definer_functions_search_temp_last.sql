-- The functions that run as their owner (SECURITY DEFINER: the tables' triggers, the epoch of
-- 'all') are safe beside roles that may write lines and make temporary objects. They pinned
-- `search_path = pg_catalog, public`, which leaves `pg_temp` implicit, and so searched FIRST
-- for tables and sequences: a writer's temporary `caller_line_count_deltas` took the counts of
-- its own inserts (the partner's `total` wrong for good), and a temporary
-- `listing_everything_epoch` made its bulk revocation announce an epoch every instance
-- ignored (revoked tokens served). As the manual's "Writing SECURITY DEFINER Functions Safely"
-- says, `pg_temp` goes last; the epoch's two functions also name what they touch by schema.
-- Functions only: no table is read, rewritten or locked beyond its catalog entries.
-- squawk-ignore-file require-lock-timeout, require-statement-timeout
-- (agent-api migrate sets lock_timeout and statement_timeout for its own session, and tries
-- again a migration whose lock did not come in time: docs/operations.md, "Upgrade".)

create or replace function listing_everything_epoch() returns bigint
language sql stable security definer set search_path = pg_catalog, public, pg_temp as $$
    select case when is_called then last_value else 0 end from public.listing_everything_epoch
$$;

create or replace function announce_everything() returns void
language sql security definer set search_path = pg_catalog, public, pg_temp as $$
    select public.notify_listing(
        'all ' || pg_catalog.nextval('public.listing_everything_epoch'::pg_catalog.regclass))
$$;

alter function caller_lines_changed() set search_path = pg_catalog, public, pg_temp;
alter function caller_lines_truncated() set search_path = pg_catalog, public, pg_temp;
alter function users_changed() set search_path = pg_catalog, public, pg_temp;
alter function tenants_changed() set search_path = pg_catalog, public, pg_temp;
alter function everything_changed() set search_path = pg_catalog, public, pg_temp;
