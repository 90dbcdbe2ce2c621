"""metrics-server, MetalLB and Traefik installed by the addons role on a one-master cluster: kubelab's shipped
add-on checks."""

from provisioner.checks.test_addons import (  # noqa: F401 (collected here; lb_service, ingress_route: their fixtures)
    ingress_route,
    lb_service,
    test_ingress_route_answers_only_for_its_host,
    test_ingress_routes_its_host_and_path_to_the_service,
    test_kubelet_serves_a_certificate_of_the_cluster_ca,
    test_load_balancer_service_answers_from_the_host,
    test_load_balancer_service_gets_an_address_of_the_pool,
    test_metrics_api_has_every_node,
    test_top_pods_answers_for_the_system_pods,
)
