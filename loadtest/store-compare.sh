#!/bin/bash
# Durable alarms through vakt on sled and on PostgreSQL (a primary with a synchronous standby
# on this machine, synchronous_commit = ${SYNC:-on}), in one run, against the no-processing
# ceiling: 100 connections, plain alarms, 10 s each, two rounds. Ports 7400, 7401, 7480,
# 7510 and 7511 on 127.0.0.1.
#
#   cargo build --release -p vakt -p vakt-loadtest && loadtest/store-compare.sh
#
# Needs Debian's postgresql (its binaries in /usr/lib/postgresql/N/bin). As root, PostgreSQL
# runs as the user `postgres`. The figures are in loadtest/README.md ("Figures").
set -u
T=$(realpath "${CARGO_TARGET_DIR:-$(dirname "$0")/../target}")
V=$T/release/vakt; L=$T/release/vakt-loadtest
W=$(mktemp -d /tmp/vakt-store-compare.XXXX); chmod 755 "$W"; cd "$W"
PGB=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
if [ "$(id -u)" = 0 ]; then
    U=postgres
    run() { runuser -u $U -- "$@"; }
else
    U=$(id -un)
    run() { "$@"; }
fi
mkdir pg; chown $U pg
run $PGB/initdb -D pg/p -U vakt --auth=trust -E UTF8 >/dev/null
cat >> pg/p/postgresql.conf <<C
listen_addresses='127.0.0.1'
port=7510
unix_socket_directories=''
fsync=on
wal_level=replica
max_wal_senders=4
synchronous_standby_names='standby'
synchronous_commit=${SYNC:-on}
C
echo "host replication vakt 127.0.0.1/32 trust" >> pg/p/pg_hba.conf
run $PGB/pg_ctl -D pg/p -l pg/p.log -w start >/dev/null
run $PGB/pg_basebackup -h 127.0.0.1 -p 7510 -U vakt -D pg/s -R >/dev/null
cat >> pg/s/postgresql.auto.conf <<C
port=7511
primary_conninfo='host=127.0.0.1 port=7510 user=vakt application_name=standby'
C
run $PGB/pg_ctl -D pg/s -l pg/s.log -w start >/dev/null
sleep 2
run $PGB/psql -h 127.0.0.1 -p 7510 -U vakt -d postgres -Atc "select application_name, sync_state from pg_stat_replication"
$L fleet --devices 2000 --out fleet.csv --test-keys >/dev/null
cat > pg.toml <<C
data_dir = "$W/pgdata"
[dc09]
listen_tcp = "127.0.0.1:7400"
[http]
listen = "127.0.0.1:7480"
[store]
backend = "postgres"
url = "postgresql://vakt@127.0.0.1:7510/postgres"
node = "bench"
C
$V devices import --data-dir sled fleet.csv >/dev/null
$V devices import --config pg.toml fleet.csv >/dev/null
$L ceiling --listen 127.0.0.1:7401 >/dev/null 2>&1 & CEIL=$!
sleep 1
for round in 1 2; do
  echo "== round $round"
  echo -n "ceiling: "; $L dc09 --target 127.0.0.1:7401 --connections 100 --duration-secs 10 --kind alarm --mode plain 2>/dev/null | tail -1
  $V serve --data-dir sled --dc09-port 7400 --http-port 0 --scaip-port 0 --patrol-port 0 >sled.log 2>&1 & S=$!
  sleep 3
  echo -n "sled:    "; $L dc09 --target 127.0.0.1:7400 --connections 100 --duration-secs 10 --kind alarm --mode plain 2>/dev/null | tail -1
  kill $S; wait $S
  $V serve --config pg.toml --scaip-port 0 --patrol-port 0 >pgserve.log 2>&1 & P=$!
  for i in $(seq 60); do grep -q "vakt ready" pgserve.log && break; sleep 0.5; done
  echo -n "pg sync: "; $L dc09 --target 127.0.0.1:7400 --connections 100 --duration-secs 10 --kind alarm --mode plain 2>/dev/null | tail -1
  kill $P; wait $P
done
kill $CEIL
run $PGB/pg_ctl -D pg/s -m immediate stop >/dev/null; run $PGB/pg_ctl -D pg/p -m immediate stop >/dev/null
cd /; rm -rf "$W"
