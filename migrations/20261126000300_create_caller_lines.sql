-- Caller lines (线路). SPEC §1.

create table caller_lines (
    id                  uuid primary key,
    tenant_id           uuid not null references tenants (id),
    partner_id          uuid not null references users (id),
    user_id             uuid null references users (id),
    parent_id           uuid null references caller_lines (id),
    name                text not null,
    caller_number       text not null,
    call_number         text null,
    call_line           integer not null,
    available_time      bigint not null default 0,
    begin_at            timestamptz null,
    deadline_at         timestamptz null,
    description_server  text null,
    deleted_at          timestamptz null,
    created_at          timestamptz not null default now(),
    updated_at          timestamptz not null default now(),
    constraint caller_lines_call_line_non_negative check (call_line >= 0),
    -- At most 100 years, so begin_at + available_time always stays a valid timestamp.
    constraint caller_lines_available_time_in_range
        check (available_time between 0 and 3155760000)
);

-- The partner's list (SPEC §2): listed lines in order, and its count, from the index alone.
create index caller_lines_listing on caller_lines (partner_id, tenant_id, created_at, id)
    where parent_id is null and deleted_at is null;

-- The same list filtered by user_id, or by unused (user_id is null).
create index caller_lines_listing_by_user
    on caller_lines (partner_id, tenant_id, user_id, created_at, id)
    where parent_id is null and deleted_at is null;

-- Foreign keys that are looked up from the other side.
create index caller_lines_user_id on caller_lines (user_id);
create index caller_lines_parent_id on caller_lines (parent_id);
create index caller_lines_tenant_id on caller_lines (tenant_id);

create trigger caller_lines_set_updated_at before update on caller_lines
    for each row execute function set_updated_at();
