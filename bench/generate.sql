-- The benchmark data set (bench/run loads it; psql variables set the size):
--   psql -v lines=1000000 -v tenants=10 -v partners=500 -f bench/generate.sql
-- Skewed like production: one hot partner owns ~10% of all lines on tenant 1; the others own a
-- few hundred to a few thousand each, mostly on one or two tenants; ~10% of lines are split
-- lines, ~2% soft-deleted, ~30% unallocated; five customers per partner. Ids are derived from
-- md5 of a name (partner-N, customer-N-M, tenant-N), so bench/run can find them again.
-- Deterministic: setseed() makes every load the same.

\set ON_ERROR_STOP on
begin;
select setseed(0.42);

insert into tenants (id, name, is_default, created_at, updated_at)
select md5('tenant-' || n)::uuid, '云节点' || n, n = 1,
       timestamptz '2021-06-01 00:00:00+08' + n * interval '1 day',
       timestamptz '2021-06-01 00:00:00+08' + n * interval '1 day'
from generate_series(1, :tenants) n;

insert into users (id, type, partner_id, name, email, phone)
select md5('partner-' || n)::uuid, 'partner', null, '伙伴' || n, 'partner' || n || '@example.com', null
from generate_series(1, :partners) n;

insert into users (id, type, partner_id, name, email, phone)
select md5('customer-' || p || '-' || c)::uuid, 'customer', md5('partner-' || p)::uuid,
       '客户' || p || '-' || c, 'c' || p || '-' || c || '@example.com', '138' || lpad((p * 10 + c)::text, 8, '0')
from generate_series(1, :partners) p, generate_series(1, 5) c;

-- Listed lines: 90% of the total. Line n belongs to partner 1 (the hot one) for the first
-- tenth of all lines, else to partner 2 + floor((partners - 1) * r^1.6), which spreads the
-- rest from thousands (low ranks) to hundreds (high ranks).
create temporary table generated_lines on commit drop as
select n,
       case when n <= :lines / 10 then 1
            else 2 + floor((:partners - 1) * power(random(), 1.6))::int end as partner,
       random() as r_tenant, random() as r_user, random() as r_deleted, random() as r_customer
from generate_series(1, (:lines * 9) / 10) n;

insert into caller_lines (id, tenant_id, partner_id, user_id, parent_id, name, caller_number,
                          call_number, call_line, available_time, begin_at, deadline_at,
                          description_server, deleted_at, created_at, updated_at)
select md5('line-' || n)::uuid,
       -- The hot partner is on tenant 1; others mostly on their home tenant, some on the next.
       md5('tenant-' || case when partner = 1 then 1
                             else 1 + (partner + (r_tenant < 0.2)::int) % :tenants end)::uuid,
       md5('partner-' || partner)::uuid,
       case when r_user < 0.3 then null
            else md5('customer-' || partner || '-' || (1 + floor(r_customer * 5))::int)::uuid end,
       null,
       '线路' || n, 'caller' || n, (200 + n % 800)::text, 1 + n % 30, 31536000,
       timestamptz '2022-01-01 00:00:00+08' + n * interval '90 seconds',
       timestamptz '2023-01-01 00:00:00+08' + n * interval '90 seconds',
       case when n % 7 = 0 then '专线' end,
       case when r_deleted < 0.02 then timestamptz '2024-06-01 00:00:00+08' end,
       timestamptz '2022-01-01 00:00:00+08' + n * interval '90 seconds',
       timestamptz '2022-01-01 00:00:00+08' + n * interval '90 seconds'
from generated_lines;

-- Split lines: the remaining 10%, each split off an earlier listed line of the same partner.
insert into caller_lines (id, tenant_id, partner_id, user_id, parent_id, name, caller_number,
                          call_number, call_line, available_time, begin_at, deadline_at,
                          created_at, updated_at)
select md5('split-' || s)::uuid, parent.tenant_id, parent.partner_id, parent.user_id, parent.id,
       parent.name || '-拆分', parent.caller_number, parent.call_number, 1, 0, null, null,
       parent.created_at + interval '1 hour', parent.created_at + interval '1 hour'
from generate_series(1, :lines / 10) s
join caller_lines parent on parent.id = md5('line-' || (1 + (s * 7919) % ((:lines * 9) / 10)))::uuid;

commit;
-- Index-only scans need the visibility map; the planner needs statistics.
vacuum analyze;
