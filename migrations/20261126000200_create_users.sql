-- Partners (伙伴), their customers (客户) and sub-accounts (子账户). SPEC §1.

create table users (
    id                  uuid primary key,
    type                text not null,
    partner_id          uuid null references users (id),
    name                text not null,
    email               text null,
    phone               text null,
    -- Tokens whose iat is before this instant are revoked (SPEC §4).
    tokens_valid_after  timestamptz null,
    deleted_at          timestamptz null,
    created_at          timestamptz not null default now(),
    updated_at          timestamptz not null default now(),
    constraint users_type_known check (type in ('partner', 'customer', 'sub_account')),
    -- A partner stands alone; customers and sub-accounts belong to one.
    constraint users_partner_id_matches_type check ((type = 'partner') = (partner_id is null))
);

create index users_partner_id on users (partner_id);

create trigger users_set_updated_at before update on users
    for each row execute function set_updated_at();

-- The partner a token (its sub and iat) may act for, or null: the user exists, is a partner, is
-- not deleted, and the token was not issued before tokens_valid_after (SPEC §4). The API's
-- statements call it; operators can too, to see whether a partner's tokens still work.
create function token_partner(sub uuid, issued_at timestamptz) returns uuid
language sql stable as $$
    select id from users
    where id = sub and type = 'partner' and deleted_at is null
      and (tokens_valid_after is null or tokens_valid_after <= issued_at)
$$;
