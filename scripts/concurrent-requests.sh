#!/usr/bin/env bash
# The classic smoke test: N POSTs (default 100), each one of seven payloads chosen at random, 10 at a
# time; prints each payload with its status, then the stored appointments, and exits non-zero when
# a rule is broken.   Usage: scripts/concurrent-requests.sh [N] [BASE_URL]
set -euo pipefail

N=${1:-100}
BASE_URL=${2:-${BASE_URL:-http://localhost:3000}}
export BASE_URL

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export PAYLOADS="$work/payloads"
cat > "$PAYLOADS" <<'JSON'
{"id":1,"start":"2020-10-10 20:20","end":"2020-10-10 20:30","createdAt":"2020-09-02 14:23:12","updatedAt":"2020-09-28 14:23:12"}
{"id":2,"start":"2019-10-10 20:20","end":"2020-10-10 20:30","createdAt":"2018-10-02 16:23:12","updatedAt":"2020-09-28 14:23:12"}
{"id":3,"start":"2020-10-10 20:25","end":"2020-10-10 20:35","createdAt":"2020-10-01 13:23:12","updatedAt":"2020-09-28 14:23:12"}
{"id":4,"start":"2020-10-11 10:00","end":"2020-10-11 11:30","createdAt":"2020-10-01 11:23:12","updatedAt":"2020-09-28 14:23:12"}
{"id":5,"start":"2020-10-12 11:27","end":"2020-10-10 12:27","createdAt":"2020-09-11 10:23:12","updatedAt":"2020-09-28 14:23:12"}
{"id":6,"start":"2020-10-12 12:00","end":"2020-10-12 13:30","createdAt":"2020-08-02 13:23:12","updatedAt":"2020-09-28 14:23:12"}
{"id":1,"start":"2020-10-17 14:40","end":"2020-10-17 15:30","createdAt":"2020-03-02 19:23:12","updatedAt":"2020-09-28 14:24:12"}
JSON

send() {
  local n=$1 payload status
  payload=$(sed -n "${n}p" "$PAYLOADS")
  status=$(curl -s -o /dev/null -w '%{http_code}' --max-time 30 -X POST \
    -H 'content-type: application/json' --data "$payload" "$BASE_URL/api/appointments") || status=000
  echo "$n $status $payload"
}
export -f send

for _ in $(seq "$N"); do echo $((RANDOM % 7 + 1)); done \
  | xargs -P10 -n1 bash -c 'send "$0"' | tee "$work/results" | cut -d' ' -f2-

echo
echo "GET $BASE_URL/api/appointments"
curl -s --fail --max-time 30 "$BASE_URL/api/appointments?limit=1000" | tee "$work/list"
echo
echo

# payload number -> statuses it may get
failures=0
while read -r n status _; do
  case "$n:$status" in
    5:400) ;;
    [123]:200 | [123]:201 | [123]:409) ;;
    [467]:200 | [467]:201) ;;
    *) echo "FAIL: payload $n got status $status"; failures=$((failures + 1)) ;;
  esac
done < "$work/results"

sent() { awk -v n="$1" '$1 == n { found = 1 } END { exit !found }' "$work/results"; }
SENT_4=$(sent 4 && echo 1 || echo 0) SENT_6=$(sent 6 && echo 1 || echo 0) SENT_7=$(sent 7 && echo 1 || echo 0) \
node -e '
  const list = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
  const problems = [];
  const byId = new Map(list.map((a) => [a.id, a]));
  const sorted = [...list].sort((a, b) => a.start.localeCompare(b.start));
  for (let i = 1; i < sorted.length; i++) {
    if (sorted[i].start < sorted[i - 1].end) problems.push(`appointments ${sorted[i - 1].id} and ${sorted[i].id} overlap`);
  }
  if (byId.has("5")) problems.push("payload 5 (end before start) was stored");
  if (process.env.SENT_4 === "1" && !byId.has("4")) problems.push("id 4 was sent but is not stored");
  if (process.env.SENT_6 === "1" && !byId.has("6")) problems.push("id 6 was sent but is not stored");
  if (process.env.SENT_7 === "1" && byId.get("1")?.start !== "2020-10-17T14:40:00.000Z") problems.push("the update of id 1 did not land");
  for (const p of problems) console.log(`FAIL: ${p}`);
  process.exit(problems.length ? 1 : 0);
' "$work/list" || failures=$((failures + 1))

if ((failures > 0)); then
  echo "$failures check(s) failed"
  exit 1
fi
echo "OK: $N requests, every status as expected, no overlaps stored"
