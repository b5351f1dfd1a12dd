#!/usr/bin/env bash
# Runs the benchmarks of swift-app-profiler on this machine.
#   ./run.sh                 all scenarios
#   ./run.sh yield wall-cost one or more of: yield wall-cost attribution symbolize encode
#                            unwind-cost tables completeness
# Installs what it needs from Debian's packages (linux-perf for attribution).
set -euo pipefail
cd "$(dirname "$0")"

scenarios=("$@")
[ ${#scenarios[@]} -eq 0 ] && scenarios=(yield wall-cost attribution symbolize encode unwind-cost tables completeness)

echo "# $(date -u +%Y-%m-%dT%H:%MZ) $(nproc) cores, $(uname -r), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
build_log=$(mktemp)
if ! swift build -c release --product profiler-bench >"$build_log" 2>&1; then
  cat "$build_log" >&2
  exit 1
fi
rm -f "$build_log"
bench=.build/release/profiler-bench

for scenario in "${scenarios[@]}"; do
  case "$scenario" in
  yield)
    # got / expected, expected from the busy threads' own CPU clocks.
    for threads in 1 2 8; do
      for hz in 100 1000 5000; do
        "$bench" yield "$threads" "$hz" 3
      done
    done
    "$bench" yield 2 1000 3 posix
    ;;
  wall-cost)
    for threads in 10 100 500; do
      "$bench" wall-cost "$threads" 1000 3
    done
    ;;
  attribution)
    if ! command -v perf >/dev/null; then
      apt-get update -qq && apt-get install -y -qq linux-perf >/dev/null
    fi
    work=$(mktemp -d)
    ready="$work/ready"
    "$bench" attribution 5 "$ready" >"$work/ours.txt" &
    pid=$!
    while [ ! -e "$ready" ]; do sleep 0.05; done
    # Same process, same window: perf's own cpu-clock sampler at 997 Hz.
    # (perf ends its own `sleep` when the process exits first; that is fine.)
    { perf record -q -e cpu-clock -F 997 -g -p "$pid" -o "$work/perf.data" -- sleep 5 || true; } >/dev/null 2>&1
    wait "$pid"
    perf report -i "$work/perf.data" --stdio --no-children --sort symbol -g none -q 2>/dev/null \
      | awk '{ for (i = 1; i <= 5; i++) if ($0 ~ ("work" i "yySiF")) { gsub("%", "", $1); share[i] += $1 } }
             END { for (i = 1; i <= 5; i++) print "perf work" i, share[i] + 0 }' >"$work/perf.txt"
    awk 'FNR == NR { if ($1 == "perf") perf[$2] = $3; next }
         $1 == "ours" { ours[$2] = $4 }
         END {
           for (k in perf) total += perf[k]
           max = 0
           for (i = 1; i <= 5; i++) {
             name = "work" i; p = perf[name] * 100 / (total ? total : 1); d = ours[name] - p
             if (d < 0) d = -d; if (d > max) max = d
             printf "attribution %s ours=%.2f%% perf=%.2f%% diff=%.2fpp\n", name, ours[name], p, d
           }
           printf "attribution max_diff=%.2fpp\n", max
         }' "$work/perf.txt" "$work/ours.txt"
    rm -rf "$work"
    ;;
  symbolize)
    "$bench" symbolize 1
    ;;
  encode | unwind-cost | tables | completeness)
    "$bench" "$scenario"
    ;;
  *)
    echo "unknown scenario: $scenario" >&2
    exit 2
    ;;
  esac
done
