-- Every stored instant is finite and between 1970-01-01 and 9000-01-01 (UTC), so every value
-- the schema admits renders as the vendor's "YYYY-MM-DD HH:MM:SS", available_at (up to 100 years
-- after begin_at) included. `update caller_lines set deadline_at = 'infinity'`, SQL folklore for
-- "no deadline", made that partner's list answer 500; null is what means no deadline here.
--
-- Rows outside the range stop this migration with a message naming them; README, "Instants the
-- schema refuses", says how to put them right.

create function is_sane_instant(instant timestamptz) returns boolean
language sql immutable parallel safe as $$
    select instant >= timestamptz '1970-01-01 00:00:00+00'
       and instant < timestamptz '9000-01-01 00:00:00+00'
$$;

do $$
declare
    target record;
    total bigint;
    first_rows text;
begin
    for target in
        select * from (values
            ('tenants', 'created_at'), ('tenants', 'updated_at'), ('tenants', 'deleted_at'),
            ('users', 'created_at'), ('users', 'updated_at'), ('users', 'deleted_at'),
            ('users', 'tokens_valid_after'),
            ('caller_lines', 'created_at'), ('caller_lines', 'updated_at'),
            ('caller_lines', 'deleted_at'), ('caller_lines', 'begin_at'),
            ('caller_lines', 'deadline_at')) as columns (table_name, column_name)
    loop
        execute format(
            'select count(*), string_agg(id::text, '', '') filter (where rank <= 20) '
            'from (select id, row_number() over (order by id) as rank from %I '
            'where not is_sane_instant(%I)) as offenders',
            target.table_name, target.column_name)
        into total, first_rows;
        if total > 0 then
            raise exception 'migration 1000 stopped: % rows of % have % outside 1970..9000 (first ones: %)',
                total, target.table_name, target.column_name, first_rows
                using hint = 'README.md, "Instants the schema refuses", says how to fix them; '
                             'then run agent-api migrate again.';
        end if;
    end loop;
end;
$$;

alter table tenants add constraint tenants_instants_in_range
    check (is_sane_instant(created_at) and is_sane_instant(updated_at)
           and is_sane_instant(deleted_at));
alter table users add constraint users_instants_in_range
    check (is_sane_instant(created_at) and is_sane_instant(updated_at)
           and is_sane_instant(deleted_at) and is_sane_instant(tokens_valid_after));
alter table caller_lines add constraint caller_lines_instants_in_range
    check (is_sane_instant(created_at) and is_sane_instant(updated_at)
           and is_sane_instant(deleted_at) and is_sane_instant(begin_at)
           and is_sane_instant(deadline_at));
