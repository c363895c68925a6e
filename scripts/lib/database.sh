# Finds a Postgres for the scripts in this folder and exports DATABASE_URL naming it.
# Order (README): $DATABASE_URL if it answers (and its database holds nothing but agent-api's
# tables); else a throwaway cluster under .data/postgres (installing PostgreSQL from the OS
# packages if its binaries are missing; scripts/db stops or removes it); else docker compose.
# Says which database it uses before anything writes to it. Sourced, not run. Needs ROOT.

# Bold only on a terminal: logs captured to a file stay free of escape codes.
if [ -t 2 ]; then
  log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
else
  log() { printf '==> %s\n' "$*" >&2; }
fi
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

. "$ROOT/scripts/lib/packages.sh"

LOCAL_PG_DATA="$ROOT/.data/postgres"
LOCAL_PG_PORT_FILE="$ROOT/.data/postgres.port"
DATABASE_NAME="${AGENT_API_DB_NAME:-agent_api}"

# Whether a Postgres URL accepts connections (pg_isready when present, else a TCP probe).
database_answers() {
  local url="$1"
  if command -v pg_isready >/dev/null 2>&1; then
    pg_isready -q -t 3 -d "$url"
  else
    local hostport host port
    hostport="$(printf '%s' "$url" | sed -E 's#^[a-z]+://([^@/]*@)?([^/?]*).*#\2#')"
    host="${hostport%:*}"; port="${hostport##*:}"
    [ "$host" = "$hostport" ] && port=5432
    timeout 3 bash -c "exec 3<>/dev/tcp/${host:-127.0.0.1}/$port" 2>/dev/null
  fi
}

port_is_free() {
  ! timeout 1 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null
}

# The local cluster keeps its port across runs; a new one takes the first free port from
# $AGENT_API_PG_PORT (55432), so two checkouts can each have their own.
choose_local_port() {
  if [ -s "$LOCAL_PG_PORT_FILE" ]; then
    LOCAL_PG_PORT="$(cat "$LOCAL_PG_PORT_FILE")"
    return
  fi
  LOCAL_PG_PORT="${AGENT_API_PG_PORT:-55432}"
  # The next free one, but never compose's (docker-compose.yml), which it would shadow.
  while ! port_is_free "$LOCAL_PG_PORT" ||
        [ "$LOCAL_PG_PORT" = "${AGENT_API_COMPOSE_PG_PORT:-55433}" ]; do
    LOCAL_PG_PORT=$((LOCAL_PG_PORT + 1))
  done
  echo "$LOCAL_PG_PORT" > "$LOCAL_PG_PORT_FILE"
}

postgres_bin_dir() {
  if command -v pg_ctl >/dev/null 2>&1 && command -v initdb >/dev/null 2>&1; then
    dirname "$(readlink -f "$(command -v pg_ctl)")"
    return
  fi
  ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 | grep . 
}

install_postgres() {
  command -v apt-get >/dev/null 2>&1 || return 1
  want_package postgresql "the database server the demo and the tests run against"
  want_package postgresql-client "psql, to create the databases"
  install_wanted_packages
}

# Stops the throwaway cluster, if it runs.
stop_local_cluster() {
  local bin
  [ -f "$LOCAL_PG_DATA/PG_VERSION" ] || { log "no throwaway cluster in .data/postgres"; return 0; }
  bin="$(postgres_bin_dir)" || die "no PostgreSQL binaries to stop the cluster with"
  if as_postgres "$bin/pg_ctl" -D "$LOCAL_PG_DATA" status >/dev/null 2>&1; then
    as_postgres "$bin/pg_ctl" -D "$LOCAL_PG_DATA" -m fast -w stop >/dev/null
    log "stopped the throwaway cluster in .data/postgres"
  else
    log "the throwaway cluster in .data/postgres is not running"
  fi
}

# Runs a PostgreSQL server binary as an unprivileged user: Postgres refuses to run as root.
as_postgres() {
  if [ "$(id -u)" = 0 ]; then
    id postgres >/dev/null 2>&1 || useradd --system --home-dir /nonexistent postgres
    chown -R postgres "$ROOT/.data/postgres"
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

start_local_cluster() {
  local bin
  bin="$(postgres_bin_dir)" || { install_postgres && bin="$(postgres_bin_dir)"; } || return 1
  mkdir -p "$LOCAL_PG_DATA"
  if [ ! -f "$LOCAL_PG_DATA/PG_VERSION" ]; then
    log "creating a throwaway Postgres cluster in .data/postgres"
    as_postgres "$bin/initdb" -D "$LOCAL_PG_DATA" -U postgres --auth=trust --encoding=UTF8 \
      --locale=C.UTF-8 >/dev/null || return 1
  fi
  if as_postgres "$bin/pg_ctl" -D "$LOCAL_PG_DATA" status >/dev/null 2>&1; then
    # Already running: its own record of the port it listens on is the truth.
    LOCAL_PG_PORT="$(sed -n 4p "$LOCAL_PG_DATA/postmaster.pid")"
    echo "$LOCAL_PG_PORT" > "$LOCAL_PG_PORT_FILE"
  else
    choose_local_port
    if ! port_is_free "$LOCAL_PG_PORT"; then
      rm -f "$LOCAL_PG_PORT_FILE"
      choose_local_port
    fi
    log "starting it on 127.0.0.1:$LOCAL_PG_PORT (scripts/db stop stops it, scripts/db destroy removes it)"
    # A disposable cluster: durability traded for speed.
    as_postgres "$bin/pg_ctl" -D "$LOCAL_PG_DATA" -l "$LOCAL_PG_DATA/server.log" -w -t 60 \
      -o "-p $LOCAL_PG_PORT -k $LOCAL_PG_DATA -c listen_addresses=127.0.0.1 -c max_connections=300 -c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
      start >/dev/null || { tail -n 20 "$LOCAL_PG_DATA/server.log" >&2; return 1; }
  fi
  export PATH="$bin:$PATH"
  DATABASE_URL="postgres://postgres@127.0.0.1:$LOCAL_PG_PORT/$DATABASE_NAME"
  create_database_if_missing "postgres://postgres@127.0.0.1:$LOCAL_PG_PORT/postgres"
}

start_compose_database() {
  local compose
  if command -v docker >/dev/null 2>&1 && docker compose version >/dev/null 2>&1; then
    compose="docker compose"
  elif command -v docker-compose >/dev/null 2>&1; then
    compose="docker-compose"
  else
    return 1
  fi
  log "starting Postgres with $compose"
  # Only the db service starts; the app's required secret need not be set for it.
  APP__AUTH__JWT_SECRET="${APP__AUTH__JWT_SECRET:-not-used-by-the-db-service}" \
    $compose -f "$ROOT/docker-compose.yml" up -d db >&2 || return 1
  DATABASE_URL="postgres://postgres:postgres@127.0.0.1:${AGENT_API_COMPOSE_PG_PORT:-55433}/$DATABASE_NAME"
  local tries=0
  until database_answers "$DATABASE_URL"; do
    tries=$((tries + 1))
    [ "$tries" -lt 60 ] || return 1
    sleep 1
  done
}

create_database_if_missing() {
  local admin_url="$1"
  command -v psql >/dev/null 2>&1 || return 0
  if [ -z "$(psql -Atq "$admin_url" -c "select 1 from pg_database where datname = '$DATABASE_NAME'")" ]; then
    psql -q "$admin_url" -c "create database \"$DATABASE_NAME\"" >/dev/null
  fi
}

# DATABASE_URL with its database name replaced by $1.
database_url_named() {
  printf '%s' "$DATABASE_URL" | sed -E "s#^([a-z]+://[^/]*)/?[^?]*#\1/$1#"
}

# The service's read-only role $2 on the database at URL $1, made and granted by the very SQL
# blocks of docs/operations.md ("Database roles"); prints the URL that connects as it.
as_documented_reader() {
  local url="$1" role="$2" password="reader-$$" database
  database="$(printf '%s' "$url" | sed -E 's#^[a-z]+://[^/]*/([^?]*).*#\1#')"
  python3 scripts/lib/documented_sql.py 'create role :"reader"' |
    PGOPTIONS="--client-min-messages=warning" psql -q -v ON_ERROR_STOP=1 "$url" \
      -v reader="$role" -v password="$password" -f - >/dev/null
  python3 scripts/lib/documented_sql.py 'to :"reader";' |
    PGOPTIONS="--client-min-messages=warning" psql -q -v ON_ERROR_STOP=1 "$url" \
      -v reader="$role" -v database="$database" -f - >/dev/null
  printf '%s' "$url" | sed -E "s#^([a-z]+://)([^@/]*@)?#\1$role:$password@#"
}

# A fresh, empty database $1 on DATABASE_URL's server (dropped first if it exists).
recreate_database() {
  command -v psql >/dev/null 2>&1 || die "psql is needed to create the database $1"
  PGOPTIONS="--client-min-messages=warning" psql -q "$DATABASE_URL" \
    -c "drop database if exists \"$1\"" -c "create database \"$1\"" >/dev/null
}

# Applies migrations/ to the database at $1 with psql, as sqlx applies them: each in one
# transaction, but for those marked `-- no-transaction` (CREATE INDEX CONCURRENTLY).
apply_migrations() {
  local migration single
  for migration in "$ROOT"/migrations/*.sql; do
    single=-1
    head -n 1 "$migration" | grep -q '^-- no-transaction' && single=
    psql -q $single -v ON_ERROR_STOP=1 "$1" -f "$migration" >/dev/null
  done
}

# Drops the objects of kind $1 (database, role) named in $2 (space-separated) on
# DATABASE_URL's server, if they exist; $3 ends each statement.
drop_named() {
  local name
  for name in $2; do
    PGOPTIONS="--client-min-messages=warning" psql -q "$DATABASE_URL" \
      -c "drop $1 if exists \"$name\"${3:-}" >/dev/null 2>&1 || true
  done
}

drop_databases() { drop_named database "$1" " with (force)"; }

# Roles a run made: after the databases that granted them anything.
drop_roles() { drop_named role "$1"; }

# What a run may not leave behind on DATABASE_URL's server: its databases, its roles, and the
# schemas of DATABASE_URL's own database.
server_contents() {
  psql -Atq "$DATABASE_URL" -c "select string_agg(datname, ' ' order by datname) from pg_database" \
    -c "select string_agg(rolname, ' ' order by rolname) from pg_roles" \
    -c "select string_agg(nspname, ' ' order by nspname) from pg_namespace where nspname not like 'pg\\_%temp\\_%'" | tr '\n' ' '
}

# The host:port/database a URL names, without its credentials.
describe_url() {
  printf '%s' "$1" | sed -E 's#^[a-z]+://([^@/]*@)?([^/?]*)/?([^?]*).*#\3 on \2#'
}

# Refuses a database that holds tables that are not agent-api's: a DATABASE_URL left in the
# shell from another project must not be migrated, seeded and used for test databases.
refuse_foreign_database() {
  command -v psql >/dev/null 2>&1 || return 0
  local foreign
  foreign="$(psql -Atq "$DATABASE_URL" -c "select string_agg(table_name, ', ' order by table_name)
    from information_schema.tables where table_schema = 'public' and table_name not in
    ('_sqlx_migrations', 'tenants', 'users', 'caller_lines', 'caller_line_counts',
     'caller_line_count_deltas', 'caller_line_service')")" || return 0
  [ -z "$foreign" ] || die "DATABASE_URL ($(describe_url "$DATABASE_URL")) holds tables that are not agent-api's ($foreign): unset DATABASE_URL to use a throwaway cluster, or point it at an empty database"
}

ensure_database() {
  # A script run by another (scripts/test runs sqlx-prepare) uses what its caller found.
  if [ -n "${AGENT_API_DATABASE_CHOSEN:-}" ]; then
    export DATABASE_URL
    return
  fi
  if [ -n "${DATABASE_URL:-}" ]; then
    if database_answers "$DATABASE_URL"; then
      log "using $(describe_url "$DATABASE_URL"), from your DATABASE_URL"
      refuse_foreign_database
      DATABASE_SOURCE=url
      export DATABASE_URL AGENT_API_DATABASE_CHOSEN=1
      return
    fi
    log "DATABASE_URL ($(describe_url "$DATABASE_URL")) does not answer; looking for another database"
  fi
  if start_local_cluster; then
    DATABASE_SOURCE=cluster
  elif start_compose_database; then
    DATABASE_SOURCE=compose
  else
    die "no Postgres: set DATABASE_URL, install PostgreSQL (initdb, pg_ctl), or docker compose"
  fi
  log "using $(describe_url "$DATABASE_URL")"
  export DATABASE_URL AGENT_API_DATABASE_CHOSEN=1
}
