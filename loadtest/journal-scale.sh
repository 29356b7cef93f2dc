#!/bin/bash
# vakt with SIGNALS (10 million by default) journaled alarms, for each journal ENGINE ("sled"
# and "log" by default), on a fresh data directory with a 10,000-device fleet:
#   1. fill: plain alarms over 100 connections, 60 s at a time, until SIGNALS are ACKed;
#   2. the open-loop fleet beside the ceiling: 10,000 connections offering 30,000 frames/s
#      (99 % heartbeats), 20 s after a 2 s warm-up; vakt's resident memory at its end;
#   3. stop; the journal's records counted exactly (`vakt journal export` of the tail) and
#      the disk per record;
#   4. start again: the time from exec to `/ready` answering 200, and the memory then;
#   5. the open-loop fleet again on the restarted vakt, and the memory at its end.
# Ports 7400 (vakt), 7480 (its HTTP) and 7401 (the ceiling) on 127.0.0.1.
#
#   cargo build --release -p vakt -p vakt-loadtest && loadtest/journal-scale.sh
#
# The figures are in loadtest/README.md ("Ten million Signals").
set -u
T=$(realpath "${CARGO_TARGET_DIR:-$(dirname "$0")/../target}")
V=$T/release/vakt; L=$T/release/vakt-loadtest
W=$(mktemp -d /tmp/vakt-journal-scale.XXXX); cd "$W"
SIGNALS=${SIGNALS:-10000000}
ENGINES=${ENGINES:-sled log}
$L fleet --devices 10000 --aes-share 0 --out fleet.csv --test-keys >/dev/null
port_open() { for _ in $(seq 1 600); do (echo > /dev/tcp/127.0.0.1/$1) 2>/dev/null && return 0; sleep 0.1; done; return 1; }
rss_mb() { awk '/^VmRSS/ { printf "%.0f", $2 / 1024 }' "/proc/$1/status"; }
json_field() { python3 -c "import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])" "$1" "$2"; }
open_loop() { # label, target
    $L dc09 --target "$2" --connections 10000 --kind steady --mode plain --rate 30000 \
        --duration-secs 20 --warmup-secs 2 2>/dev/null | tail -1 | sed "s/^/$1 /"
}
$L ceiling --listen 127.0.0.1:7401 2>/dev/null & C=$!
trap 'kill $C 2>/dev/null' EXIT
port_open 7401 || { echo "the ceiling did not start"; exit 1; }
for engine in $ENGINES; do
    d=$W/$engine; mkdir -p "$d"
    cat > "$d/vakt.toml" <<C
data_dir = "$d/data"
[dc09]
listen_tcp = "127.0.0.1:7400"
listen_udp = ""
max_connections_per_source = 20000
[http]
listen = "127.0.0.1:7480"
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
    acked=0; chunk=0
    while [ "$acked" -lt "$SIGNALS" ]; do
        chunk=$((chunk + 1))
        $L dc09 --target 127.0.0.1:7400 --connections 100 --kind alarm --mode plain \
            --duration-secs 60 --warmup-secs 1 --json "$d/fill-$chunk.json" >/dev/null 2>&1
        acked=$((acked + $(json_field "$d/fill-$chunk.json" frames)))
        echo "$engine fill: $acked alarms ACKed, vakt holds $(rss_mb $S) MB"
    done
    open_loop "$engine open-loop-10000" 127.0.0.1:7400
    echo "$engine after the fill and the open-loop fleet: vakt holds $(rss_mb $S) MB"
    open_loop "ceiling open-loop-10000" 127.0.0.1:7401
    kill -TERM $S; wait $S 2>/dev/null
    # Every alarm ACKed in a measured window is journaled; so are a few more (warm-ups).
    last=$($V journal export --data-dir "$d/data" --after $((acked - 1)) | tail -1 |
        python3 -c "import json,sys; print(json.loads(sys.stdin.read())['id'])")
    if [ -d "$d/data/journal" ]; then
        bytes=$(du -sb "$d/data/journal" | cut -f1); what="the journal's log"
    else
        bytes=$(du -sb "$d/data" | cut -f1); what="the whole data directory"
    fi
    echo "$engine: $last journaled Signals; $what holds $bytes bytes, $((bytes / last)) bytes per Signal"
    t0=$(date +%s%N)
    RUST_LOG=warn $V serve --config "$d/vakt.toml" >> "$d/serve.log" 2>&1 & S=$!
    until curl -sf -o /dev/null http://127.0.0.1:7480/ready; do sleep 0.05; done
    t1=$(date +%s%N)
    echo "$engine restart: /ready after $(( (t1 - t0) / 1000000 )) ms, vakt holds $(rss_mb $S) MB"
    port_open 7400
    open_loop "$engine open-loop-10000-restarted" 127.0.0.1:7400
    echo "$engine after the restart and the open-loop fleet: vakt holds $(rss_mb $S) MB"
    kill -TERM $S; wait $S 2>/dev/null
    rm -rf "$d/data"
done
