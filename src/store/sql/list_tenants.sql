with partner as (select token_partner($1, $2) as id),
visible as (
    select t.id, t.name, t.is_default, t.created_at from tenants t
    where t.deleted_at is null
      and (select id from partner) is not null
      and (t.is_default or exists (
          select 1 from caller_lines l
          where l.partner_id = (select id from partner) and l.tenant_id = t.id
            and l.parent_id is null and l.deleted_at is null))
),
page as (
    select * from visible order by created_at, id limit $3 offset $4
)
select
    (select id from partner) is not null as "partner_ok!",
    (select count(*) from visible) as "total!",
    p.id as "id?", p.name as "name?", p.is_default as "is_default?"
from (select 1) as one
left join page p on true
order by p.created_at, p.id
