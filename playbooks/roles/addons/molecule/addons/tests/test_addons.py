"""metrics-server installed by the addons role on a one-master cluster: kubelab's shipped add-on checks."""

from provisioner.checks.test_addons import (  # noqa: F401 (collected here)
    test_kubelet_serves_a_certificate_of_the_cluster_ca,
    test_metrics_api_has_every_node,
    test_top_pods_answers_for_the_system_pods,
)
