#!/usr/bin/env bash
# Fails when the modules disagree on the go line or on the version of a
# direct dependency they share, and when a module does not build with GOWORK=off.
set -euo pipefail
declare -A seen
status=0
goline=""
for m in "$@"; do
  gl=$(awk '$1=="go"{print $2; exit}' "$m/go.mod")
  if [ -z "$goline" ]; then goline=$gl; elif [ "$gl" != "$goline" ]; then
    echo "check-modules: $m/go.mod has go $gl, others go $goline"; status=1; fi
  while read -r path ver; do
    [ -z "$path" ] && continue
    if [ -n "${seen[$path]:-}" ] && [ "${seen[$path]%% *}" != "$ver" ]; then
      echo "check-modules: $path is $ver in $m but ${seen[$path]}"; status=1
    fi
    seen[$path]="$ver (in $m)"
  done < <(cd "$m" && go mod edit -json | python3 -c 'import json,sys; [print(r["Path"], r["Version"]) for r in json.load(sys.stdin).get("Require") or [] if not r.get("Indirect") and not r["Path"].startswith("github.com/deltaplane/")]')
  (cd "$m" && GOWORK=off go build ./... ) || { echo "check-modules: $m does not build with GOWORK=off"; status=1; }
done
[ $status = 0 ] && echo "check-modules: $# modules agree on go $goline and shared dependency versions"
exit $status
