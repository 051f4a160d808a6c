// The real control plane for MABEAM's e2e suite, built from Kubernetes' own Go modules.
// hack/build-cluster.sh copies this module to a cache folder, adds a `replace` for every
// staging module that k8s.io/kubernetes names (derived from its own go.mod), and builds.
module mabeam.io/hack/cluster

go 1.26.0

require (
	go.etcd.io/etcd/server/v3 v3.7.0
	k8s.io/kubernetes v1.37.2
)
