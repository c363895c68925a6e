-- For operators: split a line (拆分线路). The new line takes `concurrency` of its parent's
-- call_line, keeps its tenant, partner, numbers and dates, starts unallocated, and is excluded
-- from the partner's list (parent_id is set). The parent's call_line cannot go below zero
-- (caller_lines_call_line_non_negative), so a split never creates concurrency.

create function split_caller_line(parent uuid, concurrency integer) returns uuid
language plpgsql as $$
declare
    child uuid := gen_random_uuid();
begin
    if concurrency is null or concurrency < 1 then
        raise exception 'split_caller_line: concurrency must be at least 1, not %', concurrency;
    end if;
    update caller_lines set call_line = call_line - concurrency
    where id = parent and deleted_at is null;
    if not found then
        raise exception 'split_caller_line: no caller line % (or it is deleted)', parent;
    end if;
    insert into caller_lines (id, tenant_id, partner_id, parent_id, name, caller_number,
                              call_number, call_line, available_time, begin_at, deadline_at,
                              description_server)
    select child, tenant_id, partner_id, id, name, caller_number, call_number, concurrency,
           available_time, begin_at, deadline_at, description_server
    from caller_lines where id = parent;
    return child;
end;
$$;
