#!/usr/bin/env bash
# Time `make reports` from fresh clones, as an operator runs it (venv, locked install, demo data, the run).
#
#   bash bench/bench_setup.sh [--baseline REV]      (or: make bench-setup [BASELINE=REV])
#
# Clones the committed HEAD of this repository into a temporary folder and runs `make reports` there twice,
# each time in a new clone: first with an empty package cache (uv's, in the temporary folder: everything is
# downloaded), then with that cache warm (the case the target is for: <= 120 s on a 2-core machine). With
# --baseline REV it also times a clone of REV (e.g. the commit before the uv set-up) in the same run, so the
# ratio is measured under the same load. Takes minutes; not part of `make bench`. Prints the load average,
# since other work on the machine slows every phase.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
TARGET_SECONDS=120
BASELINE=""
while [ $# -gt 0 ]; do
    case $1 in
        --baseline) BASELINE=${2:?--baseline needs a git revision}; shift 2 ;;
        -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
        *) echo "unknown option: $1 (see --help)" >&2; exit 2 ;;
    esac
done
if [ -n "$BASELINE" ]; then
    git -C "$ROOT" rev-parse --verify --quiet "$BASELINE^{commit}" >/dev/null \
        || { echo "--baseline: $BASELINE is not a commit of $ROOT" >&2; exit 2; }
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/bench-setup.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
export UV_CACHE_DIR="$WORK/uv-cache"

now() { local t=${EPOCHREALTIME:-$(date +%s).000000}; echo "${t//[!0-9]/}"; }
load() { cut -d' ' -f1 /proc/loadavg 2>/dev/null || echo "?"; }

# time_reports NAME REV: fresh clone of REV, `make reports` in it; prints one summary line, keeps the log
time_reports() {
    local name=$1 rev=$2 dir="$WORK/$1" t0 t1 seconds load0
    git clone --quiet "$ROOT" "$dir"
    git -C "$dir" checkout --quiet "$rev"
    load0=$(load)
    t0=$(now)
    if ! (cd "$dir" && make reports) >"$WORK/$name.log" 2>&1; then
        echo "$name: make reports FAILED; its output:" >&2
        cat "$WORK/$name.log" >&2
        exit 1
    fi
    t1=$(now)
    seconds=$(( (t1 - t0) / 100000 ))
    seconds="$((seconds / 10)).$((seconds % 10))"
    local run setup
    run=$(sed -n 's/.* reports in \([0-9.]*\) s .*/\1/p' "$WORK/$name.log" | tail -n1)
    setup=$(sed -n 's/^\[[0-9]\/4\] .* \([0-9.]*\) s$/\1/p' "$WORK/$name.log" | awk '{ s += $1 } END { if (NR) printf "%.1f", s }')
    printf '%-28s %7s s   (set-up steps %s, report run %s s; load %s -> %s)\n' \
        "$name" "$seconds" "${setup:+$setup s}${setup:-not shown}" "${run:-?}" "$load0" "$(load)"
    RESULT[$name]=$seconds
}

declare -A RESULT
echo "make reports from a fresh clone of $(git -C "$ROOT" rev-parse --short HEAD) on $(nproc) cores" \
     "(target: <= $TARGET_SECONDS s with a warm package cache)"
time_reports "cold package cache" HEAD
time_reports "warm package cache" HEAD
if [ -n "$BASELINE" ]; then
    time_reports "baseline $(git -C "$ROOT" rev-parse --short "$BASELINE")" "$BASELINE"
    base=${RESULT["baseline $(git -C "$ROOT" rev-parse --short "$BASELINE")"]}
    awk -v w="${RESULT[warm package cache]}" -v b="$base" \
        'BEGIN { printf "warm / baseline = %.2f (baseline %.1f s, warm %.1f s)\n", w / b, b, w }'
fi
awk -v w="${RESULT[warm package cache]}" -v t="$TARGET_SECONDS" \
    'BEGIN { printf "warm package cache: %.1f s of the %d s target -> %s\n", w, t, (w <= t ? "met" : "NOT met") }'
echo "step lines of the warm run:"
grep -E '^\[' "$WORK/warm package cache.log" | sed 's/^/  /'
