#!/usr/bin/env bash
# benches/okta_full.sh [TIME_SCALE]
#
# Full-sync benchmark against the fake Okta (issue 3): 100,000 users, 5,000 groups, about
# 64,000 users assigned to the app (directly or through its ~1,700 assigned groups),
# push_groups = "assigned" (so every assigned group's member listing is part of the load),
# rate_limit_share = 0.5, Okta's Workforce limits per bucket, rate-limit windows of
# 60 s / TIME_SCALE (default 6: 10 s windows) with okta.rate_limit_window to match.
#
# Builds `cargo build --release -p oktasync` once (skipped when OKTASYNC_BIN names a
# binary), starts `oktasync fake-okta`, runs `oktasync sync` into an empty SQLite
# workspace (the full sync: every user created), then `sync --full` on the converged
# workspace (a full read that plans nothing: a plain sync would read incrementally), and
# prints per run: wall time, the read phase (first
# to last request the fake saw), the floor set by the slowest bucket (minimum calls
# needed / oktasync's allowed calls per window), calls per bucket against the minimum
# possible (from the fake's /__admin/stats and /__admin/state), and peak RSS of the
# `oktasync sync` process (/usr/bin/time -v, else VmHWM sampled from /proc).
#
# Environment: OKTA_BENCH_USERS, OKTA_BENCH_GROUPS (world size), OKTASYNC_BIN (a built
# binary), KEEP=1 (keep the work directory). Needs python3 and curl.
# Exit status: 0 when both syncs completed (whatever the figures), 1 otherwise, 2 on usage.
set -euo pipefail
if [ $# -gt 1 ] || { [ $# -eq 1 ] && ! [[ "$1" =~ ^[0-9]+([.][0-9]+)?$ ]]; }; then
  awk 'NR>1 && /^#/ {sub(/^# ?/, ""); print; next} NR>1 {exit}' "$0" >&2; exit 2
fi
SCALE="${1:-6}"
N_USERS="${OKTA_BENCH_USERS:-100000}"
N_GROUPS="${OKTA_BENCH_GROUPS:-5000}"   # not GROUPS: a bash builtin that ignores assignment
SHARE=0.5
APP=0oafakeapp0000000001
TOKEN=bench-token-not-secret
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=SCRIPTDIR/lib.sh
. benches/lib.sh

oktasync_bin
WORK="$(mktemp -d "${TMPDIR:-/tmp}/okta-bench.XXXXXX")"
FAKE_PID=""
cleanup() {
  [ -n "$FAKE_PID" ] && kill "$FAKE_PID" 2>/dev/null
  if [ "${KEEP:-0}" = 1 ]; then echo "work directory kept: $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

WINDOW_MS="$(python3 -c "print(round(60000 / $SCALE))")"
# The fake logs every Okta request with a timestamp (debug): the read phase is measured there.
OKTASYNC_LOG="fake_okta=debug,warn" start_fake_okta \
  --users "$N_USERS" --groups "$N_GROUPS" --time-scale "$SCALE" --api-token "$TOKEN"
URL="$FAKE_URL"

cat >"$WORK/oktasync.toml" <<EOF
[okta]
org_url = "$URL"
api_token = "$TOKEN"
rate_limit_share = $SHARE
rate_limit_window = "${WINDOW_MS}ms"

[store]
url = "sqlite://$WORK/oktasync.db"

[server]
listen = "127.0.0.1:0"

[sync]
max_deactivations = 1000000
max_deactivation_ratio = 1.0

[[workspaces]]
id = "bench"
okta_app_id = "$APP"
push_groups = "assigned"
EOF

curl -sf "$URL/__admin/state" >"$WORK/state.json"

# One `oktasync sync` with its default text report (`--format json` renders every one of the
# ~113,000 operations of the first sync as one JSON document, ~120 MB more RSS); leaves
# run-N.{txt,err,rss,wall,stats.json,log-lines} (log-lines: the fake's log lines of the run).
run_sync() {
  local n="$1" start end
  shift
  # Remaining arguments go to `oktasync sync` (the second run's --full).
  curl -sf -X POST "$URL/__admin/stats/reset" >/dev/null
  curl -sf -X POST "$URL/__admin/ratelimit/reset" >/dev/null
  local from
  from="$(wc -l <"$WORK/fake.log")"
  start="$(date +%s.%N)"
  if [ -x /usr/bin/time ]; then
    /usr/bin/time -v -o "$WORK/run-$n.time" "$BIN" --config "$WORK/oktasync.toml" \
      sync "$@" >"$WORK/run-$n.txt" 2>"$WORK/run-$n.err" || true
    sed -n 's/.*Maximum resident set size (kbytes): //p' "$WORK/run-$n.time" >"$WORK/run-$n.rss"
  else
    "$BIN" --config "$WORK/oktasync.toml" sync "$@" >"$WORK/run-$n.txt" 2>"$WORK/run-$n.err" &
    local pid=$! hwm=0 v
    while kill -0 "$pid" 2>/dev/null; do
      v="$(sed -n 's/^VmHWM:[[:space:]]*\([0-9]*\).*/\1/p' "/proc/$pid/status" 2>/dev/null || true)"
      [ -n "$v" ] && [ "$v" -gt "$hwm" ] && hwm="$v"
      sleep 0.05
    done
    wait "$pid" || true
    echo "$hwm" >"$WORK/run-$n.rss"
  fi
  end="$(date +%s.%N)"
  python3 -c "print($end - $start)" >"$WORK/run-$n.wall"
  curl -sf "$URL/__admin/stats" >"$WORK/run-$n.stats.json"
  echo "$from $(wc -l <"$WORK/fake.log")" >"$WORK/run-$n.log-lines"
}

run_sync 1
sleep "$(python3 -c "print($WINDOW_MS / 1000)")"   # a fresh window for every bucket
run_sync 2 --full

WORK="$WORK" SCALE="$SCALE" SHARE="$SHARE" WINDOW_MS="$WINDOW_MS" APP="$APP" python3 - <<'EOF'
import json, math, os, re, sys
from datetime import datetime

work, app_id = os.environ["WORK"], os.environ["APP"]
scale, share, window = float(os.environ["SCALE"]), float(os.environ["SHARE"]), int(os.environ["WINDOW_MS"]) / 1000
state = json.load(open(f"{work}/state.json"))
users, groups = state["users"], state["groups"]
app = next(a for a in state["apps"] if a["id"] == app_id)
assigned_groups = [g for g in groups if g["id"] in set(app["groups"])]
members_of = set(app["users"])
for g in assigned_groups:
    members_of.update(g["members"])
app_users = len(members_of)

# Okta's Workforce limits per minute (the fake's defaults) and the fewest calls any client
# could read the same data with, at the largest page sizes the API allows.
LIMITS = {"users": 600, "groups": 500, "group": 1000, "apps": 100}
minimum = {
    "users": math.ceil(len(users) / 200),            # one `search=status pr` listing
    "groups": math.ceil(len(groups) / 10000),
    "group": sum(max(1, math.ceil(len(g["members"]) / 10000)) for g in assigned_groups),
    "apps": math.ceil(app_users / 500) + max(1, math.ceil(len(assigned_groups) / 200)),
}
allowed = {b: max(1, math.floor(l * share)) for b, l in LIMITS.items()}
floor_s = {b: minimum[b] / allowed[b] * window for b in LIMITS}
slowest = max(floor_s, key=floor_s.get)
floor = floor_s[slowest]

def request_times(run):
    start, end = (int(n) for n in open(f"{work}/run-{run}.log-lines").read().split())
    times = []
    with open(f"{work}/fake.log") as f:
        for i, line in enumerate(f):
            if not start <= i < end or "okta request" not in line:
                continue
            m = re.match(r"\x1b?\[?[0-9;]*m?(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+)Z", line)
            if m:
                times.append(datetime.fromisoformat(m.group(1)[:26]))
    return times

print(f"oktasync full sync from the fake Okta: {len(users)} users, {len(groups)} groups, "
      f"{app_users} assigned to the app ({len(app['users'])} directly, the rest through "
      f"{len(assigned_groups)} assigned groups); push_groups = \"assigned\"")
print(f"rate_limit_share = {share}; windows {window:g} s (time scale {scale:g}); "
      f"floor {floor:.1f} s, set by the {slowest} bucket")
ok = True
for run, name in [(1, "full sync into an empty workspace"), (2, "converged resync (full read, nothing to apply)")]:
    report = open(f"{work}/run-{run}.txt").read()
    complete = "Okta read complete" in report
    ok &= complete
    stats = json.load(open(f"{work}/run-{run}.stats.json"))["buckets"]
    wall = float(open(f"{work}/run-{run}.wall").read())
    rss = int(open(f"{work}/run-{run}.rss").read().strip() or 0) / 1024
    times = request_times(run)
    read = (times[-1] - times[0]).total_seconds() if times else float("nan")
    applied = dict(re.findall(r"^    (create_user|create_group|add_members) (\d+)$", report, re.M))
    print(f"\n{name}: complete read: {complete}; created {applied.get('create_user', 0)} users, "
          f"{applied.get('create_group', 0)} groups, {applied.get('add_members', 0)} memberships")
    print(f"  wall {wall:.1f} s = {wall / floor:.2f} x floor (target <= 1.1); "
          f"read phase {read:.1f} s = {read / floor:.2f} x floor; after the read {wall - read:.1f} s")
    print(f"  peak RSS {rss:.0f} MB (target < 150 MB)")
    print(f"  {'bucket':7} {'limit':>6} {'allowed':>8} {'calls':>6} {'minimum':>8} {'429s':>5} {'floor s':>8}")
    for b in LIMITS:
        s = stats.get(b, {})
        print(f"  {b:7} {LIMITS[b]:>6} {allowed[b]:>8} {s.get('calls', 0):>6} {minimum[b]:>8} "
              f"{s.get('throttled', 0):>5} {floor_s[b]:>8.1f}")
    if not complete:
        print(f"  sync failed: {open(f'{work}/run-{run}.err').read()[-2000:]}", file=sys.stderr)
sys.exit(0 if ok else 1)
EOF
