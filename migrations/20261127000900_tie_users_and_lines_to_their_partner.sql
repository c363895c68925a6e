-- Data tied to its partner (SPEC §1): a customer's or sub-account's partner_id names a partner,
-- a line's partner_id names a partner, and a line's user is that partner itself or one of its
-- own customers or sub-accounts. Until now a line of partner B could be allocated to partner
-- A's customer, and B's list then showed A's customer's name, email and phone.
--
-- The rule is kept by foreign keys on the partner each user belongs to (users.owner_id: the
-- user itself for a partner, its partner_id otherwise), so no later write can break it either:
-- moving a line to another partner, a customer to another partner, or turning a partner into
-- a customer is refused while it would leave a line or a customer behind.
--
-- Rows that already break it stop this migration with a message naming them (the first 20 of
-- each kind); README, "Lines and users tied to their partner", says how to put them right.

do $$
declare
    check_name text;
    total bigint;
    first_rows text;
begin
    for check_name, total, first_rows in
        select 'customers or sub-accounts whose partner_id is not a partner',
               count(*), string_agg(id::text, ', ') filter (where rank <= 20)
        from (select u.id, row_number() over (order by u.id) as rank
              from users u join users p on p.id = u.partner_id
              where p.type <> 'partner') as offenders
        union all
        select 'caller lines whose partner_id is not a partner',
               count(*), string_agg(id::text, ', ') filter (where rank <= 20)
        from (select l.id, row_number() over (order by l.id) as rank
              from caller_lines l join users p on p.id = l.partner_id
              where p.type <> 'partner') as offenders
        union all
        select 'caller lines allocated to a user of another partner',
               count(*), string_agg(id::text, ', ') filter (where rank <= 20)
        from (select l.id, row_number() over (order by l.id) as rank
              from caller_lines l join users u on u.id = l.user_id
              where coalesce(u.partner_id, u.id) <> l.partner_id) as offenders
    loop
        if total > 0 then
            raise exception 'migration 0900 stopped: % % (first ones: %)',
                total, check_name, first_rows
                using hint = 'README.md, "Lines and users tied to their partner", says how to '
                             'fix them; then run agent-api migrate again.';
        end if;
    end loop;
end;
$$;

-- The partner a user belongs to: itself for a partner, its partner_id otherwise.
alter table users add column owner_id uuid generated always as (coalesce(partner_id, id)) stored;
alter table users add constraint users_id_owner_id_key unique (id, owner_id);

-- A partner is the one user that is its own owner: (id, id) matches only partners' rows.
alter table users
    drop constraint users_partner_id_fkey,
    add constraint users_partner_is_a_partner
        foreign key (partner_id, partner_id) references users (id, owner_id);

alter table caller_lines
    drop constraint caller_lines_partner_id_fkey,
    add constraint caller_lines_partner_is_a_partner
        foreign key (partner_id, partner_id) references users (id, owner_id),
    drop constraint caller_lines_user_id_fkey,
    add constraint caller_lines_user_belongs_to_its_partner
        foreign key (user_id, partner_id) references users (id, owner_id);
