#!/usr/bin/env bash
# rtgt-initiator bench vs libiscsi's iscsi-perf, same tgtd, same LUN, one run.
#
# Starts Debian's tgtd on a free loopback port with a RAM-backed LUN (/dev/shm), then runs
# 4 KiB QD32 random reads with each client, alternating, ROUNDS times, and prints for each
# run: IOPS, the client's CPU time per IO, and tgtd's CPU time per IO (user+sys from
# /proc/PID/stat over the run). iscsi-perf ignores SIGTERM, so it is bounded with SIGKILL.
#
# Usage: benches/initiator-vs-iscsi-perf.sh [SECONDS=10] [ROUNDS=2]
#        (RTGT_INITIATOR=/path/to/rtgt-initiator skips the build)
# Needs: tgtd/tgtadm (tgt), iscsi-perf (libiscsi-bin), python3, cargo.
set -euo pipefail

SECS=${1:-10}
ROUNDS=${2:-2}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
IQN=iqn.2026-11.io.rtgt.bench:initiator-vs-iscsi-perf
HZ=$(getconf CLK_TCK)

for tool in tgtd tgtadm iscsi-perf python3 cargo; do
    command -v "$tool" >/dev/null || { echo "missing $tool" >&2; exit 2; }
done

# RTGT_INITIATOR names a prebuilt binary; otherwise build the release binary.
INITIATOR=${RTGT_INITIATOR:-}
if [ -z "$INITIATOR" ]; then
    echo "building rtgt-initiator (release)..." >&2
    (cd "$ROOT" && cargo build --release -q -p rtgt-initiator)
    INITIATOR=$TARGET_DIR/release/rtgt-initiator
fi

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
CTRL=$((PORT % 30000 + 1000))
LUN_FILE=/dev/shm/rtgt-bench-$$.img
truncate -s 1G "$LUN_FILE"

tgtd -f --iscsi portal=127.0.0.1:$PORT -C $CTRL >/dev/null 2>&1 &
TGTD=$!
cleanup() {
    # tgtd ignores SIGTERM while targets exist: ask it to shut down, then make sure.
    tgtadm -C $CTRL --op delete --mode system >/dev/null 2>&1 || true
    sleep 0.5
    kill -KILL "$TGTD" 2>/dev/null || true
    wait "$TGTD" 2>/dev/null || true
    rm -f "$LUN_FILE"
}
trap cleanup EXIT
for _ in $(seq 100); do
    tgtadm -C $CTRL --lld iscsi --op show --mode target >/dev/null 2>&1 && break
    sleep 0.1
done
tgtadm -C $CTRL --lld iscsi --op new --mode target --tid 1 -T $IQN
tgtadm -C $CTRL --lld iscsi --op new --mode logicalunit --tid 1 --lun 1 -b "$LUN_FILE"
tgtadm -C $CTRL --lld iscsi --op bind --mode target --tid 1 -I ALL
URL=iscsi://127.0.0.1:$PORT/$IQN/1

# user+sys ticks of a process
ticks() { awk '{ sub(/.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"; }

run_iscsi_perf() {
    local out t0 t1 cpu
    out=$(mktemp)
    t0=$(ticks "$TGTD")
    iscsi-perf -m 32 -b 8 -r "$URL" >"$out" 2>&1 &
    local pid=$!
    sleep "$SECS"
    cpu=$(ticks "$pid" 2>/dev/null || echo 0)
    t1=$(ticks "$TGTD")
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    python3 - "$out" "$cpu" "$((t1 - t0))" "$HZ" <<'EOF'
import re, sys
text = open(sys.argv[1], errors="replace").read().replace("\r", "\n")
cpu, tgt, hz = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
avg = [int(x) for x in re.findall(r"iops average (\d+)", text)]
secs = [int(h) * 3600 + int(m) * 60 + int(s) for h, m, s in re.findall(r"(\d\d):(\d\d):(\d\d) - lba", text)]
if not avg or not secs:
    print("iscsi-perf     (no result)")
    sys.exit(0)
ios = avg[-1] * secs[-1]
print(f"iscsi-perf     {avg[-1]:>9} IOPS   client {cpu / hz * 1e6 / ios:6.2f} us/IO   tgtd {tgt / hz * 1e6 / ios:6.2f} us/IO")
EOF
    rm -f "$out"
}

run_rtgt() {
    local out t0 t1
    out=$(mktemp)
    t0=$(ticks "$TGTD")
    "$INITIATOR" bench "$URL" randread --bs 4k --qd 32 --time "${SECS}s" --json >"$out"
    t1=$(ticks "$TGTD")
    python3 - "$out" "$((t1 - t0))" "$HZ" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
tgt, hz = int(sys.argv[2]), int(sys.argv[3])
print(f"rtgt-initiator {r['iops']:>9.0f} IOPS   client {r['cpu_us_per_io']:6.2f} us/IO   tgtd {tgt / hz * 1e6 / max(r['ios'], 1):6.2f} us/IO"
      f"   (p50 {r['latency_us']['p50']:.0f} us, p99 {r['latency_us']['p99']:.0f} us)")
EOF
    rm -f "$out"
}

echo "4 KiB random read, QD 32, ${SECS}s per run, tgtd on 127.0.0.1:$PORT ($(nproc) CPUs)"
for round in $(seq "$ROUNDS"); do
    echo "round $round"
    run_iscsi_perf
    run_rtgt
done
