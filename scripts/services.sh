#!/usr/bin/env bash
# Install (only when missing) and start (only when down) every service the tests use:
# PostgreSQL, MariaDB, Redis, NATS with JetStream, ClickHouse (Debian clickhouse-server),
# and the PyPI package chdb-core (a current ClickHouse engine, in-process). Idempotent.
# Waits are bounded; a service that never answers is a clear error (exit 1).
set -euo pipefail

APT_UPDATED=0
log() { printf 'services: %s\n' "$*" >&2; }
die() { printf 'services: ERROR: %s\n' "$*" >&2; exit 1; }

apt_install() {
    if [ "$APT_UPDATED" = 0 ]; then
        log "apt-get update"
        DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null
        APT_UPDATED=1
    fi
    log "apt-get install $*"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >/dev/null
}

# wait_for NAME SECONDS COMMAND...: retry COMMAND once a second until it succeeds.
wait_for() {
    local name=$1 secs=$2
    shift 2
    local i
    for ((i = 0; i < secs; i++)); do
        if "$@" >/dev/null 2>&1; then
            log "$name is up"
            return 0
        fi
        sleep 1
    done
    die "$name did not answer within ${secs}s (check its log)"
}

tcp_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

# --- PostgreSQL (127.0.0.1:5432, trust, database test) ---------------------------------
pg_up() { pg_isready -q -h 127.0.0.1 -p 5432; }
if ! pg_up; then
    command -v pg_ctlcluster >/dev/null || apt_install postgresql
    log "starting PostgreSQL"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort -V | tail -1)" main start || true
fi
wait_for PostgreSQL 60 pg_up
if ! psql -h 127.0.0.1 -U postgres -d postgres -tAc 'SELECT 1' >/dev/null 2>&1; then
    # A fresh install uses peer/password auth: allow trust on loopback, as the machines do.
    hba=$(runuser -u postgres -- psql -tAc 'SHOW hba_file')
    sed -i '1i host all all 127.0.0.1/32 trust' "$hba"
    runuser -u postgres -- psql -tAc 'SELECT pg_reload_conf()' >/dev/null
    sleep 1
fi
if [ "$(psql -h 127.0.0.1 -U postgres -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = 'test'")" != 1 ]; then
    psql -h 127.0.0.1 -U postgres -d postgres -c 'CREATE DATABASE test' >/dev/null
fi

# --- MariaDB (127.0.0.1:3306, root without password, database test) ----------------------
maria_up() { mariadb-admin -h 127.0.0.1 -P 3306 -u root ping; }
if ! maria_up; then
    command -v mariadbd >/dev/null || [ -x /usr/sbin/mariadbd ] || apt_install mariadb-server
    mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld 2>/dev/null || true
    log "starting MariaDB"
    start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd
fi
wait_for MariaDB 60 mariadb-admin ping
if ! maria_up; then
    # A fresh install authenticates root by unix socket only.
    mariadb -u root -e "ALTER USER 'root'@'localhost' IDENTIFIED VIA mysql_native_password USING PASSWORD('') OR unix_socket"
fi
wait_for "MariaDB on 127.0.0.1:3306" 30 maria_up
mariadb -h 127.0.0.1 -u root -e 'CREATE DATABASE IF NOT EXISTS test'

# --- Redis (127.0.0.1:6379) ---------------------------------------------------------------
redis_up() { [ "$(redis-cli -h 127.0.0.1 -p 6379 ping)" = PONG ]; }
if ! redis_up; then
    command -v redis-server >/dev/null || apt_install redis-server
    mkdir -p /var/lib/redis /var/log/redis
    log "starting Redis"
    redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
        --dir /var/lib/redis --logfile /var/log/redis/ci.log
fi
wait_for Redis 30 redis_up

# --- NATS with JetStream (127.0.0.1:4222) -------------------------------------------------
nats_up() { tcp_open 127.0.0.1 4222; }
if ! nats_up; then
    [ -x /usr/sbin/nats-server ] || apt_install nats-server
    mkdir -p /var/lib/nats-server
    log "starting NATS"
    start-stop-daemon --start --oknodo --background --exec /usr/sbin/nats-server -- \
        -a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server -l /var/log/nats-server.log
fi
wait_for NATS 30 nats_up

# --- ClickHouse 18.16 (HTTP 127.0.0.1:8123) -----------------------------------------------
ch_up() { curl -sf http://127.0.0.1:8123/ping; }
if ! ch_up; then
    command -v clickhouse-server >/dev/null || apt_install clickhouse-server clickhouse-client
    log "starting ClickHouse"
    setsid clickhouse-server --config-file=/etc/clickhouse-server/config.xml >/tmp/ch.log 2>&1 &
fi
wait_for "ClickHouse (log: /tmp/ch.log)" 120 ch_up

# --- chdb (a current ClickHouse engine, in-process) ---------------------------------------
if ! python3 -c 'import chdb' >/dev/null 2>&1; then
    log "pip install chdb-core==26.9.0"
    python3 -m pip install -q 'chdb-core==26.9.0'
fi
python3 -c 'import chdb; chdb.query("SELECT 1")' >/dev/null || die "chdb does not run"
log "chdb is available"
