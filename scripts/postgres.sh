#!/usr/bin/env bash
# A private PostgreSQL server for the ledger's tests and CI.
#
#   scripts/postgres.sh start   install PostgreSQL if missing (Debian's package, needs root),
#                               create the cluster if missing, start it if stopped, create the
#                               database naac_test if missing; prints the connection string
#                               as the last line of stdout
#   scripts/postgres.sh stop    stop the server (the cluster is kept for the next start)
#   scripts/postgres.sh status  exit 0 if the server runs, 3 if not
#   scripts/postgres.sh url     print the connection string
#
# Use it like CI does:
#   export NAAC_TEST_POSTGRES="$(scripts/postgres.sh start)"
#   cargo test -p naac-bank --test store
#
# The server listens on 127.0.0.1 only (no Unix socket), trusts local connections (it is a
# throwaway server for tests: never put real data in it), and keeps fsync on so the stores'
# durability is exercised for real. Run as root, the server runs as the `postgres` OS user
# (PostgreSQL refuses to run as root); run as another user, it runs as that user.
#
# Environment:
#   NAAC_PG_DIR   where the cluster lives (default ~/.cache/naac-postgres, or
#                 /var/lib/naac-postgres as root; data in data/,
#                 server log in server.log)
#   NAAC_PG_PORT  TCP port (default 54329)
set -euo pipefail

# As root the cluster lives outside root's home (mode 700, which the postgres user cannot
# enter); otherwise under the user's cache.
if ((EUID == 0)); then
    dir="${NAAC_PG_DIR:-/var/lib/naac-postgres}"
else
    dir="${NAAC_PG_DIR:-$HOME/.cache/naac-postgres}"
fi
port="${NAAC_PG_PORT:-54329}"
data="$dir/data"
log="$dir/server.log"
db=naac_test

say() { printf 'postgres.sh: %s\n' "$*" >&2; }
die() {
    say "$*"
    exit 1
}

usage() {
    echo "usage: $0 start|stop|status|url" >&2
    exit 2
}

[[ $# -eq 1 ]] || usage
[[ $port =~ ^[0-9]+$ ]] || die "NAAC_PG_PORT=$port is not a port number"

# The newest installed server's bin directory (Debian keeps each major version apart).
find_bindir() {
    local d best=""
    for d in /usr/lib/postgresql/*/bin; do
        [[ -x $d/postgres && -x $d/initdb && -x $d/pg_ctl ]] || continue
        if [[ -z $best ]] || [[ "$(printf '%s\n%s\n' "$best" "$d" | sort -V | tail -n 1)" == "$d" ]]; then
            best=$d
        fi
    done
    # Other layouts (a source build, another distribution): the pg_ctl on PATH.
    if [[ -z $best ]] && command -v pg_ctl >/dev/null; then
        d="$(dirname "$(readlink -f "$(command -v pg_ctl)")")"
        [[ -x $d/postgres && -x $d/initdb ]] && best=$d
    fi
    [[ -n $best ]] && printf '%s\n' "$best"
}

install_postgres() {
    ((EUID == 0)) || die "no PostgreSQL server found in /usr/lib/postgresql/*/bin; install it \
(apt-get install postgresql) or run this script as root to have it installed"
    command -v apt-get >/dev/null || die "no PostgreSQL server found and no apt-get to install one; \
install PostgreSQL's server binaries"
    say "installing PostgreSQL (apt-get install postgresql)"
    export DEBIAN_FRONTEND=noninteractive
    # Try with the package lists the machine has; refresh them only if that fails.
    if ! apt-get install -y --no-install-recommends postgresql >&2; then
        say "refreshing the package lists (apt-get update)"
        apt-get update >&2
        apt-get install -y --no-install-recommends postgresql >&2
    fi
}

# Runs a command as the user the server runs as.
as_server() {
    if ((EUID == 0)); then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

# Lets the `postgres` OS user reach $dir when it lies under a directory it cannot enter
# (root's home is mode 700): adds search permission (o+x, not read) where it is missing.
open_path_for_server() {
    local p="" part
    local -a parts
    IFS=/ read -ra parts <<<"$(readlink -f "$dir")"
    for part in "${parts[@]}"; do
        [[ -n $part ]] || continue
        p="$p/$part"
        if ! runuser -u postgres -- test -x "$p"; then
            say "letting the postgres user pass through $p (chmod o+x)"
            chmod o+x "$p"
        fi
    done
}

# pg_ctl start, with no inherited descriptor beyond stdin/stdout/stderr: the server would
# otherwise hold this script's lock and its caller's pipes for as long as it runs.
start_server() (
    local fd
    for fd in /proc/$BASHPID/fd/*; do
        fd=${fd##*/}
        if ((fd > 2)); then eval "exec $fd>&-"; fi
    done 2>/dev/null
    as_server "$@"
)

# The port of the running server, from its postmaster.pid (line 4), or empty.
running_port() {
    local pg_ctl=$1
    if [[ -f $data/postmaster.pid ]] && as_server "$pg_ctl" -D "$data" status >/dev/null 2>&1; then
        sed -n 4p "$data/postmaster.pid"
    fi
}

url_for() {
    printf 'host=127.0.0.1 port=%s user=postgres dbname=%s\n' "$1" "$db"
}

cmd_start() {
    local bin
    bin="$(find_bindir)" || true
    if [[ -z $bin ]]; then
        install_postgres
        bin="$(find_bindir)" || die "installed PostgreSQL, but found no server binaries in /usr/lib/postgresql/*/bin"
    fi

    mkdir -p "$dir"
    # One start at a time (two test runs starting at once).
    exec 9>"$dir/.lock"
    flock 9

    if ((EUID == 0)); then
        id postgres >/dev/null 2>&1 ||
            useradd --system --home-dir /var/lib/postgresql --shell /bin/bash postgres
        chown postgres: "$dir"
        open_path_for_server
    fi

    local live
    live="$(running_port "$bin/pg_ctl")"
    if [[ -n $live ]]; then
        url_for "$live"
        return
    fi

    if [[ ! -f $data/PG_VERSION ]]; then
        say "creating a cluster in $data"
        rm -rf "$data"
        as_server "$bin/initdb" -D "$data" -U postgres --auth=trust --encoding=UTF8 \
            --locale=C >"$dir/initdb.log" 2>&1 || die "initdb failed; see $dir/initdb.log"
        cat >>"$data/postgresql.conf" <<'EOF'

# naac: a private server for tests (scripts/postgres.sh); the port is given at start.
listen_addresses = '127.0.0.1'
unix_socket_directories = ''
fsync = on
synchronous_commit = on
full_page_writes = on
max_connections = 200
EOF
        cat >"$data/pg_hba.conf" <<'EOF'
# naac: trust connections from this machine only (a throwaway server for tests).
local all all              trust
host  all all 127.0.0.1/32 trust
EOF
    fi

    say "starting the server on 127.0.0.1:$port (log: $log)"
    if ((EUID == 0)) && [[ -e $log ]]; then chown postgres: "$log"; fi
    if ! start_server "$bin/pg_ctl" -D "$data" -l "$log" -o "-p $port" -w -t 60 start >/dev/null; then
        tail -n 20 "$log" >&2 || true
        die "the server did not start; see $log (is port $port taken? set NAAC_PG_PORT)"
    fi
    local i
    for ((i = 0; i < 100; i++)); do
        "$bin/pg_isready" -q -h 127.0.0.1 -p "$port" && break
        sleep 0.1
    done
    "$bin/pg_isready" -q -h 127.0.0.1 -p "$port" || die "the server does not answer on 127.0.0.1:$port; see $log"

    local psql=("$bin/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$port" -U postgres)
    if [[ "$("${psql[@]}" -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = '$db'")" != 1 ]]; then
        "${psql[@]}" -d postgres -c "CREATE DATABASE $db" >/dev/null
    fi
    url_for "$port"
}

cmd_stop() {
    local bin
    bin="$(find_bindir)" || die "no PostgreSQL server binaries found; nothing to stop"
    if [[ -n "$(running_port "$bin/pg_ctl")" ]]; then
        as_server "$bin/pg_ctl" -D "$data" -m fast -w stop >/dev/null
        say "stopped"
    else
        say "not running"
    fi
}

cmd_status() {
    local bin live=""
    bin="$(find_bindir)" || true
    [[ -n $bin ]] && live="$(running_port "$bin/pg_ctl")"
    if [[ -n $live ]]; then
        say "running on 127.0.0.1:$live"
        return 0
    fi
    say "not running"
    return 3
}

cmd_url() {
    local bin live=""
    bin="$(find_bindir)" || true
    [[ -n $bin ]] && live="$(running_port "$bin/pg_ctl")"
    url_for "${live:-$port}"
}

case $1 in
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    url) cmd_url ;;
    *) usage ;;
esac
