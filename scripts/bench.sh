#!/usr/bin/env bash
# haltwire ingest benchmark: one run, one machine, fixed CPU pinning (docs/performance.md).
#
#   scripts/bench.sh [RESULTS_FILE]
#
# Builds the release binary, then, with every server pinned to SERVER_CPU and the load
# generator to CLIENT_CPU:
#   1. closed loop, swept over CONNECTIONS: the bare floor handler, `serve` with a
#      standard-webhooks-ed25519 source, and `serve` with a standard-webhooks (HMAC) source,
#      REPS runs each, every `serve` on a fresh data directory;
#   2. open loop at OPEN_RATE events/s against the ed25519 source (and the floor, for scale);
#   3. start-up time of `serve` to its first 200 from /readyz, fresh and warm data directory.
# Prints a results table and writes it to RESULTS_FILE (default: a new file under /tmp).
#
# The machine must be otherwise idle: before each measurement the script waits (up to
# QUIET_WAIT_S) until both CPUs are at least QUIET_IDLE_PCT idle, and it repeats a run during
# which other processes took more than FOREIGN_MAX_PCT of a core. Requires: cargo, taskset, jq.
#
# Knobs (environment): CONNECTIONS="16 32 64 128" REPS=3 EVENTS=40000 WARMUP=4000
#   OPEN_RATE=1000 OPEN_EVENTS=20000 OPEN_CONNECTIONS=16 STARTUP_RUNS=10
#   SERVER_CPU=1 CLIENT_CPU=0 QUIET_IDLE_PCT=90 QUIET_WAIT_S=900 FOREIGN_MAX_PCT=5 MAX_TRIES=5
#   HALTWIRE_BIN= (measure this binary instead of building; e.g. an older build to compare)

set -euo pipefail

CONNECTIONS=${CONNECTIONS:-"16 32 64 128"}
REPS=${REPS:-3}
EVENTS=${EVENTS:-40000}
WARMUP=${WARMUP:-4000}
OPEN_RATE=${OPEN_RATE:-1000}
OPEN_EVENTS=${OPEN_EVENTS:-20000}
OPEN_CONNECTIONS=${OPEN_CONNECTIONS:-16}
STARTUP_RUNS=${STARTUP_RUNS:-10}
SERVER_CPU=${SERVER_CPU:-1}
CLIENT_CPU=${CLIENT_CPU:-0}
QUIET_IDLE_PCT=${QUIET_IDLE_PCT:-90}
QUIET_WAIT_S=${QUIET_WAIT_S:-900}
FOREIGN_MAX_PCT=${FOREIGN_MAX_PCT:-5}
MAX_TRIES=${MAX_TRIES:-5}

ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=$(mktemp -d /tmp/haltwire-bench.XXXXXX)
RESULTS=${1:-$WORK/results.md}
SERVER_PID=

for tool in cargo taskset jq; do
    command -v "$tool" >/dev/null || { echo "bench.sh: needs $tool" >&2; exit 1; }
done

cleanup() {
    stop_server
    rm -rf "$WORK/data" "$WORK/startup"
}
trap cleanup EXIT

log() { echo "bench.sh: $*" >&2; }

# Share of both CPUs that was idle over one second, from /proc/stat.
idle_pct() {
    local a b
    a=($(head -1 /proc/stat))
    sleep 1
    b=($(head -1 /proc/stat))
    local total=0 i
    for i in 1 2 3 4 5 6 7 8; do total=$((total + b[i] - a[i])); done
    local idle=$((b[4] - a[4] + b[5] - a[5]))
    echo $((100 * idle / total))
}

# Waits until the machine is quiet (other engineers compile here); echoes the idle share seen.
wait_quiet() {
    local waited=0 idle
    while true; do
        idle=$(idle_pct)
        if ((idle >= QUIET_IDLE_PCT)); then echo "$idle"; return; fi
        if ((waited >= QUIET_WAIT_S)); then
            log "machine still busy (${idle}% idle) after ${waited}s; measuring anyway (flagged)"
            echo "${idle}!"
            return
        fi
        if ((waited % 60 == 0)); then
            log "waiting for a quiet machine (${idle}% idle); busiest:"
            ps -eo pcpu,comm --sort=-pcpu | sed -n 2,4p >&2
        fi
        sleep 4
        waited=$((waited + 5))
    done
}

# User+system CPU seconds (x100) of a process so far.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# Starts a server (the rest of the arguments after `haltwire`) pinned to SERVER_CPU; sets
# SERVER_PID and SERVER_URL.
start_server() {
    local out="$WORK/server.out"
    : >"$out"
    taskset -c "$SERVER_CPU" "$BIN" "$@" >"$out" 2>"$WORK/server.err" &
    SERVER_PID=$!
    local i
    for i in $(seq 200); do
        if grep -q "^haltwire listening on " "$out"; then
            SERVER_URL=$(sed -n 's/^haltwire listening on //p' "$out")
            return
        fi
        sleep 0.05
    done
    log "server did not start: $(cat "$WORK/server.err")"
    exit 1
}

stop_server() {
    if [[ -n "$SERVER_PID" ]]; then
        kill "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
        SERVER_PID=
    fi
}

start_floor() { start_server bench floor --listen 127.0.0.1:0 --public-key "$PUBLIC_KEY"; }

start_serve() {
    rm -rf "$WORK/data"
    start_server serve --listen 127.0.0.1:0 --data-dir "$WORK/data" --config "$WORK/haltwire.toml"
}

# CPU ticks (1/100 s) the machine spent busy, all CPUs together, from /proc/stat.
busy_ticks() { awk '/^cpu / {print $2 + $3 + $4 + $7 + $8 + $9}' /proc/stat; }

# CPU ticks used by this shell's finished children (bash `times`, second line).
children_ticks() {
    times | tail -1 | awk '{
        split($1, u, /[ms]/); split($2, s, /[ms]/)
        printf "%d\n", (u[1] * 60 + u[2] + s[1] * 60 + s[2]) * 100 }'
}

# Runs the load generator against SERVER_URL; prints its JSON line with: the server's CPU per
# request and how busy its core was; the idle share before the run; and the CPU that processes
# other than this benchmark used during the run (other engineers' builds), as a share of one core.
load() {
    local source=$1 credential=$2 connections=$3
    shift 3
    local idle server0 busy0 children0 started json server1 busy1 children1 ended
    idle=$(wait_quiet)
    server0=$(cpu_ticks "$SERVER_PID") busy0=$(busy_ticks) children0=$(children_ticks)
    started=$(date +%s%N)
    json=$(taskset -c "$CLIENT_CPU" "$BIN" bench ingest --url "$SERVER_URL" --source "$source" \
        $credential --connections "$connections" "$@" | tail -1) || true
    ended=$(date +%s%N)
    server1=$(cpu_ticks "$SERVER_PID") busy1=$(busy_ticks) children1=$(children_ticks)
    local requests
    requests=$(jq '.events + .warmup' <<<"$json" 2>/dev/null || echo 0)
    if [[ -z "$json" || "$requests" == 0 ]]; then return; fi
    local server=$((server1 - server0))
    local ours=$((server + children1 - children0))
    local foreign=$(((busy1 - busy0 - ours) * 10000000 * 100 / (ended - started)))
    # Per request, warm-up included (the server idles while the generator signs); times the
    # measured rate it gives how busy the server's core was: near 100 % means saturated.
    local per_event=$((server * 10000 / requests))
    echo "$json" | jq -c --arg idle "$idle" --argjson us "$per_event" --argjson foreign "$foreign" \
        '. + {idle_before: $idle, foreign_cpu_pct: $foreign, server_cpu_us_per_event: $us,
              server_busy_pct: ((.events_per_sec * $us / 10000) | round)}'
}

# The source name and credential flags the load generator uses for each side.
credentials() {
    case $1 in
        floor) echo "any-source --signing-key $WORK/signing.key" ;;
        ed25519) echo "bench-ed25519 --signing-key $WORK/signing.key" ;;
        hmac) echo "bench-hmac --secret-file $WORK/hmac.whsec" ;;
    esac
}

start_side() {
    if [[ $1 == floor ]]; then start_floor; else start_serve; fi
}

# REPS runs of one point, each against a freshly started server (and fresh data directory);
# appends one JSON line per run to RAW and shows it on stderr. A run during which other
# processes used more than FOREIGN_MAX_PCT of a core is discarded and repeated (up to
# MAX_TRIES times; the last try is kept and stays flagged by its foreign_cpu_pct).
point() {
    local side=$1 connections=$2 rep try source credential line
    shift 2
    read -r source credential <<<"$(credentials "$side")"
    for rep in $(seq "$REPS"); do
        for try in $(seq "$MAX_TRIES"); do
            start_side "$side"
            line=$(load "$source" "$credential" "$connections" "$@" | jq -c --arg side "$side" '. + {side: $side}')
            stop_server
            if [[ -n "$line" ]] && (($(jq .foreign_cpu_pct <<<"$line") <= FOREIGN_MAX_PCT)); then break; fi
            ((try < MAX_TRIES)) && log "discarding a $side run: other processes used the CPU ($line)"
        done
        echo "$line" | tee -a "$RAW" >&2
    done
}

# ---------------------------------------------------------------------------------------------

cd "$ROOT"
if [[ -n "${HALTWIRE_BIN:-}" ]]; then
    log "using $HALTWIRE_BIN (no build)"
    cp "$HALTWIRE_BIN" "$WORK/haltwire"
else
    log "building (release; CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target})"
    cargo build --release --locked >&2
    # A private copy: the target directory may be shared, and another build must not swap the
    # binary out in the middle of the run.
    cp "${CARGO_TARGET_DIR:-$ROOT/target}/release/haltwire" "$WORK/haltwire"
fi
BIN=$WORK/haltwire

umask 077
"$BIN" keys generate --webhook ed25519 >"$WORK/keys.txt"
grep -o 'whsk_[A-Za-z0-9+/=]*' "$WORK/keys.txt" >"$WORK/signing.key"
PUBLIC_KEY=$(grep -o 'whpk_[A-Za-z0-9+/=]*' "$WORK/keys.txt")
"$BIN" keys generate --webhook hmac | grep -o 'whsec_[A-Za-z0-9+/=]*' >"$WORK/hmac.whsec"
cat >"$WORK/haltwire.toml" <<EOF
[[source]]
name = "bench-ed25519"
auth = "standard-webhooks-ed25519"
public_keys = ["$PUBLIC_KEY"]

[[source]]
name = "bench-hmac"
auth = "standard-webhooks"
secret_file = "hmac.whsec"
EOF

RAW=$WORK/raw.jsonl
: >"$RAW"
log "closed loop: connections {$CONNECTIONS} x {floor, ed25519, hmac} x $REPS"
for c in $CONNECTIONS; do
    for side in floor ed25519 hmac; do
        point "$side" "$c" --events "$EVENTS" --warmup "$WARMUP"
    done
done
log "open loop at $OPEN_RATE/s"
for side in floor ed25519; do
    point "$side" "$OPEN_CONNECTIONS" --rate "$OPEN_RATE" --events "$OPEN_EVENTS" --warmup 1000
done
log "start-up"
mkdir -p "$WORK/startup"
STARTUP_IDLE=$(wait_quiet)
STARTUP=$(taskset -c "$CLIENT_CPU" "$BIN" bench startup --runs "$STARTUP_RUNS" --scratch "$WORK/startup" \
    --config "$WORK/haltwire.toml" --server-cpu "$SERVER_CPU" | tail -1)

# ---------------------------------------------------------------------------------------------
# Report: medians over repetitions.

median_of() { # JSON lines on stdin, numeric field $1 → median
    jq -s "map(.$1) | sort | .[(length - 1) / 2 | floor]"
}
pick() { # side, mode, connections → the JSON lines of that point
    jq -c --arg s "$1" --arg m "$2" --argjson c "$3" 'select(.side == $s and .mode == $m and .connections == $c)' "$RAW"
}
row() { # side mode connections → one table row of medians over the point's runs
    local lines
    lines=$(pick "$1" "$2" "$3")
    printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$1" "$3" \
        "$(median_of events_per_sec <<<"$lines")" \
        "$(median_of p50_us <<<"$lines")" "$(median_of p99_us <<<"$lines")" \
        "$(median_of max_us <<<"$lines")" "$(median_of server_cpu_us_per_event <<<"$lines")" \
        "$(median_of server_busy_pct <<<"$lines")" "$(median_of generator_cpu_pct <<<"$lines")" \
        "$(jq -s -c 'map(.foreign_cpu_pct) | max' <<<"$lines")" "$(jq -s 'map(.errors) | add' <<<"$lines")"
}
rate() { pick "$1" closed "$2" | median_of events_per_sec; }

best_c=""
best_rate=0
for c in $CONNECTIONS; do
    r=$(rate ed25519 "$c")
    if ((r > best_rate)); then best_rate=$r; best_c=$c; fi
done
floor_at_best=$(rate floor "$best_c")
hmac_at_best=$(rate hmac "$best_c")
floor_best=0
floor_best_c=""
for c in $CONNECTIONS; do
    r=$(rate floor "$c")
    if ((r > floor_best)); then floor_best=$r; floor_best_c=$c; fi
done
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }'; }
open_lines=$(jq -c 'select(.side == "ed25519" and .mode == "open")' "$RAW")
open_p99=$(median_of p99_us <<<"$open_lines")
open_p99_worst=$(jq -s 'map(.p99_us) | max' <<<"$open_lines")
ratio_ed=$(ratio "$best_rate" "$floor_at_best")
verdict() { awk -v v="$1" -v t="$2" -v op="$3" 'BEGIN { ok = (op == "ge") ? v >= t : v <= t; print ok ? "met" : "MISSED" }'; }

{
    echo "# haltwire ingest benchmark — $(date -u +%Y-%m-%dT%H:%MZ)"
    echo
    echo "- binary: ${HALTWIRE_BIN:-built from $(git -C "$ROOT" rev-parse --short HEAD)$(git -C "$ROOT" diff --quiet || echo ' (+ uncommitted changes)')}"
    echo "- machine: $(nproc) CPUs, $(lscpu | sed -n 's/^Model name: *//p'), kernel $(uname -r)"
    echo "- pinning: servers \`taskset -c $SERVER_CPU\`, load generator \`taskset -c $CLIENT_CPU\`"
    echo "- closed loop: $EVENTS measured events (+$WARMUP warm-up), median of $REPS runs, fresh data dir per run"
    echo "- load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo
    echo "## Closed loop"
    echo
    echo "| side | C | events/s | p50 µs | p99 µs | max µs | server CPU µs/event | server core busy % | generator CPU % | others' CPU % (worst run) | errors |"
    echo "|---|---|---|---|---|---|---|---|---|---|---|"
    for c in $CONNECTIONS; do
        for side in floor ed25519 hmac; do row "$side" closed "$c"; done
    done
    echo
    echo "## Open loop at $OPEN_RATE events/s ($OPEN_EVENTS events, $OPEN_CONNECTIONS connections)"
    echo
    echo "| side | C | events/s | p50 µs | p99 µs | max µs | server CPU µs/event | server core busy % | generator CPU % | others' CPU % (worst run) | errors |"
    echo "|---|---|---|---|---|---|---|---|---|---|---|"
    row floor open "$OPEN_CONNECTIONS"
    row ed25519 open "$OPEN_CONNECTIONS"
    echo
    echo "## Start-up (exec → first 200 from /readyz, $STARTUP_RUNS runs each, idle before: $STARTUP_IDLE %)"
    echo
    echo "| data dir | median ms | max ms |"
    echo "|---|---|---|"
    echo "| fresh | $(jq .fresh_median_ms <<<"$STARTUP") | $(jq .fresh_max_ms <<<"$STARTUP") |"
    echo "| warm | $(jq .warm_median_ms <<<"$STARTUP") | $(jq .warm_max_ms <<<"$STARTUP") |"
    echo
    echo "## Targets"
    echo
    echo "| target | measured | verdict |"
    echo "|---|---|---|"
    echo "| ed25519 ≥ 0.8 × floor (closed loop, same C) | $best_rate / $floor_at_best events/s at C=$best_c = **$ratio_ed ×** | $(verdict "$ratio_ed" 0.8 ge) |"
    echo "| (stricter: vs the floor's best C=$floor_best_c) | $best_rate / $floor_best = $(ratio "$best_rate" "$floor_best") × | $(verdict "$(ratio "$best_rate" "$floor_best")" 0.8 ge) |"
    echo "| (HMAC source vs the ed25519 floor, same C; not like for like: HMAC is ~40 µs cheaper to verify) | $hmac_at_best / $floor_at_best = $(ratio "$hmac_at_best" "$floor_at_best") × | — |"
    echo "| p99 ≤ 2 ms at $OPEN_RATE/s (ed25519) | median p99 $open_p99 µs, worst run $open_p99_worst µs | $(verdict "$open_p99" 2000 le) |"
    echo "| serve ready < 150 ms | fresh $(jq .fresh_median_ms <<<"$STARTUP") ms, warm $(jq .warm_median_ms <<<"$STARTUP") ms (medians) | $(verdict "$(jq '[.fresh_median_ms, .warm_median_ms] | max' <<<"$STARTUP")" 150 le) |"
    echo
    echo "Raw JSON lines: $RAW"
} | tee "$RESULTS"
log "results written to $RESULTS (raw runs: $RAW)"
trap - EXIT
stop_server
rm -rf "$WORK/data" "$WORK/startup"
