# tests/server_common.bash: sourced by the server integration tests (tests/server_*.sh):
# find the binary and the model, start `slmesh serve` on a free loopback port (--port 0; the
# port is read from its "listening on" line), wait for /health, stop it with SIGTERM.
# Not a test itself (ctest runs tests/*.sh only).

SLMESH_BIN=${SLMESH_BIN:-build/slmesh}
SHARED=${SLMESH_SHARED:-$(dirname "$0")/../../shared}
MODEL="$SHARED/models/stories260K.gguf"
if [ ! -f "$MODEL" ]; then
    echo "skip: $MODEL not found (set SLMESH_SHARED)"
    exit 77
fi
command -v curl >/dev/null || { echo "skip: curl missing"; exit 77; }
command -v jq >/dev/null || { echo "skip: jq missing"; exit 77; }

WORK=$(mktemp -d)
SRV_PID=""
cleanup() {
    if [ -n "$SRV_PID" ] && kill -0 "$SRV_PID" 2>/dev/null; then kill -KILL "$SRV_PID" 2>/dev/null; fi
    [ -n "${KEEP_WORK:-}" ] || rm -rf "$WORK"; [ -n "${KEEP_WORK:-}" ] && echo "work: $WORK" >&2 || true
}
trap cleanup EXIT

fail() {
    echo "FAIL: $*" >&2
    [ -f "$WORK/err" ] && tail -5 "$WORK/err" >&2
    exit 1
}

# start_server ARGS...: sets SRV_PID, PORT, BASE
start_server() {
    : >"$WORK/err"
    "$SLMESH_BIN" serve --port 0 "$@" >"$WORK/access.log" 2>"$WORK/err" &
    SRV_PID=$!
    PORT=""
    for _ in $(seq 1 300); do
        PORT=$(sed -n 's/.*listening on http:\/\/[0-9.]*:\([0-9]*\).*/\1/p' "$WORK/err")
        [ -n "$PORT" ] && break
        kill -0 "$SRV_PID" 2>/dev/null || fail "server exited: $(cat "$WORK/err")"
        sleep 0.05
    done
    [ -n "$PORT" ] || fail "server did not start"
    BASE="http://127.0.0.1:$PORT"
    for _ in $(seq 1 300); do
        [ "$(curl -s -o /dev/null -w '%{http_code}' "$BASE/health")" = 200 ] && return 0
        sleep 0.05
    done
    fail "server not healthy"
}

# stop_server: SIGTERM, expect exit 0 within the grace period
stop_server() {
    kill -TERM "$SRV_PID"
    local rc=0
    wait "$SRV_PID" || rc=$?
    SRV_PID=""
    [ "$rc" = 0 ] || fail "server exited $rc after SIGTERM"
}
