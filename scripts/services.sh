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

# --- A test certificate authority and a server certificate for 127.0.0.1 / localhost -------
# The TLS tests connect with sslmode require / verify-ca / verify-full and trust this CA
# through `sslrootcert`. Each server gets its own copy of the key, owned by its user.
TLS_DIR=${SYNCTOOL_TEST_TLS_DIR:-/etc/synctool-test-tls}
if [ ! -s "$TLS_DIR/server.pem" ] || ! openssl x509 -checkend 86400 -noout -in "$TLS_DIR/server.pem" >/dev/null; then
    log "creating the test CA and server certificate in $TLS_DIR"
    mkdir -p "$TLS_DIR"
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=synctool test CA" \
        -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
        -keyout "$TLS_DIR/ca.key" -out "$TLS_DIR/ca.pem" 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" \
        -keyout "$TLS_DIR/server.key" -out "$TLS_DIR/server.csr" 2>/dev/null
    printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' >"$TLS_DIR/server.ext"
    openssl x509 -req -in "$TLS_DIR/server.csr" -CA "$TLS_DIR/ca.pem" -CAkey "$TLS_DIR/ca.key" \
        -CAcreateserial -days 3650 -extfile "$TLS_DIR/server.ext" -out "$TLS_DIR/server.pem" 2>/dev/null
    rm -f "$TLS_DIR"/*/server.key
fi
# A client certificate (CN synctool_cert, key in PKCS#8) for the client-certificate tests:
# PostgreSQL maps it to the role synctool_cert, MariaDB's user synctool_x509 requires one.
if [ ! -s "$TLS_DIR/client.pem" ] || ! openssl verify -CAfile "$TLS_DIR/ca.pem" "$TLS_DIR/client.pem" >/dev/null 2>&1; then
    log "creating the test client certificate in $TLS_DIR"
    openssl req -newkey rsa:2048 -nodes -subj "/CN=synctool_cert" \
        -keyout "$TLS_DIR/client.key" -out "$TLS_DIR/client.csr" 2>/dev/null
    printf 'basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n' >"$TLS_DIR/client.ext"
    openssl x509 -req -in "$TLS_DIR/client.csr" -CA "$TLS_DIR/ca.pem" -CAkey "$TLS_DIR/ca.key" \
        -CAcreateserial -days 3650 -extfile "$TLS_DIR/client.ext" -out "$TLS_DIR/client.pem" 2>/dev/null
fi
chmod 0755 "$TLS_DIR"
# own_key USER: a copy of the server key readable by USER only, at $TLS_DIR/USER/server.key.
own_key() {
    if [ ! -s "$TLS_DIR/$1/server.key" ] && id "$1" >/dev/null 2>&1; then
        mkdir -p "$TLS_DIR/$1"
        cp "$TLS_DIR/server.key" "$TLS_DIR/$1/server.key"
        chown "$1" "$TLS_DIR/$1/server.key"
        chmod 0600 "$TLS_DIR/$1/server.key"
    fi
}

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
own_key postgres
if [ "$(psql -h 127.0.0.1 -U postgres -d postgres -tAc 'SHOW ssl_cert_file')" != "$TLS_DIR/server.pem" ] ||
    [ "$(psql -h 127.0.0.1 -U postgres -d postgres -tAc 'SHOW ssl')" != on ]; then
    log "PostgreSQL: TLS with the test certificate"
    psql -h 127.0.0.1 -U postgres -d postgres -q \
        -c "ALTER SYSTEM SET ssl_cert_file = '$TLS_DIR/server.pem'" \
        -c "ALTER SYSTEM SET ssl_key_file = '$TLS_DIR/postgres/server.key'" \
        -c "ALTER SYSTEM SET ssl = on" -c "SELECT pg_reload_conf()" >/dev/null
    sleep 1
fi
if [ "$(psql -h 127.0.0.1 -U postgres -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = 'test'")" != 1 ]; then
    psql -h 127.0.0.1 -U postgres -d postgres -c 'CREATE DATABASE test' >/dev/null
fi
# The role synctool_cert logs in with the test client certificate only (over TLS).
hba=$(psql -h 127.0.0.1 -U postgres -d postgres -tAc 'SHOW hba_file')
if ! grep -q '^hostssl all synctool_cert ' "$hba"; then
    log "PostgreSQL: certificate login for synctool_cert"
    sed -i '1i hostssl all synctool_cert 127.0.0.1/32 cert\nhostnossl all synctool_cert 127.0.0.1/32 reject' "$hba"
    psql -h 127.0.0.1 -U postgres -d postgres -q -c "ALTER SYSTEM SET ssl_ca_file = '$TLS_DIR/ca.pem'" -c 'SELECT pg_reload_conf()' >/dev/null
    sleep 1
fi
psql -h 127.0.0.1 -U postgres -d postgres -q -c \
    "DO \$\$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'synctool_cert') THEN CREATE ROLE synctool_cert LOGIN; END IF; END \$\$"

# --- MariaDB (127.0.0.1:3306, root without password, database test) ----------------------
maria_up() { mariadb-admin -h 127.0.0.1 -P 3306 -u root ping; }
MARIA_TLS=(--ssl-cert="$TLS_DIR/server.pem" --ssl-key="$TLS_DIR/mysql/server.key" --ssl-ca="$TLS_DIR/ca.pem")
if ! maria_up; then
    command -v mariadbd >/dev/null || [ -x /usr/sbin/mariadbd ] || apt_install mariadb-server
    mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld 2>/dev/null || true
    log "starting MariaDB"
    own_key mysql
    start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd -- "${MARIA_TLS[@]}"
fi
wait_for MariaDB 60 mariadb-admin ping
if ! maria_up; then
    # A fresh install authenticates root by unix socket only.
    mariadb -u root -e "ALTER USER 'root'@'localhost' IDENTIFIED VIA mysql_native_password USING PASSWORD('') OR unix_socket"
fi
wait_for "MariaDB on 127.0.0.1:3306" 30 maria_up
if [ "$(mariadb -h 127.0.0.1 -u root -N -e "SELECT @@have_ssl")" != YES ]; then
    # TLS settings are read at start only: restart the server with them.
    log "MariaDB: TLS with the test certificate (restart)"
    mariadb-admin -h 127.0.0.1 -u root shutdown
    for _ in $(seq 60); do pgrep -x mariadbd >/dev/null || break; sleep 1; done
    pgrep -x mariadbd >/dev/null && die "MariaDB did not stop within 60s"
    own_key mysql
    start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd -- "${MARIA_TLS[@]}"
    wait_for "MariaDB on 127.0.0.1:3306" 60 maria_up
    [ "$(mariadb -h 127.0.0.1 -u root -N -e "SELECT @@have_ssl")" = YES ] || die "MariaDB did not enable TLS"
fi
mariadb -h 127.0.0.1 -u root -e 'CREATE DATABASE IF NOT EXISTS test'
# The user synctool_x509 logs in only with a client certificate signed by the test CA.
mariadb -h 127.0.0.1 -u root -e "CREATE USER IF NOT EXISTS 'synctool_x509'@'%' REQUIRE X509; GRANT SELECT ON test.* TO 'synctool_x509'@'%'"

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

# --- Redis over TLS (127.0.0.1:6380: client certificates optional; 6381: required) ----------
redis_tls_up() {
    [ "$(redis-cli -h 127.0.0.1 -p "$1" --tls --cacert "$TLS_DIR/ca.pem" \
        --cert "$TLS_DIR/client.pem" --key "$TLS_DIR/client.key" ping)" = PONG ]
}
mkdir -p /var/lib/redis /var/log/redis
for spec in 6380:optional 6381:yes; do
    port=${spec%%:*}
    if ! redis_tls_up "$port" 2>/dev/null; then
        log "starting Redis over TLS on $port"
        redis-server --daemonize yes --bind 127.0.0.1 --port 0 --tls-port "$port" \
            --tls-cert-file "$TLS_DIR/server.pem" --tls-key-file "$TLS_DIR/server.key" \
            --tls-ca-cert-file "$TLS_DIR/ca.pem" --tls-auth-clients "${spec#*:}" \
            --save "" --appendonly no --dir /var/lib/redis --logfile "/var/log/redis/tls-$port.log"
    fi
    wait_for "Redis over TLS on $port" 30 redis_tls_up "$port"
done

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

# --- NATS over TLS (127.0.0.1:4223, no JetStream) ------------------------------------------
nats_tls_up() { tcp_open 127.0.0.1 4223; }
if ! nats_tls_up; then
    log "starting NATS over TLS"
    start-stop-daemon --start --background --pidfile /run/nats-tls.pid --make-pidfile \
        --exec /usr/sbin/nats-server -- -a 127.0.0.1 -p 4223 --tls \
        --tlscert "$TLS_DIR/server.pem" --tlskey "$TLS_DIR/server.key" -l /var/log/nats-tls.log
fi
wait_for "NATS over TLS" 30 nats_tls_up

# --- ClickHouse 18.16 (HTTP 127.0.0.1:8123, HTTPS 127.0.0.1:8443) -------------------------
ch_up() { curl -sf http://127.0.0.1:8123/ping; }
ch_tls_up() { curl -sf --cacert "$TLS_DIR/ca.pem" https://127.0.0.1:8443/ping; }
command -v clickhouse-server >/dev/null || apt_install clickhouse-server clickhouse-client
if [ -d /etc/clickhouse-server ] && [ ! -s /etc/clickhouse-server/config.d/synctool-test-tls.xml ]; then
    mkdir -p /etc/clickhouse-server/config.d
    cat >/etc/clickhouse-server/config.d/synctool-test-tls.xml <<XML
<yandex>
    <https_port>8443</https_port>
    <openSSL>
        <server>
            <certificateFile>$TLS_DIR/server.pem</certificateFile>
            <privateKeyFile>$TLS_DIR/server.key</privateKeyFile>
            <dhParamsFile></dhParamsFile>
        </server>
    </openSSL>
</yandex>
XML
fi
if ch_up && ! ch_tls_up; then
    log "ClickHouse: restarting to serve HTTPS with the test certificate"
    pkill -f 'clickhouse-server --config-file' || true
    for _ in $(seq 60); do pgrep -f 'clickhouse-server --config-file' >/dev/null || break; sleep 1; done
fi
if ! ch_up; then
    log "starting ClickHouse"
    setsid clickhouse-server --config-file=/etc/clickhouse-server/config.xml >/tmp/ch.log 2>&1 &
fi
wait_for "ClickHouse (log: /tmp/ch.log)" 120 ch_up
wait_for "ClickHouse HTTPS (log: /tmp/ch.log)" 30 ch_tls_up

# --- chdb (a current ClickHouse engine, in-process) ---------------------------------------
if ! python3 -c 'import chdb' >/dev/null 2>&1; then
    log "pip install chdb-core==26.9.0"
    python3 -m pip install -q 'chdb-core==26.9.0'
fi
python3 -c 'import chdb; chdb.query("SELECT 1")' >/dev/null || die "chdb does not run"
log "chdb is available"
