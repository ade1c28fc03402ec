package localcluster

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// nodeLeaseSeconds is the lease kwok holds for each node; it renews it well
// within that, so a stopped kwok shows as a failed node after the lease ends.
const nodeLeaseSeconds = 10

// startNodeGroups creates the nodes of every group and starts their kwok
// processes, then waits until every node is Ready.
func (c *Cluster) startNodeGroups(ctx context.Context) error {
	var wg sync.WaitGroup
	errs := make([]error, len(c.opts.NodeGroups))
	for i, g := range c.opts.NodeGroups {
		wg.Go(func() {
			if err := c.createNodes(ctx, g); err != nil {
				errs[i] = err
				return
			}
			errs[i] = c.StartNodeGroup(ctx, g.Name)
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

func (c *Cluster) group(name string) (NodeGroup, int, error) {
	for i, g := range c.opts.NodeGroups {
		if g.Name == name {
			return g, i, nil
		}
	}
	return NodeGroup{}, 0, fmt.Errorf("cluster %s has no node group %q", c.Name, name)
}

// createNodes registers the group's nodes, as a kubelet would at start.
func (c *Cluster) createNodes(ctx context.Context, g NodeGroup) error {
	version, err := c.client.Discovery().ServerVersion()
	if err != nil {
		return fmt.Errorf("reading server version: %w", err)
	}
	kubelet := version.GitVersion
	nodeLabels := map[string]string{
		nodeGroupLabel:                  g.Name,
		"type":                          "kwok",
		"kubernetes.io/os":              "linux",
		"kubernetes.io/arch":            "amd64",
		"kubernetes.io/role":            "agent",
		"node-role.fornax.io/" + g.Name: "",
	}
	if c.Flavor == FlavorK3s {
		// What a K3s agent reports, so distribution detection sees K3s.
		kubelet += "+k3s1"
		nodeLabels["node.kubernetes.io/instance-type"] = "k3s"
	}
	capacity := corev1.ResourceList{
		corev1.ResourceCPU:    resource.MustParse("16"),
		corev1.ResourceMemory: resource.MustParse("64Gi"),
		corev1.ResourcePods:   resource.MustParse("110"),
	}
	_, idx, err := c.group(g.Name)
	if err != nil {
		return err
	}
	for i := range g.Count {
		name := fmt.Sprintf("%s-%d", g.Name, i)
		l := map[string]string{"kubernetes.io/hostname": name}
		for k, v := range nodeLabels {
			l[k] = v
		}
		node := &corev1.Node{
			ObjectMeta: metav1.ObjectMeta{
				Name:        name,
				Labels:      l,
				Annotations: map[string]string{"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"},
			},
			Status: corev1.NodeStatus{
				Capacity:    capacity,
				Allocatable: capacity,
				// One address per node: kwok would give every node of a group
				// its --node-ip.
				Addresses: []corev1.NodeAddress{
					{Type: corev1.NodeInternalIP, Address: fmt.Sprintf("10.243.%d.%d", idx%250, i%250+1)},
					{Type: corev1.NodeHostName, Address: name},
				},
				NodeInfo: corev1.NodeSystemInfo{
					KubeletVersion: kubelet, OperatingSystem: "linux", Architecture: "amd64",
					ContainerRuntimeVersion: "kwok",
				},
			},
		}
		if _, err := c.client.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{}); ignoreAlreadyExists(err) != nil {
			return fmt.Errorf("creating node %s: %w", name, err)
		}
	}
	return nil
}

// StartNodeGroup starts the kwok process that serves a node group and waits
// until its nodes are Ready. It is how a failed group comes back.
func (c *Cluster) StartNodeGroup(ctx context.Context, name string) error {
	g, idx, err := c.group(name)
	if err != nil {
		return err
	}
	c.mu.Lock()
	running := c.nodeGroups[name] != nil && !c.nodeGroups[name].exited()
	c.mu.Unlock()
	if running {
		return nil
	}
	p, err := c.run("kwok-"+name, BinKwok,
		"--kubeconfig", c.Kubeconfig,
		"--config", filepath.Join(c.opts.BinDir, KwokStages),
		"--manage-all-nodes=false",
		"--manage-nodes-with-label-selector", nodeGroupLabel+"="+name,
		"--node-lease-duration-seconds", fmt.Sprint(nodeLeaseSeconds),
		// Pod IPs differ per group so that pods on different nodes never share one.
		"--cidr", fmt.Sprintf("10.244.%d.0/24", idx%250),
		"--server-address", "",
	)
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.nodeGroups[name] = p
	c.mu.Unlock()
	sel := labels.SelectorFromSet(labels.Set{nodeGroupLabel: name}).String()
	return c.waitReady(ctx, p, func(ctx context.Context) error {
		nodes, err := c.client.CoreV1().Nodes().List(ctx, metav1.ListOptions{LabelSelector: sel})
		if err != nil {
			return err
		}
		var notReady []string
		for i := range nodes.Items {
			if !nodeReady(&nodes.Items[i]) {
				notReady = append(notReady, nodes.Items[i].Name)
			}
		}
		if len(nodes.Items) != g.Count || len(notReady) > 0 {
			return fmt.Errorf("%d of %d nodes registered; not Ready: %s", len(nodes.Items), g.Count, strings.Join(notReady, ","))
		}
		return nil
	})
}

// StopNodeGroup stops the kwok process of a node group at once: its nodes stop
// heartbeating, and Kubernetes itself marks them unhealthy and evicts their
// pods, as when the machines fail.
func (c *Cluster) StopNodeGroup(name string) error {
	if _, _, err := c.group(name); err != nil {
		return err
	}
	c.mu.Lock()
	p := c.nodeGroups[name]
	c.nodeGroups[name] = nil
	c.mu.Unlock()
	if p == nil {
		return nil
	}
	p.kill()
	c.procs.remove(p)
	return nil
}
