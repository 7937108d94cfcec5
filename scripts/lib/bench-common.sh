# Shared by scripts/bench.sh and scripts/perf-report.sh (sourced, not run): building the binary
# once, CPU pinning, waiting for a quiet machine, accounting for other processes' CPU, starting
# and stopping a server, medians. The callers set WORK (a scratch directory) and LOG_NAME first.
#
# Knobs read here (environment): SERVER_CPU=1 CLIENT_CPU=0 QUIET_IDLE_PCT=90 QUIET_WAIT_S=900
#   HALTWIRE_BIN= (measure this binary instead of building one)
# shellcheck shell=bash
# Variables set here (SERVER_URL, FOREIGN_PCT, …) are read by the scripts that source this file.
# shellcheck disable=SC2034

SERVER_CPU=${SERVER_CPU:-1}
CLIENT_CPU=${CLIENT_CPU:-0}
QUIET_IDLE_PCT=${QUIET_IDLE_PCT:-90}
QUIET_WAIT_S=${QUIET_WAIT_S:-900}
SERVER_PID=
SERVER_URL=

log() { echo "${LOG_NAME:-bench}: $*" >&2; }

require_tools() {
    local tool
    for tool in "$@"; do
        command -v "$tool" >/dev/null || { log "needs $tool"; exit 1; }
    done
}

# Builds the release binary (unless HALTWIRE_BIN names one) and copies it to $WORK/haltwire: the
# target directory may be shared, and another build must not swap the binary out mid-run. Sets BIN.
build_binary() {
    local root=$1
    if [[ -n "${HALTWIRE_BIN:-}" ]]; then
        log "using $HALTWIRE_BIN (no build)"
        cp "$HALTWIRE_BIN" "$WORK/haltwire"
    else
        log "building (release; CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target})"
        (cd "$root" && cargo build --release --locked >&2)
        cp "${CARGO_TARGET_DIR:-$root/target}/release/haltwire" "$WORK/haltwire"
    fi
    BIN=$WORK/haltwire
}

# One line naming what was measured: the commit (and whether the tree was dirty) or the binary.
binary_description() {
    local root=$1
    if [[ -n "${HALTWIRE_BIN:-}" ]]; then
        echo "$HALTWIRE_BIN"
    else
        echo "built from $(git -C "$root" rev-parse --short HEAD)$(git -C "$root" diff --quiet HEAD || echo ' (+ uncommitted changes)')"
    fi
}

# "2 CPUs, AMD EPYC …, 7.7 GiB RAM, kernel 6.x, rustc 1.y"
machine_description() {
    local rustc
    rustc=$(rustc --version 2>/dev/null | cut -d' ' -f1-2 || echo "rustc unknown")
    echo "$(nproc) CPUs, $(lscpu | sed -n 's/^Model name: *//p'), $(awk '/^MemTotal/ {printf "%.1f GiB RAM", $2 / 1048576}' /proc/meminfo), kernel $(uname -r), $rustc"
}

# Share of all CPUs that was idle over one second, from /proc/stat.
idle_pct() {
    local -a a b
    read -ra a < <(head -1 /proc/stat)
    sleep 1
    read -ra b < <(head -1 /proc/stat)
    local total=0 i
    for i in 1 2 3 4 5 6 7 8; do total=$((total + b[i] - a[i])); done
    local idle=$((b[4] - a[4] + b[5] - a[5]))
    echo $((100 * idle / total))
}

# Waits until the machine is quiet (other engineers compile here); echoes the idle share seen,
# with a trailing "!" when it gave up after QUIET_WAIT_S and measured anyway.
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

# User+system CPU ticks (1/100 s) of a process so far.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# CPU ticks the machine spent busy, all CPUs together, from /proc/stat.
busy_ticks() { awk '/^cpu / {print $2 + $3 + $4 + $7 + $8 + $9}' /proc/stat; }

# Sets CHILDREN_TICKS: CPU ticks used by this shell's finished (waited-for) children and their
# descendants. Must run in the measuring shell itself, never inside `$(…)` or a pipeline: a
# subshell starts with its own, empty child accounting, so `$(times)` always reads zero.
children_ticks() {
    times >"$WORK/times.txt"
    CHILDREN_TICKS=$(tail -1 "$WORK/times.txt" | awk '{
        split($1, u, /[ms]/); split($2, s, /[ms]/)
        printf "%d\n", (u[1] * 60 + u[2] + s[1] * 60 + s[2]) * 100 }')
}

# Accounting for CPU used by processes other than ours during a measurement: call
# `foreign_begin`, run the measurement in the foreground of the same shell, then `foreign_end`
# sets FOREIGN_PCT (the CPU the rest of the machine used meanwhile, as a percentage of one core)
# and SERVER_TICKS (the server's CPU ticks over the measurement). The server (SERVER_PID, if set)
# and every waited-for child count as ours. Tick-based: expect a few percent of noise either way.
foreign_begin() {
    children_ticks
    F_CHILDREN0=$CHILDREN_TICKS F_BUSY0=$(busy_ticks) F_T0=$(date +%s%N) F_SERVER0=0
    if [[ -n "$SERVER_PID" ]]; then F_SERVER0=$(cpu_ticks "$SERVER_PID"); fi
}
foreign_end() {
    local busy1 server1=0 t1
    children_ticks
    busy1=$(busy_ticks) t1=$(date +%s%N)
    if [[ -n "$SERVER_PID" ]]; then server1=$(cpu_ticks "$SERVER_PID"); fi
    SERVER_TICKS=$((server1 - F_SERVER0))
    local ours=$((SERVER_TICKS + CHILDREN_TICKS - F_CHILDREN0))
    FOREIGN_PCT=$(((busy1 - F_BUSY0 - ours) * 10000000 * 100 / (t1 - F_T0 + 1)))
}

# Starts `haltwire ARGS…` pinned to the CPU list CPUS, with $WORK as its working directory (so no
# stray ./haltwire.toml is read); waits for its "haltwire listening on URL" line and sets
# SERVER_PID and SERVER_URL.
start_server_on() {
    local cpus=$1
    shift
    local out="$WORK/server.out"
    : >"$out"
    (cd "$WORK" && exec taskset -c "$cpus" "$BIN" "$@" >"$out" 2>"$WORK/server.err") &
    SERVER_PID=$!
    local i
    # Up to 120 s: a broker recovering a store of a million events takes a while.
    for i in $(seq 2400); do
        if grep -q "^haltwire listening on " "$out"; then
            SERVER_URL=$(sed -n 's/^haltwire listening on //p' "$out")
            return
        fi
        if ! kill -0 "$SERVER_PID" 2>/dev/null; then break; fi
        sleep 0.05
    done
    log "server did not start (haltwire $*): $(tail -5 "$WORK/server.err")"
    exit 1
}

# The same, pinned to SERVER_CPU.
start_server() { start_server_on "$SERVER_CPU" "$@"; }

# SIGTERM (the broker flushes its store and exits) and wait.
stop_server() {
    if [[ -n "$SERVER_PID" ]]; then
        kill "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
        SERVER_PID=
    fi
}

# JSON lines on stdin, numeric field $1 → the median (lower middle for an even count), or null.
median_of() {
    jq -s "map(.$1 | select(. != null)) | sort | if length == 0 then null else .[(length - 1) / 2 | floor] end"
}
