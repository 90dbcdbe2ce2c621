"""Add-ons: the spec key, the plan, the folder's images, the metrics-server build, the addons phase, the CSR approval
module and the metrics check's parsing."""

from __future__ import annotations

import datetime
import importlib.util
import io
import ipaddress
import socket
import ssl
import threading
from pathlib import Path

import pytest

from provisioner import buildrecipes, versions
from provisioner.artifacts import Needs, required_artifacts
from provisioner.checks import kubectl_json
from provisioner.checks.kube import Result
from provisioner.lab import REPO_ROOT
from provisioner.phases import BY_NAME, LabContext
from provisioner.plan import describe, make_plan
from provisioner.spec import HostInfo, SpecError, build_spec, load_lab_file, validate
from provisioner.spec_layers import spec_differences

HOST = HostInfo(memory_mb=64_000, arch="amd64")
MODULE = REPO_ROOT / "playbooks" / "roles" / "addons" / "library" / "kubelet_serving_certificates.py"


def spec(**flags):
    lab = build_spec({}, {"masters": 1, "workers": 1, **flags})
    validate(lab, HOST)
    return lab


def test_addons_flag_and_lab_file_take_a_list_or_a_comma_separated_string(tmp_path: Path) -> None:
    assert spec(addons=["metrics-server"]).addons == ["metrics-server"]
    for text in ("addons: [metrics-server]\n", "addons: 'metrics-server, '\n"):
        (tmp_path / "lab.yaml").write_text(text)
        assert load_lab_file(tmp_path / "lab.yaml")["addons"] == ["metrics-server"]
    (tmp_path / "lab.yaml").write_text("addons: [1, metrics-server]\n")
    with pytest.raises(SpecError, match="'addons' must be a list of names"):
        load_lab_file(tmp_path / "lab.yaml")


@pytest.mark.parametrize(
    ("addons", "message"),
    [
        (["metric-server"], "unknown add-on 'metric-server' \\(did you mean 'metrics-server'\\?\\)"),
        (["dashboard"], "add-on 'dashboard' is not available: .*proxy refuses Headlamp's backend"),
        (["metrics-server", "metrics-server"], "names metrics-server more than once"),
    ],
)
def test_addons_that_cannot_be_installed_are_refused_at_plan_time(addons: list[str], message: str) -> None:
    with pytest.raises(SpecError, match=message):
        spec(addons=addons)


def test_plan_lists_the_addons_with_their_versions_and_the_load_balancer_pool() -> None:
    text = describe(make_plan(spec(addons=["metrics-server", "lb-services"], node_subnet="10.77.200.0/24")))
    metrics, metallb = versions.ADDON_VERSIONS["metrics-server"], versions.ADDON_VERSIONS["lb-services"]
    assert (
        f"add-ons        metrics-server {metrics}, lb-services (MetalLB {metallb}) "
        "(LoadBalancer addresses 10.77.200.200-10.77.200.249)"
    ) in text
    assert "add-ons        none" in describe(make_plan(spec()))


def test_the_plan_names_traefik_as_the_ingress_controller() -> None:
    text = describe(make_plan(spec(addons=["ingress"])))
    assert f"add-ons        ingress (Traefik {versions.ADDON_VERSIONS['ingress']})" in text


def test_lb_services_needs_room_for_its_pool_after_the_last_worker() -> None:
    assert make_plan(spec(addons=["lb-services"], workers=169)).lb_services_range
    with pytest.raises(SpecError, match="has no room for them: use fewer workers"):
        spec(addons=["lb-services"], workers=170)
    assert spec(workers=170).workers == 170  # without the add-on those addresses are free for workers


def test_only_metrics_server_turns_on_kubelet_serving_certificates() -> None:
    assert make_plan(spec(addons=["metrics-server"])).kubelet_serving_certificates
    assert not make_plan(spec()).kubelet_serving_certificates


def test_a_lab_json_from_before_addons_has_no_spec_difference() -> None:
    new = spec().to_dict()
    old = {key: value for key, value in new.items() if key != "addons"}
    assert spec_differences(old, new) == []
    assert spec_differences(old, spec(addons=["metrics-server"]).to_dict()) == ["addons: [] -> ['metrics-server']"]


def test_the_folder_needs_the_images_and_release_manifest_of_each_chosen_addon() -> None:
    metrics, metallb = versions.ADDON_VERSIONS["metrics-server"], versions.ADDON_VERSIONS["lb-services"]
    metrics_image = f"registry.k8s.io/metrics-server/metrics-server:{metrics}"
    metallb_images = {f"quay.io/metallb/controller:{metallb}", f"quay.io/metallb/speaker:{metallb}"}

    def needed(addons: tuple[str, ...], kind: str) -> dict[str, str | None]:
        needs = Needs(kubernetes_version="1.36.3", cni="flannel", addons=addons)
        return {a.name: a.url for a in required_artifacts(needs) if a.kind == kind}

    assert metrics_image in needed(("metrics-server",), "image")
    assert metallb_images <= set(needed(("lb-services",), "image"))
    assert needed(("lb-services",), "manifest")["metallb-native.yaml"] == (
        f"https://raw.githubusercontent.com/metallb/metallb/{metallb}/config/manifests/metallb-native.yaml"
    )
    traefik_image = f"docker.io/library/traefik:{versions.ADDON_VERSIONS['ingress']}"
    assert traefik_image in needed(("ingress",), "image")
    assert needed(("ingress",), "manifest") == needed((), "manifest")  # the addons role writes its manifest
    assert not ({metrics_image, traefik_image} | metallb_images) & set(needed((), "image"))
    assert "metallb-native.yaml" not in needed(("metrics-server",), "manifest")


def test_metrics_server_is_built_static_stamped_and_run_as_nobody() -> None:
    component = buildrecipes.metrics_server("v0.8.0", "2025-06-01T00:00:00Z")
    assert component.modules == ("sigs.k8s.io/metrics-server",) and not component.cgo
    assert component.programs[0].package == "sigs.k8s.io/metrics-server/cmd/metrics-server"
    assert "-X k8s.io/client-go/pkg/version.gitVersion=v0.8.0" in component.ldflags
    recipe = buildrecipes.metrics_server_recipe("v0.8.0")
    assert recipe.reference == "registry.k8s.io/metrics-server/metrics-server:v0.8.0"
    assert (recipe.entrypoint, recipe.user) == (("/metrics-server",), "65534")


def test_metallb_images_hold_controller_and_speaker_of_one_static_build() -> None:
    component = buildrecipes.metallb("v0.15.2")
    assert [p.package for p in component.programs] == [
        "go.universe.tf/metallb/controller",
        "go.universe.tf/metallb/speaker",
    ]
    assert not component.cgo
    recipes = {r.reference: r for r in buildrecipes.metallb_recipes("v0.15.2")}
    assert recipes["quay.io/metallb/speaker:v0.15.2"].binaries == {"speaker": ("metallb", "speaker")}
    assert recipes["quay.io/metallb/controller:v0.15.2"].entrypoint == ("/controller",)


def test_traefik_is_built_static_with_its_version_stamps_and_runs_as_its_own_program() -> None:
    component = buildrecipes.traefik("v3.6.12", "2026-03-01T00:00:00Z")
    assert component.modules == ("github.com/traefik/traefik/v3",) and not component.cgo
    assert component.programs[0].package == "github.com/traefik/traefik/v3/cmd/traefik"
    assert "-X github.com/traefik/traefik/v3/pkg/version.Version=3.6.12" in component.ldflags
    assert "-X github.com/traefik/traefik/v3/pkg/version.BuildDate=2026-03-01T00:00:00Z" in component.ldflags
    recipe = buildrecipes.traefik_recipe("v3.6.12")
    assert recipe.reference == "docker.io/library/traefik:v3.6.12"
    assert (recipe.binaries, recipe.entrypoint) == ({"traefik": ("traefik", "traefik")}, ("/traefik",))


def test_the_check_ingress_routes_one_host_and_path_prefix_of_the_default_class() -> None:
    from provisioner.checks import manifests

    document = manifests.ingress("web", "ns", "web.example.test", "/hostname")
    assert "ingressClassName" not in document["spec"]  # the default IngressClass (addons role) takes it
    (rule,) = document["spec"]["rules"]
    (path,) = rule["http"]["paths"]
    assert rule["host"] == "web.example.test"
    assert (path["path"], path["pathType"]) == ("/hostname", "Prefix")
    assert path["backend"] == {"service": {"name": "web", "port": {"number": manifests.SERVICE_PORT}}}


def test_the_addons_phase_runs_no_playbook_for_a_lab_without_addons(tmp_path: Path) -> None:
    ctx = LabContext(lab=None, plan=make_plan(spec()), provider=None, out=io.StringIO(), progress=None)  # type: ignore[arg-type]
    outcome = BY_NAME["addons"].run(ctx)
    assert (outcome.summary, outcome.failure) == ("none chosen", "")


def test_node_metrics_problems_name_missing_nodes_and_usage() -> None:
    metrics = {
        "items": [
            {"metadata": {"name": "master-1"}, "usage": {"cpu": "101m", "memory": "900Mi"}},
            {"metadata": {"name": "worker-1"}, "usage": {"cpu": "12m"}},
        ]
    }
    assert kubectl_json.node_metrics_problems(metrics, ["master-1"]) == []
    assert kubectl_json.node_metrics_problems(metrics, ["master-1", "worker-1", "worker-2"]) == [
        "worker-1 has no memory usage",
        "no metrics of worker-2",
    ]


# --- the addons role's module ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def module():
    loaded = importlib.util.spec_from_file_location("kubelet_serving_certificates", MODULE)
    assert loaded is not None and loaded.loader is not None
    result = importlib.util.module_from_spec(loaded)
    loaded.loader.exec_module(result)
    return result


def csr(name: str, username: str, signer: str = "kubernetes.io/kubelet-serving", conditions=None) -> dict:
    status = {"conditions": conditions} if conditions else {}
    return {"metadata": {"name": name}, "spec": {"signerName": signer, "username": username}, "status": status}


def test_only_pending_serving_requests_of_the_labs_nodes_are_approved(module) -> None:
    requests = {
        "items": [
            csr("a", "system:node:worker-1"),
            csr("b", "system:node:worker-1", conditions=[{"type": "Approved"}]),
            csr("c", "system:node:stranger"),
            csr("d", "system:node:master-1", signer="kubernetes.io/kube-apiserver-client-kubelet"),
            csr("e", "system:node:master-1"),
            csr("f", "system:serviceaccount:default:x"),
        ]
    }
    assert module.pending_requests(requests, ["master-1", "worker-1"]) == ["a", "e"]


def _certificate(subject: str, issuer_key, issuer_name, ip: str | None, key, ca: bool = False):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(issuer_name or x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ip:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ip))]), critical=False
        )
    return builder.sign(issuer_key, hashes.SHA256())


@pytest.fixture
def pki(tmp_path: Path):
    """A cluster CA, and a function serving a certificate (CA-signed or self-signed, for an IP) on 127.0.0.1."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _certificate("kubernetes", ca_key, None, None, ca_key, ca=True)
    (tmp_path / "ca.crt").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    servers: list[socket.socket] = []

    def serve(ip: str, signed: bool) -> int:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = _certificate("system:node:worker-1", ca_key if signed else key, ca.subject if signed else None, ip, key)
        (tmp_path / "server.pem").write_bytes(
            cert.public_bytes(serialization.Encoding.PEM)
            + key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(tmp_path / "server.pem")
        listener = socket.create_server(("127.0.0.1", 0))
        servers.append(listener)

        def accept() -> None:
            try:
                conn, _ = listener.accept()
                with context.wrap_socket(conn, server_side=True):
                    pass
            except (OSError, ssl.SSLError):
                pass

        threading.Thread(target=accept, daemon=True).start()
        return int(listener.getsockname()[1])

    yield str(tmp_path / "ca.crt"), serve
    for listener in servers:
        listener.close()


def test_a_kubelet_certificate_of_the_cluster_ca_for_the_nodes_ip_passes(module, pki) -> None:
    ca_file, serve = pki
    assert module.serving_problem("127.0.0.1", serve("127.0.0.1", signed=True), ca_file) is None


@pytest.mark.parametrize(("ip", "signed"), [("127.0.0.1", False), ("10.77.1.31", True)])
def test_a_self_signed_or_another_nodes_certificate_is_refused(module, pki, ip: str, signed: bool) -> None:
    ca_file, serve = pki
    problem = module.serving_problem("127.0.0.1", serve(ip, signed), ca_file)
    assert problem is not None and "is not one of the cluster CA for 127.0.0.1" in problem


def test_no_kubelet_listening_is_a_problem_too(module, pki) -> None:
    ca_file, _ = pki
    with socket.create_server(("127.0.0.1", 0)) as unused:
        port = unused.getsockname()[1]
    assert "no TLS connection to 127.0.0.1" in module.serving_problem("127.0.0.1", port, ca_file)


class FakeKubectl:
    """Answers `get deployment ... {.spec.replicas}` with `replicas` and every other call with a 503 from the
    aggregated metrics API (metrics-server gone); counts the calls."""

    def __init__(self, replicas: str) -> None:
        self.replicas, self.calls = replicas, 0

    def run(self, *args: str, check: bool = True) -> Result:
        self.calls += 1
        if "deployment" in args:
            return Result(0, self.replicas, "")
        return Result(1, "", "Error from server (ServiceUnavailable): the server is currently unable to handle it")


def test_metrics_checks_fail_at_once_when_metrics_server_is_scaled_to_zero(monkeypatch: pytest.MonkeyPatch) -> None:
    from provisioner.checks import test_addons as checks

    lab = type("Lab", (), {"k8s_nodes": {"master-1": "10.0.0.21"}})()
    scaled_down = FakeKubectl("0")
    _, problems = checks.metrics_answer(scaled_down, lab, "get", "--raw", "/apis/metrics.k8s.io/v1beta1/nodes")
    assert scaled_down.calls == 2 and "ServiceUnavailable" in problems[0]
    # With a replica asked for, the check waits for metrics-server (a rescheduled pod) before it fails.
    monkeypatch.setattr(checks, "METRICS_WAIT", 0.2)
    monkeypatch.setattr(checks.time, "sleep", lambda seconds: None)
    running = FakeKubectl("1")
    checks.metrics_answer(running, lab, "get", "--raw", "/apis/metrics.k8s.io/v1beta1/nodes")
    assert running.calls > 2


def test_the_ingress_check_calls_traefik_at_its_pool_address_or_else_its_node_port() -> None:
    from provisioner.checks import test_addons as checks

    def service(kind: str, status: dict) -> dict:
        ports = [{"name": "web", "port": 80, "nodePort": 31080}, {"name": "websecure", "port": 443, "nodePort": 31443}]
        return {"spec": {"type": kind, "ports": ports}, "status": status}

    class Kubectl:
        def __init__(self, document: dict) -> None:
            self.document = document

        def json(self, *args: str) -> dict:
            assert args == ("-n", "traefik", "get", "service", "traefik")
            return self.document

    lab = type("Lab", (), {"k8s_nodes": {"master-1": "10.77.5.21", "worker-1": "10.77.5.31"}})()
    pooled = service("LoadBalancer", {"loadBalancer": {"ingress": [{"ip": "10.77.5.200"}]}})
    assert checks.ingress_controller_url(Kubectl(pooled), lab) == "http://10.77.5.200"
    assert checks.ingress_controller_url(Kubectl(service("NodePort", {})), lab) == "http://10.77.5.21:31080"


def test_http_get_gives_the_status_and_body_or_what_kept_anything_from_answering() -> None:
    import http.server

    from provisioner.checks import test_addons as checks

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            known = self.headers["Host"] == "web.example.test"
            self.send_response(200 if known else 404)
            self.end_headers()
            self.wfile.write(b"pod-a\n" if known else b"unknown host")

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/hostname"
        assert checks.http_get(url, "web.example.test") == (200, "pod-a")
        assert checks.http_get(url, "other.example.test") == (404, "")
    finally:
        server.shutdown()
        server.server_close()
    status, error = checks.http_get(url)
    assert status == 0 and error.startswith("no answer")
