#!/usr/bin/env bash
# Instructions per event of the ingest path, counted by callgrind over every server thread:
# load-independent, so it can be compared on a machine too busy for wall-clock figures
# (docs/performance.md, "Instruction counts").
#
#   scripts/instructions.sh BIN floor|ed25519 [EVENTS] [CONNECTIONS]
#
# Starts `haltwire bench floor` or `haltwire serve` (one standard-webhooks-ed25519 source, fresh
# data dir) under valgrind, warms it with 300 events, zeroes the counters, sends EVENTS more
# (closed loop), waits 3 s so the pipeline's work for them is counted, and prints the total and
# per-event instruction count. Leaves the callgrind file for callgrind_annotate.
# Requires: valgrind (callgrind_control).
set -euo pipefail
BIN=$1 SIDE=$2 N=${3:-2000} C=${4:-32}
W=$(mktemp -d /tmp/haltwire-ir.XXXXXX)
"$BIN" keys generate --webhook ed25519 > $W/keys.txt
grep -o 'whsk_[A-Za-z0-9+/=]*' $W/keys.txt > $W/signing.key; chmod 600 $W/signing.key
PK=$(grep -o 'whpk_[A-Za-z0-9+/=]*' $W/keys.txt)
cat > $W/haltwire.toml <<EOT
[[source]]
name = "bench-ed25519"
auth = "standard-webhooks-ed25519"
public_keys = ["$PK"]
EOT
if [[ $SIDE == floor ]]; then ARGS=(bench floor --listen 127.0.0.1:0 --public-key "$PK"); else ARGS=(serve --listen 127.0.0.1:0 --data-dir $W/data --config $W/haltwire.toml); fi
valgrind --tool=callgrind --callgrind-out-file=$W/$SIDE.%p.cg "$BIN" "${ARGS[@]}" > $W/out 2> $W/err &
VPID=$!
for i in $(seq 600); do grep -q "^haltwire listening on " $W/out 2>/dev/null && break; sleep 0.1; done
URL=$(sed -n 's/^haltwire listening on //p' $W/out)
"$BIN" bench ingest --url $URL --source bench-ed25519 --signing-key $W/signing.key --events 300 --warmup 0 --connections $C >/dev/null
sleep 2
callgrind_control --zero $VPID >/dev/null
"$BIN" bench ingest --url $URL --source bench-ed25519 --signing-key $W/signing.key --events $N --warmup 0 --connections $C | tail -1 > $W/$SIDE.load.json
sleep 3   # let the pipeline finish its work for these events
callgrind_control --dump=measured $VPID >/dev/null
kill -INT $VPID; wait $VPID || true
F=$(ls -t $W/$SIDE.$VPID.cg* | grep -v '\.cg$' | head -1 || true)
[[ -z "$F" ]] && F=$(ls -t $W/$SIDE.$VPID.cg* | head -1)
IR=$(grep -h '^summary:' $F | awk '{print $2}')
echo "$SIDE N=$N C=$C total_ir=$IR ir_per_event=$((IR / N)) file=$F"
find "$W" -mindepth 1 -not -name "*.cg*" -exec rm -rf {} + 2>/dev/null || true
