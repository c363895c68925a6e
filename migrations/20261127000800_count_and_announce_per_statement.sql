-- Writes at production rates. Operators write SQL in bulk (importing or retiring a partner's
-- lines is a normal day), so what the triggers keep is computed once per statement from its
-- transition tables, in O(rows), where it used to be once per row (a 100,000-line insert took
-- 44 s against 1.7 s without the triggers):
--  - line counts: one delta row per (partner, tenant) a statement touches, appended, so writers
--    of one pair never update, and never wait on, one shared row;
--  - announcements: they name what changed ((partner, tenant) pairs, partners, tenants), so the
--    service drops only the pages that can show it; an update of columns that neither the list
--    nor authentication reads announces nothing.
-- Announcement payloads (channel agent_api_listing_changed), within Postgres's 8000 bytes:
--   'pairs <partner>/<tenant> …' (≤ 100), 'partners <id> …' (≤ 200), 'tenants <id> …' (≤ 200),
--   'all'. A statement touching more pairs is announced by its partners, then as 'all'.

-- No line may change while the counts move to their new table.
lock table caller_lines in share row exclusive mode;

create table caller_line_count_deltas (
    partner_id   uuid not null,
    tenant_id    uuid not null,
    listed       bigint not null,
    unallocated  bigint not null,
    created_at   timestamptz not null default now(),
    updated_at   timestamptz not null default now()
);

-- A pair's total is the sum of its few rows, read from the index alone.
create index caller_line_count_deltas_pair
    on caller_line_count_deltas (partner_id, tenant_id) include (listed, unallocated);

insert into caller_line_count_deltas (partner_id, tenant_id, listed, unallocated)
select partner_id, tenant_id, listed, unallocated from caller_line_counts
where listed <> 0 or unallocated <> 0;

drop trigger caller_lines_maintain_counts on caller_lines;
drop trigger caller_lines_clear_counts on caller_lines;
drop trigger caller_line_counts_announce on caller_line_counts;
drop trigger caller_lines_announce on caller_lines;
drop trigger users_announce on users;
drop trigger tenants_announce on tenants;
drop table caller_line_counts;
drop function caller_line_counts_follow();
drop function caller_line_counts_clear();
drop function announce_listing_change();

-- For operators: listed lines and unallocated ones per (partner, tenant), as before.
create view caller_line_counts as
select partner_id, tenant_id, sum(listed)::bigint as listed, sum(unallocated)::bigint as unallocated
from caller_line_count_deltas
group by partner_id, tenant_id;

-- Adds one statement's changes to the counts, one row per pair, then folds each pair's rows
-- into one where no other transaction holds them (SKIP LOCKED: a writer never waits for
-- another). Folding takes row locks, which under repeatable read would fail on a row another
-- writer folded meanwhile, so only read committed writers fold; the next one folds for them.
create function caller_line_counts_add(
    pair_partners uuid[], pair_tenants uuid[], added_listed bigint[], added_unallocated bigint[]
) returns void
language plpgsql as $$
begin
    insert into caller_line_count_deltas (partner_id, tenant_id, listed, unallocated)
    select p, t, l, u
    from unnest(pair_partners, pair_tenants, added_listed, added_unallocated) as d (p, t, l, u)
    where l <> 0 or u <> 0;
    if current_setting('transaction_isolation') <> 'read committed' then
        return;
    end if;
    with pairs as (
        select distinct p, t from unnest(pair_partners, pair_tenants) as d (p, t)
    ),
    held as (
        select d.ctid as row_id, d.partner_id, d.tenant_id, d.listed, d.unallocated
        from caller_line_count_deltas d
        join pairs on d.partner_id = pairs.p and d.tenant_id = pairs.t
        for update of d skip locked
    ),
    foldable as (
        select partner_id, tenant_id from held group by partner_id, tenant_id having count(*) > 1
    ),
    gone as (
        delete from caller_line_count_deltas d
        using held h join foldable f using (partner_id, tenant_id)
        where d.ctid = h.row_id
        returning h.partner_id, h.tenant_id, h.listed, h.unallocated
    )
    insert into caller_line_count_deltas (partner_id, tenant_id, listed, unallocated)
    select partner_id, tenant_id, sum(listed), sum(unallocated)
    from gone
    group by partner_id, tenant_id
    having sum(listed) <> 0 or sum(unallocated) <> 0;
end;
$$;

-- Announces that what these ids name (kind 'partners' or 'tenants') may have changed: the ids
-- while they fit in a notification, else everything.
create function announce(kind text, ids uuid[]) returns void
language plpgsql as $$
declare
    distinct_ids uuid[] := array(select distinct id from unnest(ids) as id where id is not null);
begin
    if cardinality(distinct_ids) = 0 then
        return;
    elsif cardinality(distinct_ids) <= 200 then
        perform pg_notify('agent_api_listing_changed',
                          kind || ' ' || array_to_string(distinct_ids, ' '));
    else
        perform pg_notify('agent_api_listing_changed', 'all');
    end if;
end;
$$;

-- The pairs are distinct (one per group of the caller's aggregate).
create function announce_line_pairs(partners uuid[], tenants uuid[]) returns void
language plpgsql as $$
begin
    if cardinality(partners) <= 100 then
        perform pg_notify('agent_api_listing_changed', 'pairs ' || (
            select string_agg(p || '/' || t, ' ') from unnest(partners, tenants) as d (p, t)));
    else
        perform announce('partners', partners);
    end if;
end;
$$;

-- Listed lines (SPEC §2: parent_id is null and deleted_at is null) per pair: what a statement
-- adds to the counts, and which pages it may change (every update of a listed line changes at
-- least its updated_at, which the list shows).
create function caller_lines_changed() returns trigger
language plpgsql as $$
declare
    partners uuid[];
    tenants uuid[];
    added bigint[];
    added_free bigint[];
begin
    if tg_op = 'INSERT' then
        select array_agg(partner_id), array_agg(tenant_id), array_agg(n), array_agg(free)
        into partners, tenants, added, added_free
        from (select partner_id, tenant_id, count(*) as n,
                     count(*) filter (where user_id is null) as free
              from new_rows where parent_id is null and deleted_at is null
              group by partner_id, tenant_id) as per_pair;
    elsif tg_op = 'DELETE' then
        select array_agg(partner_id), array_agg(tenant_id), array_agg(-n), array_agg(-free)
        into partners, tenants, added, added_free
        from (select partner_id, tenant_id, count(*) as n,
                     count(*) filter (where user_id is null) as free
              from old_rows where parent_id is null and deleted_at is null
              group by partner_id, tenant_id) as per_pair;
    else
        select array_agg(partner_id), array_agg(tenant_id), array_agg(n), array_agg(free)
        into partners, tenants, added, added_free
        from (select partner_id, tenant_id, sum(n)::bigint as n, sum(free)::bigint as free
              from (select partner_id, tenant_id, 1 as n, (user_id is null)::int as free
                    from new_rows where parent_id is null and deleted_at is null
                    union all
                    select partner_id, tenant_id, -1, -(user_id is null)::int
                    from old_rows where parent_id is null and deleted_at is null) as changes
              group by partner_id, tenant_id) as per_pair;
    end if;
    if partners is not null then
        perform caller_line_counts_add(partners, tenants, added, added_free);
        perform announce_line_pairs(partners, tenants);
    end if;
    return null;
end;
$$;

create trigger caller_lines_changed_by_insert after insert on caller_lines
    referencing new table as new_rows
    for each statement execute function caller_lines_changed();
create trigger caller_lines_changed_by_update after update on caller_lines
    referencing old table as old_rows new table as new_rows
    for each statement execute function caller_lines_changed();
create trigger caller_lines_changed_by_delete after delete on caller_lines
    referencing old table as old_rows
    for each statement execute function caller_lines_changed();

create function caller_lines_truncated() returns trigger
language plpgsql as $$
begin
    delete from caller_line_count_deltas;
    perform pg_notify('agent_api_listing_changed', 'all');
    return null;
end;
$$;

create trigger caller_lines_truncated after truncate on caller_lines
    for each statement execute function caller_lines_truncated();

-- A user's pages are its partner's: a partner's own id, a customer's or sub-account's
-- partner_id. Only the columns the list or authentication reads count: the rest of the platform
-- shares this table (profiles, logins), and its writes drop nothing.
create function users_changed() returns trigger
language plpgsql as $$
declare
    partners uuid[];
begin
    if tg_op = 'INSERT' then
        select array_agg(coalesce(partner_id, id)) into partners from new_rows;
    elsif tg_op = 'DELETE' then
        select array_agg(coalesce(partner_id, id)) into partners from old_rows;
    else
        select array_agg(scope) into partners
        from old_rows o
        full join new_rows n on n.id = o.id
        cross join lateral (values (coalesce(o.partner_id, o.id)),
                                   (coalesce(n.partner_id, n.id))) as scopes (scope)
        where (o.id, o.type, o.partner_id, o.name, o.email, o.phone, o.tokens_valid_after,
               o.deleted_at)
              is distinct from
              (n.id, n.type, n.partner_id, n.name, n.email, n.phone, n.tokens_valid_after,
               n.deleted_at);
    end if;
    perform announce('partners', partners);
    return null;
end;
$$;

create trigger users_changed_by_insert after insert on users
    referencing new table as new_rows
    for each statement execute function users_changed();
create trigger users_changed_by_update after update on users
    referencing old table as old_rows new table as new_rows
    for each statement execute function users_changed();
create trigger users_changed_by_delete after delete on users
    referencing old table as old_rows
    for each statement execute function users_changed();

-- A tenant's pages are every partner's on it, and the default tenant is the legacy route's.
create function tenants_changed() returns trigger
language plpgsql as $$
declare
    changed uuid[];
begin
    if tg_op = 'INSERT' then
        select array_agg(id) into changed from new_rows;
    elsif tg_op = 'DELETE' then
        select array_agg(id) into changed from old_rows;
    else
        select array_agg(scope) into changed
        from old_rows o
        full join new_rows n on n.id = o.id
        cross join lateral (values (o.id), (n.id)) as scopes (scope)
        where (o.id, o.name, o.is_default, o.deleted_at)
              is distinct from (n.id, n.name, n.is_default, n.deleted_at);
    end if;
    perform announce('tenants', changed);
    return null;
end;
$$;

create trigger tenants_changed_by_insert after insert on tenants
    referencing new table as new_rows
    for each statement execute function tenants_changed();
create trigger tenants_changed_by_update after update on tenants
    referencing old table as old_rows new table as new_rows
    for each statement execute function tenants_changed();
create trigger tenants_changed_by_delete after delete on tenants
    referencing old table as old_rows
    for each statement execute function tenants_changed();

create function everything_changed() returns trigger
language plpgsql as $$
begin
    perform pg_notify('agent_api_listing_changed', 'all');
    return null;
end;
$$;

create trigger users_truncated after truncate on users
    for each statement execute function everything_changed();
create trigger tenants_truncated after truncate on tenants
    for each statement execute function everything_changed();

-- Recounts from caller_lines, in one statement (one snapshot, so a writer committing meanwhile
-- is counted once), and announces it: the repair after a load with triggers disabled.
create or replace function rebuild_caller_line_counts() returns void
language sql as $$
    with cleared as (delete from caller_line_count_deltas)
    insert into caller_line_count_deltas (partner_id, tenant_id, listed, unallocated)
    select partner_id, tenant_id, count(*), count(*) filter (where user_id is null)
    from caller_lines
    where parent_id is null and deleted_at is null
    group by partner_id, tenant_id;
    select pg_notify('agent_api_listing_changed', 'all');
$$;
