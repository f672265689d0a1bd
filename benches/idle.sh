#!/usr/bin/env bash
# Idle daemon benchmark: `oktasync run` holding ~100k managed users, measured between
# cycles. Seeds the store with one `oktasync sync` against a fake Okta, starts the daemon
# (interval 1h), has it run one cycle itself (`POST /admin/sync`: a converged resync that
# reads every user, so what the process keeps after a cycle is in the figure), lets it
# settle, then samples its RSS and CPU time over MEASURE_SECONDS while Kubernetes-like
# probes and a Prometheus scrape hit it, and extrapolates CPU to an hour. Targets: RSS
# under 80 MB, under 1% of a core (36 CPU-seconds per hour). IN_PROCESS_CYCLE=0 skips the
# cycle (the daemon as it starts).
#
#   benches/idle.sh                       # 160k Okta users (~100k in scope), 120 s
#   USERS=20000 MEASURE_SECONDS=30 benches/idle.sh
#   STORE_URL=postgres://postgres@127.0.0.1:5432/oktasync_bench benches/idle.sh
#
# Linux only (reads /proc). Builds the release binary first (skipped when OKTASYNC_BIN
# names a binary).
set -euo pipefail

USERS=${USERS:-160000}
OKTA_GROUPS=${OKTA_GROUPS:-300}
MEASURE_SECONDS=${MEASURE_SECONDS:-120}
SETTLE_SECONDS=${SETTLE_SECONDS:-10}
PROBES=${PROBES:-1}
IN_PROCESS_CYCLE=${IN_PROCESS_CYCLE:-1}
ADMIN_TOKEN=bench-admin-token-0123456789

cd "$(dirname "$0")/.."
# shellcheck source=SCRIPTDIR/lib.sh
. benches/lib.sh
oktasync_bin
WORK=$(mktemp -d)
FAKE_PID=
DAEMON_PID=
cleanup() {
    [ -n "$DAEMON_PID" ] && kill "$DAEMON_PID" 2>/dev/null || true
    [ -n "$FAKE_PID" ] && kill "$FAKE_PID" 2>/dev/null || true
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# A fake Okta whose rate-limit windows last one second instead of a minute.
start_fake_okta --users "$USERS" --groups "$OKTA_GROUPS" --api-token bench-token --time-scale 60

PORT=$(free_port)
cat >"$WORK/oktasync.toml" <<EOF
[okta]
org_url = "$FAKE_URL"
api_token = "bench-token"
rate_limit_window = "1s"

[store]
url = "${STORE_URL:-sqlite://$WORK/oktasync.db}"

[server]
listen = "127.0.0.1:$PORT"
admin_token = "$ADMIN_TOKEN"

[sync]
interval = "1h"
full_every = "24h"
max_deactivations = 1000000
max_deactivation_ratio = 1.0

[[workspaces]]
id = "ws1"
okta_app_id = "0oafakeapp0000000001"
scim_token = "bench-scim-token"
push_groups = "assigned"
EOF

echo "seeding: one sync of $USERS Okta users..." >&2
SEED_START=$(date +%s)
MANAGED=$("$BIN" --config "$WORK/oktasync.toml" sync --format json |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["workspaces"][0]["summary"]["create_user"])')
echo "seeded $MANAGED managed users in $(( $(date +%s) - SEED_START )) s" >&2

OKTASYNC_LOG=warn "$BIN" --config "$WORK/oktasync.toml" run 2>"$WORK/daemon.log" &
DAEMON_PID=$!
for _ in $(seq 1 300); do
    curl -fs "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1 && break
    sleep 0.1
done
curl -fs "http://127.0.0.1:$PORT/healthz" >/dev/null || { cat "$WORK/daemon.log" >&2; exit 1; }
rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$DAEMON_PID/status"; }
RSS_FRESH=$(rss_kb)
CYCLE_SECONDS=-
if [ "$IN_PROCESS_CYCLE" = 1 ]; then
    echo "one cycle in the daemon..." >&2
    C0=$(date +%s.%N)
    curl -fs -X POST -H "Authorization: Bearer $ADMIN_TOKEN" "http://127.0.0.1:$PORT/admin/sync" >/dev/null
    for _ in $(seq 1 3600); do
        curl -fs "http://127.0.0.1:$PORT/metrics" | grep -q '^oktasync_cycles_total{.*trigger="admin"}' && break
        sleep 0.5
    done
    CYCLE_SECONDS=$(python3 -c "import time; print(f'{time.time() - $C0:.0f}')")
fi
sleep "$SETTLE_SECONDS"

TICKS=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$DAEMON_PID/stat"; }

RSS_START=$(rss_kb)
CPU_START=$(cpu_ticks)
T_START=$(date +%s.%N)
END=$(( $(date +%s) + MEASURE_SECONDS ))
i=0
while [ "$(date +%s)" -lt "$END" ]; do
    if [ "$PROBES" = 1 ]; then
        # What Kubernetes and Prometheus do to an idle pod: probes every 10 s, a scrape
        # every 15 s (here every 5 s and 15 s, to be on the heavy side).
        curl -fs "http://127.0.0.1:$PORT/healthz" >/dev/null || true
        curl -fs "http://127.0.0.1:$PORT/readyz" >/dev/null || true
        [ $(( i % 3 )) -eq 0 ] && { curl -fs "http://127.0.0.1:$PORT/metrics" >/dev/null || true; }
    fi
    i=$(( i + 1 ))
    sleep 5
done
CPU_END=$(cpu_ticks)
T_END=$(date +%s.%N)
RSS_END=$(rss_kb)
HWM=$(awk '/^VmHWM:/ {print $2}' "/proc/$DAEMON_PID/status")
CYCLES=$(curl -fs "http://127.0.0.1:$PORT/metrics" | awk '/^oktasync_cycles_total/ {n += $2} END {print n + 0}')

python3 - "$MANAGED" "$RSS_START" "$RSS_END" "$HWM" "$CPU_START" "$CPU_END" "$TICKS" "$T_START" "$T_END" "$CYCLES" "$RSS_FRESH" "$CYCLE_SECONDS" <<'EOF'
import sys
managed, rss0, rss1, hwm, c0, c1, ticks, t0, t1, cycles, fresh, cycle_s = sys.argv[1:]
elapsed = float(t1) - float(t0)
cpu = (int(c1) - int(c0)) / int(ticks)
per_hour = cpu * 3600 / elapsed
share = cpu / elapsed * 100
print(f"managed users:        {managed}")
print(f"in-process cycle:     {cycle_s} s (before measuring; '-' when skipped)")
print(f"measured:             {elapsed:.0f} s idle ({cycles} cycles in total in the daemon)")
print(f"RSS idle:             {int(rss1) / 1024:.1f} MB (at the start of the measurement {int(rss0) / 1024:.1f} MB; freshly started {int(fresh) / 1024:.1f} MB; peak during the cycle {int(hwm) / 1024:.1f} MB)")
print(f"CPU:                  {cpu:.2f} s in {elapsed:.0f} s = {per_hour:.1f} CPU-s per hour = {share:.3f}% of a core")
print(f"targets:              RSS < 80 MB: {'ok' if int(rss1) < 80 * 1024 else 'MISSED'}; CPU < 1% of a core: {'ok' if share < 1 else 'MISSED'}")
EOF
