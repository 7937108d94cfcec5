#!/usr/bin/env bash
# Hostile HTTP: schemathesis (property-based fuzzing from /openapi.json) against a running broker.
# Two passes: SOC routes with a SOC token, session routes with a registered session's token.
# Fails when any answer is a 5xx, does not match the documented content type, or is an error
# that is not problem+json with a haltwire type; or when the broker dies or logs a panic.
#
#   scripts/hostile-http.sh [SECONDS_PER_PASS]     (default 60)
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-60}"
venv="${HALTWIRE_TOOLS:-$HOME/.cache/haltwire-tools}/schemathesis"
if [ ! -x "$venv/bin/schemathesis" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet "schemathesis==4.32.5"
fi

cargo build --locked --quiet
bin=target/debug/haltwire
work=$(mktemp -d)
cleanup() { [ -n "${broker_pid:-}" ] && kill "$broker_pid" 2>/dev/null; [ -n "${agent_pid:-}" ] && kill "$agent_pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

(cd "$work" && exec "$OLDPWD/$bin" serve --data-dir "$work/data" --listen 127.0.0.1:0 >"$work/serve.log" 2>&1) &
broker_pid=$!
for _ in $(seq 1 100); do
  addr=$(sed -n 's/^haltwire listening on \(http:[^ ]*\).*/\1/p' "$work/serve.log" | head -n 1)
  [ -n "$addr" ] && break
  sleep 0.1
done
[ -n "${addr:-}" ] || { cat "$work/serve.log"; echo "broker did not start"; exit 1; }

soc=$("$bin" token issue --role soc --data-dir "$work/data" | tail -n 1)
sleep 600 & agent_pid=$!
registered=$(curl -fsS -X POST -H 'content-type: application/json' \
  -d "{\"agent\":\"generic\",\"agent_session_id\":\"hostile\",\"pid\":$agent_pid,\"cwd\":\"/tmp\"}" "$addr/v1/sessions")
sid=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["session_id"])' <<<"$registered")
session_token=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])' <<<"$registered")
printf '[parameters]\n"path.id" = "%s"\n' "$sid" >"$work/session.toml"

checks=not_a_server_error,content_type_conformance,errors_are_problem_json
export SCHEMATHESIS_HOOKS=problem_json PYTHONPATH="$PWD/scripts/hostile"
echo "== schemathesis: SOC token, every route"
"$venv/bin/schemathesis" run "$addr/openapi.json" -H "Authorization: Bearer $soc" \
  --checks "$checks" --max-time "$seconds" --workers 2 --request-timeout 30 --no-color > "$work/st.out" 2>&1 || { cat "$work/st.out"; exit 1; }; tail -n 25 "$work/st.out"
echo "== schemathesis: session token, session routes"
"$venv/bin/schemathesis" --config-file "$work/session.toml" run "$addr/openapi.json" \
  -H "Authorization: Bearer $session_token" --include-path-regex '^/v1/sessions/\{id\}' \
  --checks "$checks" --max-time "$seconds" --workers 2 --request-timeout 30 --no-color > "$work/st.out" 2>&1 || { cat "$work/st.out"; exit 1; }; tail -n 25 "$work/st.out"

kill -0 "$broker_pid" || { echo "the broker died under hostile input"; tail -n 50 "$work/serve.log"; exit 1; }
if grep -q "panicked" "$work/serve.log"; then grep -A5 panicked "$work/serve.log"; exit 1; fi
echo "hostile HTTP finished: no 5xx, every error problem+json, broker alive"
