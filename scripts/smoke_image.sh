#!/usr/bin/env bash
# Prove a built service image from inside, without a container runtime (which this sandbox cannot run):
# a container's writable file system (podman create + mount), entered with chroot as the image's user,
# with the image's environment and working directory, in namespaces of its own with no network but
# loopback. Runs what an operator's first hour runs: rag doctor, rag ingest, rag ask (a cited answer),
# the page's and the API's health endpoints, and the image's HEALTHCHECK command.
#
#   scripts/smoke_image.sh [IMAGE]      # default localhost/rag:cpu; needs root and podman
set -euo pipefail
cd "$(dirname "$0")/.."
IMAGE=${1:-localhost/rag:cpu}
container=$(podman create "$IMAGE")
cleanup() { podman umount "$container" >/dev/null 2>&1 || true; podman rm -f "$container" >/dev/null 2>&1 || true; }
trap cleanup EXIT
root=$(podman mount "$container")
user=$(podman image inspect --format '{{.Config.User}}' "$IMAGE")
workdir=$(podman image inspect --format '{{.Config.WorkingDir}}' "$IMAGE")
uid=$(chroot "$root" id -u "$user")
gid=$(chroot "$root" id -g "$user")
healthcheck=$(podman image inspect --format '{{range .Config.Healthcheck.Test}}{{.}}{{"\x1f"}}{{end}}' "$IMAGE")
env_file=$(mktemp)
podman image inspect --format '{{range .Config.Env}}{{.}}{{"\n"}}{{end}}' "$IMAGE" > "$env_file"
# the samples, readable by the image's user, where docker-compose mounts the documents
mkdir -p "$root/documents"
cp -r samples/. "$root/documents/"
# and a scanned page (an image of text, no text layer), for OCR inside the image
mkdir -p "$root/documents/scans"
"${PYTHON:-.venv/bin/python}" - "$root/documents/scans/bike-storage-scan.pdf" <<'PY'
import sys
from pathlib import Path
sys.path.insert(0, ".")
from tests.docgen import write_scanned_pdf
write_scanned_pdf(Path(sys.argv[1]), [("scan", ["Scanned notice from facilities.",
                                                "The bicycle storage room is on level -1, next to the loading dock."])])
PY
chown -R "$uid:$gid" "$root/documents"

cat > "$root/tmp/smoke.sh" <<'SMOKE'
set -eu
cd "$WORKDIR"
step() { echo "== $*"; }
# wait_for LOG URL...: wait until the first URL answers (a server starting), then print each URL's answer
wait_for() {
python - "$@" <<'PY'
import sys, time, urllib.request
log, urls = sys.argv[1], sys.argv[2:]
for _ in range(240):
    try:
        urllib.request.urlopen(urls[0], timeout=2)
        break
    except OSError:
        time.sleep(0.5)
else:
    raise SystemExit(f"{urls[0]} did not answer: see {log}")
for url in urls:
    print(url, urllib.request.urlopen(url, timeout=30).read().decode())
PY
}
step "rag doctor"
rag doctor || { echo "rag doctor reported a failure"; exit 1; }
step "rag ingest /documents"
rag ingest /documents --json > /tmp/ingest.json  # not piped: sh has no pipefail, a failure must end the test
tail -1 /tmp/ingest.json
rag status
step "rag ingest --every (docker-compose's ingest service): two passes, the second a no-op"
rag ingest /documents --every 1 --json > /tmp/every.log 2>&1 &
every=$!
python - <<'PY'
import json, time
for _ in range(120):
    lines = [l for l in open("/tmp/every.log") if l.startswith("{")]
    if len(lines) >= 2:
        second = json.loads(lines[1])
        assert second["files_indexed"] == 0 and second["files_unchanged"] == 13, second
        print("second pass:", second["files_unchanged"], "unchanged,", second["seconds"], "s")
        break
    time.sleep(0.5)
else:
    raise SystemExit("rag ingest --every did not run twice: see /tmp/every.log")
PY
kill $every
step "OCR: the scanned page is read and found"
rag status --json > /tmp/status.json
rag search "Where is the bicycle storage room?" --json > /tmp/search.json
python - <<'PY'
import json
status, hit = json.load(open("/tmp/status.json")), json.load(open("/tmp/search.json"))["hits"][0]
assert status["ocr_pages"] == 1, status
assert hit["path"].endswith("bike-storage-scan.pdf") and hit["ocr"] is True, hit
print("OCR'd pages:", status["ocr_pages"], "; top hit:", hit["path"], "page", hit["page"], "confidence", hit["ocr_confidence"])
PY
step "rag ask (a cited answer)"
rag ask "When is lunch served in the cafeteria?" --json > /tmp/answer.json
python - <<'PY'
import json
answer = json.load(open("/tmp/answer.json"))
assert not answer["abstained"], answer
assert answer["sources"], "no source cited"
print("answer:", answer["answer"][:160])
print("sources:", ", ".join(s["path"] for s in answer["sources"]))
PY
step "rag ui: health endpoint and the image's HEALTHCHECK"
rag ui --host 127.0.0.1 --port 8501 > /tmp/ui.log 2>&1 &
ui=$!
wait_for /tmp/ui.log http://127.0.0.1:8501/_stcore/health
sh -c "$HEALTHCHECK_CMD"  # a failure ends the smoke test (set -e)
echo "HEALTHCHECK passed"
kill $ui
step "rag api: health and readiness"
rag api --host 127.0.0.1 --port 8000 > /tmp/api.log 2>&1 &
api=$!
wait_for /tmp/api.log http://127.0.0.1:8000/healthz http://127.0.0.1:8000/readyz
kill $api
step "no network from inside"
python -c "import socket; socket.create_connection(('deb.debian.org', 80), timeout=3)" 2>/dev/null && { echo "network reachable"; exit 1; } || echo "no route out (as intended for this test)"
echo "SMOKE PASSED"
SMOKE
chmod 755 "$root/tmp/smoke.sh"

# the HEALTHCHECK as Docker runs it: ["CMD-SHELL", "cmd"] or ["CMD", arg...]
IFS=$'\x1f' read -r -a check <<< "$healthcheck"
if [ "${check[0]:-}" = "CMD-SHELL" ]; then health_cmd=${check[1]}; else health_cmd=$(printf '%q ' "${check[@]:1}"); fi

started=$(date +%s)
# new network namespace (only loopback, brought up), new mount namespace for /proc and /dev
unshare --net --mount --pid --fork sh -c '
  ip link set lo up
  mount -t proc proc "$0/proc"
  mount --rbind /dev "$0/dev"
  exec env -i $(cat "$1") HOME=/home/$2 WORKDIR="$3" HEALTHCHECK_CMD="$4" \
    chroot --userspec="$5:$6" "$0" sh /tmp/smoke.sh
' "$root" "$env_file" "$user" "$workdir" "$health_cmd" "$uid" "$gid"
echo "smoke test passed in $(( $(date +%s) - started )) s"
