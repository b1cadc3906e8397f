#!/usr/bin/env bash
# What a duet costs against the budget it must fit (issue 26: two `bench --quick` files, +-20 %).
# One plugin (calib25 at 1.0x), back to back, twice: bench --quick (3 processes), compare --duet
# alternating with 3 pairs, side by side with 6 and with 3. Prints "<round> <what> rc=<rc> <seconds> load=<1-min>".
# Usage, from the repository root, dropbench on PATH (the venv active): bash results/calibration/budget.sh OUTDIR > OUTDIR/budget.txt
set -u
out=${1:?usage: budget.sh OUTDIR}
mkdir -p "$out"
plugin=results.calibration.slow_plugin:Slow25
timed() {  # label, command...
  local label=$1; shift
  local start end rc
  start=$(date +%s.%N); "$@" >/dev/null 2>&1; rc=$?; end=$(date +%s.%N)
  echo "$round $label rc=$rc $(awk "BEGIN{print $end - $start}") load=$(cut -d' ' -f1 /proc/loadavg)"
}
for round in 1 2; do
  timed bench dropbench bench --quick --backend "$plugin" --json "$out/b$round.json"
  timed duet3 dropbench compare --duet "$plugin" "$plugin" --json "$out/d$round.json"
  timed sbs6 dropbench compare --duet --side-by-side "$plugin" "$plugin" --json "$out/s$round.json"
  timed sbs3 dropbench compare --duet --side-by-side --pairs 3 "$plugin" "$plugin" --json "$out/t$round.json"
done
