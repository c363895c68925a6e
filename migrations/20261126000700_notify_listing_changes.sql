-- Every committed change to what the caller-line list reads is announced on one channel, so
-- the service can keep rendered pages in memory and drop them the moment anything changes.
-- Statement-level: one notification per statement, and Postgres folds the repeats of a
-- transaction into one, delivered at commit. A session that disables triggers
-- (session_replication_role = replica, as pg_restore may) is not announced: afterwards run
-- `select rebuild_caller_line_counts()`, which announces itself.

create function announce_listing_change() returns trigger
language plpgsql as $$
begin
    perform pg_notify('agent_api_listing_changed', tg_table_name);
    return null;
end;
$$;

create trigger tenants_announce after insert or update or delete or truncate on tenants
    for each statement execute function announce_listing_change();
create trigger users_announce after insert or update or delete or truncate on users
    for each statement execute function announce_listing_change();
create trigger caller_lines_announce after insert or update or delete or truncate on caller_lines
    for each statement execute function announce_listing_change();
create trigger caller_line_counts_announce
    after insert or update or delete or truncate on caller_line_counts
    for each statement execute function announce_listing_change();
