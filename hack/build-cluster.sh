#!/usr/bin/env bash
# Builds, or reuses, a real Kubernetes control plane from Kubernetes' own Go modules:
# kube-apiserver, kube-controller-manager, etcd and kwok, at the versions pinned below.
#
#   hack/build-cluster.sh          # prints the folder holding the four binaries
#
# Binaries go to a cache folder outside the repository, keyed by the pinned versions
# ($MABEAM_CACHE, default ~/.cache/mabeam); a second run finds them and takes seconds.
# k8s.io/kubernetes requires its staging modules at v0.0.0 (they are `replace`d by paths in
# its own repository), so `go install` refuses it: we copy our small module (hack/cluster) to
# the cache, add a `replace` for every staging module that the downloaded go.mod of
# k8s.io/kubernetes names (pointing at the matching v0.MINOR.PATCH release), and build there.
set -euo pipefail

K8S_VERSION=${MABEAM_K8S_VERSION:-v1.37.2}
ETCD_VERSION=${MABEAM_ETCD_VERSION:-v3.7.0}
KWOK_VERSION=${MABEAM_KWOK_VERSION:-v0.8.0}

here=$(cd "$(dirname "$0")" && pwd)
cache=${MABEAM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mabeam}
out="$cache/cluster/k8s-$K8S_VERSION-etcd-$ETCD_VERSION-kwok-$KWOK_VERSION"
bins=(kube-apiserver kube-controller-manager etcd kwok)

have_all() {
  for b in "${bins[@]}"; do [[ -x "$out/bin/$b" ]] || return 1; done
  [[ -f "$out/bin/.complete" ]]
}

if have_all; then
  echo "$out/bin"
  exit 0
fi

command -v go >/dev/null || { echo "build-cluster: Go is not installed (need Go >= 1.26)" >&2; exit 3; }
echo "build-cluster: building Kubernetes $K8S_VERSION, etcd $ETCD_VERSION, kwok $KWOK_VERSION into $out (first build: about 10-15 minutes)" >&2
start=$(date +%s)
mkdir -p "$out/bin"
src="$out/src"
rm -rf "$src"
mkdir -p "$src"
cp -r "$here/cluster/." "$src/"
cd "$src"

# v1.37.2 -> staging modules at v0.37.2
ver=${K8S_VERSION#v}
IFS=. read -r major minor patch <<<"$ver"
staging="v0.$minor.$patch"

gomod=$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["GoMod"])')
mapfile -t staged < <(go mod edit -json "$gomod" | python3 -c '
import json, sys
for r in json.load(sys.stdin).get("Replace") or []:
    if r["New"]["Path"].startswith("./staging/"):
        print(r["Old"]["Path"])
')
[[ ${#staged[@]} -gt 0 ]] || { echo "build-cluster: no staging replaces found in $gomod" >&2; exit 1; }
edits=(-require="k8s.io/kubernetes@$K8S_VERSION" -require="go.etcd.io/etcd/server/v3@$ETCD_VERSION")
for m in "${staged[@]}"; do edits+=(-replace="$m=$m@$staging"); done
go mod edit "${edits[@]}"
go mod tidy

pkg=k8s.io/component-base/version
ldflags="-s -w -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" -o "$out/bin/" ./cmd/kube-apiserver ./cmd/kube-controller-manager ./cmd/etcd
CGO_ENABLED=0 GOBIN="$out/bin" go install -trimpath -ldflags "-s -w" "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION"

touch "$out/bin/.complete"
echo "build-cluster: done in $(( $(date +%s) - start )) s; $(du -sh "$out/bin" | cut -f1) of binaries" >&2
echo "$out/bin"
