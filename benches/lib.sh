# shellcheck shell=bash
# benches/lib.sh: sourced (from the repository root) by the shell benchmarks okta_full.sh,
# latency.sh and idle.sh; owns the two steps they share:
#   oktasync_bin            BIN = $OKTASYNC_BIN, else builds `cargo build --release -p
#                           oktasync` and sets BIN to target/release/oktasync (absolute)
#   start_fake_okta ARGS... starts `$BIN fake-okta --listen 127.0.0.1:0 ARGS...` in the
#                           background (stdout in $WORK/fake.out, log in $WORK/fake.log;
#                           the caller's environment, e.g. OKTASYNC_LOG, applies) and waits
#                           for its FAKE_OKTA_URL= line: sets FAKE_PID and FAKE_URL, or
#                           exits 1 with the fake's last log lines if it dies or prints no
#                           URL within 60 s. Needs BIN and WORK; the caller kills FAKE_PID.

oktasync_bin() {
  if [ -n "${OKTASYNC_BIN:-}" ]; then
    BIN="$OKTASYNC_BIN"
  else
    cargo build --release -p oktasync >&2
    BIN="$PWD/target/release/oktasync"
  fi
}

start_fake_okta() {
  : "${BIN:?oktasync_bin first}" "${WORK:?WORK must be set}"
  "$BIN" fake-okta --listen 127.0.0.1:0 "$@" >"$WORK/fake.out" 2>"$WORK/fake.log" &
  FAKE_PID=$!
  FAKE_URL=""
  for _ in $(seq 1 600); do
    FAKE_URL="$(sed -n 's/^FAKE_OKTA_URL=//p' "$WORK/fake.out")"
    [ -n "$FAKE_URL" ] && return 0
    kill -0 "$FAKE_PID" 2>/dev/null || { echo "fake-okta died: $(tail -5 "$WORK/fake.log")" >&2; exit 1; }
    sleep 0.1
  done
  echo "fake-okta did not start within 60 s: $(tail -5 "$WORK/fake.log")" >&2
  exit 1
}
