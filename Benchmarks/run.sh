#!/usr/bin/env bash
# Runs the benchmarks of swift-app-profiler on this machine.
#   ./run.sh                 all scenarios
#   ./run.sh yield wall-cost one or more of: yield wall-cost attribution symbolize
#                            symbolize-10k cold-first-profile busy-first-profile encode unwind-cost tables
#                            completeness soak idle retained always-on-memory overhead-http
#                            alloc-overhead middleware-latency async-stacks labels
#                            continuous heap-http tasks
# Installs what it needs from Debian's packages (linux-perf for attribution).
set -euo pipefail
cd "$(dirname "$0")"

scenarios=("$@")
[ ${#scenarios[@]} -eq 0 ] && scenarios=(yield wall-cost attribution symbolize symbolize-10k cold-first-profile busy-first-profile encode unwind-cost tables completeness soak idle retained always-on-memory overhead-http alloc-overhead lock-pair middleware-latency async-stacks labels continuous heap-http tasks)

echo "# $(date -u +%Y-%m-%dT%H:%MZ) $(nproc) cores, $(uname -r), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
build_log=$(mktemp)
if ! swift build -c release >"$build_log" 2>&1; then
  cat "$build_log" >&2
  exit 1
fi
rm -f "$build_log"
bench=.build/release/profiler-bench

# "requests/s p99-ms" from wrk --latency output.
wrk_summary() {
  local rps p99
  rps=$(echo "$1" | awk '/Requests\/sec/ { print $2 }')
  p99=$(echo "$1" | awk '$1 == "99%" { v = $2; if (v ~ /us$/) { sub(/us$/, "", v); v = v / 1000 } else if (v ~ /ms$/) { sub(/ms$/, "", v) } else if (v ~ /s$/) { sub(/s$/, "", v); v = v * 1000 } print v }')
  echo "$rps $p99"
}

# Installs wrk if missing, builds the Hummingbird example app (release) and
# prints its path (its only output on stdout: callers capture it).
build_hummingbird_example() {
  command -v wrk >/dev/null || { apt-get update -qq >&2 && apt-get install -y -qq wrk >&2; }
  local log
  log=$(mktemp)
  if ! swift build -c release --package-path ../Examples/HummingbirdExample \
    --scratch-path ../.build-integration-hummingbird-release --product HummingbirdExample >"$log" 2>&1; then
    cat "$log" >&2
    rm -f "$log"
    exit 1
  fi
  rm -f "$log"
  echo ../.build-integration-hummingbird-release/release/HummingbirdExample
}

# The median of a space-separated list, for the interleaved A/B scenarios.
AWK_MEDIAN='
  function median(list,   n, a, i, j, t) {
    n = split(list, a, " ")
    for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] + 0 < a[i] + 0) { t = a[i]; a[i] = a[j]; a[j] = t }
    return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
  }'

# Runs the app command (leading VAR=value words are its environment) on port
# 18089, waits until it answers, puts wrk on GET / for 10 s, stops it, and
# prints "requests/s p99-ms".
wrk_once() {
  env "$@" >/dev/null 2>&1 &
  local app=$! out
  for _ in $(seq 100); do curl -s -o /dev/null http://127.0.0.1:18089/ && break; sleep 0.1; done
  out=$(wrk -t2 -c4 -d10s --latency http://127.0.0.1:18089/ 2>&1)
  kill -TERM "$app"; wait "$app" 2>/dev/null || true
  wrk_summary "$out"
}

# ab_summary SCENARIO "BASE OTHER…" FILE: per variant of FILE's
# "variant requests/s p99-ms" lines, the medians and their ratios to BASE's.
ab_summary() {
  awk -v name="$1" -v variants="$2" "$AWK_MEDIAN"'
    { rps[$1] = rps[$1] " " $2; p99[$1] = p99[$1] " " $3 }
    END {
      n = split(variants, order, " ")
      b = median(rps[order[1]]); bp = median(p99[order[1]])
      for (k = 1; k <= n; k++) {
        v = order[k]; m = median(rps[v]); p = median(p99[v])
        printf "%s variant=%s rps_median=%.0f ratio=%.3f p99_median=%.3fms p99_ratio=%.2f runs=%s\n", name, v, m, m / b, p, p / bp, rps[v]
      }
    }' "$3"
}

# first_profile_rounds NAME MODE "LABELS" IDLE-SERVER-ARGS…: 5 rounds of a
# fresh idle-server with those arguments; per round one 1 s profile of MODE
# over the socket per label. Per profile: end of duration → last byte (the
# profile's own start + duration vs when curl returns) and the CPU time
# the process spent from request to answer (utime + stime, 10 ms ticks).
first_profile_rounds() {
  local name=$1 mode=$2 labels=$3
  shift 3
  for round in 1 2 3 4 5; do
    local dir fifo pid socket t0 t1 done_ns begin length
    dir=$(mktemp -d)
    fifo=$(mktemp -u); mkfifo "$fifo"
    .build/release/idle-server "$@" <"$fifo" >"$dir/out" 2>/dev/null &
    pid=$!
    exec 6>"$fifo"; rm -f "$fifo"
    while ! grep -q READY "$dir/out" 2>/dev/null; do sleep 0.1; done
    socket=$(awk '/READY/ { print $3 }' "$dir/out")
    sleep 1
    for which in $labels; do
      t0=$(awk '{ print $14 + $15 }' "/proc/$pid/stat")
      curl -s --unix-socket "$socket" "http://localhost/profile?mode=$mode&duration=1" -o "$dir/profile.json"
      done_ns=$(date +%s%N)
      t1=$(awk '{ print $14 + $15 }' "/proc/$pid/stat")
      begin=$(grep -o '"startTimeNanoseconds":[0-9]*' "$dir/profile.json" | head -1 | cut -d: -f2)
      length=$(grep -o '"durationNanoseconds":[0-9]*' "$dir/profile.json" | head -1 | cut -d: -f2)
      echo "$name round=$round profile=$which end_of_duration_to_last_byte=$(( (done_ns - begin - length) / 1000000 ))ms cpu=$(( (t1 - t0) * 10 ))ms threads=$(ls "/proc/$pid/task" | wc -l) $("$bench" count-frames "$dir/profile.json")"
    done
    exec 6>&-
    wait "$pid" || true
    rm -rf "$dir"
  done
}

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
  symbolize-10k)
    # End of `duration` → last response byte for a profile with 10k unique
    # frames: a generated library of 100 call chains × 100 distinct Swift
    # functions (-Onone -g, so none is merged or inlined), one thread parked
    # at the bottom of each chain, a 1 s wall profile over HTTP (speedscope).
    # "End of duration" is the profile's own start + duration (CLOCK_REALTIME),
    # the last byte is when curl returns.
    work=$(mktemp -d)
    awk -v chains=100 -v depth=100 'BEGIN {
      print "public typealias FramesBlock = @convention(c) () -> Void"
      print "@_cdecl(\"frames_run\") public func framesRun(_ chain: Int, _ block: FramesBlock) -> Int {"
      print "  switch chain {"
      for (c = 0; c < chains; c++) printf "  case %d: return chain%d_f0(block)\n", c, c
      print "  default: return -1\n  }\n}"
      for (c = 0; c < chains; c++) for (f = 0; f < depth; f++) {
        if (f < depth - 1) printf "public func chain%d_f%d(_ block: FramesBlock) -> Int { chain%d_f%d(block) &+ %d }\n", c, f, c, f + 1, c * depth + f
        else printf "public func chain%d_f%d(_ block: FramesBlock) -> Int { block(); return %d }\n", c, f, c * depth + f
      }
    }' >"$work/Frames.swift"
    start=$(date +%s%N)
    swiftc -Onone -g -parse-as-library -emit-library -module-name Frames "$work/Frames.swift" -o "$work/libframes.so"
    echo "symbolize-10k generated=10000 functions compile=$(( ($(date +%s%N) - start) / 1000000 ))ms size=$(du -k "$work/libframes.so" | cut -f1)kB"
    fifo="$work/fifo"
    mkfifo "$fifo"
    "$bench" frames-server "$work/libframes.so" 100 <"$fifo" >"$work/out" &
    server=$!
    exec 9>"$fifo"
    while ! grep -q READY "$work/out" 2>/dev/null; do sleep 0.1; done
    read -r _ _ socket <"$work/out"
    # cold: the first profile (file:line of new addresses limited by the
    # 3 s symbolication budget, the rest completed in the background);
    # next: right after; complete: once the background work is done.
    for run in cold next wait complete; do
      if [ "$run" = wait ]; then sleep 25; continue; fi
      curl -s --unix-socket "$socket" "http://localhost/profile?mode=wall&interval=10000&duration=1" -o "$work/profile.json"
      done_ns=$(date +%s%N)
      begin=$(grep -o '"startTimeNanoseconds":[0-9]*' "$work/profile.json" | head -1 | cut -d: -f2)
      length=$(grep -o '"durationNanoseconds":[0-9]*' "$work/profile.json" | head -1 | cut -d: -f2)
      pending=$({ grep -o '"sourceLocationsPending":[0-9]*' "$work/profile.json" || true; } | head -1 | cut -d: -f2)
      echo "symbolize-10k run=$run end_of_duration_to_last_byte=$(( (done_ns - begin - length) / 1000000 ))ms $("$bench" count-frames "$work/profile.json") source_pending=${pending:-0} bytes=$(stat -c %s "$work/profile.json")"
    done
    exec 9>&-
    wait "$server" || true
    rm -rf "$work"
    ;;
  encode | unwind-cost | tables | completeness)
    "$bench" "$scenario"
    ;;
  soak)
    "$bench" soak 1000
    ;;
  idle)
    # RSS (and where it is: the smaps of each mapping), threads and CPU time
    # over 60 s of three builds of one program (Sources/idle-*): without the
    # library; with it linked and the server not started; with the server
    # started and never asked. Run side by side.
    # Each reads a fifo until it closes; the writers are opened once all
    # three run, so no process inherits another's writer.
    declare -A pids fifos
    for kind in baseline linked server; do
      fifos[$kind]=$(mktemp -u)
      mkfifo "${fifos[$kind]}"
      case "$kind" in
        baseline) .build/release/idle-baseline <"${fifos[$kind]}" >/dev/null 2>&1 & ;;
        linked) .build/release/idle-server linked <"${fifos[$kind]}" >/dev/null 2>&1 & ;;
        server) .build/release/idle-server <"${fifos[$kind]}" >/dev/null 2>&1 & ;;
      esac
      pids[$kind]=$!
    done
    exec {fd_baseline}>"${fifos[baseline]}" {fd_linked}>"${fifos[linked]}" {fd_server}>"${fifos[server]}"
    rm -f "${fifos[@]}"
    sleep 5
    ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
    # RSS is the process's own (anonymous) pages plus the file pages it
    # maps: clean code and data of the executable and its libraries, shared
    # with the page cache and every other process mapping them, and
    # reclaimable (on a fault the kernel also maps the cached pages around
    # the faulting one: fault_around_bytes, 64 KiB by default).
    rss_split() {
      awk '/^RssAnon:/ { a = $2 } /^RssFile:/ { f = $2 } END { printf "anon=%dkB file=%dkB", a, f }' "/proc/$1/status"
    }
    declare -A before
    for kind in baseline linked server; do before[$kind]=$(ticks "${pids[$kind]}"); done
    sleep 60
    for kind in baseline linked server; do
      pid=${pids[$kind]}
      rss=$(awk '/VmRSS/ { print $2 }' "/proc/$pid/status")
      echo "idle kind=$kind cpu_ticks_60s=$(( $(ticks "$pid") - ${before[$kind]} )) (1 tick = 10 ms) rss=${rss}kB $(rss_split "$pid") threads=$(ls "/proc/$pid/task" | wc -l) names=$(cat /proc/"$pid"/task/*/comm | tr '\n' ',')"
      awk -v kind="$kind" '/^[0-9a-f]+-[0-9a-f]+ / { name = $6; if (name == "") name = "[anon]"; sub(/.*\//, "", name) }
        /^Rss:/ { rss[name] += $2 }
        END { for (n in rss) if (rss[n] >= 256) printf "idle kind=%s mapping=%s rss=%dkB\n", kind, n, rss[n] }' "/proc/$pid/smaps" | sort -t= -k4 -rn
    done
    exec {fd_baseline}>&- {fd_linked}>&- {fd_server}>&-
    for kind in baseline linked server; do wait "${pids[$kind]}" || true; done
    # In an app that has NIO already: the Hummingbird example (release) at
    # rest with the profile server disabled (APP_PROFILER_ENABLED=0, the
    # library linked) and enabled, side by side, after 60 s.
    example=$(build_hummingbird_example)
    dir=$(mktemp -d)
    APP_PROFILER_ENABLED=0 APP_PROFILER_DIR="$dir" "$example" 18089 >/dev/null 2>&1 &
    off=$!
    APP_PROFILER_DIR="$dir" "$example" 18090 >/dev/null 2>&1 &
    on=$!
    sleep 60
    for pid in $off $on; do
      kind=hummingbird-server-off; [ "$pid" = "$on" ] && kind=hummingbird-server-on
      echo "idle kind=$kind rss=$(awk '/VmRSS/ { print $2 }' "/proc/$pid/status")kB $(rss_split "$pid") threads=$(ls "/proc/$pid/task" | wc -l)"
    done
    kill -TERM "$off" "$on"
    wait "$off" "$on" 2>/dev/null || true
    rm -rf "$dir"
    ;;
  retained)
    # RSS before the first profile, right after it and 30 s later: the
    # demo's shape (idle-server work: 4 threads computing through a small
    # call tree) and the Hummingbird example (release, wrk on GET / for 5 s
    # before and during the profile); the first profile is a 5 s cpu
    # profile with file:line (speedscope). "held" is
    # the figure 30 s after the profile minus the one before it.
    example=$(build_hummingbird_example)
    for target in work hummingbird; do
      dir=$(mktemp -d)
      if [ "$target" = work ]; then
        fifo=$(mktemp -u); mkfifo "$fifo"
        .build/release/idle-server work <"$fifo" >"$dir/out" 2>/dev/null &
        pid=$!
        exec 6>"$fifo"; rm -f "$fifo"
        while ! grep -q READY "$dir/out" 2>/dev/null; do sleep 0.1; done
        socket=$(awk '/READY/ { print $3 }' "$dir/out")
      else
        APP_PROFILER_DIR="$dir" "$example" 18089 >/dev/null 2>&1 &
        pid=$!
        for _ in $(seq 100); do [ -S "$dir/app-profiler-$pid.sock" ] && break; sleep 0.1; done
        socket="$dir/app-profiler-$pid.sock"
      fi
      if [ "$target" = hummingbird ]; then
        # The app warmed up by the same load first: what it keeps from
        # serving (NIO's buffers, its code) is not the profiler's.
        wrk -t1 -c2 -d5s http://127.0.0.1:18089/ >/dev/null 2>&1
      fi
      sleep 5
      rss() { awk '/VmRSS/ { print $2 }' "/proc/$pid/status"; }
      # The split: anonymous memory (heap, tables) and file pages (code and
      # data of images read, e.g. .eh_frame while tables are built).
      split() { awk '/RssAnon/ { a = $2 } /RssFile/ { f = $2 } END { print "anon=" a "kB file=" f "kB" }' "/proc/$pid/status"; }
      before=$(rss)
      before_split=$(split)
      if [ "$target" = hummingbird ]; then
        # Requests during the profile, so it has the app's code to symbolicate.
        wrk -t1 -c2 -d5s http://127.0.0.1:18089/ >/dev/null 2>&1 &
        load=$!
      fi
      curl -s --unix-socket "$socket" "http://localhost/profile?mode=cpu&duration=5" -o "$dir/profile.json"
      [ "$target" = hummingbird ] && wait "$load"
      after=$(rss)
      sleep 30
      later=$(rss)
      later_split=$(split)
      echo "retained target=$target before=${before}kB ($before_split) after_profile=${after}kB after_30s=${later}kB ($later_split) held=$(( (later - before) / 1024 ))MiB profile_bytes=$(stat -c %s "$dir/profile.json") $("$bench" count-frames "$dir/profile.json")"
      if [ "$target" = work ]; then exec 6>&-; else kill -TERM "$pid"; fi
      wait "$pid" 2>/dev/null || true
      rm -rf "$dir"
    done
    ;;
  always-on-memory)
    # Resident memory of the always-on modes over the same app with
    # nothing on (issue 36's goal 1): the Hummingbird example (release,
    # 40 extra idle threads: ~50 in all) with nothing, with
    # APP_PROFILER_HEAP=1, with APP_PROFILER_FLIGHT_RECORDER=60 (a full
    # ring after 65 s), and after one 5 s cpu profile (file:line) taken
    # after the warm-up. Each: 5 s of wrk warm-up, then light load for
    # 65 s, then VmRSS with its split (anonymous: the process's own pages;
    # file: pages of its images and files read, shared with the page
    # cache). ALWAYS_ON_ROUNDS interleaved rounds (default 2).
    example=$(build_hummingbird_example)
    for round in $(seq "${ALWAYS_ON_ROUNDS:-2}"); do
      for variant in off heap flight profiled; do
        dir=$(mktemp -d)
        env_vars=(APP_PROFILER_DIR="$dir")
        [ "$variant" = heap ] && env_vars+=(APP_PROFILER_HEAP=1)
        [ "$variant" = flight ] && env_vars+=(APP_PROFILER_FLIGHT_RECORDER=60)
        env "${env_vars[@]}" "$example" 18089 --idle-threads 40 >/dev/null 2>&1 &
        app=$!
        for _ in $(seq 100); do curl -s -o /dev/null http://127.0.0.1:18089/ && break; sleep 0.1; done
        wrk -t1 -c2 -d5s http://127.0.0.1:18089/ >/dev/null 2>&1
        if [ "$variant" = profiled ]; then
          curl -s --unix-socket "$dir/app-profiler-$app.sock" -o /dev/null "http://localhost/profile?duration=5&format=speedscope" &
        fi
        wrk -t1 -c1 -d65s http://127.0.0.1:18089/ >/dev/null 2>&1
        awk -v v="$variant" -v r="$round" '/VmRSS/ { t = $2 } /RssAnon/ { a = $2 } /RssFile/ { f = $2 }
          END { printf "always-on-memory round=%s variant=%s rss_kb=%d anon_kb=%d file_kb=%d\n", r, v, t, a, f }' "/proc/$app/status"
        kill -KILL "$app"; wait "$app" 2>/dev/null || true
        rm -rf "$dir"
      done
    done | tee /dev/stderr | awk '
      { split($3, v, "="); split($4, t, "="); split($5, a, "="); split($6, f, "=")
        rss[v[2]] += t[2]; anon[v[2]] += a[2]; file[v[2]] += f[2]; n[v[2]]++ }
      END {
        split("heap flight profiled", order, " ")
        for (k = 1; k <= 3; k++) {
          m = order[k]
          if (!n[m] || !n["off"]) continue
          printf "always-on-memory %s over off (mean of %d): rss +%.1f MiB (anonymous +%.1f MiB, file +%.1f MiB)\n", m, n[m],
            (rss[m] / n[m] - rss["off"] / n["off"]) / 1024, (anon[m] / n[m] - anon["off"] / n["off"]) / 1024,
            (file[m] / n[m] - file["off"] / n["off"]) / 1024
        }
      }'
    ;;
  cold-first-profile)
    # A NIO process at rest with 20 event-loop threads (idle-server nio 20):
    # its first and second 1 s wall profile (speedscope with file:line).
    first_profile_rounds cold-first-profile wall "first second" nio 20
    ;;
  busy-first-profile)
    # The same for a process that saturates the machine itself
    # (idle-server busy <cores>: one computing thread per core), as when
    # someone profiles a busy service: its first three 1 s cpu profiles.
    first_profile_rounds busy-first-profile cpu "first second third" busy "$(nproc)"
    ;;
  overhead-http)
    # wrk against GET /work (CPU-bound) of a small HTTP app; variants
    # interleaved × OVERHEAD_ROUNDS (default 7) × 10 s; a profile (or perf)
    # is held over each run. The server is pinned to core 0 and wrk (one
    # thread, 4 connections) to core 1, so the two do not compete for a
    # core: the unpinned runs of earlier versions spread ±10 % between rounds.
    #   none, none2    no profile, twice per round: their ratio is the
    #                  benchmark's noise floor
    #   default        /profile?mode=cpu without interval (100 Hz: POSIX
    #                  CPU timers on this CONFIG_HZ=250 kernel)
    #   timer100       the same with engine=timer
    #   perf100        the same with engine=perf (perf events per thread)
    #   cpu1000        interval=1000 (1 kHz: perf events per thread)
    #   ticker1000     interval=1000&engine=ticker (1 kHz, the CPU ticker)
    #   wall100        mode=wall&interval=10000
    #   perf99, perf999  `perf record -F 99|999 -g -p` on the same server,
    #                  the anchors for the two cpu rates
    command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
    command -v perf >/dev/null || { apt-get update -qq && apt-get install -y -qq linux-perf >/dev/null; }
    fifo=$(mktemp -u)
    mkfifo "$fifo"
    taskset -c 0 "$bench" http-server <"$fifo" >"$fifo.out" &
    server=$!
    exec 8>"$fifo"
    while ! grep -q READY "$fifo.out" 2>/dev/null; do sleep 0.1; done
    read -r _ port socket <"$fifo.out"
    results=$(mktemp)
    # OVERHEAD_VARIANTS picks some (e.g. "none none2 default" with
    # OVERHEAD_ROUNDS=20 to resolve the default's cost against the noise).
    variants="${OVERHEAD_VARIANTS:-none none2 default cpu1000 wall100 perf99 perf999}"
    for round in $(seq 1 "${OVERHEAD_ROUNDS:-7}"); do
      for variant in $variants; do
        query=""
        case "$variant" in
          default) query="mode=cpu" ;;
          timer100) query="mode=cpu&engine=timer" ;;
          perf100) query="mode=cpu&engine=perf" ;;
          cpu1000) query="mode=cpu&interval=1000" ;;
          ticker1000) query="mode=cpu&interval=1000&engine=ticker" ;;
          wall100) query="mode=wall&interval=10000" ;;
        esac
        profiler=""
        if [ -n "$query" ]; then
          curl -s --unix-socket "$socket" "http://localhost/profile?$query&duration=11&format=speedscope" -o "$results.profile" &
          profiler=$!
          sleep 0.3
        elif [ "${variant#perf}" != "$variant" ]; then
          perf record -q -F "${variant#perf}" -g -p "$server" -o "$results.perf" -- sleep 10.6 >/dev/null 2>&1 &
          profiler=$!
          sleep 0.3
        fi
        out=$(taskset -c 1 wrk -t1 -c4 -d10s --latency "http://127.0.0.1:$port/work" 2>&1)
        engine="-"
        if [ -n "$profiler" ]; then
          wait "$profiler" || true
          [ -n "$query" ] && engine=$({ grep -o '"engine":"[^"(]*' "$results.profile" || true; } | head -1 | cut -d'"' -f4)
          [ -z "$query" ] && engine=perf
        fi
        echo "$variant $(wrk_summary "$out") ${engine:-?}" >>"$results"
      done
    done
    exec 8>&-
    wait "$server" || true
    rm -f "$fifo" "$fifo.out" "$results.profile" "$results.perf"
    awk "$AWK_MEDIAN"'
      { rps[$1] = rps[$1] " " $2; p99[$1] = p99[$1] " " $3; engine[$1] = $4 }
      END {
        base = median(rps["none"]); basep = median(p99["none"])
        n = split("'"$variants"'", order, " ")
        for (k = 1; k <= n; k++) {
          v = order[k]; m = median(rps[v]); p = median(p99[v])
          printf "overhead-http variant=%s engine=%s rps_median=%.0f ratio=%.3f p99_median=%.2fms p99_ratio=%.2f runs=%s\n", v, engine[v], m, m / base, p, p / basep, rps[v]
        }
        for (k = 1; k <= n; k++) if (order[k] != "none") printf "overhead-http loss %s=%.1f%%\n", order[k], (1 - median(rps[order[k]]) / base) * 100
        if (("cpu1000" in rps) && ("perf999" in rps)) printf "overhead-http cpu1000_vs_perf999=%.1fpp\n", (median(rps["perf999"]) - median(rps["cpu1000"])) / base * 100
        if (("default" in rps) && ("perf99" in rps)) printf "overhead-http default_vs_perf99=%.1fpp\n", (median(rps["perf99"]) - median(rps["default"])) / base * 100
      }' "$results"
    rm -f "$results"
    ;;
  async-stacks)
    # Per-sample cost at the bottom of a 30-deep async chain, stitching off
    # and on (self-sent samples, 7 interleaved rounds, medians); then the
    # throughput of an async CPU-bound workload (2 tasks, 30-deep chains)
    # unprofiled and at 100 Hz / 1 kHz with stitching off and on, one
    # process per run, interleaved × 7 rounds, medians.
    "$bench" async-sample-cost 30 7
    results=$(mktemp)
    for round in 1 2 3 4 5 6 7; do
      for variant in none 100-off 100-on 1000-off 1000-on; do
        "$bench" async-throughput "$variant" 2 >>"$results"
      done
    done
    awk "$AWK_MEDIAN"'
      { split($2, fv, "="); split($3, fu, "="); units[fv[2]] = units[fv[2]] " " fu[2] }
      END {
        base = median(units["none"])
        split("none 100-off 100-on 1000-off 1000-on", order, " ")
        for (k = 1; k <= 5; k++) {
          v = order[k]; m = median(units[v])
          ratio[v] = m / base
          printf "async-throughput variant=%s units_per_s_median=%.0f ratio=%.3f\n", v, m, m / base
        }
        printf "async-throughput stitching_added_loss 100Hz=%.2fpp 1kHz=%.2fpp\n", (ratio["100-off"] - ratio["100-on"]) * 100, (ratio["1000-off"] - ratio["1000-on"]) * 100
      }' "$results"
    rm -f "$results"
    ;;
  alloc-overhead)
    # Allocation loops (malloc/free and class instances): one process per
    # variant, interleaved never after during always × 7 rounds, medians.
    results=$(mktemp)
    for round in 1 2 3 4 5 6 7; do
      for variant in never after during always; do
        "$bench" alloc-overhead "$variant" 2 >>"$results"
      done
    done
    awk "$AWK_MEDIAN"'
      { split($3, fm, "="); split($4, fo, "="); split($5, fs, "=")
        mal[$2] = mal[$2] " " fm[2]; obj[$2] = obj[$2] " " fo[2]; smp[$2] = smp[$2] " " fs[2] }
      END {
        bm = median(mal["never"]); bo = median(obj["never"])
        split("never after during always", order, " ")
        for (k = 1; k <= 4; k++) {
          v = order[k]; m = median(mal[v]); o = median(obj[v])
          printf "alloc-overhead variant=%s malloc_ops_median=%.0f malloc_ratio=%.3f object_ops_median=%.0f object_ratio=%.3f samples_median=%s\n", v, m, m / bm, o, o / bo, median(smp[v])
        }
      }' "$results"
    rm -f "$results"
    # The same loops A/B in one process (never, then rounds of always-on,
    # off, during, off): separate processes differ by their heap's history
    # (a fresh heap runs the object loop 1.6x faster than one that has been
    # used, profiler or not), one process does not.
    "$bench" alloc-ab 7
    ;;
  lock-pair)
    # Uncontended pthread_mutex_lock + unlock pairs without the lock
    # wrappers and with them (a block session running), interleaved in one
    # process, 7 rounds of 10 M pairs; medians (docs/locks.md).
    "$bench" lock-pair 7
    ;;
  heap-http)
    # The Hummingbird example app (release) under wrk on GET /: with the
    # live heap tracked from start (APP_PROFILER_HEAP=1, 512 KiB) vs
    # without; off/on × 5 rounds × 10 s, medians.
    example=$(build_hummingbird_example)
    results=$(mktemp)
    dir=$(mktemp -d)
    for round in 1 2 3 4 5; do
      for variant in off on; do
        heap=0; [ "$variant" = on ] && heap=1
        echo "$variant $(wrk_once APP_PROFILER_DIR="$dir" APP_PROFILER_HEAP=$heap "$example" 18089)" >>"$results"
      done
    done
    rm -rf "$dir"
    ab_summary heap-http "off on" "$results"
    rm -f "$results"
    ;;
  middleware-latency)
    # The Hummingbird example app (release) under wrk on GET / (a tiny
    # route): with the per-request profiling middleware installed but no
    # profile asked for, vs. without it; A B × 5 rounds × 10 s, medians.
    example=$(build_hummingbird_example)
    results=$(mktemp)
    dir=$(mktemp -d)
    for round in 1 2 3 4 5; do
      for variant in without with; do
        flag=""; [ "$variant" = without ] && flag="--no-middleware"
        echo "$variant $(wrk_once APP_PROFILER_DIR="$dir" "$example" 18089 $flag)" >>"$results"
      done
    done
    rm -rf "$dir"
    ab_summary middleware-latency "without with" "$results"
    rm -f "$results"
    ;;
  labels)
    # What labelling every request costs: the Hummingbird example (release)
    # under wrk on GET / (a tiny route, where the per-request cost shows
    # most), with its middleware labelling requests (route, method) vs. not
    # (--no-labels), while a 100 Hz cpu profile of the process runs over
    # the socket for the whole wrk run (so samples walk the label chain).
    # without/with × 5 interleaved rounds × 10 s, medians.
    example=$(build_hummingbird_example)
    results=$(mktemp)
    dir=$(mktemp -d)
    for round in 1 2 3 4 5; do
      for variant in off on; do
        flag=""; [ "$variant" = off ] && flag="--no-labels"
        APP_PROFILER_DIR="$dir" "$example" 18089 $flag >/dev/null 2>&1 &
        app=$!
        for _ in $(seq 100); do curl -s -o /dev/null http://127.0.0.1:18089/ && break; sleep 0.1; done
        sock="$dir/app-profiler-$app.sock"
        curl -s --unix-socket "$sock" -o "$dir/profile.pb.gz" \
          "http://localhost/profile?mode=cpu&duration=11&interval=10000&format=pprof" &
        profile=$!
        sleep 0.5
        out=$(wrk -t2 -c4 -d10s --latency http://127.0.0.1:18089/ 2>&1)
        wait "$profile" || true
        kill -TERM "$app"; wait "$app" 2>/dev/null || true
        echo "$variant $(wrk_summary "$out") $(stat -c %s "$dir/profile.pb.gz" 2>/dev/null || echo 0)" >>"$results"
      done
    done
    rm -rf "$dir"
    awk "$AWK_MEDIAN"'
      { rps[$1] = rps[$1] " " $2; p99[$1] = p99[$1] " " $3; bytes[$1] = bytes[$1] " " $4 }
      END {
        b = median(rps["off"]); bp = median(p99["off"])
        split("off on", order, " ")
        for (k = 1; k <= 2; k++) {
          v = order[k]; m = median(rps[v]); p = median(p99[v])
          printf "labels variant=%s rps_median=%.0f ratio=%.3f p99_median=%.3fms p99_ratio=%.2f profile_bytes_median=%d runs=%s\n", v, m, m / b, p, p / bp, median(bytes[v]), rps[v]
        }
      }' "$results"
    rm -f "$results"
    ;;
  continuous)
    # What continuous profiling costs a busy service: the Hummingbird
    # example (release, 40 extra idle threads: ~50 in all) under wrk on
    # GET /, with nothing, with the flight recorder (19 Hz cpu + wall,
    # APP_PROFILER_FLIGHT_RECORDER=60), and pushing to a Pyroscope stand-in
    # (a local receiver that answers 200) every 5 s at 100 Hz; each after a
    # 20 s warm-up. 5 interleaved rounds × 10 s, medians. Then the flight
    # recorder's memory: RSS of the same process after 65 s (a full 60 s
    # ring) with and without it.
    example=$(build_hummingbird_example)
    results=$(mktemp)
    dir=$(mktemp -d)
    python3 - 18099 >/dev/null 2>&1 <<'PY' &
import http.server, sys
class Handler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(200)
        self.end_headers()
    def log_message(self, *args):
        pass
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
PY
    receiver=$!
    for round in 1 2 3 4 5; do
      for variant in off flight push; do
        env_vars=(APP_PROFILER_DIR="$dir")
        [ "$variant" = flight ] && env_vars+=(APP_PROFILER_FLIGHT_RECORDER=60)
        [ "$variant" = push ] && env_vars+=(APP_PROFILER_PYROSCOPE_URL=http://127.0.0.1:18099 APP_PROFILER_PYROSCOPE_INTERVAL=5)
        env "${env_vars[@]}" "$example" 18089 --idle-threads 40 >/dev/null 2>&1 &
        app=$!
        for _ in $(seq 100); do curl -s -o /dev/null http://127.0.0.1:18089/ && break; sleep 0.1; done
        # Warm-up under light load: the first profiles symbolize the binary
        # cold (~1 CPU-second, BENCHMARKS.md "symbolization"): a start-up
        # cost, measured apart (continuous-startup below), not the steady one.
        wrk -t1 -c1 -d20s http://127.0.0.1:18089/ >/dev/null 2>&1
        # CPU ticks of the whole process and of the profiler's own threads
        # (app-prof-*, the tickers "app-profiler") during the measured run:
        # a share that the noisy req/s cannot resolve at 1 %.
        before=$(for t in /proc/$app/task/*; do awk -v c="$(cat "$t/comm")" '{ print c "|" $14 + $15 }' "$t/stat"; done)
        out=$(wrk -t2 -c4 -d10s --latency http://127.0.0.1:18089/ 2>&1)
        after=$(for t in /proc/$app/task/*; do awk -v c="$(cat "$t/comm")" '{ print c "|" $14 + $15 }' "$t/stat"; done)
        share=$(paste -d'|' <(echo "$before") <(echo "$after") | awk -F'|' '
          { d = $4 - $2; total += d; if ($1 ~ /^app-prof/) own += d }
          END { printf "%.4f", (total > 0 ? own / total : 0) }')
        kill -TERM "$app"; wait "$app" 2>/dev/null || true
        echo "$variant $(wrk_summary "$out") $share" >>"$results"
      done
    done
    kill "$receiver" 2>/dev/null || true
    awk "$AWK_MEDIAN"'
      { rps[$1] = rps[$1] " " $2; p99[$1] = p99[$1] " " $3; own[$1] = own[$1] " " $4 }
      END {
        b = median(rps["off"]); bp = median(p99["off"])
        split("off flight push", order, " ")
        for (k = 1; k <= 3; k++) {
          v = order[k]; m = median(rps[v]); p = median(p99[v])
          printf "continuous variant=%s rps_median=%.0f ratio=%.3f p99_median=%.3fms p99_ratio=%.2f profiler_threads_cpu_share_median=%.4f runs=%s\n", v, m, m / b, p, p / bp, median(own[v]), rps[v]
        }
      }' "$results"
    rm -f "$results"
    # "profiled" took one 5 s cpu profile at start: what any profile leaves
    # resident (symbolication caches, tables), so flight − profiled is the
    # recorder's own share.
    for variant in off profiled flight; do
      env_vars=(APP_PROFILER_DIR="$dir")
      [ "$variant" = flight ] && env_vars+=(APP_PROFILER_FLIGHT_RECORDER=60)
      env "${env_vars[@]}" "$example" 18089 --idle-threads 40 >/dev/null 2>&1 &
      app=$!
      for _ in $(seq 100); do curl -s -o /dev/null http://127.0.0.1:18089/ && break; sleep 0.1; done
      if [ "$variant" = profiled ]; then
        curl -s --unix-socket "$dir/app-profiler-$app.sock" -o /dev/null "http://localhost/profile?duration=5&format=pprof" &
      fi
      wrk -t1 -c1 -d65s http://127.0.0.1:18089/ >/dev/null 2>&1
      threads=$(ls /proc/$app/task | wc -l)
      rss=$(awk '/VmRSS/ { print $2 }' /proc/$app/status)
      kill -TERM "$app"; wait "$app" 2>/dev/null || true
      echo "continuous-memory variant=$variant threads=$threads rss_kb=$rss"
    done
    rm -rf "$dir"
    ;;
  tasks)
    # The task registry and dump (docs/tasks.md). 1: a dump of 10,000 tasks
    # parked in a continuation (first and warm). 2: task churn (two task
    # groups adding and awaiting 64 children at a time) with the registry
    # on vs off (APP_PROFILER_TASKS=0), 11 interleaved 2 s runs, medians of
    # tasks/s and of tasks per CPU-second. 3: 1,000 dumps back to back
    # during that churn (a crash or hang fails the run). 4: the Hummingbird
    # example under wrk (GET /), registry on vs off, 5 interleaved rounds.
    "$bench" task-dump 10000
    "$bench" task-wall 10000
    "$bench" task-wall 100
    results=$(mktemp)
    for _ in $(seq 11); do
      "$bench" task-churn 2 >>"$results"
      APP_PROFILER_TASKS=0 "$bench" task-churn 2 >>"$results"
    done
    awk "$AWK_MEDIAN"'
      { split($2, a, "="); split($3, b, "="); split($4, c, "="); wall[a[2]] = wall[a[2]] " " b[2]; cpu[a[2]] = cpu[a[2]] " " c[2] }
      END {
        printf "task-churn tasks_per_s off=%.0f on=%.0f ratio=%.3f; per_cpu_s off=%.0f on=%.0f ratio=%.3f\n",
          median(wall["off"]), median(wall["on"]), median(wall["on"]) / median(wall["off"]),
          median(cpu["off"]), median(cpu["on"]), median(cpu["on"]) / median(cpu["off"])
      }' "$results"
    rm -f "$results"
    "$bench" task-dump-churn 1000
    example=$(build_hummingbird_example)
    results=$(mktemp)
    dir=$(mktemp -d)
    for _ in 1 2 3 4 5; do
      echo "on $(wrk_once APP_PROFILER_DIR="$dir" "$example" 18089)" >>"$results"
      echo "off $(wrk_once APP_PROFILER_DIR="$dir" APP_PROFILER_TASKS=0 "$example" 18089)" >>"$results"
    done
    ab_summary tasks-http "off on" "$results"
    rm -rf "$results" "$dir"
    ;;
  *)
    echo "unknown scenario: $scenario" >&2
    exit 2
    ;;
  esac
done
