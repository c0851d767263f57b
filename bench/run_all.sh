#!/usr/bin/env bash
# Re-runs every benchmark behind docs/benchmarks.md, one after another, and keeps each
# script's own report (figures, same-run baselines, load average) under bench-results/.
#
#   bash bench/run_all.sh [OUT_DIR [NAME...]]   # all (~40 min on 2 idle cores) or the NAMEs; as root
#
# Needs the setup of scripts/setup.sh (.venv) and root (the console benchmark creates the
# clean bastion account and cgroups; security groups load nftables in a namespace). The
# "before" trees are git worktrees of the commits the docs compare against.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-bench-results/$(date -u +%Y%m%dT%H%MZ)}"
shift || true
only=" $* "
mkdir -p "$out"
py=.venv/bin/python

worktree() {  # worktree DIR COMMIT: a checkout of COMMIT at DIR (kept between runs)
  [ -d "$1" ] || git worktree add -q --detach "$1" "$2"
}
run() {  # run NAME COMMAND...: one benchmark, its report in $out/NAME.txt
  local name="$1"; shift
  if [ "$only" != "  " ] && [[ "$only" != *" $name "* ]]; then return 0; fi
  echo "== $name: $* ($(uptime))" | tee "$out/$name.txt"
  "$@" 2>&1 | tee -a "$out/$name.txt"
  echo "== $name done ($(uptime))" | tee -a "$out/$name.txt"
}

worktree ../certgate-before-s3 6c60aca       # main when session 3 started
run console_gateway $py bench/console_gateway.py --rounds 10 --bulk-rounds 8 \
    --before-tree ../certgate-before-s3
run recorder_cpu $py bench/recorder_cpu.py --before-tree ../certgate-before-s3 --dir /tmp
run policy_decide $py bench/policy_decide.py
run access_reachable $py bench/access_reachable.py
run cli_startup $py bench/cli_startup.py --runs 7 --before-tree ../certgate-before-s3
run cli_startup_postgres $py bench/cli_startup.py --runs 7 --postgres
run ac_issue $py bench/ac_issue.py --count 1000 --rounds 5 --before-tree ../certgate-before-s3
run audit_append $py bench/audit_append.py
run live_sessions_sqlite $py bench/live_sessions.py --sessions 1000
run live_sessions_postgres $py bench/live_sessions.py --sessions 1000 --postgres
run secgroups_apply $py bench/secgroups_apply.py --repeat 7
run console_fanout $py bench/console_fanout.py --viewers 1,10,100,300 --megabytes 8 --kept 1000 --seconds 30
run console_log_search $py bench/console_log_search.py --vms 500 --segments 20 --lines 20 --repeat 15
echo "reports in $out; the review site's 10 GB run is separate (see docs/benchmarks.md)"
