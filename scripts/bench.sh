#!/usr/bin/env bash
# haltwire ingest benchmark: one run, one machine, fixed CPU pinning. scripts/perf-report.sh
# calls it for the ingest part of docs/performance.md; it also runs on its own.
#
#   scripts/bench.sh [RESULTS_FILE]
#
# Builds the release binary, then, with every server pinned to SERVER_CPU and every load
# generator to CLIENT_CPU, runs the STEPS:
#   verify   the verification ceiling: `haltwire bench verify` (the broker's own verifier in a
#            loop, no HTTP) for ed25519 and HMAC, and the storage cost: `haltwire bench store`
#            (bare sled and haltwire's store, no HTTP), STORE_REPS runs; all on SERVER_CPU;
#   closed   closed loop, swept over CONNECTIONS, for each of SIDES: `bare` (axum handler that only
#            reads the body: the framework floor), `floor` (axum + v1a verify + JSON parse: the
#            reference of issue #2's 0.8 × target), `ed25519` and `hmac` (`serve` with a
#            standard-webhooks-ed25519 / standard-webhooks source, durable ack); REPS runs each,
#            every `serve` on a fresh data directory;
#   open     open loop at OPEN_RATE events/s for each of OPEN_SIDES;
#   startup  `serve` from exec to its first 200 from /readyz, fresh and warm data directory.
# Prints a results table and writes it to RESULTS_FILE (default: a new file under /tmp). With
# OUT_DIR set, also leaves the raw JSON there for scripts/perf-report.sh: ingest.jsonl (one line
# per run), verify.jsonl, store.jsonl, startup.json, bench.env (the knobs used).
#
# The machine must be otherwise idle: before each measurement the script waits (up to
# QUIET_WAIT_S) until the CPUs are at least QUIET_IDLE_PCT idle, and it repeats a run during
# which other processes took more than FOREIGN_MAX_PCT of a core. Requires: cargo, taskset, jq.
#
# Knobs (environment): STEPS="verify closed open startup" SIDES="bare floor ed25519 hmac"
#   CONNECTIONS="16 32 64 128" REPS=3 EVENTS=40000 WARMUP=4000
#   OPEN_SIDES="floor ed25519 hmac" OPEN_RATE=1000 OPEN_EVENTS=20000 OPEN_CONNECTIONS=16
#   VERIFY_SECONDS=3 STORE_REPS=3 STARTUP_RUNS=10 FOREIGN_MAX_PCT=5 MAX_TRIES=5 OUT_DIR=
#   SERVER_CPU=1 CLIENT_CPU=0 QUIET_IDLE_PCT=90 QUIET_WAIT_S=900
#   HALTWIRE_BIN= (measure this binary instead of building; e.g. an older build to compare)

set -euo pipefail

STEPS=${STEPS:-"verify closed open startup"}
SIDES=${SIDES:-"bare floor ed25519 hmac"}
CONNECTIONS=${CONNECTIONS:-"16 32 64 128"}
REPS=${REPS:-3}
EVENTS=${EVENTS:-40000}
WARMUP=${WARMUP:-4000}
OPEN_SIDES=${OPEN_SIDES:-"floor ed25519 hmac"}
OPEN_RATE=${OPEN_RATE:-1000}
OPEN_EVENTS=${OPEN_EVENTS:-20000}
OPEN_CONNECTIONS=${OPEN_CONNECTIONS:-16}
VERIFY_SECONDS=${VERIFY_SECONDS:-3}
STORE_REPS=${STORE_REPS:-3}
STARTUP_RUNS=${STARTUP_RUNS:-10}
FOREIGN_MAX_PCT=${FOREIGN_MAX_PCT:-5}
MAX_TRIES=${MAX_TRIES:-5}

ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=$(mktemp -d /tmp/haltwire-bench.XXXXXX)
# shellcheck disable=SC2034 # read by log() in scripts/lib/bench-common.sh
LOG_NAME=bench.sh
# shellcheck source=scripts/lib/bench-common.sh
source "$ROOT/scripts/lib/bench-common.sh"
OUT_DIR=${OUT_DIR:-$WORK}
mkdir -p "$OUT_DIR"
RESULTS=${1:-$WORK/results.md}

require_tools cargo taskset jq

cleanup() {
    stop_server
    rm -rf "$WORK/data" "$WORK/startup" "$WORK/haltwire"
}
trap cleanup EXIT

has_step() { [[ " $STEPS " == *" $1 "* ]]; }

start_serve() {
    rm -rf "$WORK/data"
    start_server serve --listen 127.0.0.1:0 --data-dir "$WORK/data" --config "$WORK/haltwire.toml"
}

start_side() {
    case $1 in
        bare) start_server bench floor --listen 127.0.0.1:0 --only-read-body ;;
        floor) start_server bench floor --listen 127.0.0.1:0 --public-key "$PUBLIC_KEY" ;;
        *) start_serve ;;
    esac
}

# The source name and credential flags the load generator uses for each side. `bare` gets the
# same Ed25519-signed requests as `floor` and `ed25519`, so every side receives identical bytes.
credentials() {
    case $1 in
        bare | floor) echo "any-source --signing-key $WORK/signing.key" ;;
        ed25519) echo "bench-ed25519 --signing-key $WORK/signing.key" ;;
        hmac) echo "bench-hmac --secret-file $WORK/hmac.whsec" ;;
    esac
}

# Runs the load generator against SERVER_URL; prints its JSON line with: the server's CPU per
# request and how busy its core was; the idle share before the run; and the CPU that processes
# other than this benchmark used during the run (other engineers' builds), as a share of one core.
load() {
    local source=$1 credential=$2 connections=$3
    shift 3
    local idle json
    idle=$(wait_quiet)
    foreign_begin
    # $credential is deliberately split: it holds a flag and its value.
    # shellcheck disable=SC2086
    json=$(taskset -c "$CLIENT_CPU" "$BIN" bench ingest --url "$SERVER_URL" --source "$source" \
        $credential --connections "$connections" "$@" | tail -1) || true
    foreign_end
    local requests
    requests=$(jq '.events + .warmup' <<<"$json" 2>/dev/null || echo 0)
    if [[ -z "$json" || "$requests" == 0 ]]; then return; fi
    # Per request, warm-up included (the server idles while the generator signs); times the
    # measured rate it gives how busy the server's core was: near 100 % means saturated.
    local per_event=$((SERVER_TICKS * 10000 / requests))
    echo "$json" | jq -c --arg idle "$idle" --argjson us "$per_event" --argjson foreign "$FOREIGN_PCT" \
        '. + {idle_before: $idle, foreign_cpu_pct: $foreign, server_cpu_us_per_event: $us,
              server_busy_pct: ((.events_per_sec * $us / 10000) | round)}'
}

# REPS runs of one point, each against a freshly started server (and fresh data directory);
# appends one JSON line per run to RAW and shows it on stderr. A run during which other
# processes used more than FOREIGN_MAX_PCT of a core is discarded and repeated (up to
# MAX_TRIES times; the last try is kept and stays flagged by its foreign_cpu_pct).
point() {
    local side=$1 connections=$2 try source credential line
    shift 2
    read -r source credential <<<"$(credentials "$side")"
    for _ in $(seq "$REPS"); do
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

build_binary "$ROOT"

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

RAW=$OUT_DIR/ingest.jsonl
VERIFY=$OUT_DIR/verify.jsonl
STORE=$OUT_DIR/store.jsonl
: >"$RAW"
: >"$VERIFY"
: >"$STORE"
rm -f "$OUT_DIR/startup.json"
for knob in STEPS SIDES CONNECTIONS REPS EVENTS WARMUP OPEN_SIDES OPEN_RATE OPEN_EVENTS OPEN_CONNECTIONS \
    VERIFY_SECONDS STORE_REPS STARTUP_RUNS FOREIGN_MAX_PCT SERVER_CPU CLIENT_CPU; do
    printf '%s=%q\n' "$knob" "${!knob}"
done >"$OUT_DIR/bench.env"

if has_step verify; then
    log "verification ceiling (no HTTP), ${VERIFY_SECONDS}s per pass"
    for scheme in ed25519 hmac; do
        idle=$(wait_quiet)
        foreign_begin
        json=$(taskset -c "$SERVER_CPU" "$BIN" bench verify --scheme "$scheme" --seconds "$VERIFY_SECONDS" | tail -1)
        foreign_end
        jq -c --arg idle "$idle" --argjson foreign "$FOREIGN_PCT" '. + {idle_before: $idle, foreign_cpu_pct: $foreign}' \
            <<<"$json" | tee -a "$VERIFY" >&2
    done
    log "storage alone (no HTTP): bare sled and haltwire's store, $STORE_REPS runs"
    mkdir -p "$WORK/store"
    for _ in $(seq "$STORE_REPS"); do
        idle=$(wait_quiet)
        foreign_begin
        json=$(taskset -c "$SERVER_CPU" "$BIN" bench store --scratch "$WORK/store" | tail -1)
        foreign_end
        jq -c --arg idle "$idle" --argjson foreign "$FOREIGN_PCT" '. + {idle_before: $idle, foreign_cpu_pct: $foreign}' \
            <<<"$json" | tee -a "$STORE" >&2
    done
fi
if has_step closed; then
    log "closed loop: connections {$CONNECTIONS} x {$SIDES} x $REPS"
    for c in $CONNECTIONS; do
        for side in $SIDES; do
            point "$side" "$c" --events "$EVENTS" --warmup "$WARMUP"
        done
    done
fi
if has_step open; then
    log "open loop at $OPEN_RATE/s: {$OPEN_SIDES}"
    for side in $OPEN_SIDES; do
        point "$side" "$OPEN_CONNECTIONS" --rate "$OPEN_RATE" --events "$OPEN_EVENTS" --warmup 1000
    done
fi
if has_step startup; then
    log "start-up"
    mkdir -p "$WORK/startup"
    STARTUP_IDLE=$(wait_quiet)
    taskset -c "$CLIENT_CPU" "$BIN" bench startup --runs "$STARTUP_RUNS" --scratch "$WORK/startup" \
        --config "$WORK/haltwire.toml" --server-cpu "$SERVER_CPU" | tail -1 |
        jq -c --arg idle "$STARTUP_IDLE" '. + {idle_before: $idle}' >"$OUT_DIR/startup.json"
fi

# ---------------------------------------------------------------------------------------------
# Report: medians over repetitions.

pick() { # side, mode, connections → the JSON lines of that point
    jq -c --arg s "$1" --arg m "$2" --argjson c "$3" 'select(.side == $s and .mode == $m and .connections == $c)' "$RAW"
}
row() { # side mode connections → one table row of medians over the point's runs
    local lines
    lines=$(pick "$1" "$2" "$3")
    [[ -n "$lines" ]] || return 0
    printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$1" "$3" \
        "$(median_of events_per_sec <<<"$lines")" \
        "$(median_of p50_us <<<"$lines")" "$(median_of p99_us <<<"$lines")" \
        "$(median_of max_us <<<"$lines")" "$(median_of server_cpu_us_per_event <<<"$lines")" \
        "$(median_of server_busy_pct <<<"$lines")" "$(median_of generator_cpu_pct <<<"$lines")" \
        "$(jq -s -c 'map(.foreign_cpu_pct) | max' <<<"$lines")" "$(jq -s 'map(.errors) | add' <<<"$lines")"
}
rate() { pick "$1" closed "$2" | median_of events_per_sec; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }'; }
verdict() { awk -v v="$1" -v t="$2" -v op="$3" 'BEGIN { ok = (op == "ge") ? v >= t : v <= t; print ok ? "met" : "MISSED" }'; }
HEADER="| side | C | events/s | p50 µs | p99 µs | max µs | server CPU µs/event | server core busy % | generator CPU % | others' CPU % (worst run) | errors |"

{
    echo "# haltwire ingest benchmark — $(date -u +%Y-%m-%dT%H:%MZ)"
    echo
    echo "- binary: $(binary_description "$ROOT")"
    echo "- machine: $(machine_description)"
    echo "- pinning: servers \`taskset -c $SERVER_CPU\`, load generator \`taskset -c $CLIENT_CPU\`"
    echo "- closed loop: $EVENTS measured events (+$WARMUP warm-up), median of $REPS runs, fresh data dir per run"
    echo "- load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
    if [[ -s "$VERIFY" ]]; then
        echo
        echo "## Verification ceiling (one core, no HTTP)"
        echo
        echo "| scheme | verify /s | µs each | verify + parse /s | others' CPU % |"
        echo "|---|---|---|---|---|"
        jq -r '"| \(.scheme) | \(.verify_per_sec) | \(.verify_ns / 1000) | \(.verify_parse_per_sec) | \(.foreign_cpu_pct) |"' "$VERIFY"
    fi
    if [[ -s "$STORE" ]]; then
        echo
        echo "## Storage alone (one core, no HTTP; CPU µs per event, sled's I/O threads included)"
        echo
        echo "| bare sled: 2 inserts + flush per batch | haltwire store: put_batch + flush | batch | others' CPU % |"
        echo "|---|---|---|---|"
        jq -r '"| \(.sled.cpu_us_per_event) | \(.store.cpu_us_per_event) | \(.batch) | \(.foreign_cpu_pct) |"' "$STORE"
    fi
    if has_step closed; then
        echo
        echo "## Closed loop"
        echo
        echo "$HEADER"
        echo "|---|---|---|---|---|---|---|---|---|---|---|"
        for c in $CONNECTIONS; do
            for side in $SIDES; do row "$side" closed "$c"; done
        done
    fi
    if has_step open; then
        echo
        echo "## Open loop at $OPEN_RATE events/s ($OPEN_EVENTS events, $OPEN_CONNECTIONS connections)"
        echo
        echo "$HEADER"
        echo "|---|---|---|---|---|---|---|---|---|---|---|"
        for side in $OPEN_SIDES; do row "$side" open "$OPEN_CONNECTIONS"; done
    fi
    if [[ -s "$OUT_DIR/startup.json" ]]; then
        STARTUP=$(cat "$OUT_DIR/startup.json")
        echo
        echo "## Start-up (exec → first 200 from /readyz, $STARTUP_RUNS runs each, idle before: $(jq -r .idle_before <<<"$STARTUP") %)"
        echo
        echo "| data dir | median ms | max ms |"
        echo "|---|---|---|"
        echo "| fresh | $(jq .fresh_median_ms <<<"$STARTUP") | $(jq .fresh_max_ms <<<"$STARTUP") |"
        echo "| warm | $(jq .warm_median_ms <<<"$STARTUP") | $(jq .warm_max_ms <<<"$STARTUP") |"
    fi
    echo
    echo "## Targets"
    echo
    echo "| target | measured | verdict |"
    echo "|---|---|---|"
    if has_step closed && [[ " $SIDES " == *" ed25519 "* && " $SIDES " == *" floor "* ]]; then
        best_c="" best_rate=0 floor_best=0 floor_best_c=""
        for c in $CONNECTIONS; do
            r=$(rate ed25519 "$c")
            if ((r > best_rate)); then best_rate=$r best_c=$c; fi
            r=$(rate floor "$c")
            if ((r > floor_best)); then floor_best=$r floor_best_c=$c; fi
        done
        floor_at_best=$(rate floor "$best_c")
        ratio_ed=$(ratio "$best_rate" "$floor_at_best")
        echo "| ed25519 ≥ 0.8 × floor (closed loop, same C) | $best_rate / $floor_at_best events/s at C=$best_c = **$ratio_ed ×** | $(verdict "$ratio_ed" 0.8 ge) |"
        echo "| (stricter: vs the floor's best C=$floor_best_c) | $best_rate / $floor_best = $(ratio "$best_rate" "$floor_best") × | $(verdict "$(ratio "$best_rate" "$floor_best")" 0.8 ge) |"
        if [[ " $SIDES " == *" hmac "* ]]; then
            hmac_at_best=$(rate hmac "$best_c")
            echo "| (HMAC source vs the ed25519 floor, same C; not like for like: HMAC is ~40 µs cheaper to verify) | $hmac_at_best / $floor_at_best = $(ratio "$hmac_at_best" "$floor_at_best") × | — |"
        fi
    fi
    open_lines=$(jq -c 'select(.side == "ed25519" and .mode == "open")' "$RAW")
    if [[ -n "$open_lines" ]]; then
        open_p99=$(median_of p99_us <<<"$open_lines")
        open_p99_worst=$(jq -s 'map(.p99_us) | max' <<<"$open_lines")
        echo "| p99 ≤ 2 ms at $OPEN_RATE/s (ed25519) | median p99 $open_p99 µs, worst run $open_p99_worst µs | $(verdict "$open_p99" 2000 le) |"
    fi
    if [[ -s "$OUT_DIR/startup.json" ]]; then
        echo "| serve ready < 150 ms | fresh $(jq .fresh_median_ms <<<"$STARTUP") ms, warm $(jq .warm_median_ms <<<"$STARTUP") ms (medians) | $(verdict "$(jq '[.fresh_median_ms, .warm_median_ms] | max' <<<"$STARTUP")" 150 le) |"
    fi
    echo
    echo "Raw JSON lines: $RAW"
} | tee "$RESULTS"
log "results written to $RESULTS (raw runs: $RAW)"
