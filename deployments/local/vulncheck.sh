#!/usr/bin/env bash
# govulncheck over every module, against a vulnerability database built on
# this machine: vuln.go.dev need not be reachable, only the Go module proxy.
# The database is the OSV data of the golang.org/x/vulndb module (pinned
# below), turned into govulncheck's v1 layout by vulndb's own cmd/indexdb.
#
#   vulncheck.sh MODULE...   exit 1 when code a module calls has a known
#                            vulnerability not listed in vuln-accepted.txt
#
# Overridable: VULNDB_VERSION, GOVULNCHECK_VERSION, VULN_HOME (.local/vuln).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
VULNDB_VERSION=${VULNDB_VERSION:-v0.0.0-20261105234957-e22db6528018}
GOVULNCHECK_VERSION=${GOVULNCHECK_VERSION:-v1.9.0}
VULN_HOME=${VULN_HOME:-$root/.local/vuln}
GO=${GO:-go}
accepted=$here/vuln-accepted.txt
log() { printf 'vulncheck: %s\n' "$*" >&2; }

bin=$VULN_HOME/bin
db=$VULN_HOME/db-$VULNDB_VERSION
mkdir -p "$bin"
# Outside the workspace: these are tools, not dependencies of a module.
if [ ! -x "$bin/govulncheck-$GOVULNCHECK_VERSION" ]; then
  log "installing govulncheck $GOVULNCHECK_VERSION"
  (cd "$VULN_HOME" && GOWORK=off GOFLAGS=-mod=mod GOBIN="$bin" $GO install "golang.org/x/vuln/cmd/govulncheck@$GOVULNCHECK_VERSION")
  mv "$bin/govulncheck" "$bin/govulncheck-$GOVULNCHECK_VERSION"
fi
if [ ! -f "$db/index/db.json" ]; then
  log "building the vulnerability database from golang.org/x/vulndb@$VULNDB_VERSION"
  src=$(cd "$VULN_HOME" && GOWORK=off GOFLAGS=-mod=mod $GO mod download -json "golang.org/x/vulndb@$VULNDB_VERSION" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')
  (cd "$VULN_HOME" && GOWORK=off GOFLAGS=-mod=mod GOBIN="$bin" $GO install "golang.org/x/vulndb/cmd/indexdb@$VULNDB_VERSION")
  rm -rf "$db.tmp" && "$bin/indexdb" -vulns "$src/data/osv" -out "$db.tmp" && mv "$db.tmp" "$db"
fi

status=0
for m in "$@"; do
  out=$VULN_HOME/$(echo "$m" | tr / _).json
  (cd "$root/$m" && "$bin/govulncheck-$GOVULNCHECK_VERSION" -db "file://$db" -format json ./... >"$out")
  # A finding whose trace starts at a function is in code the module calls.
  python3 - "$m" "$out" "$accepted" <<'PY' || status=1
import json, sys
module, path, accepted_path = sys.argv[1:]
accepted = {}
for line in open(accepted_path):
    line = line.strip()
    if line and not line.startswith("#"):
        ident, _, why = line.partition(" ")
        accepted[ident] = why.strip()
dec = json.JSONDecoder()
text, i, called = open(path).read(), 0, {}
while i < len(text):
    while i < len(text) and text[i].isspace():
        i += 1
    if i >= len(text):
        break
    msg, i = dec.raw_decode(text, i)
    f = msg.get("finding")
    if f and f.get("trace") and f["trace"][0].get("function"):
        t = f["trace"][0]
        called.setdefault(f["osv"], (t.get("module", ""), t.get("version", ""), f.get("fixed_version", "")))
bad = 0
for ident, (mod, ver, fixed) in sorted(called.items()):
    if ident in accepted:
        print(f"vulncheck: {module}: {ident} in {mod}@{ver} accepted: {accepted[ident]}")
    else:
        bad += 1
        print(f"vulncheck: {module}: {ident} in {mod}@{ver} is called (fixed in {fixed or 'no release'}); see https://pkg.go.dev/vuln/{ident}")
print(f"vulncheck: {module}: {len(called)} called, {bad} not accepted")
sys.exit(1 if bad else 0)
PY
done
exit $status
