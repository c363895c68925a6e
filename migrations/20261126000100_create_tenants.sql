-- Cloud nodes (云节点), called tenants in code and URLs. SPEC §1.

-- Keeps updated_at honest for operators' plain-SQL updates, unless the update sets it itself.
create function set_updated_at() returns trigger
language plpgsql as $$
begin
    if new.updated_at is not distinct from old.updated_at then
        new.updated_at := now();
    end if;
    return new;
end;
$$;

create table tenants (
    id          uuid primary key,
    name        text not null,
    is_default  boolean not null default false,
    deleted_at  timestamptz null,
    created_at  timestamptz not null default now(),
    updated_at  timestamptz not null default now()
);

-- At most one default tenant: the one the legacy route serves.
create unique index tenants_one_default on tenants (is_default) where is_default;

create trigger tenants_set_updated_at before update on tenants
    for each row execute function set_updated_at();
