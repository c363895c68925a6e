-- For operators: each line with when it is usable until and when its service ends. SPEC §1.
-- available_at = begin_at + available_time seconds (null before use begins);
-- service_ends_at = the earlier of available_at and deadline_at, a null bound being unbounded
-- (least() skips nulls, and is null only when both are). Mirrors CallerLine::service_end.

create view caller_line_service as
select
    l.*,
    l.begin_at + make_interval(secs => l.available_time) as available_at,
    least(l.begin_at + make_interval(secs => l.available_time), l.deadline_at) as service_ends_at
from caller_lines l;
