#!/usr/bin/env bash
# rtgt-uring standalone vs fio --ioengine=io_uring vs the thread-pool fallback, in one run,
# on the same file, same block size and queue depth:
#   4 KiB randread QD32 buffered, 4 KiB randread QD32 O_DIRECT (where the fs allows it),
#   4 KiB randwrite QD32 buffered, 4 KiB randwrite QD32 O_DIRECT, 128 KiB seqread QD32 buffered.
# Prints a markdown table with IOPS and the ratios rtgt/fio and rtgt/fallback. The store punts
# buffered reads of 64 KiB or more to io-wq workers by default (PuntPolicy); the "no-punt"
# column runs it with fio's default behaviour (everything inline first) for comparison. For
# the 4 KiB buffered cases both columns run the same configuration, so their difference shows
# the run-to-run noise. Like fio's default (iodepth_batch_submit=1), the store submits each
# O_DIRECT operation as it is pushed (SubmitPolicy::Auto).
#
# Each engine runs BENCH_REPEAT times per case, interleaved (fio, rtgt, rtgt no-punt, pool,
# fio, ...), and the table shows medians, so a noisy neighbour hits all engines alike.
#
# Environment: BENCH_FILE (default /var/tmp/rtgt-uring-bench.img), BENCH_SIZE (default 1G),
# BENCH_RUNTIME seconds per run (default 5), BENCH_REPEAT (default 3),
# CARGO_TARGET_DIR (default target).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
file="${BENCH_FILE:-/var/tmp/rtgt-uring-bench.img}"
size="${BENCH_SIZE:-1G}"
runtime="${BENCH_RUNTIME:-5}"
repeat="${BENCH_REPEAT:-3}"
target="${CARGO_TARGET_DIR:-$here/target}"

command -v fio >/dev/null || { echo "fio not installed (apt-get install fio)" >&2; exit 1; }
command -v python3 >/dev/null || { echo "python3 needed to read fio's JSON" >&2; exit 1; }

(cd "$here" && CARGO_TARGET_DIR="$target" cargo build --quiet --release -p rtgt-uring --example uring-bench)
bench="$target/release/examples/uring-bench"

# Lay the file out fully (no holes) so every engine reads real data.
if [ ! -f "$file" ] || [ "$(stat -c %s "$file")" -lt "$(numfmt --from=iec "$size")" ]; then
    echo "creating $file ($size)" >&2
    fio --name=prep --filename="$file" --size="$size" --rw=write --bs=1M --ioengine=io_uring \
        --iodepth=8 --direct=1 --end_fsync=1 --output=/dev/null
fi

direct_ok=1
if ! dd if="$file" of=/dev/null bs=4096 count=1 iflag=direct status=none 2>/dev/null; then
    direct_ok=0
    echo "O_DIRECT refused on $(dirname "$file"): direct cases skipped" >&2
fi

fio_iops() { # rw bs direct
    fio --name=cmp --filename="$file" --size="$size" --rw="$1" --bs="$2" --direct="$3" \
        --ioengine=io_uring --iodepth=32 --runtime="$runtime" --time_based --norandommap \
        --randrepeat=0 --invalidate=0 --numjobs=1 --thread --output-format=json 2>/dev/null |
        python3 -c 'import json,sys; j=json.load(sys.stdin)["jobs"][0]; print(round(j["read"]["iops"]+j["write"]["iops"]))'
}

ours_iops() { # engine rw bs direct [extra flags]
    local d=()
    [ "$4" = 1 ] && d=(--direct)
    "$bench" --file "$file" --engine "$1" --rw "$2" --bs "$3" --qd 32 --runtime "$runtime" "${d[@]}" "${@:5}" |
        sed -n 's/.* iops=\([0-9]*\).*/\1/p'
}

# Buffered cases read the page cache: warm it once (fio runs with --invalidate=0 likewise).
cat "$file" >/dev/null

median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

runs=()
cases=("randread 4k 0" "randread 4k 1" "randwrite 4k 0" "randwrite 4k 1" "read 128k 0")
echo
echo "file: $file ($size), QD 32, median of $repeat interleaved ${runtime}s runs, kernel $(uname -r), $(fio --version)"
echo
echo "| workload | fio io_uring IOPS | rtgt-uring IOPS | rtgt-uring no-punt IOPS | thread-pool IOPS | rtgt/fio | no-punt/fio | rtgt/pool |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|"
for c in "${cases[@]}"; do
    set -- $c
    rw=$1 bs=$2 direct=$3
    if [ "$direct" = 1 ] && [ "$direct_ok" = 0 ]; then continue; fi
    mode=buffered
    [ "$direct" = 1 ] && mode=O_DIRECT
    # Every buffered-write run starts without dirty pages left by the run before it.
    settle() { if [ "$direct" = 0 ] && [ "${rw%write}" != "$rw" ]; then sync; fi; }
    fs=() us=() ns=() ps=()
    for _ in $(seq "$repeat"); do
        settle
        fs+=("$(fio_iops "$rw" "$bs" "$direct")")
        settle
        us+=("$(ours_iops uring "$rw" "$bs" "$direct")")
        # IOSQE_ASYNC punting never applies to O_DIRECT: there the no-punt run is the same.
        if [ "$direct" = 0 ]; then
            settle
            ns+=("$(ours_iops uring "$rw" "$bs" "$direct" --no-punt)")
        else
            ns+=("${us[-1]}")
        fi
        settle
        ps+=("$(ours_iops threadpool "$rw" "$bs" "$direct")")
    done
    f=$(median "${fs[@]}") u=$(median "${us[@]}") n=$(median "${ns[@]}") p=$(median "${ps[@]}")
    python3 - "$rw $bs $mode" "$f" "$u" "$n" "$p" <<'EOF'
import sys
name = sys.argv[1]
f, u, n, p = (int(x) for x in sys.argv[2:])
print(f"| {name} | {f} | {u} | {n} | {p} | {u / f:.2f} | {n / f:.2f} | {u / p:.2f} |")
EOF
    runs+=("$rw $bs $mode: fio ${fs[*]} | rtgt ${us[*]} | no-punt ${ns[*]} | pool ${ps[*]}")
done
# The single runs behind the medians, to judge the noise.
echo
for r in "${runs[@]}"; do echo "- $r"; done
