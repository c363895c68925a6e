-- Only the schema speaks on the channel. Anyone who can connect may NOTIFY on
-- agent_api_listing_changed, and the instances dropped whatever a scoped announcement named:
-- 'partners <A>' fifty times a second took A's hits from 88 of 89 to 1 of 87, 1,100 statements
-- of 100 random pairs dropped every page kept, and each forged 'all <epoch>' cost a round trip
-- (100,000 in one statement held every feed for a minute). Now every announcement that moves
-- the instances' memory carries a tag: its transaction's id (8 bytes) and 24 bytes of
-- HMAC-SHA256, over that id and the payload, under a key only the owner (and, by the documented
-- grant, the service's role) can read. An instance honours only a tag it verifies and has not
-- heard before (a repeat heard on the channel and sent again is ignored), and needs no question
-- to the database for it.
--
-- The tag is written as two more ids (' <uuid> <uuid>', or ' <uuid>/<uuid>' after pairs), so
-- an instance of the previous release, while a rolling deploy mixes them, reads it as ids it
-- holds nothing of. 'Everything changed' is announced twice: 'everything <epoch>' tagged, for
-- this release, and 'all <epoch>' as before, for the previous one (which checks its epoch,
-- migration 1200); a later release drops the second.
-- A new table and functions only: no table is read, rewritten or locked beyond its catalog.
-- squawk-ignore-file require-lock-timeout, require-statement-timeout, prefer-robust-stmts
-- (agent-api migrate sets lock_timeout and statement_timeout for its own session, and tries
-- again a migration whose lock did not come in time: docs/operations.md, "Upgrade". The
-- migration runs in one transaction, so a retry finds nothing half made.)

create table listing_announcement_key (
    only_row boolean primary key default true check (only_row),
    -- 32 bytes from gen_random_uuid's strong random source (244 random bits).
    key bytea not null check (length(key) = 32),
    -- HMAC's inner and outer keys: the key padded to 64 bytes, xor 0x36 and 0x5c.
    inner_key bytea not null check (length(inner_key) = 64),
    outer_key bytea not null check (length(outer_key) = 64)
);
revoke all on listing_announcement_key from public;

do $$
declare
    key bytea := uuid_send(gen_random_uuid()) || uuid_send(gen_random_uuid());
    inner_key bytea := decode(repeat('36', 64), 'hex');
    outer_key bytea := decode(repeat('5c', 64), 'hex');
begin
    for i in 0 .. 31 loop
        inner_key := set_byte(inner_key, i, get_byte(key, i) # 54);
        outer_key := set_byte(outer_key, i, get_byte(key, i) # 92);
    end loop;
    insert into listing_announcement_key (key, inner_key, outer_key)
    values (key, inner_key, outer_key);
end;
$$;

-- Sends one announcement, tagged when it is scoped. Called by the owner's functions (the
-- tables' triggers run as the owner); anyone else lacks the key, and the right to call it.
create or replace function notify_listing(payload text) returns void
language plpgsql set search_path = pg_catalog, public, pg_temp as $$
declare
    transaction_id bytea := int8send(pg_current_xact_id()::text::bigint);
    tag bytea;
    first_id text;
    second_id text;
begin
    if payload like 'all %' then
        perform pg_notify('agent_api_listing_changed', payload);
        return;
    end if;
    select transaction_id || substr(sha256(k.outer_key || sha256(
               k.inner_key || transaction_id || convert_to(payload, 'UTF8'))), 1, 24)
    into strict tag
    from public.listing_announcement_key k;
    first_id := encode(substr(tag, 1, 16), 'hex')::uuid::text;
    second_id := encode(substr(tag, 17, 16), 'hex')::uuid::text;
    perform pg_notify('agent_api_listing_changed', payload || case
        when payload like 'pairs %' then ' ' || first_id || '/' || second_id
        else ' ' || first_id || ' ' || second_id
    end);
end;
$$;
revoke execute on function notify_listing(text) from public;

create or replace function announce_everything() returns void
language plpgsql security definer set search_path = pg_catalog, public, pg_temp as $$
declare
    epoch bigint := pg_catalog.nextval('public.listing_everything_epoch'::pg_catalog.regclass);
begin
    perform public.notify_listing('everything ' || epoch);
    perform public.notify_listing('all ' || epoch);
end;
$$;
