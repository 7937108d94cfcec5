#!/usr/bin/env bash
# Regenerates docs/performance.md: every figure in it, measured in one run on one machine.
#
#   scripts/perf-report.sh            # full run: ~30 min on a quiet 2-core machine
#   QUICK=1 scripts/perf-report.sh    # smoke run, ~5 min: tiny samples, figures not for publication;
#                                     # writes /tmp/haltwire-performance-quick.md unless OUT is set
#
# Builds the release binary and the Criterion benches once, then runs the PHASES:
#   verify ingest startup  scripts/bench.sh (STEPS=verify / closed+open / startup): the verification
#                          ceiling, ingest throughput and latency for the bare and floor handlers and
#                          the ed25519 and HMAC sources, cold start;
#   deliver   `haltwire bench deliver` at each of DELIVER_RATES (event posted → directive on the
#             session's SSE stream), a fresh broker per run;
#   hook      `haltwire bench hook` (PreToolUse process start → decision);
#   memory    RSS of an idle `serve`, then after MEM_EVENTS ingested events, and the data dir's
#             growth per event; then retention down to MEM_KEEP events and the size after it;
#   criterion `cargo bench --bench policy_eval --bench gate`, figures read from
#             target/criterion/**/new/estimates.json.
# Then writes OUT (whole file, generated): the Targets table, one section per phase with its
# method, machine and the exact command that reproduces it alone, and docs/performance-notes.md
# (hand-written analysis) verbatim at the end. Raw JSON stays in the printed directory;
# RENDER_ONLY=DIR re-renders OUT from such a directory without measuring.
#
# Knobs (environment; QUICK=1 changes the defaults marked q:):
#   PHASES="verify ingest startup deliver hook memory criterion" OUT=docs/performance.md (q: /tmp/…)
#   DELIVER_RATES="250 500 1000" DELIVER_EVENTS=2000 (q: 500) DELIVER_WARMUP=200 (q: 100)
#   DELIVER_REPS=3 (q: 1) DELIVER_CPUS=all (the broker and the bench unpinned)
#   HOOK_RUNS=1000 (q: 100) HOOK_WARMUP=20
#   MEM_EVENTS=1000000 (q: 100000) MEM_CHUNK=100000 (q: 50000) MEM_KEEP=MEM_EVENTS/10
#   MEM_CONNECTIONS=32 MEM_SWEEP_TIMEOUT_S=900
#   CRITERION_ARGS= (q: --quick --nresamples 1000)
#   and bench.sh's: SIDES CONNECTIONS (q: 32) REPS (q: 1) EVENTS (q: 3000) WARMUP (q: 500)
#   OPEN_SIDES OPEN_RATE OPEN_EVENTS (q: 2000) OPEN_CONNECTIONS VERIFY_SECONDS (q: 0.5)
#   STARTUP_RUNS (q: 3) MAX_TRIES (q: 1) FOREIGN_MAX_PCT
#   SERVER_CPU=1 CLIENT_CPU=0 QUIET_IDLE_PCT=90 QUIET_WAIT_S=900 (q: 0) HALTWIRE_BIN=
# Requires: cargo, taskset, jq, curl, du.

set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck disable=SC2034 # read by log() in scripts/lib/bench-common.sh
LOG_NAME=perf-report.sh

# Knobs the caller set, for the "this file was made with" line (before any defaults are applied).
KNOBS="QUICK PHASES DELIVER_RATES DELIVER_EVENTS DELIVER_WARMUP DELIVER_REPS DELIVER_CPUS HOOK_RUNS
HOOK_WARMUP MEM_EVENTS MEM_CHUNK MEM_KEEP MEM_CONNECTIONS MEM_SWEEP_TIMEOUT_S CRITERION_ARGS SIDES
CONNECTIONS REPS EVENTS WARMUP OPEN_SIDES OPEN_RATE OPEN_EVENTS OPEN_CONNECTIONS VERIFY_SECONDS
STARTUP_RUNS MAX_TRIES FOREIGN_MAX_PCT SERVER_CPU CLIENT_CPU QUIET_IDLE_PCT QUIET_WAIT_S HALTWIRE_BIN"
INVOCATION=""
for knob in $KNOBS; do
    if [[ -n "${!knob+set}" ]]; then INVOCATION+="$knob=$(printf '%q' "${!knob}") "; fi
done
INVOCATION+="scripts/perf-report.sh"

QUICK=${QUICK:-0}
q() { if [[ $QUICK == 1 ]]; then echo "$1"; else echo "$2"; fi; }
PHASES=${PHASES:-"verify ingest startup deliver hook memory criterion"}
# A QUICK run's figures are not for publication, so by default it does not touch the docs.
OUT=${OUT:-$(q /tmp/haltwire-performance-quick.md "$ROOT/docs/performance.md")}
NOTES=${NOTES:-$ROOT/docs/performance-notes.md}
DELIVER_RATES=${DELIVER_RATES:-"250 500 1000"}
DELIVER_EVENTS=${DELIVER_EVENTS:-$(q 500 2000)}
DELIVER_WARMUP=${DELIVER_WARMUP:-$(q 100 200)}
DELIVER_REPS=${DELIVER_REPS:-$(q 1 3)}
DELIVER_CPUS=${DELIVER_CPUS:-all}
HOOK_RUNS=${HOOK_RUNS:-$(q 100 1000)}
HOOK_WARMUP=${HOOK_WARMUP:-20}
MEM_EVENTS=${MEM_EVENTS:-$(q 100000 1000000)}
MEM_CHUNK=${MEM_CHUNK:-$(q 50000 100000)}
MEM_KEEP=${MEM_KEEP:-$((MEM_EVENTS / 10))}
MEM_CONNECTIONS=${MEM_CONNECTIONS:-32}
MEM_SWEEP_TIMEOUT_S=${MEM_SWEEP_TIMEOUT_S:-900}
CRITERION_ARGS=${CRITERION_ARGS-$(q "--quick --nresamples 1000" "")}
# bench.sh's knobs: QUICK shrinks them; otherwise bench.sh's own defaults apply.
if [[ $QUICK == 1 ]]; then
    export CONNECTIONS=${CONNECTIONS:-32} REPS=${REPS:-1} EVENTS=${EVENTS:-3000} WARMUP=${WARMUP:-500}
    export OPEN_EVENTS=${OPEN_EVENTS:-2000} VERIFY_SECONDS=${VERIFY_SECONDS:-0.5} STORE_REPS=${STORE_REPS:-1}
    export STARTUP_RUNS=${STARTUP_RUNS:-3} MAX_TRIES=${MAX_TRIES:-1} QUIET_WAIT_S=${QUIET_WAIT_S:-0}
fi

has_phase() { [[ " $PHASES " == *" $1 "* ]]; }

# ---------------------------------------------------------------------------------------------
# Measuring. Each phase leaves JSON in $RAW; nothing here formats the report.

measure_all() {
    WORK=$(mktemp -d /tmp/haltwire-perf.XXXXXX)
    RAW=$WORK/raw
    mkdir -p "$RAW"
    # shellcheck source=scripts/lib/bench-common.sh
    source "$ROOT/scripts/lib/bench-common.sh"
    require_tools cargo taskset jq curl du
    trap 'stop_server; rm -rf "$WORK/data" "$WORK/haltwire"' EXIT
    build_binary "$ROOT"
    if has_phase criterion; then
        log "building the Criterion benches"
        (cd "$ROOT" && cargo bench --locked --no-run --bench policy_eval --bench gate >&2)
    fi
    local started
    started=$(date +%s)
    jq -n --arg date "$(date -u +%Y-%m-%dT%H:%MZ)" --arg binary "$(binary_description "$ROOT")" \
        --arg machine "$(machine_description)" --arg invocation "$INVOCATION" --arg phases "$PHASES" \
        --arg quick "$QUICK" --arg server_cpu "$SERVER_CPU" --arg client_cpu "$CLIENT_CPU" \
        --arg load_before "$(cut -d' ' -f1-3 /proc/loadavg)" \
        '{date: $date, binary: $binary, machine: $machine, invocation: $invocation, phases: $phases,
          quick: ($quick == "1"), server_cpu: $server_cpu, client_cpu: $client_cpu, load_before: $load_before}' \
        >"$RAW/run.json"
    for knob in $KNOBS; do printf '%s=%q\n' "$knob" "${!knob-}"; done >"$RAW/knobs.env"

    measure_bench_sh
    if has_phase deliver; then measure_deliver; fi
    if has_phase hook; then measure_hook; fi
    if has_phase memory; then measure_memory; fi
    if has_phase criterion; then measure_criterion; fi
    jq --arg load "$(cut -d' ' -f1-3 /proc/loadavg)" --argjson seconds "$(($(date +%s) - started))" \
        '. + {load_after: $load, seconds: $seconds}' "$RAW/run.json" >"$RAW/run.json.new"
    mv "$RAW/run.json.new" "$RAW/run.json"
}

# verify, ingest and startup all come from scripts/bench.sh, with the binary built above.
measure_bench_sh() {
    local steps=""
    if has_phase verify; then steps+="verify "; fi
    if has_phase ingest; then steps+="closed open "; fi
    if has_phase startup; then steps+="startup "; fi
    [[ -n "$steps" ]] || return 0
    log "scripts/bench.sh: $steps"
    STEPS="$steps" OUT_DIR="$RAW" HALTWIRE_BIN="$BIN" "$ROOT/scripts/bench.sh" "$RAW/bench-results.md" >&2
}

# Adds the conditions of a measurement to its JSON line on stdin.
with_conditions() {
    jq -c --arg idle "$1" --argjson foreign "$2" '. + {idle_before: $idle, foreign_cpu_pct: $foreign}'
}

all_cpus() { echo "0-$(($(nproc) - 1))"; }

measure_deliver() {
    local cpus=$DELIVER_CPUS rep rate idle json data=$WORK/data
    [[ $cpus == all ]] && cpus=$(all_cpus)
    : >"$RAW/deliver.jsonl"
    for rep in $(seq "$DELIVER_REPS"); do
        for rate in $DELIVER_RATES; do
            log "deliver: $rate events/s (run $rep of $DELIVER_REPS)"
            rm -rf "$data"
            HALTWIRE_LOG=warn start_server_on "$cpus" serve --listen 127.0.0.1:0 --data-dir "$data"
            idle=$(wait_quiet)
            foreign_begin
            # Exits 1 when a directive went missing; the JSON line still says how many.
            json=$(taskset -c "$cpus" "$BIN" bench deliver --url "$SERVER_URL" \
                --secret-file "$data/secrets/generic.whsec" --rate "$rate" --events "$DELIVER_EVENTS" \
                --warmup "$DELIVER_WARMUP" | tail -1) || true
            foreign_end
            stop_server
            if [[ -n "$json" ]]; then
                with_conditions "$idle" "$FOREIGN_PCT" <<<"$json" | jq -c --argjson rep "$rep" '. + {rep: $rep}' |
                    tee -a "$RAW/deliver.jsonl" >&2
            fi
        done
    done
}

measure_hook() {
    local idle json data=$WORK/data
    log "hook: $HOOK_RUNS runs"
    rm -rf "$data"
    HALTWIRE_LOG=warn start_server serve --listen 127.0.0.1:0 --data-dir "$data"
    idle=$(wait_quiet)
    foreign_begin
    json=$(taskset -c "$CLIENT_CPU" "$BIN" bench hook --url "$SERVER_URL" --data-dir "$data" \
        --runs "$HOOK_RUNS" --warmup "$HOOK_WARMUP" | tail -1) || true
    foreign_end
    stop_server
    if [[ -n "$json" ]]; then with_conditions "$idle" "$FOREIGN_PCT" <<<"$json" | tee "$RAW/hook.json" >&2; fi
}

# VmRSS and VmHWM of a process, in KiB, as a JSON object.
proc_memory() {
    awk '/^VmRSS/ {rss = $2} /^VmHWM/ {hwm = $2} END {printf "{\"rss_kib\": %d, \"hwm_kib\": %d}\n", rss, hwm}' \
        "/proc/$1/status"
}

# Size of a directory: allocated KiB (du -sk) and apparent bytes (du -sb), as a JSON object.
dir_size() {
    printf '{"allocated_kib": %d, "apparent_bytes": %d}\n' "$(du -sk "$1" | cut -f1)" "$(du -sb "$1" | cut -f1)"
}

# haltwire_store_events from /metrics (set after every retention sweep), or -1.
store_events_metric() {
    curl -fsS "$SERVER_URL/metrics" 2>/dev/null | awk '$1 == "haltwire_store_events" {print int($2); found = 1} END {if (!found) print -1}'
}

measure_memory() {
    local data=$WORK/data config=$WORK/memory.toml idle loaded=0 n json
    umask 077
    "$BIN" keys generate --webhook hmac | grep -o 'whsec_[A-Za-z0-9+/=]*' >"$WORK/mem-hmac.whsec"
    write_memory_config() { # max_events sweep_interval_secs
        cat >"$config" <<EOF
[store]
max_events = $1
sweep_interval_secs = $2

[[source]]
name = "bench-hmac"
auth = "standard-webhooks"
secret_file = "mem-hmac.whsec"
EOF
    }
    log "memory: idle, then $MEM_EVENTS events in chunks of $MEM_CHUNK"
    rm -rf "$data"
    # Room for every event: nothing is deleted while loading.
    write_memory_config $((MEM_EVENTS * 2)) 60
    idle=$(wait_quiet)
    HALTWIRE_LOG=warn start_server serve --listen 127.0.0.1:0 --data-dir "$data" --config "$config"
    sleep 3
    jq -nc --argjson mem "$(proc_memory "$SERVER_PID")" --argjson disk "$(dir_size "$data")" \
        --arg idle "$idle" '{state: "idle", idle_before: $idle} + $mem + $disk' >"$RAW/memory.jsonl"
    : >"$RAW/memory-chunks.jsonl"
    foreign_begin
    while ((loaded < MEM_EVENTS)); do
        n=$((MEM_EVENTS - loaded < MEM_CHUNK ? MEM_EVENTS - loaded : MEM_CHUNK))
        json=$(taskset -c "$CLIENT_CPU" "$BIN" bench ingest --url "$SERVER_URL" --source bench-hmac \
            --secret-file "$WORK/mem-hmac.whsec" --connections "$MEM_CONNECTIONS" --events "$n" --warmup 0 |
            tail -1) || true
        if [[ -z "$json" ]] || (($(jq '.events - .errors' <<<"$json") <= 0)); then
            log "memory: a loading chunk failed: $json"
            break
        fi
        echo "$json" | jq -c --argjson before "$loaded" '. + {stored_before: $before}' >>"$RAW/memory-chunks.jsonl"
        loaded=$((loaded + $(jq '.events - .errors' <<<"$json")))
        log "memory: $loaded events stored"
    done
    foreign_end
    # Let the pipeline and the group committer finish with the last chunk.
    sleep 5
    jq -nc --argjson mem "$(proc_memory "$SERVER_PID")" --argjson disk "$(dir_size "$data")" \
        --argjson events "$loaded" --argjson foreign "$FOREIGN_PCT" \
        '{state: "loaded", events: $events, foreign_cpu_pct: $foreign} + $mem + $disk' >>"$RAW/memory.jsonl"
    stop_server
    jq -nc --argjson disk "$(dir_size "$data")" --argjson events "$loaded" \
        '{state: "stopped", events: $events} + $disk' >>"$RAW/memory.jsonl"

    log "memory: retention down to $MEM_KEEP events"
    write_memory_config "$MEM_KEEP" 1
    local t0 t1 count=-1 waited=0
    t0=$(date +%s%N)
    HALTWIRE_LOG=warn start_server serve --listen 127.0.0.1:0 --data-dir "$data" --config "$config"
    t1=$(date +%s%N)
    jq -nc --argjson mem "$(proc_memory "$SERVER_PID")" --argjson events "$loaded" \
        --argjson ms "$(((t1 - t0) / 1000000))" \
        '{state: "restarted", events: $events, listening_after_ms: $ms} + $mem' >>"$RAW/memory.jsonl"
    while ((waited < MEM_SWEEP_TIMEOUT_S)); do
        count=$(store_events_metric)
        if ((count >= 0 && count <= MEM_KEEP)); then break; fi
        sleep 1
        waited=$((waited + 1))
    done
    local t2
    t2=$(date +%s%N)
    jq -nc --argjson mem "$(proc_memory "$SERVER_PID")" --argjson disk "$(dir_size "$data")" \
        --argjson events "$count" --argjson s "$(((t2 - t1) / 1000000000))" \
        '{state: "after_retention", events: $events, sweep_s: $s} + $mem + $disk' >>"$RAW/memory.jsonl"
    stop_server
    jq -nc --argjson disk "$(dir_size "$data")" --argjson events "$count" \
        '{state: "after_retention_stopped", events: $events} + $disk' >>"$RAW/memory.jsonl"
    rm -rf "$data"
    cat "$RAW/memory.jsonl" >&2
}

criterion_dir() { echo "${CARGO_TARGET_DIR:-$ROOT/target}/criterion"; }

measure_criterion() {
    local dir idle
    dir=$(criterion_dir)
    # Old results must not pass for new ones.
    rm -rf "$dir/policy_eval" "$dir/policy_load" "$dir/gate_check"
    idle=$(wait_quiet)
    log "criterion: policy_eval and gate on CPU $SERVER_CPU ${CRITERION_ARGS:+($CRITERION_ARGS)}"
    foreign_begin
    # shellcheck disable=SC2086 # CRITERION_ARGS is a list of flags
    (cd "$ROOT" && taskset -c "$SERVER_CPU" cargo bench --locked --bench policy_eval --bench gate -- $CRITERION_ARGS >&2)
    foreign_end
    : >"$RAW/criterion.jsonl"
    local file id
    while IFS= read -r file; do
        id=${file#"$dir"/}
        id=${id%/new/estimates.json}
        # The slope where Criterion fitted one (linear sampling), else the mean; in ns.
        jq -c --arg id "$id" '(.slope // .mean) as $e |
            {id: $id, ns: $e.point_estimate, lo_ns: $e.confidence_interval.lower_bound,
             hi_ns: $e.confidence_interval.upper_bound}' "$file" >>"$RAW/criterion.jsonl"
    done < <(find "$dir/policy_eval" "$dir/policy_load" "$dir/gate_check" -path '*/new/estimates.json' | sort)
    jq -n --arg idle "$idle" --argjson foreign "$FOREIGN_PCT" --arg args "$CRITERION_ARGS" \
        '{idle_before: $idle, foreign_cpu_pct: $foreign, args: $args}' >"$RAW/criterion-run.json"
}

# ---------------------------------------------------------------------------------------------
# Rendering: RAW → Markdown. Every number printed comes from a file in RAW.

# "1 234 567" (thin grouping like the hand-written tables had), integers only.
num() { awk -v n="$1" 'BEGIN { if (n == "" || n == "null") { print "—"; exit } s = sprintf("%.0f", n); out = ""; while (length(s) > 3) { out = " " substr(s, length(s) - 2) out; s = substr(s, 1, length(s) - 3) } print s out }'; }
one_decimal() { awk -v n="$1" 'BEGIN { if (n == "" || n == "null") print "null"; else printf "%.1f\n", n }'; }
# µs → "1.23 ms" / "845 µs"
dur_us() { awk -v u="$1" 'BEGIN { if (u == "" || u == "null") print "—"; else if (u >= 1e6) printf "%.2f s\n", u / 1e6; else if (u >= 1000) printf "%.2f ms\n", u / 1000; else printf "%.0f µs\n", u }'; }
# ns → "1.23 µs" / "111 ns" / "1.02 s"
dur_ns() { awk -v n="$1" 'BEGIN { if (n == "" || n == "null") print "—"; else if (n >= 1e9) printf "%.2f s\n", n / 1e9; else if (n >= 1e6) printf "%.1f ms\n", n / 1e6; else if (n >= 1e3) printf "%.2f µs\n", n / 1e3; else printf "%.0f ns\n", n }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "null" || b == "null" || b + 0 == 0) print "—"; else printf "%.2f\n", a / b }'; }
# Verdict for "value ≤ budget" (le, the excess formatted by the function named in $4, e.g.
# dur_us) or "value ≥ target" (ge, a ratio), saying by how much a miss misses.
verdict() {
    local v=$1 t=$2 op=$3 fmt=${4:-}
    if [[ -z "$v" || "$v" == null ]]; then echo "not measured"; return; fi
    if [[ $op == le ]]; then
        if awk -v v="$v" -v t="$t" 'BEGIN { exit !(v <= t) }'; then echo met; return; fi
        echo "**MISSED** by $($fmt "$(awk -v v="$v" -v t="$t" 'BEGIN { print v - t }')") ($(awk -v v="$v" -v t="$t" 'BEGIN { printf "%.1f", v / t }') × the budget)"
    else
        if awk -v v="$v" -v t="$t" 'BEGIN { exit !(v >= t) }'; then echo met; return; fi
        awk -v v="$v" -v t="$t" 'BEGIN { printf "**MISSED** by %.2f (%.0f %% short: needs %.0f %% more events/s)\n", t - v, 100 * (t - v) / t, 100 * (t / v - 1) }'
    fi
}
ms() { awk -v m="$1" 'BEGIN { printf "%.1f ms\n", m }'; }
# Idle share before a measurement, flagged when the script gave up waiting for a quiet machine.
idle_note() { if [[ "$1" == *! ]]; then echo "${1%!} % (**busy: not a quiet-machine figure**)"; else echo "$1 %"; fi; }

# Median of field $2 over the JSON lines of file $1 that match jq filter $3.
med() { [[ -s "$1" ]] && jq -c "select($3)" "$1" | median_of "$2" || echo null; }
worst() { [[ -s "$1" ]] && jq -s "map(select($3) | .$2) | max" "$1" || echo null; }
crit() { [[ -s "$RAW/criterion.jsonl" ]] && jq -r --arg id "$1" 'select(.id == $id) | .ns' "$RAW/criterion.jsonl" | head -1 | grep . || echo null; }
crit_ci() {
    [[ -s "$RAW/criterion.jsonl" ]] || { echo "—"; return; }
    local line
    line=$(jq -c --arg id "$1" 'select(.id == $id)' "$RAW/criterion.jsonl" | head -1)
    [[ -n "$line" ]] || { echo "not measured"; return; }
    echo "$(dur_ns "$(jq .ns <<<"$line")") ($(dur_ns "$(jq .lo_ns <<<"$line")")–$(dur_ns "$(jq .hi_ns <<<"$line")"))"
}

# Ingest: the connection count at which the ed25519 source did best, and the rates there.
ingest_best() {
    INGEST=$RAW/ingest.jsonl
    BEST_C=null BEST_ED=null FLOOR_AT_BEST=null
    [[ -s "$INGEST" ]] || return 0
    local c r
    for c in $(jq -s -r 'map(select(.mode == "closed") | .connections) | unique | .[]' "$INGEST"); do
        r=$(med "$INGEST" events_per_sec ".side == \"ed25519\" and .mode == \"closed\" and .connections == $c")
        if [[ $r != null ]] && { [[ $BEST_ED == null ]] || ((r > BEST_ED)); }; then BEST_ED=$r BEST_C=$c; fi
    done
    [[ $BEST_C != null ]] || return 0
    FLOOR_AT_BEST=$(closed_rate floor "$BEST_C")
}

# Storage alone: each bare-sled layout's and the store's CPU per event, the floor's CPU per event
# at the best C, and the ratio a broker that did nothing but that layout's sled writes could reach
# under that floor.
store_ceiling() {
    local store=$RAW/store.jsonl
    SLED_US=null BATCHED_US=null APPEND_US=null STORE_US=null FLOOR_US=null
    SLED_CEILING=null BATCHED_CEILING=null APPEND_CEILING=null
    [[ -s "$store" ]] || return 0
    SLED_US=$(one_decimal "$(med "$store" sled.cpu_us_per_event true)")
    BATCHED_US=$(one_decimal "$(med "$store" sled_batched.cpu_us_per_event true)")
    APPEND_US=$(one_decimal "$(med "$store" sled_append.cpu_us_per_event true)")
    STORE_US=$(one_decimal "$(med "$store" store.cpu_us_per_event true)")
    [[ $BEST_C != null ]] || return 0
    FLOOR_US=$(one_decimal "$(med "$INGEST" server_cpu_us_per_event ".side == \"floor\" and .mode == \"closed\" and .connections == $BEST_C")")
    [[ $FLOOR_US != null ]] || return 0
    SLED_CEILING=$(ceiling_under_floor "$SLED_US")
    BATCHED_CEILING=$(ceiling_under_floor "$BATCHED_US")
    APPEND_CEILING=$(ceiling_under_floor "$APPEND_US")
}
ceiling_under_floor() { # µs per event of storage → floor / (floor + it), or null
    [[ $1 != null ]] || { echo null; return; }
    awk -v f="$FLOOR_US" -v s="$1" 'BEGIN { printf "%.2f", f / (f + s) }'
}
closed_rate() { med "$INGEST" events_per_sec ".side == \"$1\" and .mode == \"closed\" and .connections == $2"; }
best_rate() { # side → the best median events/s over all C
    local c r best=null
    for c in $(jq -s -r 'map(select(.mode == "closed") | .connections) | unique | .[]' "$INGEST"); do
        r=$(closed_rate "$1" "$c")
        if [[ $r != null ]] && { [[ $best == null ]] || ((r > best)); }; then best=$r; fi
    done
    echo "$best"
}

bench_knob() { # name → its value in this run's bench.sh (from bench.env)
    (
        # shellcheck disable=SC1091
        source "$RAW/bench.env" 2>/dev/null || true
        echo "${!1-}"
    )
}
knob() { # name → its value in this run of this script (from knobs.env)
    (
        # shellcheck disable=SC1091
        source "$RAW/knobs.env"
        echo "${!1-}"
    )
}

render() {
    local run
    run=$RAW/run.json
    ingest_best
    store_ceiling
    {
        echo "# Performance"
        echo
        echo "<!-- Generated by scripts/perf-report.sh; do not edit by hand. The analysis at the end is"
        echo "     docs/performance-notes.md, included verbatim. -->"
        echo
        echo "Every figure below comes from one run of one command on one machine:"
        echo
        echo '```sh'
        echo "scripts/perf-report.sh          # ~30 min on a quiet 2-core machine; rewrites this file"
        echo "QUICK=1 scripts/perf-report.sh  # ~5 min smoke run with tiny samples (not for publication)"
        echo '```'
        echo
        echo "Each section says what was measured, how, and the command that reproduces that figure alone."
        echo
        render_run
        render_targets
        render_ingest
        render_deliver
        render_hook
        render_criterion
        render_memory
        render_startup
        if [[ -s "$NOTES" ]]; then
            echo
            cat "$NOTES"
        fi
    } >"$OUT"
    log "wrote $OUT"
}

render_run() {
    local run=$RAW/run.json
    echo "## This run"
    echo
    if [[ $(jq -r .quick "$run") == true ]]; then
        echo "**QUICK=1: a smoke run with tiny samples. These figures show the format only; do not publish them.**"
        echo
    fi
    echo "- date: $(jq -r .date "$run"); measuring took $(jq -r '(.seconds // 0) / 60 | floor' "$run") min $(jq -r '(.seconds // 0) % 60' "$run") s after the build; binary $(jq -r .binary "$run")"
    echo "- machine: $(jq -r .machine "$run")"
    echo "- pinning: servers \`taskset -c $(jq -r .server_cpu "$run")\`, load generators \`taskset -c $(jq -r .client_cpu "$run")\` (except where a section says otherwise)"
    echo "- load average before / after: $(jq -r .load_before "$run") / $(jq -r '.load_after // "?"' "$run")"
    echo "- command: \`$(jq -r .invocation "$run")\`"
    echo "- every section gives the idle share of the CPUs just before it started and the CPU other processes"
    echo "  used while it ran (\"others' CPU\", % of one core; ± a few % of tick noise): figures taken with"
    echo "  others' CPU above ~5 % are not quiet-machine figures."
    echo
}

render_targets() {
    local deliver=$RAW/deliver.jsonl hook=$RAW/hook.json startup=$RAW/startup.json
    echo "## Targets"
    echo
    echo "| issue | target | measured | verdict |"
    echo "|---|---|---|---|"
    local ratio_ed="null" measured="not measured"
    if [[ $BEST_C != null && $FLOOR_AT_BEST != null ]]; then
        ratio_ed=$(ratio "$BEST_ED" "$FLOOR_AT_BEST")
        measured="$(num "$BEST_ED") / $(num "$FLOOR_AT_BEST") events/s at C = $BEST_C: **$ratio_ed ×**"
    fi
    if [[ $SLED_CEILING != null ]]; then
        measured+="; bare sled's cost for one entry per event per order caps a broker at **$SLED_CEILING ×** (see *Storage alone*)"
    fi
    echo "| #2 | ed25519 source with durable ack ≥ 0.8 × the floor (axum + verify + parse), closed loop | $measured | $(verdict "$ratio_ed" 0.8 ge) |"
    local open_p99
    open_p99=$(med "$INGEST" p99_us '.side == "ed25519" and .mode == "open"')
    echo "| #2 | ed25519 p99 ≤ 2 ms at a fixed $(bench_knob OPEN_RATE) events/s | $(dur_us "$open_p99") (median of runs) | $(verdict "$open_p99" 2000 le dur_us) |"
    local ready=null
    [[ -s "$startup" ]] && ready=$(jq '[.fresh_median_ms, .warm_median_ms] | max' "$startup")
    echo "| #2 | \`serve\` ready < 150 ms after exec | $([[ -s $startup ]] && jq -r '"fresh \(.fresh_median_ms) ms, warm \(.warm_median_ms) ms (medians)"' "$startup" || echo "not measured") | $(verdict "$ready" 150 le ms) |"
    local policy gate
    policy=null
    if [[ -s "$RAW/criterion.jsonl" ]]; then
        policy=$(jq -sr 'map(select(.id == "policy_eval/no_match/1000" or .id == "policy_eval/last_matches/1000") | .ns) | max // "null"' "$RAW/criterion.jsonl")
    fi
    gate=$(crit "gate_check/extract_and_check/10000")
    echo "| #5 | policy evaluation, 1 000 policies ≤ 20 µs per event | $(dur_ns "$policy") (worst of no-match / last-matches) | $(verdict "$policy" 20000 le dur_ns) |"
    echo "| #5 | gate check with 10 000 active blocks ≤ 50 µs in-process | $(dur_ns "$gate") with object extraction ($(dur_ns "$(crit gate_check/deny_variant/10000)") the check alone) | $(verdict "$gate" 50000 le dur_ns) |"
    local d_p99
    d_p99=$(med "$deliver" p99_us '.rate == 1000')
    echo "| #6 | event posted → directive on the stream, p99 ≤ 5 ms at 1 000 events/s | $(dur_us "$d_p99") (median of runs; worst $(dur_us "$(worst "$deliver" p99_us '.rate == 1000')")) | $(verdict "$d_p99" 5000 le dur_us) |"
    local h50=null h99=null
    [[ -s "$hook" ]] && h50=$(jq .p50_us "$hook") h99=$(jq .p99_us "$hook")
    echo "| #6 | hook PreToolUse process start → decision p50 ≤ 5 ms | $(dur_us "$h50") | $(verdict "$h50" 5000 le dur_us) |"
    echo "| #6 | … and p99 ≤ 10 ms | $(dur_us "$h99") | $(verdict "$h99" 10000 le dur_us) |"
    echo
    echo "Why the misses happen is in the hand-written analysis at the end."
    echo
}

# Prints a section heading; when none of the raw files is there (the phase did not run), says so
# and fails, so the caller returns: `section "## Title" FILE... || return 0`.
section() {
    local title=$1 file
    shift
    echo "$title"
    echo
    for file in "$@"; do
        if [[ -s "$file" ]]; then return 0; fi
    done
    echo "Not measured in this run (PHASES)."
    echo
    return 1
}

render_ingest() {
    local verify=$RAW/verify.jsonl
    section "## Ingest: throughput and latency with durable ack" "$INGEST" "$verify" || return 0
    echo "**What is measured.** How many signed events per second \`haltwire serve\` accepts with a durable"
    echo "\`202\` (stored and flushed by the group commit) on one core, next to what the same core can do"
    echo "with less work: the verification alone with no HTTP (the ceiling), a bare axum handler that only"
    echo "reads the body (the framework floor), and the floor of issue #2 (axum, header checks, Ed25519"
    echo "\`verify_strict\`, JSON parse, no storage)."
    echo
    echo "**Method.** \`scripts/bench.sh\`: every server under \`taskset -c $(jq -r .server_cpu "$RAW/run.json")\`, the"
    echo "load generator (\`haltwire bench ingest\`: pre-signed distinct ~220-byte native events over"
    echo "keep-alive HTTP/1.1, closed loop, and open loop at a fixed rate with latency from the intended"
    echo "send time) under \`taskset -c $(jq -r .client_cpu "$RAW/run.json")\`. Each run starts a fresh server (and data"
    echo "directory); median over $(bench_knob REPS) run(s) of $(num "$(bench_knob EVENTS)") events (+$(num "$(bench_knob WARMUP)") warm-up) per"
    echo "point; a run during which other processes used more than $(bench_knob FOREIGN_MAX_PCT) % of a core is repeated. Every side"
    echo "receives the same Ed25519-signed requests, except the HMAC source. The verification ceiling"
    echo "(\`haltwire bench verify\`) calls the broker's own \`SourceVerifier::verify\` in a loop on one"
    echo "thread for $(bench_knob VERIFY_SECONDS) s, then again with the JSON parse. Where a row's generator CPU nears 100 %, the"
    echo "one-thread load generator, not the server, set the pace (likely for \`bare\`): that figure is a lower bound."
    echo
    if [[ -s "$verify" ]]; then
        local ed_ceiling
        ed_ceiling=$(jq -s 'map(select(.scheme == "ed25519"))[0].verify_per_sec // null' "$verify")
        echo "### Side by side (one core each)"
        echo
        echo "| what | events/s | per event | vs the ed25519 verify ceiling |"
        echo "|---|---:|---:|---:|"
        local scheme f
        for scheme in ed25519 hmac; do
            f=".scheme == \"$scheme\""
            [[ -n "$(jq -c "select($f)" "$verify")" ]] || continue
            side_row "$scheme verification only, no HTTP (ceiling)" "$(med "$verify" verify_per_sec "$f")" "$ed_ceiling"
            side_row "$scheme verification + JSON parse, no HTTP" "$(med "$verify" verify_parse_per_sec "$f")" "$ed_ceiling"
        done
        if [[ -s "$INGEST" ]]; then
            local side label r
            for side in bare floor ed25519 hmac; do
                case $side in
                    bare) label="bare axum handler, reads the body only (framework floor)" ;;
                    floor) label="floor: axum + ed25519 verify + JSON parse (issue #2's reference)" ;;
                    ed25519) label="\`serve\`, standard-webhooks-ed25519 source, durable ack" ;;
                    hmac) label="\`serve\`, standard-webhooks (HMAC) source, durable ack" ;;
                esac
                r=$(best_rate "$side")
                [[ $r != null ]] || continue
                side_row "$label (best C)" "$r" "$ed_ceiling"
            done
        fi
        echo
        jq -r '"Verification ceiling runs: \(.scheme) idle before \(.idle_before) %, others\u0027 CPU \(.foreign_cpu_pct) %, the bench itself \(.verify_cpu_pct) % of its core."' "$verify"
        echo
    fi
    render_store
    if [[ -s "$INGEST" ]]; then
        echo "### Closed loop (medians per point)"
        echo
        echo "| side | C | events/s | p50 | p99 | max | server CPU µs/event | server core busy % | generator CPU % | others' CPU % (worst run) | errors |"
        echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
        local c side lines
        for c in $(jq -s -r 'map(select(.mode == "closed") | .connections) | unique | .[]' "$INGEST"); do
            for side in bare floor ed25519 hmac; do
                lines=$(jq -c --arg s "$side" --argjson c "$c" 'select(.side == $s and .mode == "closed" and .connections == $c)' "$INGEST")
                [[ -n "$lines" ]] || continue
                ingest_row "$side" "$c" "$lines"
            done
        done
        echo
        local open
        open=$(jq -c 'select(.mode == "open")' "$INGEST")
        if [[ -n "$open" ]]; then
            echo "### Open loop at $(bench_knob OPEN_RATE) events/s ($(num "$(bench_knob OPEN_EVENTS)") events, $(bench_knob OPEN_CONNECTIONS) connections; latency from the intended send time)"
            echo
            echo "| side | C | events/s | p50 | p99 | max | server CPU µs/event | server core busy % | generator CPU % | others' CPU % (worst run) | errors |"
            echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
            for side in bare floor ed25519 hmac; do
                lines=$(jq -c --arg s "$side" 'select(.side == $s and .mode == "open")' <<<"$open")
                [[ -n "$lines" ]] || continue
                ingest_row "$side" "$(bench_knob OPEN_CONNECTIONS)" "$lines"
            done
            echo
        fi
    fi
    echo "**Reproduce.** The whole section, or one part of it (server on CPU $(jq -r .server_cpu "$RAW/run.json"), generator on CPU $(jq -r .client_cpu "$RAW/run.json")):"
    echo
    echo '```sh'
    echo "STEPS=\"verify closed open\" SIDES=\"$(bench_knob SIDES)\" CONNECTIONS=\"$(bench_knob CONNECTIONS)\" REPS=$(bench_knob REPS) \\"
    echo "  EVENTS=$(bench_knob EVENTS) WARMUP=$(bench_knob WARMUP) OPEN_SIDES=\"$(bench_knob OPEN_SIDES)\" OPEN_RATE=$(bench_knob OPEN_RATE) \\"
    echo "  OPEN_EVENTS=$(bench_knob OPEN_EVENTS) OPEN_CONNECTIONS=$(bench_knob OPEN_CONNECTIONS) VERIFY_SECONDS=$(bench_knob VERIFY_SECONDS) scripts/bench.sh"
    echo "STEPS=verify scripts/bench.sh                                   # the ceilings only"
    echo "STEPS=closed SIDES=\"floor ed25519\" CONNECTIONS=${BEST_C/null/64} scripts/bench.sh  # the 0.8 × ratio only"
    echo "# by hand, one point:"
    echo "taskset -c 1 haltwire bench verify --scheme ed25519 --seconds 3"
    echo "taskset -c 1 haltwire bench floor --only-read-body            # or --public-key whpk_… for the floor"
    echo "taskset -c 1 haltwire serve --listen 127.0.0.1:0 --data-dir D --config haltwire.toml   # a bench-ed25519 source"
    echo "taskset -c 0 haltwire bench ingest --url URL --source bench-ed25519 --signing-key whsk.key \\"
    echo "  --connections ${BEST_C/null/64} --events $(bench_knob EVENTS) --warmup $(bench_knob WARMUP)   # add --rate $(bench_knob OPEN_RATE) for the open loop"
    echo '```'
    echo
}

render_store() {
    local store=$RAW/store.jsonl
    [[ -s "$store" ]] || return 0
    echo "### Storage alone (one core, no HTTP)"
    echo
    echo "\`haltwire bench store\` under the server's pinning: $(num "$(jq -s '.[0].events' "$store")") events of"
    echo "$(jq -s '.[0].event_bytes' "$store") bytes (the load generator's bodies as the \`generic\` integration stores them),"
    echo "written in group commits of $(jq -s '.[0].batch' "$store") (the batch size the closed loop at C = 64 produces),"
    echo "one flush each. CPU time of the whole process, sled's I/O threads included, per event; median"
    echo "of $(jq -s length "$store") run(s)."
    echo
    echo "| what | CPU per event | a broker doing only this beside the floor |"
    echo "|---|---:|---:|"
    echo "| bare sled 0.34, one entry per event in each order: the encoded event under its id, its dedup key | $SLED_US µs | $SLED_CEILING × |"
    echo "| bare sled 0.34, the batch's events in one value, one dedup-key entry per event | $BATCHED_US µs | $BATCHED_CEILING × |"
    echo "| bare sled 0.34, the batch's events in one value, nothing per event (dedup index kept outside sled) | $APPEND_US µs | $APPEND_CEILING × |"
    echo "| haltwire's store as the group committer drives it (dedup check, transaction, count, encoding) | $STORE_US µs | |"
    if [[ $SLED_CEILING != null ]]; then
        echo "| the floor handler, whole server, at C = $BEST_C (from the closed loop below) | $FLOOR_US µs | 1 × |"
        echo
        echo "The last column is floor / (floor + that storage cost): the throughput, as a share of the"
        echo "floor's, of a broker that added nothing to the floor but those sled writes. Bare passes write"
        echo "values encoded before the clock starts, with no reads, no transaction and no count."
        echo "\`docs/performance-notes.md\` explains what this means for issue #2."
    fi
    echo
}

side_row() { # label events/s ceiling → one row of the side-by-side table
    echo "| $1 | $(num "$2") | $(awk -v r="$2" 'BEGIN { if (r + 0 > 0) printf "%.2f µs\n", 1e6 / r; else print "—" }') | $(ratio "$2" "$3") × |"
}

ingest_row() { # side C lines
    local lines=$3
    printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$1" "$2" \
        "$(num "$(median_of events_per_sec <<<"$lines")")" \
        "$(dur_us "$(median_of p50_us <<<"$lines")")" "$(dur_us "$(median_of p99_us <<<"$lines")")" \
        "$(dur_us "$(median_of max_us <<<"$lines")")" "$(median_of server_cpu_us_per_event <<<"$lines")" \
        "$(median_of server_busy_pct <<<"$lines")" "$(median_of generator_cpu_pct <<<"$lines")" \
        "$(jq -s -c 'map(.foreign_cpu_pct) | max' <<<"$lines")" "$(jq -s 'map(.errors) | add' <<<"$lines")"
}

render_deliver() {
    local deliver=$RAW/deliver.jsonl
    section "## Event → directive (posted event to signed directive on the session's SSE stream)" "$deliver" || return 0
    echo "**What is measured.** The time from posting a security event to its signed directive arriving on"
    echo "the agent session's SSE stream, at fixed rates. Every event passes ingest (auth, decode, group"
    echo "commit), correlation to the session, the policy, the block, the delivery queue and its flush, and"
    echo "signing on the stream: every event becomes a block and a directive, the worst case."
    echo
    echo "**Method.** A fresh \`haltwire serve\` per run (release, default config, so the shipped default"
    echo "policy blocks every event below; \`HALTWIRE_LOG=warn\`); \`haltwire bench deliver\` registers one"
    echo "agent session (a \`sleep\` child, channel \`sse\`), opens its stream, pre-signs every event (a blocked"
    echo "\`curl\` whose parent is the session's process) and posts them open loop from 8 keep-alive sender"
    echo "threads through the \`generic\` source: event *i* is due at t0 + i/R and its latency runs from that"
    echo "intended time (no coordinated omission) to the SSE frame naming its event id. $(num "$(knob DELIVER_EVENTS)") measured"
    echo "events (+$(knob DELIVER_WARMUP) warm-up) per run, $(knob DELIVER_REPS) run(s) per rate; medians over runs. The"
    echo "bench never acknowledges, so past 256 pending directives the oldest is dropped (the default"
    echo "bound). Broker and bench are **not pinned** (\`taskset -c $(knob DELIVER_CPUS | sed "s/^all$/$(all_cpus)/")\`): pinned to one core each, the"
    echo "pipeline, the committer and the HTTP workers share one core and fall behind at 1 000/s."
    echo
    echo "| rate (events/s) | runs | delivered | p50 | p90 | p99 (worst run) | max | post → 202 p50 / p99 | 202 → stream p50 / p99 | missing | others' CPU % (worst) | idle before |"
    echo "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    local rate f
    for rate in $(jq -s -r 'map(.rate) | unique | .[]' "$deliver"); do
        f=".rate == $rate"
        printf '| %s | %s | %s | %s | %s | %s (%s) | %s | %s / %s | %s / %s | %s | %s | %s |\n' \
            "$(num "$rate")" "$(jq -s "map(select($f)) | length" "$deliver")" \
            "$(med "$deliver" delivered "$f")" \
            "$(dur_us "$(med "$deliver" p50_us "$f")")" "$(dur_us "$(med "$deliver" p90_us "$f")")" \
            "$(dur_us "$(med "$deliver" p99_us "$f")")" "$(dur_us "$(worst "$deliver" p99_us "$f")")" \
            "$(dur_us "$(med "$deliver" max_us "$f")")" \
            "$(dur_us "$(med "$deliver" ingest_p50_us "$f")")" "$(dur_us "$(med "$deliver" ingest_p99_us "$f")")" \
            "$(dur_us "$(med "$deliver" after_202_p50_us "$f")")" "$(dur_us "$(med "$deliver" after_202_p99_us "$f")")" \
            "$(jq -s "map(select($f) | .missing) | add" "$deliver")" "$(worst "$deliver" foreign_cpu_pct "$f")" \
            "$(jq -s -r "map(select($f) | .idle_before | if endswith(\"!\") then rtrimstr(\"!\") + \" % (busy)\" else . + \" %\" end) | join(\", \")" "$deliver")"
    done
    echo
    echo "**Reproduce.**"
    echo
    echo '```sh'
    echo "OUT=/tmp/perf.md PHASES=deliver DELIVER_RATES=1000 scripts/perf-report.sh   # this table, one rate"
    echo "# by hand:"
    echo "HALTWIRE_LOG=warn haltwire serve --listen 127.0.0.1:4258 --data-dir /tmp/hw &"
    echo "haltwire bench deliver --url http://127.0.0.1:4258 --secret-file /tmp/hw/secrets/generic.whsec \\"
    echo "  --rate 1000 --events $(knob DELIVER_EVENTS) --warmup $(knob DELIVER_WARMUP)"
    echo '```'
    echo
}

render_hook() {
    local hook=$RAW/hook.json
    section "## Claude Code hook: \`PreToolUse\` process start → decision" "$hook" || return 0
    echo "**What is measured.** How long Claude Code waits for \`haltwire hook claude\` at \`PreToolUse\`: from"
    echo "spawning the process to its exit, when the decision is complete."
    echo
    echo "**Method.** A fresh \`haltwire serve\` on CPU $(jq -r .server_cpu "$RAW/run.json"); \`haltwire bench hook\` on CPU"
    echo "$(jq -r .client_cpu "$RAW/run.json") first sends one \`SessionStart\`, then spawns the hook the way Claude Code does (a new"
    echo "process, the \`PreToolUse\` JSON of a \`Bash\` call on stdin, a fresh \`tool_use_id\` each time, no block,"
    echo "so every answer is an allow): it reads stdin, loads its session state file, records the call in"
    echo "the ledger and asks the gate (both at once), and exits. $(jq -r .runs "$hook") measured calls after $(knob HOOK_WARMUP) warm-up"
    echo "calls; CPU per call from \`getrusage(RUSAGE_CHILDREN)\`."
    echo
    echo "| runs | p50 | p99 | max | CPU per call | unexpected answers | others' CPU % | idle before |"
    echo "|---:|---:|---:|---:|---:|---:|---:|---:|"
    echo "| $(jq -r .runs "$hook") | $(dur_us "$(jq .p50_us "$hook")") | $(dur_us "$(jq .p99_us "$hook")") | $(dur_us "$(jq .max_us "$hook")") | $(dur_us "$(jq .cpu_us_mean "$hook")") | $(jq .unexpected "$hook") | $(jq .foreign_cpu_pct "$hook") | $(idle_note "$(jq -r .idle_before "$hook")") |"
    echo
    echo "**Reproduce.**"
    echo
    echo '```sh'
    echo "OUT=/tmp/perf.md PHASES=hook scripts/perf-report.sh"
    echo "# by hand:"
    echo "taskset -c 1 haltwire serve --listen 127.0.0.1:4258 --data-dir /tmp/hw &"
    echo "taskset -c 0 haltwire bench hook --url http://127.0.0.1:4258 --data-dir /tmp/hw --runs $(knob HOOK_RUNS)"
    echo '```'
    echo
}

render_criterion() {
    section "## Policy evaluation and gate scaling (10 / 1 000 / 10 000 policies and blocks)" "$RAW/criterion.jsonl" || return 0
    local args
    args=$(jq -r .args "$RAW/criterion-run.json")
    echo "**What is measured.** \`PolicySet::evaluate\` on one event (\`benches/policy_eval.rs\`): the event's facts,"
    echo "the literal prefilter and the candidate policies in priority order until the first match; and the"
    echo "in-process retry-gate check against the session's active blocks (\`benches/gate.rs\`)."
    echo
    echo "**Method.** Criterion 0.8, release profile, pinned to CPU $(jq -r .server_cpu "$RAW/run.json")${args:+, run with \`$args\`}; the figure is"
    echo "Criterion's estimate (slope, or mean where it fitted none) with its 95 % interval, read from"
    echo "\`target/criterion/**/new/estimates.json\`. Policy sets are generated from ten templates covering every"
    echo "kind of test in the language, each policy with distinct values, written to a folder and loaded with"
    echo "\`PolicySet::load_dir\` as the broker does. The event is blocked, high severity, tied to a Claude Code"
    echo "session with a 140-character shell command: every policy's cheap checks pass, yet no generated"
    echo "policy matches (\`no_match\`), so every candidate runs in full; \`last_matches\` adds a lowest-priority"
    echo "policy that matches; \`no_anchor\` is 1 000 policies the prefilter cannot exclude; \`default\` is the"
    echo "shipped set. The gate bench fills one session with N similar-scope blocks (each a different host and"
    echo "file) and checks a rewritten retry of block 7 (denied) and an unrelated command (allowed);"
    echo "\`extract_and_check\` includes extracting the proposed command's objects with the shell parser."
    echo "Others' CPU during the benches: $(jq -r .foreign_cpu_pct "$RAW/criterion-run.json") % of a core; idle before: $(idle_note "$(jq -r .idle_before "$RAW/criterion-run.json")")."
    echo
    echo "| benchmark | 10 | 1 000 | 10 000 |"
    echo "|---|---:|---:|---:|"
    local name
    for name in policy_eval/no_match policy_eval/last_matches gate_check/deny_variant gate_check/allow_unrelated gate_check/extract_and_check; do
        echo "| \`${name#*/}\` ($([[ $name == policy* ]] && echo policies || echo blocks)) | $(crit_ci "$name/10") | $(crit_ci "$name/1000") | $(crit_ci "$name/10000") |"
    done
    echo "| \`default\` (shipped set, 1 policy) | $(crit_ci policy_eval/default) | | |"
    echo "| \`no_anchor\` (nothing excluded) | | $(crit_ci policy_eval/no_anchor/1000) | |"
    echo "| \`policy_load/load_dir\` (compile a folder: a hot reload) | | $(crit_ci policy_load/load_dir/1000) | $(crit_ci policy_load/load_dir/10000) |"
    echo
    echo "**Reproduce.**"
    echo
    echo '```sh'
    echo "taskset -c 1 cargo bench --bench policy_eval${args:+ -- $args}"
    echo "taskset -c 1 cargo bench --bench gate${args:+ -- $args}"
    echo "jq '.slope // .mean | .point_estimate' target/criterion/gate_check/deny_variant/10000/new/estimates.json"
    echo '```'
    echo
}

render_memory() {
    local mem=$RAW/memory.jsonl
    section "## Memory and disk" "$mem" || return 0
    local events
    events=$(jq -s -r 'map(select(.state == "loaded"))[0].events // 0' "$mem")
    echo "**What is measured.** The resident memory of \`haltwire serve\` idle and after $(num "$events") ingested events"
    echo "(\`VmRSS\` now, \`VmHWM\` the peak, from \`/proc/PID/status\`), the growth of its data directory per event,"
    echo "and the size after the retention sweep has cut the store down to $(num "$(knob MEM_KEEP)") events."
    echo
    echo "**Method.** \`serve\` on CPU $(jq -r .server_cpu "$RAW/run.json") with one standard-webhooks (HMAC) source, default"
    echo "cache (\`[store] cache_bytes\` 64 MiB) and \`max_events\` raised so nothing is deleted while loading. Idle figure"
    echo "3 s after start. The events (~220-byte native events, distinct ids) are posted by \`haltwire bench ingest\`"
    echo "(closed loop, $(knob MEM_CONNECTIONS) connections, CPU $(jq -r .client_cpu "$RAW/run.json")) in chunks of $(num "$(knob MEM_CHUNK)"); the loaded figure is"
    echo "taken 5 s after the last chunk. The broker is then stopped (SIGTERM, store flushed) and restarted with"
    echo "\`max_events = $(knob MEM_KEEP)\` and \`sweep_interval_secs = 1\`; the after-retention figure is taken once"
    echo "\`haltwire_store_events\` in \`/metrics\` reports the cut. Disk: \`du -sk\` (allocated) and \`du -sb\` (apparent"
    echo "size) of the whole data directory; per event = growth over the idle directory ÷ events."
    echo
    local idle_alloc
    idle_alloc=$(jq -s 'map(select(.state == "idle"))[0].allocated_kib' "$mem")
    echo "| state | events | VmRSS | VmHWM (peak) | data dir allocated | apparent | allocated bytes per event |"
    echo "|---|---:|---:|---:|---:|---:|---:|"
    jq -c '.' "$mem" | while IFS= read -r line; do
        local state ev rss hwm alloc app per label
        state=$(jq -r .state <<<"$line")
        ev=$(jq -r '.events // 0' <<<"$line")
        rss=$(jq -r '.rss_kib // "null"' <<<"$line")
        hwm=$(jq -r '.hwm_kib // "null"' <<<"$line")
        alloc=$(jq -r '.allocated_kib // "null"' <<<"$line")
        app=$(jq -r '.apparent_bytes // "null"' <<<"$line")
        per="—"
        if [[ $alloc != null && $ev -gt 0 ]]; then per=$(awk -v a="$alloc" -v i="$idle_alloc" -v e="$ev" 'BEGIN { printf "%.0f", (a - i) * 1024 / e }'); fi
        case $state in
            idle) label="idle, fresh data dir" ;;
            loaded) label="after loading" ;;
            stopped) label="loaded, broker stopped (flushed)" ;;
            restarted) label="restarted on the loaded store (listening after $(jq -r .listening_after_ms <<<"$line") ms)" ;;
            after_retention) label="after retention to $(num "$(knob MEM_KEEP)") (reported $(jq -r .sweep_s <<<"$line") s after listening)" ;;
            after_retention_stopped) label="after retention, broker stopped" ;;
            *) label=$state ;;
        esac
        [[ $state == after_retention* ]] && per="—"
        echo "| $label | $(num "$ev") | $(mib "$rss") | $(mib "$hwm") | $(mib "$alloc") | $(awk -v b="$app" 'BEGIN { if (b == "null") print "—"; else printf "%.1f MiB\n", b / 1048576 }') | $per |"
    done
    echo
    if [[ -s "$RAW/memory-chunks.jsonl" ]]; then
        echo "Loading throughput by chunk (events/s; does ingest slow down as the store grows?):"
        echo "$(jq -r '"\(.stored_before) \(.events_per_sec)"' "$RAW/memory-chunks.jsonl" | while read -r before rate; do
            printf 'from %s: %s · ' "$(num "$before")" "$(num "$rate")"
        done | sed 's/ · $//')."
        echo "Others' CPU while loading: $(jq -s -r 'map(select(.state == "loaded"))[0].foreign_cpu_pct' "$mem") % of a core; idle before: $(idle_note "$(jq -s -r 'map(select(.state == "idle"))[0].idle_before' "$mem")")."
        echo
    fi
    echo "**Reproduce.**"
    echo
    echo '```sh'
    echo "OUT=/tmp/perf.md PHASES=memory MEM_EVENTS=$(knob MEM_EVENTS) scripts/perf-report.sh"
    echo '```'
    echo
}

mib() { awk -v k="$1" 'BEGIN { if (k == "" || k == "null") print "—"; else printf "%.1f MiB\n", k / 1024 }'; }

render_startup() {
    local s=$RAW/startup.json
    section "## Cold start: exec → first 200 from /readyz" "$s" || return 0
    echo "**Method.** \`haltwire bench startup\` spawns \`serve --listen 127.0.0.1:0\` pinned to CPU $(jq -r .server_cpu "$RAW/run.json")"
    echo "(with the ingest section's config: one ed25519 and one HMAC source), reads the bound address from its"
    echo "stdout, polls \`/readyz\` every 200 µs until it answers \`200\`, then stops it (untimed). The clock starts"
    echo "just before the spawn, so fork and exec count. \"Fresh\": a new data directory each time (keys, secrets"
    echo "and the store are created); \"warm\": one directory reused. $(jq -r .runs "$s") timed runs each; idle before: $(idle_note "$(jq -r .idle_before "$s")")."
    echo
    echo "| data dir | median | max |"
    echo "|---|---:|---:|"
    echo "| fresh | $(jq -r .fresh_median_ms "$s") ms | $(jq -r .fresh_max_ms "$s") ms |"
    echo "| warm | $(jq -r .warm_median_ms "$s") ms | $(jq -r .warm_max_ms "$s") ms |"
    echo
    echo "**Reproduce.**"
    echo
    echo '```sh'
    echo "STEPS=startup STARTUP_RUNS=$(jq -r .runs "$s") scripts/bench.sh"
    echo "taskset -c 0 haltwire bench startup --runs $(jq -r .runs "$s") --scratch /tmp/hw-start --server-cpu 1"
    echo '```'
    echo
}

# ---------------------------------------------------------------------------------------------

if [[ -n "${RENDER_ONLY:-}" ]]; then
    RAW=$RENDER_ONLY
    WORK=$(mktemp -d /tmp/haltwire-perf-render.XXXXXX)
    # shellcheck source=scripts/lib/bench-common.sh
    source "$ROOT/scripts/lib/bench-common.sh"
    render
    rm -rf "$WORK"
    exit 0
fi
measure_all
render
log "raw JSON kept in $RAW"
