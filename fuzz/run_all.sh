#!/usr/bin/env bash
# Fuzzes every target in fuzz/fuzz_targets for SECONDS each (default 600), PARALLEL targets
# at a time (default 5), at low priority, and prints one table row per target from
# libFuzzer's final statistics. Needs cargo-fuzz (`cargo install cargo-fuzz`) and a nightly
# toolchain. New inputs go to fuzz/corpus/<target> (not committed); fuzz/seeds/<target> is
# read as a second corpus where it exists. A crash leaves its input in fuzz/artifacts/.
#
#   bash fuzz/run_all.sh [SECONDS] [PARALLEL]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-600}
par=${2:-5}
mkdir -p fuzz/logs
cargo +nightly fuzz build >/dev/null
targets=$(cargo +nightly fuzz list)
run_one() {
  local t=$1
  mkdir -p "fuzz/corpus/$t"
  local seeds=()
  [ -d "fuzz/seeds/$t" ] && seeds=("fuzz/seeds/$t")
  nice -n 19 cargo +nightly fuzz run "$t" "fuzz/corpus/$t" "${seeds[@]}" -- \
    -max_total_time="$secs" -print_final_stats=1 >"fuzz/logs/$t.log" 2>&1
  echo "$t exit $?" >>"fuzz/logs/$t.log"
}
export -f run_one
export secs
printf '%s\n' $targets | xargs -P "$par" -I{} bash -c 'run_one {}' || true
echo "| target | seconds | executions | exec/s | corpus | crashes |"
echo "|---|---|---|---|---|---|"
for t in $targets; do
  log="fuzz/logs/$t.log"
  execs=$(grep -o 'stat::number_of_executed_units: [0-9]*' "$log" | grep -o '[0-9]*$' || echo '?')
  rate=$(grep -o 'stat::average_exec_per_sec: [0-9]*' "$log" | grep -o '[0-9]*$' || echo '?')
  corpus=$(ls "fuzz/corpus/$t" | wc -l)
  crashes=$(ls fuzz/artifacts/"$t" 2>/dev/null | grep -c -E '^(crash|oom|timeout|leak)-' || true)
  echo "| $t | $secs | $execs | $rate | $corpus | $crashes |"
done
