#!/usr/bin/env bash
# Smoke test of the Docker image: build it, run it with a model mounted
# read-only, wait for its HEALTHCHECK to report healthy (and GET /health),
# check the API key is enforced, do one /v1/completions request, check the
# server does not run as root, and stop it (graceful: exit status 0).
#
#   scripts/docker_smoke.sh [MODEL.gguf]
#
# MODEL defaults to the small model shipped in the package. BITNET_IMAGE sets
# the image tag (default bitnet-py:smoke); BITNET_SMOKE_TIMEOUT the seconds
# to wait for healthy (default 180; the HEALTHCHECK runs every 30 s).
# Exit status: 0 passed, 1 failed, 77 skipped (no docker client or no
# reachable daemon), as automake/meson count a skip.
set -euo pipefail
cd "$(dirname "$0")/.."

model=${1:-python/bitnet_py/data/bitnet-b1.58-small-i2_s.gguf}
image=${BITNET_IMAGE:-bitnet-py:smoke}
timeout=${BITNET_SMOKE_TIMEOUT:-180}
key=smoke-$$-$RANDOM
name=bitnet-smoke-$$
py=$(command -v python3 || command -v python)

say() { echo "docker_smoke: $*" >&2; }
fail() { say "FAILED: $*"; exit 1; }

if ! command -v docker >/dev/null 2>&1; then
    say "no docker client: skipped"
    exit 77
fi
if ! info=$(docker info 2>&1); then
    why=$(printf '%s\n' "$info" | grep -m1 -i 'cannot\|error' || true)
    say "no Docker daemon reachable (${why:-docker info failed}): skipped"
    exit 77
fi
[ -f "$model" ] || fail "model not found: $model"

models=$(mktemp -d)
cleanup() {
    docker rm -f "$name" >/dev/null 2>&1 || true
    rm -rf "$models"
}
trap cleanup EXIT
cp "$model" "$models/model.gguf"
chmod 755 "$models"
chmod 444 "$models/model.gguf"

say "building $image"
docker build -t "$image" .

say "starting $name"
docker run -d --name "$name" -p 127.0.0.1::8000 -v "$models:/models:ro" -e BITNET_API_KEY="$key" "$image" \
    >/dev/null
hostport=$(docker port "$name" 8000/tcp | grep -m1 '^127\.0\.0\.1:' || true)
[ -n "$hostport" ] || fail "port 8000 not published: $(docker port "$name")"
url="http://$hostport"

# http METHOD PATH [BODY] [AUTH]: prints "STATUS BODY"
http() {
    "$py" - "$1" "$url$2" "${3:-}" "${4:-}" <<'EOF'
import sys, urllib.request, urllib.error
method, url, body, key = sys.argv[1:5]
req = urllib.request.Request(url, data=body.encode() if body else None, method=method,
                             headers={"Content-Type": "application/json"})
if key:
    req.add_header("Authorization", "Bearer " + key)
try:
    with urllib.request.urlopen(req, timeout=120) as r:
        print(r.status, r.read().decode())
except urllib.error.HTTPError as e:
    print(e.code, e.read().decode())
except OSError as e:
    print(0, e)
EOF
}

say "waiting for the HEALTHCHECK (up to ${timeout}s)"
deadline=$(( $(date +%s) + timeout ))
health=""
while :; do
    state=$(docker inspect -f '{{.State.Status}}' "$name")
    [ "$state" = running ] || { docker logs "$name" >&2 || true; fail "container is $state"; }
    health=$(docker inspect -f '{{if .State.Health}}{{.State.Health.Status}}{{end}}' "$name")
    [ -n "$health" ] || fail "the image has no HEALTHCHECK"
    [ "$health" = healthy ] && break
    [ "$health" = unhealthy ] && { docker logs "$name" >&2 || true; fail "HEALTHCHECK reports unhealthy"; }
    [ "$(date +%s)" -lt "$deadline" ] || { docker logs "$name" >&2 || true; fail "not healthy after ${timeout}s ($health)"; }
    sleep 2
done
out=$(http GET /health)
[ "${out%% *}" = 200 ] || fail "GET /health: $out"
case "$out" in *'"status":"ok"'*|*'"status": "ok"'*) ;; *) fail "GET /health: $out" ;; esac
say "healthy: ${out#* }"

body='{"model": "model.gguf", "prompt": "Once upon a time", "max_tokens": 8, "temperature": 0}'
out=$(http POST /v1/completions "$body")
[ "${out%% *}" = 401 ] || fail "a request without the API key was not refused: $out"
out=$(http POST /v1/completions "$body" "$key")
[ "${out%% *}" = 200 ] || fail "POST /v1/completions: $out"
"$py" -c '
import json, sys
d = json.loads(sys.argv[1].split(" ", 1)[1])
c = d["choices"][0]
assert d["object"] == "text_completion" and isinstance(c["text"], str) and c["text"], d
assert c["finish_reason"] in ("length", "stop") and d["usage"]["completion_tokens"] >= 1, d
print("docker_smoke: completion:", repr(c["text"]), file=sys.stderr)
' "$out" || fail "unexpected completion: $out"

user=$(docker inspect -f '{{.Config.User}}' "$image")
uid=$(docker exec "$name" python -c 'import os; print(os.getuid())')
pid1=$(docker exec "$name" python -c 'print(open("/proc/1/status").read().split("Uid:")[1].split()[0])')
say "image USER=$user, exec uid=$uid, server (pid 1) uid=$pid1"
case "$user" in ""|root|0|0:*|root:*) fail "the image runs as root (USER=$user)" ;; esac
[ "$uid" != 0 ] && [ "$pid1" != 0 ] || fail "the container runs as root"

docker stop -t 30 "$name" >/dev/null
code=$(docker inspect -f '{{.State.ExitCode}}' "$name")
[ "$code" = 0 ] || { docker logs "$name" >&2 || true; fail "exit status $code after docker stop"; }
say "passed"
