-- Announcements and counts, tightened:
--  - one function sends on the channel, notify_listing(payload): the channel's name is written
--    once;
--  - a pair's count rows are folded whatever the writers' isolation level: repeatable-read and
--    serializable writers appended rows and never folded them, so a pair written only by them
--    grew a row per statement and its `total` got slower with every write;
--  - 'all' (drop everything kept) carries an epoch, 'all <n>', from a sequence only the
--    schema's own functions advance: the service honours an 'all' only if its epoch was really
--    reached (listing_everything_epoch()), so a role that can merely connect cannot have every
--    instance drop its memory; and the functions that announce it run as their owner and may be
--    called by nobody else (nor attached to anyone's trigger).
-- Functions only: no table is read, rewritten or locked beyond its catalog entries.
-- squawk-ignore-file require-lock-timeout, require-statement-timeout
-- (agent-api migrate sets lock_timeout and statement_timeout for its own session, and tries
-- again a migration whose lock did not come in time: docs/operations.md, "Upgrade".)

create function notify_listing(payload text) returns void
language sql as $$
    select pg_notify('agent_api_listing_changed', payload)
$$;

create sequence listing_everything_epoch;

-- The last epoch announced (0 before the first): any role may ask, none but the owner advance.
create function listing_everything_epoch() returns bigint
language sql stable security definer set search_path = pg_catalog, public as $$
    select case when is_called then last_value else 0 end from listing_everything_epoch
$$;

create function announce_everything() returns void
language sql security definer set search_path = pg_catalog, public as $$
    select notify_listing('all ' || nextval('listing_everything_epoch'))
$$;

create or replace function announce(kind text, ids uuid[]) returns void
language plpgsql as $$
declare
    distinct_ids uuid[] := array(select distinct id from unnest(ids) as id where id is not null);
begin
    if cardinality(distinct_ids) = 0 then
        return;
    elsif cardinality(distinct_ids) <= 200 then
        perform notify_listing(kind || ' ' || array_to_string(distinct_ids, ' '));
    else
        perform announce_everything();
    end if;
end;
$$;

create or replace function announce_line_pairs(partners uuid[], tenants uuid[]) returns void
language plpgsql as $$
begin
    if cardinality(partners) <= 100 then
        perform notify_listing('pairs ' || (
            select string_agg(p || '/' || t, ' ') from unnest(partners, tenants) as d (p, t)));
    else
        perform announce('partners', partners);
    end if;
end;
$$;

-- Folds each of these pairs' count rows into one, where no other transaction holds them.
create function fold_caller_line_counts(pair_partners uuid[], pair_tenants uuid[]) returns void
language sql as $$
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
    having sum(listed) <> 0 or sum(unallocated) <> 0
$$;

-- Adds one statement's changes to the counts, one row per pair, then folds. A read-committed
-- writer folds every time (SKIP LOCKED: it never waits for another). Under repeatable read or
-- serializable, a row another writer folded after this transaction's snapshot cannot be locked
-- (could not serialize access): there the fold is tried in a subtransaction, given up on that
-- error, and only once a pair holds more than 32 rows, so a loop of single-row statements opens
-- a subtransaction every few dozen statements rather than one each.
create or replace function caller_line_counts_add(
    pair_partners uuid[], pair_tenants uuid[], added_listed bigint[], added_unallocated bigint[]
) returns void
language plpgsql as $$
begin
    insert into caller_line_count_deltas (partner_id, tenant_id, listed, unallocated)
    select p, t, l, u
    from unnest(pair_partners, pair_tenants, added_listed, added_unallocated) as d (p, t, l, u)
    where l <> 0 or u <> 0;
    if current_setting('transaction_isolation') = 'read committed' then
        perform fold_caller_line_counts(pair_partners, pair_tenants);
        return;
    end if;
    if exists (
        select 1 from unnest(pair_partners, pair_tenants) as d (p, t)
        where (select count(*) from caller_line_count_deltas c
               where c.partner_id = d.p and c.tenant_id = d.t) > 32
    ) then
        begin
            perform fold_caller_line_counts(pair_partners, pair_tenants);
        exception when serialization_failure or lock_not_available then
            null; -- a later statement folds them
        end;
    end if;
end;
$$;

create or replace function caller_lines_truncated() returns trigger
language plpgsql as $$
begin
    delete from caller_line_count_deltas;
    perform announce_everything();
    return null;
end;
$$;

create or replace function everything_changed() returns trigger
language plpgsql as $$
begin
    perform announce_everything();
    return null;
end;
$$;

create or replace function rebuild_caller_line_counts() returns void
language sql as $$
    with cleared as (delete from caller_line_count_deltas)
    insert into caller_line_count_deltas (partner_id, tenant_id, listed, unallocated)
    select partner_id, tenant_id, count(*), count(*) filter (where user_id is null)
    from caller_lines
    where parent_id is null and deleted_at is null
    group by partner_id, tenant_id;
    select announce_everything();
$$;

-- The tables' triggers run as the functions' owner, so a writer needs no right on the count
-- rows or the epoch, and nobody may call these functions or attach them to a trigger of their
-- own (creating a trigger needs EXECUTE on its function; firing one does not).
alter function caller_lines_changed() security definer set search_path = pg_catalog, public;
alter function caller_lines_truncated() security definer set search_path = pg_catalog, public;
alter function users_changed() security definer set search_path = pg_catalog, public;
alter function tenants_changed() security definer set search_path = pg_catalog, public;
alter function everything_changed() security definer set search_path = pg_catalog, public;
revoke execute on function
    caller_lines_changed(), caller_lines_truncated(), users_changed(), tenants_changed(),
    everything_changed(), announce_everything(), rebuild_caller_line_counts(),
    caller_line_counts_add(uuid[], uuid[], bigint[], bigint[]),
    fold_caller_line_counts(uuid[], uuid[]), announce(text, uuid[]),
    announce_line_pairs(uuid[], uuid[])
from public;
