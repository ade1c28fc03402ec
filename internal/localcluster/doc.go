// Package localcluster starts real Kubernetes clusters on this machine for
// Fornax's tests, benchmarks and demo.
//
// A cluster is a set of upstream processes built from source by `make tools`:
// etcd (or kine over SQLite for a K3s-style cluster) and kube-apiserver with TLS,
// RBAC, service-account keys and an admin client certificate; optionally
// kube-controller-manager, kube-scheduler and kwok, which simulates nodes so that
// pods reach Running without a container runtime. Each cluster gets its own
// directory (credentials, data, logs, a kubeconfig) and dynamic ports, so several
// clusters start side by side.
//
// Every process runs in its own process group, is killed by the kernel if the
// process that started it dies (unless started Detached, as the demo does), and
// carries an environment marker so that FindProcesses and KillProcesses find
// leftovers by directory or owner: a test can check that it leaked nothing, and
// a directory left by a crash is cleaned before it is used again.
package localcluster
