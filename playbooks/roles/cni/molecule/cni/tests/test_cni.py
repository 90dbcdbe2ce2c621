"""Flannel installed by the cni role on a one-master cluster: kubelab's shipped cluster checks."""

from provisioner.checks.test_cluster import (  # noqa: F401 (collected here; probe: their netexec pods)
    probe,
    test_cluster_ip_service_from_every_node,
    test_dns_answers_kubernetes_default,
    test_every_node_has_its_own_pod_range,
    test_node_port_on_every_node,
    test_nodes_ready_with_private_ips,
    test_pod_to_pod_across_every_pair_of_nodes,
    test_system_and_cni_pods_running,
)
