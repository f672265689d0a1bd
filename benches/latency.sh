#!/usr/bin/env bash
# benches/latency.sh [SAMPLES]
#
# Change-to-applied latency of the daemon (issue 3): one user's profile changed in Okta,
# until the change is visible in the workspace. Target: under sync.interval + 5 s.
#
# Builds `cargo build --release -p oktasync` once (skipped when OKTASYNC_BIN names a
# binary), starts `oktasync fake-okta` (USERS users, OKTA_GROUPS groups, Okta's Workforce
# rate limits in real time: time scale 1), seeds a SQLite store with one `oktasync sync`
# (a full read; push_groups = "assigned"), then starts `oktasync run` (sync.interval =
# INTERVAL, full_every = 24h, so every scheduled cycle is incremental) and waits for
# /readyz and its first cycle. Then, SAMPLES times (default 5): sleeps a random moment
# within one interval, sets one managed user's lastName to a unique value through the
# fake's `PATCH /__admin/users/{id}`, and polls the daemon's inbound SCIM endpoint
# (`GET /hook/scim/workspaces/{id}/Users?filter=externalId eq "<okta id>"`) every 100 ms
# until the new familyName shows. Prints each sample's latency (split into the wait for
# the next cycle to start and the time into that cycle), min / median / max against the
# target, the incremental cycles' durations (from the daemon's `cycle finished` log lines,
# `--log-format json`) and the Okta calls each made (the fake's /__admin/stats, read as
# each cycle finishes).
#
# Environment: INTERVAL (sync.interval, default 30s; a whole number with ms, s, m or h),
# USERS (default 10000), OKTA_GROUPS (default 500), OKTASYNC_BIN (a built binary),
# KEEP=1 (keep the work directory, with the daemon's log). Needs python3 and curl.
# Exit status: 0 when every sample completed (whatever the figures), 1 when a change did
# not appear within 2 x interval + 30 s (or the set-up failed), 2 on usage.
set -euo pipefail
usage() { awk 'NR>1 && /^#/ {sub(/^# ?/, ""); print; next} NR>1 {exit}' "$0" >&2; exit 2; }
if [ $# -gt 1 ] || { [ $# -eq 1 ] && ! [[ "$1" =~ ^[1-9][0-9]*$ ]]; }; then usage; fi
SAMPLES="${1:-5}"
INTERVAL="${INTERVAL:-30s}"
[[ "$INTERVAL" =~ ^[1-9][0-9]*(ms|s|m|h)$ ]] || usage
N_USERS="${USERS:-10000}"
N_GROUPS="${OKTA_GROUPS:-500}"   # not GROUPS: a bash builtin that ignores assignment
APP=0oafakeapp0000000001
TOKEN=bench-token-not-secret
SCIM_TOKEN=bench-scim-token-not-secret
WS=bench
INTERVAL_S="$(python3 -c "
import re, sys
n, unit = re.fullmatch(r'(\d+)(ms|s|m|h)', sys.argv[1]).groups()
print(int(n) * {'ms': 0.001, 's': 1, 'm': 60, 'h': 3600}[unit])" "$INTERVAL")"
DEADLINE_S="$(python3 -c "print($INTERVAL_S * 2 + 30)")"
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=SCRIPTDIR/lib.sh
. benches/lib.sh

oktasync_bin
WORK="$(mktemp -d /tmp/okta-latency.XXXXXX)"
FAKE_PID=""
DAEMON_PID=""
cleanup() {
  # SIGTERM: the daemon stops its cycle cleanly and exits within 25 s.
  [ -n "$DAEMON_PID" ] && kill "$DAEMON_PID" 2>/dev/null && wait "$DAEMON_PID" 2>/dev/null
  [ -n "$FAKE_PID" ] && kill "$FAKE_PID" 2>/dev/null && wait "$FAKE_PID" 2>/dev/null
  if [ "${KEEP:-0}" = 1 ]; then echo "work directory kept: $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
now() { echo "$EPOCHREALTIME"; }                 # seconds.microseconds (bash 5)
now_us() { echo "${EPOCHREALTIME/./}"; }         # integer microseconds, for loop deadlines
elapsed_since() { python3 -c "print(f'{$(now) - $1:.1f}')"; }

start_fake_okta --users "$N_USERS" --groups "$N_GROUPS" --time-scale 1 --api-token "$TOKEN"
URL="$FAKE_URL"

PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
DAEMON="http://127.0.0.1:$PORT"
cat >"$WORK/oktasync.toml" <<EOF
[okta]
org_url = "$URL"
api_token = "$TOKEN"

[store]
url = "sqlite://$WORK/oktasync.db"

[server]
listen = "127.0.0.1:$PORT"

[sync]
interval = "$INTERVAL"
full_every = "24h"
max_deactivations = 1000000
max_deactivation_ratio = 1.0

[[workspaces]]
id = "$WS"
okta_app_id = "$APP"
push_groups = "assigned"
scim_token = "$SCIM_TOKEN"
EOF

echo "seeding: one full sync of $N_USERS Okta users..." >&2
T0="$(now)"
"$BIN" --config "$WORK/oktasync.toml" sync --format json >"$WORK/seed.json" 2>"$WORK/seed.err" ||
  { echo "seed sync failed: $(tail -5 "$WORK/seed.err")" >&2; exit 1; }
MANAGED="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["workspaces"][0]["summary"]["create_user"])' "$WORK/seed.json")"
echo "seeded $MANAGED managed users in $(elapsed_since "$T0") s" >&2

"$BIN" --config "$WORK/oktasync.toml" --log-format json run 2>"$WORK/daemon.log" &
DAEMON_PID=$!
for _ in $(seq 1 300); do
  curl -sf "$DAEMON/readyz" >/dev/null 2>&1 && break
  kill -0 "$DAEMON_PID" 2>/dev/null || { echo "daemon died: $(tail -5 "$WORK/daemon.log")" >&2; exit 1; }
  sleep 0.1
done
curl -sf "$DAEMON/readyz" >/dev/null || { echo "daemon not ready within 30 s: $(tail -5 "$WORK/daemon.log")" >&2; exit 1; }

count() { grep -c "\"message\":\"$1" "$WORK/daemon.log" || true; }
# Called every 100 ms while waiting: when a cycle has finished since the last call, keeps
# the fake's counters as they stand (stats-N.json after the N-th finished cycle); the next
# cycle starts at least 0.9 interval later, so each difference is one cycle's calls.
SEEN_FINISHED=0
watch_cycles() {
  local f
  f="$(count "cycle finished")"
  if [ "$f" -gt "$SEEN_FINISHED" ]; then
    SEEN_FINISHED="$f"
    curl -sf "$URL/__admin/stats" >"$WORK/stats-$f.json" || true
  fi
}
echo "daemon ready; waiting for its first cycle (interval $INTERVAL)..." >&2
LIMIT="$(python3 -c "print(int(($INTERVAL_S + 120) * 10))")"
for _ in $(seq 1 "$LIMIT"); do
  [ "$(count "cycle finished")" -ge 1 ] && break
  kill -0 "$DAEMON_PID" 2>/dev/null || { echo "daemon died: $(tail -5 "$WORK/daemon.log")" >&2; exit 1; }
  sleep 0.1
done
[ "$(count "cycle finished")" -ge 1 ] || { echo "no cycle finished: $(tail -5 "$WORK/daemon.log")" >&2; exit 1; }
watch_cycles   # stats-1.json: the baseline

# Managed, active users to change (their Okta ids are the SCIM externalIds).
curl -sf -G -H "Authorization: Bearer $SCIM_TOKEN" "$DAEMON/hook/scim/workspaces/$WS/Users" \
  --data-urlencode 'filter=active eq true' --data-urlencode 'count=200' \
  --data-urlencode 'attributes=externalId' >"$WORK/candidates.json"
mapfile -t PICKS < <(python3 -c '
import json, random, sys
ids = [r["externalId"] for r in json.load(open(sys.argv[1]))["Resources"] if r.get("externalId")]
n = int(sys.argv[2])
for i in random.sample(ids, n) if n <= len(ids) else random.choices(ids, k=n): print(i)' "$WORK/candidates.json" "$SAMPLES")

: >"$WORK/samples.txt"   # okta id, change time, seen time (epoch seconds), or "-" when never
FAILED=0
for i in $(seq 1 "$SAMPLES"); do
  user="${PICKS[$((i - 1))]}"
  value="Latency$i-$RANDOM$RANDOM"
  wait_until="$(python3 -c "import random; print($(now_us) + round(random.uniform(0, $INTERVAL_S) * 1e6))")"
  while [ "$(now_us)" -lt "$wait_until" ]; do
    watch_cycles
    sleep 0.1
  done
  curl -sf -X PATCH -H 'Content-Type: application/json' -d "{\"lastName\": \"$value\"}" \
    "$URL/__admin/users/$user" >/dev/null
  changed="$(now)"
  deadline="$(python3 -c "print(${changed/./} + round($DEADLINE_S * 1e6))")"
  seen=-
  while [ "$(now_us)" -lt "$deadline" ]; do
    body="$(curl -sf -G -H "Authorization: Bearer $SCIM_TOKEN" "$DAEMON/hook/scim/workspaces/$WS/Users" \
      --data-urlencode "filter=externalId eq \"$user\"" || true)"
    if [[ "$body" == *"\"$value\""* ]]; then
      seen="$(now)"
      break
    fi
    watch_cycles
    sleep 0.1
  done
  echo "$user $changed $seen" >>"$WORK/samples.txt"
  if [ "$seen" = - ]; then
    echo "sample $i: $user's change did not appear within $DEADLINE_S s" >&2
    FAILED=1
    break
  fi
  echo "sample $i/$SAMPLES: $(python3 -c "print(f'{$seen - $changed:.1f}')") s" >&2
done

# Let the cycle in progress finish, so its calls are counted.
for _ in $(seq 1 600); do
  [ "$(count "cycle started")" -le "$(count "cycle \(finished\|failed\|abandoned\)")" ] && break
  sleep 0.1
done
watch_cycles

# Exits 1 when a sample failed.
WORK="$WORK" INTERVAL="$INTERVAL" INTERVAL_S="$INTERVAL_S" MANAGED="$MANAGED" \
  N_USERS="$N_USERS" FAILED="$FAILED" python3 - <<'EOF'
import glob, json, os, re, statistics, sys
from datetime import datetime

work, interval, interval_s = os.environ["WORK"], os.environ["INTERVAL"], float(os.environ["INTERVAL_S"])
target = interval_s + 5

def ts(s):   # RFC 3339 UTC with up to nanoseconds -> epoch seconds
    m = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?Z", s)
    return datetime.fromisoformat(m.group(1) + "+00:00").timestamp() + float(m.group(2) or 0)

starts, finished = [], []
for line in open(f"{work}/daemon.log"):
    try:
        e = json.loads(line)
    except ValueError:
        continue
    msg, span = e.get("fields", {}).get("message"), e.get("span", {})
    if msg == "cycle started":
        starts.append(ts(e["timestamp"]))
    elif msg == "cycle finished":
        finished.append((span.get("full") in (True, "true"), e["fields"].get("duration_ms"),
                         e["fields"].get("result")))

print(f"oktasync daemon, change-to-applied latency: {os.environ['N_USERS']} Okta users, "
      f"{os.environ['MANAGED']} managed; sync.interval = {interval} (shortened at random by up to 10%), "
      f"incremental cycles; fake Okta at Okta's real rate limits")
lat = []
for n, line in enumerate(open(f"{work}/samples.txt"), 1):
    user, changed, seen = line.split()
    if seen == "-":
        print(f"  sample {n}: {user}: not applied within {interval_s * 2 + 30:g} s")
        continue
    changed, seen = float(changed), float(seen)
    lat.append(seen - changed)
    start = max((s for s in starts if s <= seen), default=None)
    split = (f" (next cycle started {start - changed:+.1f} s after the change, applied "
             f"{seen - start:.1f} s into it)") if start is not None else ""
    print(f"  sample {n}: {seen - changed:5.1f} s{split}")
if lat:
    ok = sum(l < target for l in lat)
    print(f"latency: min {min(lat):.1f} s, median {statistics.median(lat):.1f} s, max {max(lat):.1f} s "
          f"(SCIM polled every 100 ms)")
    print(f"target: under interval + 5 s = {target:g} s: "
          f"{'met by every sample' if ok == len(lat) else f'MISSED by {len(lat) - ok} of {len(lat)}'}")

gaps = [b - a for a, b in zip(starts, starts[1:])]
if gaps:
    print(f"scheduled cycles started {min(gaps):.2f} to {max(gaps):.2f} s apart "
          f"(mean {statistics.mean(gaps):.2f} s; jitter allows {interval_s * 0.9:g} to "
          f"{interval_s:g} s, and a cycle starts on the scheduler's next tick)")
inc = [d for full, d, _ in finished if not full and d is not None]
if inc:
    print(f"incremental cycles: {len(inc)}, duration min {min(inc)} ms, median "
          f"{statistics.median(inc):.0f} ms, max {max(inc)} ms")
if any(full for full, _, _ in finished):
    print(f"  (also {sum(full for full, _, _ in finished)} full cycle(s))")
if any(r != "ok" for _, _, r in finished):
    print(f"  results: {[r for _, _, r in finished]}")

snaps = sorted((int(re.search(r"stats-(\d+)", p).group(1)), p) for p in glob.glob(f"{work}/stats-*.json"))
def buckets(p):
    return {b: v["calls"] for b, v in json.load(open(p))["buckets"].items()}
per_cycle = []
for (a, pa), (b, pb) in zip(snaps, snaps[1:]):
    if b == a + 1:   # exactly one cycle between the two readings
        x, y = buckets(pa), buckets(pb)
        per_cycle.append({k: y[k] - x[k] for k in y if y[k] - x[k]})
if per_cycle:
    totals = [sum(c.values()) for c in per_cycle]
    shapes = sorted({", ".join(f"{k} {v}" for k, v in sorted(c.items())) for c in per_cycle})
    print(f"Okta calls per incremental cycle: min {min(totals)}, max {max(totals)} over "
          f"{len(per_cycle)} cycles (by bucket: {'; '.join(shapes)})")
sys.exit(1 if os.environ["FAILED"] == "1" else 0)
EOF
