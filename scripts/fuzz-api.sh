#!/usr/bin/env bash
# Schema-driven fuzzing of the live API (not part of the test command:
# it needs schemathesis from PyPI, `pip install schemathesis`).
# Starts the sandbox bridge with an API key on a scratch files root, links a
# session "fz" through the in-process simulator, then runs every
# schemathesis check against the bridge's own OpenAPI document. The
# `ignored_auth` check is left out: it sends a bad bearer token beside the
# valid key given with -H, which the API rightly accepts (either credential
# is enough).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --features sandbox
root=$(mktemp -d)
port=${PORT:-18080}
key=fuzz-key-0123456789
WAPI_API_KEY=$key WAPI_ADMIN_USER=admin WAPI_ADMIN_PASSWORD=secret-pass \
WAPI_FILE_SYSTEM_ROOT_POINT_FULL_PATH="$root" WAPI_INTERNAL_HOST=127.0.0.1:$port \
WAPI_QR_CONSOLE=false WAPI_RATE_LIMIT_RPS=100000 WAPI_RATE_LIMIT_BURST=100000 \
  target/debug/wapi --sandbox > "$root/wapi.log" 2>&1 &
bridge=$!
trap 'kill $bridge 2>/dev/null; rm -rf "$root"' EXIT
B=http://127.0.0.1:$port
for _ in $(seq 100); do curl -sf "$B/v1/health" > /dev/null && break; sleep 0.1; done
A=$(grep -o "http://127.0.0.1:[0-9]*/admin" "$root/wapi.log" | head -1)
curl -sf -H "x-api-key: $key" -H 'content-type: application/json' \
  -XPOST "$B/v1/sessions" -d '{"name":"fz","start":true}' > /dev/null
code=""
for _ in $(seq 100); do
  code=$(curl -s -H "x-api-key: $key" -H 'accept: application/json' "$B/v1/sessions/fz/qr" \
    | python3 -c 'import sys,json; print(json.load(sys.stdin).get("code",""))' 2>/dev/null || true)
  [ -n "$code" ] && break; sleep 0.1
done
curl -sf -XPOST "$A/scan" -H 'content-type: application/json' \
  -d "{\"qr\":\"$code\",\"phone\":\"15550001111\"}" > /dev/null
st --config-file scripts/schemathesis.toml run "$B/v1/openapi.json" -H "X-Api-Key: $key" --checks all --exclude-checks ignored_auth \
  -n "${EXAMPLES:-30}" -w 2 "$@"
