with partner as (select token_partner($1, $2) as id),
tenant as (select id, name from tenants where id = $3 and deleted_at is null),
counted as (
    select case
        when $4::uuid is null then coalesce((
            select case $5::boolean when true then sum(c.unallocated)
                                    when false then sum(c.listed - c.unallocated)
                                    else sum(c.listed) end
            from caller_line_count_deltas c
            where c.partner_id = $1 and c.tenant_id = $3), 0)::bigint
        -- A user's lines are all allocated: unused=true matches none of them.
        else (select count(*) from caller_lines l
              where l.partner_id = $1 and l.tenant_id = $3 and l.user_id = $4
                and l.parent_id is null and l.deleted_at is null
                and $5::boolean is not true)
    end as total
),
bounds as (
    -- rows after the page start, clamped so that no page number can overflow
    select $7::bigint <= total / 2 as forward, total - least($7::bigint, total) as rest
    from counted
),
page as (
    (select l.id from caller_lines l
     where l.partner_id = $1 and l.tenant_id = $3
       and l.parent_id is null and l.deleted_at is null
       and ($4::uuid is null or l.user_id = $4)
       and ($5::boolean is null or (l.user_id is null) = $5)
       and (select forward from bounds)
     order by l.created_at, l.id
     limit $6 offset $7)
    union all
    (select l.id from caller_lines l
     where l.partner_id = $1 and l.tenant_id = $3
       and l.parent_id is null and l.deleted_at is null
       and ($4::uuid is null or l.user_id = $4)
       and ($5::boolean is null or (l.user_id is null) = $5)
       and not (select forward from bounds)
     order by l.created_at desc, l.id desc
     limit (select least($6::bigint, rest) from bounds)
     offset (select greatest(rest - $6::bigint, 0) from bounds))
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
order by l.created_at, l.id
