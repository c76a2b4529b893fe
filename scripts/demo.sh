#!/usr/bin/env bash
# `make demo`: the whole pipeline on the emulators for one real playoff date.
#   emulators -> setup -> load (real game logs) -> run all roles -> trigger -> live progress ->
#   export file -> the strongest picks -> stop everything this script started.
# DEMO_DATE (default 2025-06-22, Game 7 of the 2025 Finals) and DEMO_PROJECT can be overridden.
set -euo pipefail
cd "$(dirname "$0")/.."

DEMO_DATE="${DEMO_DATE:-2025-06-22}"
DEMO_PROJECT="${DEMO_PROJECT:-props-demo}"
OUT="out/demo"
BIN=target/debug/props-pipeline

started_emulators=0
run_pid=""
cleanup() {
  if [ -n "$run_pid" ] && kill -0 "$run_pid" 2>/dev/null; then
    kill -TERM "$run_pid" 2>/dev/null || true
    wait "$run_pid" 2>/dev/null || true
  fi
  if [ "$started_emulators" = 1 ]; then scripts/emulators.sh stop >/dev/null; fi
}
trap cleanup EXIT

echo "==> building"
cargo build --quiet
if ! scripts/emulators.sh status >/dev/null 2>&1; then
  echo "==> starting the emulators"
  scripts/emulators.sh start
  started_emulators=1
fi
set -a; . .emulators/env; set +a
export GOOGLE_CLOUD_PROJECT="$DEMO_PROJECT"
mkdir -p "$OUT"

echo "==> setup (topics, subscriptions, dead-letter topics)"
# Short backoff: the emulator is local and the demo should not wait out production delays.
"$BIN" setup --min-backoff-secs 1 --max-backoff-secs 10 | tail -1

echo "==> load the real game logs and the $DEMO_DATE slate"
"$BIN" load --game-date "$DEMO_DATE"

echo "==> run all roles (logs: $OUT/run.log)"
PROPS_HTTP_ADDR="${PROPS_HTTP_ADDR:-127.0.0.1:0}" "$BIN" run all --export-dir "$OUT/exports" >"$OUT/run.log" 2>&1 &
run_pid=$!

echo "==> trigger $DEMO_DATE"
message_id=$("$BIN" trigger --game-date "$DEMO_DATE" --reason "make demo" 2>/dev/null)
batch_id="$DEMO_DATE-m$message_id"
"$BIN" status "$batch_id" --watch --timeout-secs 300

export_file="$OUT/exports/$DEMO_DATE.json"
for _ in $(seq 1 60); do [ -f "$export_file" ] && break; sleep 0.5; done
[ -f "$export_file" ] || { echo "no export at $export_file; see $OUT/run.log" >&2; exit 1; }
echo "==> exported: $export_file"

python3 - "$export_file" <<'PY'
import json, sys
data = json.load(open(sys.argv[1]))
offered = [p for p in data["players"] if p.get("offered")]
not_offered = [p["player_name"] for p in data["players"] if not p.get("offered")]
picks = [(p, q) for p in offered for q in p["props"] if q["recommendation"] != "PASS"]
picks.sort(key=lambda pq: -abs(pq[1]["edge"]))
version = data["players"][0].get("model_version", "?") if data["players"] else "?"
print(f"\nStrongest picks for {data['game_date']} (generation {data['generation']}, model {version}; synthetic lines)")
print(f"{'player':<24} {'team':<4} {'prop':<9} {'line':>5} {'proj':>6} {'market':>6} {'p_over':>6} {'edge':>6}  pick")
for p, q in picks[:10]:
    print(f"{p['player_name']:<24} {p['team']:<4} {q['stat']:<9} {q['line']:>5.1f} {q['projection']:>6.1f} "
          f"{q['market_p_over']:>6.3f} {q['p_over']:>6.3f} {q['edge']:>+6.3f}  {q['recommendation']}")
print(f"\nOnly the {len(offered)} players projected 15+ minutes are offered (as a sportsbook would post);"
      f" left out: {len(not_offered)} ({', '.join(not_offered) or 'none'}).")
skipped = data.get("skipped_players", [])
if skipped:
    print(f"Skipped (not priced): " + "; ".join(f"{s['player_lookup']}: {s['reason']}" for s in skipped))
PY
