#!/usr/bin/env bash
# Bounded coverage-guided fuzzing of every parser that reads untrusted input (cargo-fuzz /
# libFuzzer): decoders, the policy loader, directive envelopes and the shell reader.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET]      (default 30)
#
# Corpora are seeded from the integration samples (and the published vendor payloads beside the
# repository when present). Any crash fails the run; libFuzzer leaves the input in
# fuzz/artifacts/<target>/, which becomes a named regression test.
# cargo-fuzz needs nightly compiler flags; RUSTC_BOOTSTRAP lets the stable toolchain accept them.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-30}"
export RUSTC_BOOTSTRAP=1

command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked

seed() { # target, files...
  local dir="fuzz/corpus/$1"; shift
  mkdir -p "$dir"
  for f in "$@"; do [ -f "$f" ] && cp "$f" "$dir/$(basename "$f")"; done
}
seed decode_json_mappings integrations/*/samples/*.json ../shared/samples/edr/*.json
seed decode_audit integrations/*/samples/*.log ../shared/samples/edr/*.log
seed policy_load policies/*.yaml policies/examples/*.yaml
seed directive_envelope fuzz/seeds/directive_envelope/*.json
seed shell_words fuzz/seeds/shell_words/*.txt

targets="decode_json_mappings decode_audit policy_load directive_envelope shell_words"

for target in $targets; do
  echo "== fuzzing $target for ${seconds}s"
  cargo fuzz run --fuzz-dir fuzz -O "$target" -- -max_total_time="$seconds" -rss_limit_mb=2048 -print_final_stats=1 2>&1 | tail -n 15
done
echo "fuzzing finished without crashes"
