"""What the playbooks must know about `local` nodes, kept apart from the provider so that node images can hash it
without loading the provider."""

from __future__ import annotations

# Where a node sees the lab's artifacts folder (read-only), so the phases install from it without copying.
SHARED_ARTIFACTS = "/var/lib/kubelab/host-artifacts"
# Inventory variables the playbooks apply on namespace nodes, which share this host's kernel and cgroups.
PROVIDER_VARS: dict[str, object] = {
    # The nodes lack CAP_SYS_RESOURCE: without this every pod sandbox fails in runc.
    "containerd_restrict_oom_score_adj": True,
    # The conntrack table size cannot be set from inside a network namespace.
    "kubeadm_kube_proxy_conntrack_max_per_core": 0,
    # The nodes see the host's cgroup v1 hierarchies; kubelet 1.35+ refuses v1 unless told not to.
    "kubeadm_kubelet_fail_cgroup_v1": False,
    # The kubelet measures this host's disk, shared with the host and every other lab: by its default thresholds a
    # fuller host disk made it delete the images the nodes got from the artifacts folder (no registry gives them
    # back; seen deleting a staged upgrade's etcd image) and would evict pods. Image GC off (100), and eviction
    # only when the disk is really almost full.
    "kubeadm_kubelet_image_gc_high_threshold_percent": 100,
    "kubeadm_kubelet_eviction_hard": {
        "memory.available": "100Mi",
        "nodefs.available": "1Gi",
        "nodefs.inodesFree": "5%",
        "imagefs.available": "1Gi",
    },
    # kubeadm's SystemVerification refuses cgroup v1 for kubelet 1.35+ even with failCgroupV1 false, and says
    # to skip it explicitly: the nodes see this host's cgroup v1 hierarchies. Nothing else is ignored, at
    # init and join (kubeadm role) and at `kubeadm upgrade apply|node` (kube_upgrade role).
    "kubeadm_ignore_preflight_errors": ["SystemVerification"],
    "kube_upgrade_ignore_preflight_errors": ["SystemVerification"],
}
