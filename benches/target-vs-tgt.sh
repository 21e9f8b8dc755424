#!/usr/bin/env bash
# rtgtd vs Debian's tgtd, in one run, on the same RAM-backed file and with the same clients:
#   4 KiB QD32 random read  — libiscsi's iscsi-perf (it cannot write), and rtgt-initiator bench
#   4 KiB QD32 random write — rtgt-initiator bench (when bins/rtgt-initiator builds)
#   both again with QD32 spread over two sessions of QD16 (rows "rtgt-initiator 2x16")
# For each target: IOPS, and the target's CPU time per IO (utime + stime of the target process
# from /proc/PID/stat over the measured interval, divided by the IOs completed).
# Prints a markdown table (for docs/performance.md) and the ratios rtgtd/tgt.
#
# Environment: BENCH_FILE (default /dev/shm/rtgt-vs-tgt.img), BENCH_SIZE (default 1G),
# BENCH_RUNTIME seconds per case (default 10), RTGTD_ARGS (extra rtgtd flags, e.g.
# "--io-engine epoll"), BENCH_CLIENT_CPUS (a taskset CPU list the clients run on, the same for
# both targets; default: wherever the scheduler puts them — on a 2-vCPU VM single-session IOPS
# follow that placement), BENCH_CLIENT_POLL (rtgt-initiator's --poll, the same for both
# targets; default 100us: the client busy-polls its sockets that long before sleeping, which
# saves the cross-CPU wake-ups that otherwise bound a single session on a small VM; "0" turns
# it off), CARGO_TARGET_DIR (default target). Needs root (tgtd), tgt, libiscsi-bin.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
file="${BENCH_FILE:-/dev/shm/rtgt-vs-tgt.img}"
size="${BENCH_SIZE:-1G}"
runtime="${BENCH_RUNTIME:-10}"
target_dir="${CARGO_TARGET_DIR:-$here/target}"
client_poll="${BENCH_CLIENT_POLL:-100us}"
client_pin=()
if [ -n "${BENCH_CLIENT_CPUS:-}" ]; then
    client_pin=(taskset -c "$BENCH_CLIENT_CPUS")
fi
hz="$(getconf CLK_TCK)"

for t in tgtd tgtadm iscsi-perf; do
    command -v "$t" >/dev/null || { echo "$t not installed (apt-get install tgt libiscsi-bin)" >&2; exit 1; }
done

(cd "$here" && CARGO_TARGET_DIR="$target_dir" cargo build --quiet --release -p rtgtd)
rtgtd="$target_dir/release/rtgtd"
initiator=""
if (cd "$here" && CARGO_TARGET_DIR="$target_dir" cargo build --quiet --release -p rtgt-initiator 2>/dev/null) \
    && "$target_dir/release/rtgt-initiator" bench --help >/dev/null 2>&1; then
    initiator="$target_dir/release/rtgt-initiator"
else
    echo "rtgt-initiator bench unavailable: random-write and rtgt-initiator rows skipped" >&2
fi

# A fully written RAM-backed file shared by both targets (never both at once).
if [ ! -f "$file" ] || [ "$(stat -c %s "$file")" -ne "$(numfmt --from=iec "$size")" ]; then
    dd if=/dev/zero of="$file" bs=1M count="$(( $(numfmt --from=iec "$size") / 1048576 ))" status=none
fi

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
wait_port() {
    for _ in $(seq 200); do
        (echo >"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.05
    done
    echo "nothing listening on port $1" >&2
    return 1
}

# Stops a daemon: SIGTERM, then SIGKILL after 30 s.
stop_pid() {
    kill -TERM "$1" 2>/dev/null || return 0
    for _ in $(seq 300); do
        kill -0 "$1" 2>/dev/null || { wait "$1" 2>/dev/null || true; return 0; }
        sleep 0.1
    done
    echo "pid $1 ignored SIGTERM; killing it" >&2
    kill -KILL "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}

pids=()
cleanup() {
    for p in "${pids[@]}"; do stop_pid "$p"; done
}
trap cleanup EXIT

# run_case NAME PID CMD... : runs the client, prints "iops cpu_us_per_io"
run_case() {
    local pid="$1"; shift
    local c0 c1 out iops ios
    c0="$(cpu_ticks "$pid")"
    out="$(timeout -s KILL $((runtime + 20)) "${client_pin[@]}" "$@" 2>&1 || true)"
    c1="$(cpu_ticks "$pid")"
    iops="$(printf '%s\n' "$out" | tr '\r' '\n' | sed -n 's/.*iops average \([0-9]*\).*/\1/p; s/^ *IOPS *\([0-9]*\).*/\1/p' | tail -1)"
    [ -n "$iops" ] || { echo "no IOPS from: $* (client failed or hung; output follows)" >&2; printf '%s\n' "$out" | tail -5 >&2; iops=0; }
    ios=$(( iops * runtime ))
    if [ "$ios" -gt 0 ]; then
        python3 -c "print($iops, round(($c1-$c0)/$hz*1e6/$ios, 2))"
    else
        echo "0 -"
    fi
}

declare -A res
measure() { # label pid url
    local label="$1" pid="$2" url="$3"
    res["$label,read,iscsi-perf"]="$(run_case "$pid" iscsi-perf -m 32 -b 8 -t "$runtime" -r "$url")"
    if [ -n "$initiator" ]; then
        local b=(--bs 4k --qd 32 --time "${runtime}s" --poll "$client_poll")
        res["$label,read,rtgt-initiator"]="$(run_case "$pid" "$initiator" bench "$url" randread "${b[@]}")"
        res["$label,write,rtgt-initiator"]="$(run_case "$pid" "$initiator" bench "$url" randwrite "${b[@]}")"
        # The same total queue depth over two sessions (how a multipathed or multi-session
        # initiator loads a target): lets a multi-reactor target use both cores.
        local m=(--bs 4k --qd 16 --sessions 2 --time "${runtime}s" --poll "$client_poll")
        res["$label,read,rtgt-initiator 2x16"]="$(run_case "$pid" "$initiator" bench "$url" randread "${m[@]}")"
        res["$label,write,rtgt-initiator 2x16"]="$(run_case "$pid" "$initiator" bench "$url" randwrite "${m[@]}")"
    fi
}

# --- rtgtd -------------------------------------------------------------------------------
p1="$(free_port)"
# shellcheck disable=SC2086
RUST_LOG=warn "$rtgtd" --listen "127.0.0.1:$p1" --target iqn.2026-11.io.rtgt:bench \
    --lun "file:$file" ${RTGTD_ARGS:-} &
rtgt_pid=$!
pids+=("$rtgt_pid")
wait_port "$p1"
measure rtgtd "$rtgt_pid" "iscsi://127.0.0.1:$p1/iqn.2026-11.io.rtgt:bench/0"
stop_pid "$rtgt_pid"
pids=()

# --- tgtd --------------------------------------------------------------------------------
p2="$(free_port)"
ctl=$(( (p2 % 1000) + 1000 ))
tgtd -f -C "$ctl" --iscsi "portal=127.0.0.1:$p2" >/dev/null 2>&1 &
tgt_pid=$!
pids+=("$tgt_pid")
wait_port "$p2"
tgtadm -C "$ctl" --lld iscsi --op new --mode target --tid 1 -T iqn.2001-04.com.example:tgt-bench
tgtadm -C "$ctl" --lld iscsi --op new --mode logicalunit --tid 1 --lun 1 -b "$file"
tgtadm -C "$ctl" --lld iscsi --op bind --mode target --tid 1 -I ALL
measure tgt "$tgt_pid" "iscsi://127.0.0.1:$p2/iqn.2001-04.com.example:tgt-bench/1"
stop_pid "$tgt_pid"
pids=()

# --- table -------------------------------------------------------------------------------
echo
echo "4 KiB QD32, ${runtime} s per case, backing file $file ($size); $(nproc) CPUs, $(uname -r); rtgt-initiator --poll $client_poll${BENCH_CLIENT_CPUS:+, clients on CPUs $BENCH_CLIENT_CPUS}"
echo
echo "| workload | client | rtgtd IOPS | tgt IOPS | IOPS ratio | rtgtd CPU µs/IO | tgt CPU µs/IO | CPU ratio |"
echo "|---|---|---:|---:|---:|---:|---:|---:|"
for key in "read,iscsi-perf" "read,rtgt-initiator" "write,rtgt-initiator" \
    "read,rtgt-initiator 2x16" "write,rtgt-initiator 2x16"; do
    r="${res[rtgtd,$key]:-}"; t="${res[tgt,$key]:-}"
    [ -n "$r" ] && [ -n "$t" ] || continue
    read -r ri rc <<<"$r"; read -r ti tc <<<"$t"
    python3 - "$key" "$ri" "$rc" "$ti" "$tc" <<'PY'
import sys
key, ri, rc, ti, tc = sys.argv[1:]
w, c = key.split(",")
def f(x):
    try: return float(x)
    except ValueError: return None
ri, rc, ti, tc = f(ri), f(rc), f(ti), f(tc)
ir = f"{ri/ti:.2f}x" if ri and ti else "-"
cr = f"1/{tc/rc:.1f}" if rc and tc else "-"
show = lambda v, fmt: fmt.format(v) if v else "-"
print(f"| 4k rand{w} | {c} | {show(ri, '{:.0f}')} | {show(ti, '{:.0f}')} | {ir} | {show(rc, '{}')} | {show(tc, '{}')} | {cr} |")
PY
done
