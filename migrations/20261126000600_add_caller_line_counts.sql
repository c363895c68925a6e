-- Listed-line totals per (partner, tenant), kept exact by a trigger, so the list's `total`
-- and deep pages cost the same for a partner with 100,000 lines as for one with ten.
-- "Listed" is the list's own rule (SPEC §2): parent_id is null and deleted_at is null.
-- Operators never write this table; rebuild_caller_line_counts() recomputes it if in doubt.

create table caller_line_counts (
    partner_id   uuid not null references users (id),
    tenant_id    uuid not null references tenants (id),
    listed       bigint not null default 0,
    unallocated  bigint not null default 0,
    created_at   timestamptz not null default now(),
    updated_at   timestamptz not null default now(),
    primary key (partner_id, tenant_id),
    constraint caller_line_counts_consistent check (0 <= unallocated and unallocated <= listed)
);

create function caller_line_counts_follow() returns trigger
language plpgsql as $$
declare
    was_listed boolean := tg_op <> 'INSERT' and old.parent_id is null and old.deleted_at is null;
    is_listed  boolean := tg_op <> 'DELETE' and new.parent_id is null and new.deleted_at is null;
begin
    if tg_op = 'UPDATE' and was_listed = is_listed
       and (not is_listed or (old.partner_id = new.partner_id and old.tenant_id = new.tenant_id
                              and (old.user_id is null) = (new.user_id is null))) then
        return null; -- nothing the counts see has changed
    end if;
    if was_listed then
        update caller_line_counts
        set listed = listed - 1, unallocated = unallocated - (old.user_id is null)::int,
            updated_at = now()
        where partner_id = old.partner_id and tenant_id = old.tenant_id;
    end if;
    if is_listed then
        insert into caller_line_counts as c (partner_id, tenant_id, listed, unallocated)
        values (new.partner_id, new.tenant_id, 1, (new.user_id is null)::int)
        on conflict (partner_id, tenant_id) do update
        set listed = c.listed + 1, unallocated = c.unallocated + excluded.unallocated,
            updated_at = now();
    end if;
    return null;
end;
$$;

create trigger caller_lines_maintain_counts
    after insert or update or delete on caller_lines
    for each row execute function caller_line_counts_follow();

-- Recomputes every count from caller_lines (also the backfill below).
create function rebuild_caller_line_counts() returns void
language sql as $$
    delete from caller_line_counts;
    insert into caller_line_counts (partner_id, tenant_id, listed, unallocated)
    select partner_id, tenant_id, count(*), count(*) filter (where user_id is null)
    from caller_lines
    where parent_id is null and deleted_at is null
    group by partner_id, tenant_id;
$$;

create function caller_line_counts_clear() returns trigger
language plpgsql as $$
begin
    delete from caller_line_counts;
    return null;
end;
$$;

create trigger caller_lines_clear_counts
    after truncate on caller_lines
    for each statement execute function caller_line_counts_clear();

-- No line may change between the count and the trigger taking over.
lock table caller_lines in share row exclusive mode;
select rebuild_caller_line_counts();

-- The page is read from the listing index alone, user_id included, in either direction; the
-- by-user index still serves counts for one user.
create index caller_lines_listing_with_user on caller_lines (partner_id, tenant_id, created_at, id)
    include (user_id)
    where parent_id is null and deleted_at is null;
drop index caller_lines_listing;
