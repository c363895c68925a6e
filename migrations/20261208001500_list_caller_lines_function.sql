-- The list statement as a function the schema owns, for instances behind a transaction pooler
-- (APP__DATABASE__POOL_MODE=transaction). There a statement is sent in one message of the
-- simple protocol (one round trip), and Postgres parses and plans such a statement on every
-- execution, which costs more than running it (pgbench, 32 connections: 2,639 tps against
-- 11,932 prepared). A PL/pgSQL function keeps its statement's plan for the server session,
-- generic as the service's own sessions plan it, so each message plans only the call.
-- The body is src/store/sql/list_caller_lines.sql with its parameters named; a session of its
-- own runs that file prepared, and tests/data_tier.rs holds the two to the same answers.
-- SECURITY INVOKER (the caller's grants apply: the documented reader's select), stable, and
-- `search_path` pinned with `pg_temp` last (migration 1300). Creating a function reads,
-- rewrites and locks no table.
-- squawk-ignore-file require-lock-timeout, require-statement-timeout
-- (agent-api migrate sets lock_timeout and statement_timeout for its own session, and tries
-- again a migration whose lock did not come in time: docs/operations.md, "Upgrade".)

create function list_caller_lines(
    p_partner uuid, p_issued_at timestamptz, p_tenant uuid, p_user uuid, p_unused boolean,
    p_per_page bigint, p_offset bigint)
returns table (
    "partner_ok!" boolean, tenant_name text, "total!" bigint, "id?" uuid, "name?" text,
    "call_line?" integer, "deadline_at?" timestamptz, "available_time?" bigint,
    "begin_at?" timestamptz, "caller_number?" text, "created_at?" timestamptz,
    "updated_at?" timestamptz, description_server text, call_number text, "user_name?" text,
    user_email text, user_phone text, "user_type?" text)
language plpgsql stable
set search_path = pg_catalog, public, pg_temp
set plan_cache_mode = force_generic_plan
as $function$
#variable_conflict use_column
begin
    return query
    with partner as (select token_partner(p_partner, p_issued_at) as id),
    tenant as (select id, name from tenants where id = p_tenant and deleted_at is null),
    counted as (
        select case
            when p_user::uuid is null then coalesce((
                select case p_unused::boolean when true then sum(c.unallocated)
                                        when false then sum(c.listed - c.unallocated)
                                        else sum(c.listed) end
                from caller_line_count_deltas c
                where c.partner_id = p_partner and c.tenant_id = p_tenant), 0)::bigint
            -- A user's lines are all allocated: unused=true matches none of them.
            else (select count(*) from caller_lines l
                  where l.partner_id = p_partner and l.tenant_id = p_tenant and l.user_id = p_user
                    and l.parent_id is null and l.deleted_at is null
                    and p_unused::boolean is not true)
        end as total
    ),
    bounds as (
        -- rows after the page start, clamped so that no page number can overflow
        select p_offset::bigint <= total / 2 as forward, total - least(p_offset::bigint, total) as rest
        from counted
    ),
    page as (
        (select l.id from caller_lines l
         where l.partner_id = p_partner and l.tenant_id = p_tenant
           and l.parent_id is null and l.deleted_at is null
           and (p_user::uuid is null or l.user_id = p_user)
           and (p_unused::boolean is null or (l.user_id is null) = p_unused)
           and (select forward from bounds)
         order by l.created_at, l.id
         limit p_per_page offset p_offset)
        union all
        (select l.id from caller_lines l
         where l.partner_id = p_partner and l.tenant_id = p_tenant
           and l.parent_id is null and l.deleted_at is null
           and (p_user::uuid is null or l.user_id = p_user)
           and (p_unused::boolean is null or (l.user_id is null) = p_unused)
           and not (select forward from bounds)
         order by l.created_at desc, l.id desc
         limit (select least(p_per_page::bigint, rest) from bounds)
         offset (select greatest(rest - p_per_page::bigint, 0) from bounds))
    )
    select
        (select id from partner) is not null as "partner_ok!",
        (select name from tenant) as tenant_name,
        (select total from counted) as "total!",
        l.id as "id?", l.name as "name?", l.call_line as "call_line?",
        l.deadline_at as "deadline_at?", l.available_time as "available_time?",
        l.begin_at as "begin_at?", l.caller_number as "caller_number?",
        l.created_at as "created_at?", l.updated_at as "updated_at?",
        l.description_server, l.call_number,
        u.name as "user_name?", u.email as user_email, u.phone as user_phone,
        u.type as "user_type?"
    from (select 1) as one
    left join page p on true
    left join caller_lines l on l.id = p.id
    -- Only the line's own partner or its customers (migration 0900 holds it; so does this).
    left join users u on u.id = l.user_id and u.owner_id = l.partner_id
    order by l.created_at, l.id;
end
$function$;
