#!/bin/bash
# Durable alarms and heartbeats through vakt with the journal on sled and in its own segment
# log ([journal] engine = "log"), each run beside the no-processing ceiling: 100 connections
# (plain and AES-256 alarms, heartbeats) and 1,000 connections (plain alarms), 10 s each after
# a 1 s warm-up, ROUNDS rounds (3 by default), a fresh data directory per engine and round
# with a 2,000-device fleet. Ports 7400 (vakt), 7401 and 7402 (ceilings) on 127.0.0.1.
#
#   cargo build --release -p vakt -p vakt-loadtest && loadtest/journal-compare.sh
#
# Prints one line per run (the load generator's summary) and each data directory's journal
# size. The figures are in loadtest/README.md ("The journal on sled and in its own log").
set -u
T=$(realpath "${CARGO_TARGET_DIR:-$(dirname "$0")/../target}")
V=$T/release/vakt; L=$T/release/vakt-loadtest
W=$(mktemp -d /tmp/vakt-journal-compare.XXXX); cd "$W"
ROUNDS=${ROUNDS:-3}
$L fleet --devices 2000 --out fleet.csv --test-keys >/dev/null
port_open() { for _ in $(seq 1 100); do (echo > /dev/tcp/127.0.0.1/$1) 2>/dev/null && return 0; sleep 0.1; done; return 1; }
run() { # label, then the dc09 options
    local label=$1; shift
    $L dc09 "$@" --duration-secs 10 --warmup-secs 1 2>/dev/null | tail -1 | sed "s/^/$label /"
}
$L ceiling --listen 127.0.0.1:7401 2>/dev/null & C1=$!
$L ceiling --listen 127.0.0.1:7402 --aes aes256 2>/dev/null & C2=$!
trap 'kill $C1 $C2 2>/dev/null' EXIT
port_open 7401 && port_open 7402 || { echo "the ceilings did not start"; exit 1; }
for r in $(seq 1 "$ROUNDS"); do
    for engine in sled log; do
        d=$W/$engine-$r; mkdir -p "$d"
        cat > "$d/vakt.toml" <<C
data_dir = "$d/data"
[dc09]
listen_tcp = "127.0.0.1:7400"
listen_udp = ""
[http]
listen = ""
[patrol]
listen_quic = ""
[scaip]
listen_udp = ""
listen_tcp = ""
[journal]
engine = "$engine"
C
        $V devices import --data-dir "$d/data" fleet.csv >/dev/null 2>&1
        RUST_LOG=warn $V serve --config "$d/vakt.toml" > "$d/serve.log" 2>&1 & S=$!
        port_open 7400 || { echo "vakt did not start:"; cat "$d/serve.log"; exit 1; }
        run "$engine alarms-plain-100 r$r" --target 127.0.0.1:7400 --connections 100 --kind alarm --mode plain
        run "ceiling alarms-plain-100 r$r" --target 127.0.0.1:7401 --connections 100 --kind alarm --mode plain
        run "$engine alarms-aes256-100 r$r" --target 127.0.0.1:7400 --connections 100 --kind alarm --mode aes256
        run "ceiling alarms-aes256-100 r$r" --target 127.0.0.1:7402 --connections 100 --kind alarm --mode aes256
        run "$engine heartbeats-100 r$r" --target 127.0.0.1:7400 --connections 100 --kind heartbeat --mode plain
        run "ceiling heartbeats-100 r$r" --target 127.0.0.1:7401 --connections 100 --kind heartbeat --mode plain
        run "$engine alarms-plain-1000 r$r" --target 127.0.0.1:7400 --connections 1000 --kind alarm --mode plain
        run "ceiling alarms-plain-1000 r$r" --target 127.0.0.1:7401 --connections 1000 --kind alarm --mode plain
        kill -TERM $S; wait $S 2>/dev/null
        if [ -d "$d/data/journal" ]; then
            echo "$engine r$r: the journal's log holds $(du -sb "$d/data/journal" | cut -f1) bytes"
        else
            echo "$engine r$r: the data directory holds $(du -sb "$d/data" | cut -f1) bytes"
        fi
        rm -rf "$d"
    done
done
rm -rf "$W"
