-- Demo data (agent-api seed-demo): the vendor document's example, so that
--   GET /agent-api/tenant/f2d216a3-9ea5-4f1d-a170-ce9ebed49eaf/callerline?page=1&per_page=2
-- answers exactly tests/fixtures/callerline_page1_per2.json. Times are the document's +08:00
-- wall-clock times. Idempotent: a row is rewritten only when it differs from the demo's, so a
-- second run changes nothing (and repairs demo rows that were edited).

insert into tenants (id, name, is_default, created_at, updated_at)
values ('f2d216a3-9ea5-4f1d-a170-ce9ebed49eaf', '云节点一',
        -- The demo tenant is the default one unless an operator already chose another.
        not exists (select 1 from tenants
                    where is_default and id <> 'f2d216a3-9ea5-4f1d-a170-ce9ebed49eaf'),
        '2022-06-01 09:00:00+08', '2022-06-01 09:00:00+08')
on conflict (id) do update
    set name = excluded.name, is_default = excluded.is_default, deleted_at = null,
        created_at = excluded.created_at, updated_at = excluded.updated_at
    where tenants.* is distinct from excluded.*;

insert into users (id, type, partner_id, name, email, phone, created_at, updated_at)
values
    ('00000000-0000-0000-0000-000000000001', 'partner', null, '演示伙伴',
     'partner@example.com', null, '2022-06-01 09:00:00+08', '2022-06-01 09:00:00+08'),
    ('00000000-0000-0000-0000-000000000002', 'customer', '00000000-0000-0000-0000-000000000001',
     '测试33', 'test33@telrobot.net', '12311111111',
     '2022-06-01 09:30:00+08', '2022-06-01 09:30:00+08')
on conflict (id) do update
    set type = excluded.type, partner_id = excluded.partner_id, name = excluded.name,
        email = excluded.email, phone = excluded.phone, tokens_valid_after = null,
        deleted_at = null, created_at = excluded.created_at, updated_at = excluded.updated_at
    where users.* is distinct from excluded.*;

insert into caller_lines (id, tenant_id, partner_id, user_id, name, caller_number, call_number,
                          call_line, available_time, begin_at, deadline_at, description_server,
                          created_at, updated_at)
values
    ('7aa839fb-4b04-40f3-ab16-0da39aeacf76', 'f2d216a3-9ea5-4f1d-a170-ce9ebed49eaf',
     '00000000-0000-0000-0000-000000000001', '00000000-0000-0000-0000-000000000002',
     '测试坐席10006-云蝠节点', '测试坐席10006', '223', 1, 31536000,
     '2022-06-14 14:05:36+08', '2023-06-14 00:00:00+08', null,
     '2022-06-14 14:03:19+08', '2022-07-26 15:19:16+08'),
    ('a1b93390-3e6e-4bc4-b23b-5693484fd0f7', 'f2d216a3-9ea5-4f1d-a170-ce9ebed49eaf',
     '00000000-0000-0000-0000-000000000001', '00000000-0000-0000-0000-000000000002',
     '转接话术-云蝠节点', '转接话术', '223', 10, 31536000,
     '2022-06-28 15:18:11+08', '2023-06-28 00:00:00+08', null,
     '2022-06-28 15:17:25+08', '2022-07-13 16:19:36+08'),
    ('3c5e1f0a-6b1d-4d7e-9a2f-1b8c0d4e5f61', 'f2d216a3-9ea5-4f1d-a170-ce9ebed49eaf',
     '00000000-0000-0000-0000-000000000001', '00000000-0000-0000-0000-000000000002',
     '外呼营销-云蝠节点', '外呼营销', '224', 5, 15768000,
     '2022-07-05 10:00:00+08', '2023-01-05 00:00:00+08', '营销专线',
     '2022-07-04 09:12:45+08', '2022-07-05 10:00:00+08'),
    ('8d2f4b6a-0c1e-4f3a-b5d7-2e9c6a8b0d12', 'f2d216a3-9ea5-4f1d-a170-ce9ebed49eaf',
     '00000000-0000-0000-0000-000000000001', null,
     '备用线路-云蝠节点', '备用线路', null, 2, 0,
     null, null, null,
     '2022-08-15 16:40:00+08', '2022-08-15 16:40:00+08'),
    ('e4a7c9b1-5d3f-4a2e-8c6b-9f0d1e2a3b45', 'f2d216a3-9ea5-4f1d-a170-ce9ebed49eaf',
     '00000000-0000-0000-0000-000000000001', null,
     '回访专线-云蝠节点', '回访专线', '225', 3, 7776000,
     '2022-09-20 08:30:00+08', '2022-12-31 23:59:59+08', null,
     '2022-09-20 08:00:00+08', '2022-09-20 08:30:00+08')
on conflict (id) do update
    set tenant_id = excluded.tenant_id, partner_id = excluded.partner_id,
        user_id = excluded.user_id, parent_id = null, name = excluded.name,
        caller_number = excluded.caller_number, call_number = excluded.call_number,
        call_line = excluded.call_line, available_time = excluded.available_time,
        begin_at = excluded.begin_at, deadline_at = excluded.deadline_at,
        description_server = excluded.description_server, deleted_at = null,
        created_at = excluded.created_at, updated_at = excluded.updated_at
    where caller_lines.* is distinct from excluded.*;
