"""The `kubelab` command line: parse, call one function, print. No logic of its own.

Only the standard library is imported at start-up so `kubelab --help` and `kubelab plan` stay fast.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from provisioner import phases as phases_mod
from provisioner import spec as spec_mod
from provisioner.errors import KubelabError

if TYPE_CHECKING:
    from provisioner.lab import LabDir
    from provisioner.plan import Plan


def _spec_arguments(parser: argparse.ArgumentParser) -> None:
    """Every spec key as a flag; defaults are shown, the parser itself defaults to None (= not given)."""
    parser.add_argument("-f", "--file", type=Path, metavar="LAB.yaml", help="lab file; flags override its keys")
    group = parser.add_argument_group("lab settings (also lab-file keys, see README)")
    for option in spec_mod.OPTIONS:
        if option.type is dict:
            continue
        default = "off" if option.type is bool else "none" if option.type is list else option.default
        help_text = f"{option.help} (default: {default})"
        names = [option.flag]
        if option.key == "kubernetes_version":
            names.append("--k8s-version")
        if option.key == "inventory":
            names.insert(0, "-i")
        if option.type is bool:
            group.add_argument(*names, dest=option.key, action="store_true", default=None, help=help_text)
        else:
            group.add_argument(
                *names,
                dest=option.key,
                type=spec_mod.comma_list if option.type is list else option.type,
                default=None,
                choices=option.choices,
                metavar=option.metavar,
                help=help_text,
            )


def load_spec(args: argparse.Namespace) -> spec_mod.LabSpec:
    """Lab file + flags -> validated spec; warnings go to stderr."""
    file_values = spec_mod.load_lab_file(args.file) if args.file else {}
    flag_values = {o.key: getattr(args, o.key, None) for o in spec_mod.OPTIONS if o.type is not dict}
    spec = spec_mod.build_spec(file_values, flag_values)
    for warning in spec_mod.validate(spec, spec_mod.HostInfo.detect()):
        print(f"warning: {warning}", file=sys.stderr)
    return spec


def _plan(args: argparse.Namespace) -> Plan:
    from provisioner.plan import make_plan

    return make_plan(load_spec(args), arch=spec_mod.HostInfo.detect().arch)


def cmd_plan(args: argparse.Namespace) -> int:
    from provisioner.node_image import describe as describe_image
    from provisioner.plan import describe

    plan = _plan(args)
    print(describe(plan))
    print(f"\n  node image: {describe_image(plan.spec, plan.arch)}")
    if args.write:
        _write(plan, args.out)
    return 0


def cmd_render(args: argparse.Namespace) -> int:
    _write(_plan(args), args.out)
    return 0


def _write(plan: Plan, out: Path | None) -> None:
    from provisioner.lab import LabDir
    from provisioner.render import write_lab

    lab = LabDir(out) if out else LabDir.for_name(plan.spec.name)
    changed = write_lab(plan, lab)
    state = f"{len(changed)} file(s) written" if changed else "already up to date"
    print(f"lab folder {lab.root}: {state}")


def _lab_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--name", default="kubelab", help="lab name (default: kubelab)")
    parser.add_argument("--lab", type=Path, metavar="DIR", help="lab folder (default: $KUBELAB_HOME/labs/NAME)")


def _lab_dir(args: argparse.Namespace) -> LabDir:
    from provisioner.lab import LabDir

    return LabDir(args.lab) if args.lab else LabDir.for_name(args.name)


def cmd_verify(args: argparse.Namespace) -> int:
    from provisioner import verify

    return verify.run_verify(
        _lab_dir(args),
        only=verify.parse_groups(args.only),
        workloads=args.workloads,
        checks=verify.parse_checks(args.check),
    )


def cmd_test_failover(args: argparse.Namespace) -> int:
    from provisioner import failover

    return failover.run_failover(_lab_dir(args))


def cmd_up(args: argparse.Namespace) -> int:
    from provisioner import lifecycle, phases, spec_layers

    phases.select(set(), args.start, args.until)  # --from after --until: refused before anything is written
    file_values = spec_mod.load_lab_file(args.file) if args.file else {}
    flag_values = {o.key: getattr(args, o.key, None) for o in spec_mod.OPTIONS if o.type is not dict}
    lab, spec, warnings = spec_layers.spec_for_up(file_values, flag_values)
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    return lifecycle.up(lab, spec, start=args.start, until=args.until)


def cmd_status(args: argparse.Namespace) -> int:
    import json

    from provisioner import status

    data = status.status(_lab_dir(args))
    print(json.dumps(data, indent=2) if args.json else status.format_status(data))
    return 0


def cmd_ssh(args: argparse.Namespace) -> int:
    from provisioner import lifecycle

    return lifecycle.ssh(_lab_dir(args), args.node, args.cmd)


def cmd_halt(args: argparse.Namespace) -> int:
    from provisioner import lifecycle

    lifecycle.halt(_lab_dir(args))
    return 0


def cmd_resume(args: argparse.Namespace) -> int:
    from provisioner import lifecycle

    return lifecycle.resume(_lab_dir(args))


def _confirmed(args: argparse.Namespace, question: str) -> bool:
    """--yes, or the user's yes to `question`."""
    return bool(args.yes) or input(f"{question} [y/N] ").strip().lower() in ("y", "yes")


def cmd_destroy(args: argparse.Namespace) -> int:
    from provisioner import lifecycle

    lab = _lab_dir(args)
    if lab.root.exists() and not _confirmed(args, f"destroy lab '{lab.root.name}' ({lab.root}) and its machines?"):
        print("nothing destroyed")
        return 1
    destroyed = lifecycle.destroy(lab, reset=args.reset)
    return 0 if destroyed or not lab.root.exists() else 1  # a failed --reset keeps the lab folder


def cmd_reset(args: argparse.Namespace) -> int:
    from provisioner import reset

    lab = _lab_dir(args)
    if not _confirmed(args, f"remove the Kubernetes cluster of lab '{lab.root.name}' (the machines stay)?"):
        print("nothing reset")
        return 1
    return 0 if reset.reset(lab) else 1


def cmd_node_add(args: argparse.Namespace) -> int:
    from provisioner import node_ops

    return 0 if node_ops.add(_lab_dir(args), masters=args.masters, workers=args.workers) else 1


def cmd_node_remove(args: argparse.Namespace) -> int:
    from provisioner import lifecycle, node_ops

    lab = _lab_dir(args)
    problem = node_ops.removal_problem(lifecycle.load_lab(lab), args.nodes)
    if problem:  # before the question: a refused removal changes nothing
        print(f"error: nothing was removed: {problem}", file=sys.stderr)
        return 1
    if not _confirmed(args, f"drain {', '.join(args.nodes)} and remove them from lab '{lab.root.name}'?"):
        print("nothing removed")
        return 1
    return 0 if node_ops.remove(lab, args.nodes, drain_timeout=args.drain_timeout) else 1


def cmd_upgrade(args: argparse.Namespace) -> int:
    from provisioner import upgrade

    done = upgrade.upgrade(
        _lab_dir(args),
        args.to,
        artifacts=args.artifacts,
        confirm=lambda question: _confirmed(args, question),
        allow_unsupported=args.allow_unsupported_version,
        drain_timeout=args.drain_timeout,
    )
    return 0 if done else 1


def cmd_etcd_snapshot(args: argparse.Namespace) -> int:
    from provisioner import etcd_backup

    etcd_backup.snapshot(_lab_dir(args), args.out)
    return 0


def cmd_etcd_restore(args: argparse.Namespace) -> int:
    from provisioner import etcd_backup

    lab = _lab_dir(args)
    problem = etcd_backup.snapshot_problem(args.file)
    if problem:  # before the question: a file that cannot be restored changes nothing
        print(f"error: {problem}", file=sys.stderr)
        return 1
    if not _confirmed(args, f"replace the etcd data of lab '{lab.root.name}' with {args.file}?"):
        print("nothing restored")
        return 1
    etcd_backup.restore(lab, args.file)
    return 0


def cmd_kubeconfig(args: argparse.Namespace) -> int:
    from provisioner import kubeconfig

    lab = _lab_dir(args)
    if args.merge:
        target, backup = kubeconfig.merge_into_user_config(lab)
        saved = f" (previous file saved as {backup})" if backup else ""
        print(f"merged as context '{lab.root.name}' into {target}{saved}; it is the current context now")
    else:
        print(kubeconfig.lab_kubeconfig(lab))
    return 0


def _arch(args: argparse.Namespace) -> str:
    return args.arch or spec_mod.HostInfo.detect().arch


def cmd_artifacts_list(args: argparse.Namespace) -> int:
    from provisioner import artifacts

    print(artifacts.listing(load_spec(args), _arch(args), args.form))
    return 0


def cmd_artifacts_fetch(args: argparse.Namespace) -> int:
    from provisioner.artifacts import fetch

    manifest = fetch.fetch(load_spec(args), args.out, _arch(args), args.image_tool)
    print(f"artifacts folder {args.out} is complete: {manifest}")
    return 0


def cmd_artifacts_build(args: argparse.Namespace) -> int:
    from provisioner.artifacts import build as artifacts_build

    spec = load_spec(args)
    request = artifacts_build.BuildRequest(
        kubernetes_version=spec.kubernetes_version,
        cni=spec.cni,
        out=args.out,
        jobs=args.jobs,
        arch=_arch(args),
        containerd_version=spec.containerd_version,
    )
    result = artifacts_build.build(request)
    print(artifacts_build.describe_sizes(result.folder))
    flags = f"--artifacts {result.folder} --k8s-version {result.kubernetes_version} --cni {spec.cni}"
    print(f"use it with: kubelab up {flags}")
    return 0


def cmd_artifacts_check(args: argparse.Namespace) -> int:
    from provisioner import artifacts

    needs = artifacts.check_artifacts(args.folder, load_spec(args), _arch(args))
    print(f"artifacts folder {args.folder}: complete for Kubernetes {needs.kubernetes_version}, cni {needs.cni}")
    return 0


def cmd_artifacts_index(args: argparse.Namespace) -> int:
    from provisioner import artifacts

    print(f"wrote {artifacts.index_folder(args.folder, load_spec(args), _arch(args))}")
    return 0


def cmd_image_build(args: argparse.Namespace) -> int:
    from provisioner import image_build, node_image

    if args.provider not in (None, "local"):
        raise spec_mod.SpecError(f"--provider {args.provider}: node images are built for the local provider only")
    args.provider = "local"
    spec = load_spec(args)
    image = node_image.for_spec(spec.replace(no_image=False), _arch(args))
    if image is None:
        raise spec_mod.SpecError(f"--os {spec.os}: the local provider builds Debian nodes only")
    if image.built:
        print(f"node image {image.name} is cached (built {image.info().get('built', '?')}): {image.path}")
        return 0
    image_build.build(image, spec, _arch(args), sys.stdout)
    return 0


def cmd_image_list(args: argparse.Namespace) -> int:
    from provisioner import node_image

    images = node_image.all_images()
    if not images:
        print(f"no node images in {node_image.images_root()}")
        return 0
    print(f"{'IMAGE':<40}{'MB':>7}  {'BUILT':<17}{'LABS':>5}")
    for image in images:
        size = node_image.folder_bytes(image.path) / 1e6
        built = image.info().get("built", "incomplete")
        print(f"{image.name:<40}{size:>7.0f}  {built:<17}{len(image.lab_folders()):>5}")
    return 0


def cmd_image_prune(args: argparse.Namespace) -> int:
    from provisioner import node_image

    removed = node_image.prune()
    for image in removed:
        print(f"removed {image.name}")
    kept = len(node_image.all_images())
    print(f"{len(removed)} image(s) removed, {kept} kept (used by a lab that exists)")
    return 0


def cmd_cache(args: argparse.Namespace) -> int:
    from provisioner import cache

    if args.cache_command == "start":
        cache.start(args.port, offline=args.offline)
    elif args.cache_command == "stop" and not cache.stop():
        print("apt cache: was not running")
        return 0
    print(cache.describe(cache.status()))
    return 0


def _artifacts_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    artifacts = sub.add_parser("artifacts", help="offline labs: list, fetch, check or index an artifacts folder")
    commands = artifacts.add_subparsers(dest="artifacts_command", metavar="ACTION", required=True)
    actions = (
        ("list", "print the files and images a lab's artifacts folder must hold", cmd_artifacts_list),
        ("fetch", "fill a folder from the official download URLs (needs internet)", cmd_artifacts_fetch),
        (
            "build",
            "build a folder from upstream Go modules (needs only go, gcc and the Go module proxy)",
            cmd_artifacts_build,
        ),
        ("check", "check a folder against a lab: every file present and its sha256 right", cmd_artifacts_check),
        ("index", "write artifacts.json for files you put into a folder yourself", cmd_artifacts_index),
    )
    for name, text, func in actions:
        action = commands.add_parser(name, help=text)
        if name in ("check", "index"):
            action.add_argument("folder", type=Path, metavar="DIR", help="the artifacts folder")
        _spec_arguments(action)
        action.add_argument("--arch", choices=("amd64", "arm64"), help="node architecture (default: this host's)")
        if name == "list":
            action.add_argument("--form", choices=("bin", "debs"), default="bin", help="plain binaries or .debs")
        if name in ("fetch", "build"):
            action.add_argument("--out", type=Path, metavar="DIR", required=True, help="the folder to fill")
        if name == "build":
            jobs = os.cpu_count() or 2
            action.add_argument("--jobs", type=int, default=jobs, help=f"builds at once (default: {jobs}, the CPUs)")
        if name == "fetch":
            action.add_argument("--image-tool", choices=("skopeo", "ctr"), help="default: skopeo, else ctr")
        action.set_defaults(func=func)


def _image_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    image = sub.add_parser("image", help="baked node images of the local provider: build, list, prune")
    commands = image.add_subparsers(dest="image_command", metavar="ACTION", required=True)
    build = commands.add_parser("build", help="bake the image a local lab of these settings boots from (cached)")
    _spec_arguments(build)
    build.add_argument("--arch", choices=("amd64", "arm64"), help="node architecture (default: this host's)")
    build.set_defaults(func=cmd_image_build)
    commands.add_parser("list", help="the cached images, their size and how many labs use them").set_defaults(
        func=cmd_image_list
    )
    commands.add_parser("prune", help="remove every image no existing lab uses").set_defaults(func=cmd_image_prune)


def _etcd_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    etcd = sub.add_parser("etcd", help="etcd backups of the lab's control plane: snapshot, restore")
    commands = etcd.add_subparsers(dest="etcd_command", metavar="ACTION", required=True)
    snapshot = commands.add_parser("snapshot", help="save a snapshot (0600) and print its revision and hash")
    _lab_arguments(snapshot)
    snapshot.add_argument("--out", type=Path, metavar="FILE", help="default: LAB/etcd/snapshot-TIME.db")
    snapshot.set_defaults(func=cmd_etcd_snapshot)
    restore = commands.add_parser("restore", help="replace etcd's data on every master with a snapshot")
    _lab_arguments(restore)
    restore.add_argument("file", type=Path, metavar="FILE", help="a snapshot from `kubelab etcd snapshot`")
    restore.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")
    restore.set_defaults(func=cmd_etcd_restore)


def _node_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    node = sub.add_parser("node", help="grow or shrink a finished lab: add or remove masters and workers")
    commands = node.add_subparsers(dest="node_command", metavar="ACTION", required=True)
    add = commands.add_parser("add", help="new nodes with the next names and addresses, joined to the cluster")
    _lab_arguments(add)
    add.add_argument("--workers", type=int, default=0, metavar="N", help="workers to add")
    add.add_argument("--masters", type=int, default=0, metavar="N", help="masters to add, in pairs (odd total)")
    add.set_defaults(func=cmd_node_add)
    remove = commands.add_parser("remove", help="drain, delete and destroy nodes; their numbers are not reused")
    _lab_arguments(remove)
    remove.add_argument("nodes", nargs="+", metavar="NODE", help="e.g. worker-2, or master-4 master-5")
    remove.add_argument(
        "--drain-timeout", type=int, default=180, metavar="S", help="seconds a drain may wait for evictions (180)"
    )
    remove.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")
    remove.set_defaults(func=cmd_node_remove)


def _upgrade_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    upgrade = sub.add_parser(
        "upgrade", help="kubeadm upgrade of a finished lab to the next minor or a newer patch, node by node"
    )
    _lab_arguments(upgrade)
    upgrade.add_argument("--to", required=True, metavar="VERSION", help="e.g. 1.36 or 1.36.3 (one minor at a time)")
    upgrade.add_argument(
        "--artifacts", type=Path, metavar="DIR", help="offline labs: the target's folder (`kubelab artifacts build`)"
    )
    upgrade.add_argument(
        "--allow-unsupported-version", action="store_true", help="a minor kubelab does not list as supported"
    )
    upgrade.add_argument(
        "--drain-timeout", type=int, default=180, metavar="S", help="seconds a drain may wait for evictions (180)"
    )
    upgrade.add_argument("-y", "--yes", action="store_true", help="do not ask after the plan is shown")
    upgrade.set_defaults(func=cmd_upgrade)


def _cache_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    cache = sub.add_parser("cache", help="the host's apt cache shared by all labs: start, stop, status")
    commands = cache.add_subparsers(dest="cache_command", metavar="ACTION", required=True)
    start = commands.add_parser("start", help="start apt-cacher-ng; labs created while it runs use it")
    start.add_argument("--port", type=int, default=3142, help="TCP port (default: 3142)")
    start.add_argument(
        "--offline", action="store_true", help="serve only what is cached, never download (no internet needed)"
    )
    commands.add_parser("stop", help="stop it; cached packages stay for the next start")
    commands.add_parser("status", help="running or not, cache size, bytes served and fetched")
    cache.set_defaults(func=cmd_cache)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kubelab",
        description="Build real multi-node kubeadm Kubernetes labs on local VMs, namespace nodes or your own hosts.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    plan = sub.add_parser("plan", help="show the nodes, addresses and versions of a lab; writes nothing")
    _spec_arguments(plan)
    plan.add_argument("--write", action="store_true", help="also render the lab folder (like `render`)")
    plan.add_argument("--out", type=Path, metavar="DIR", help="lab folder (default: $KUBELAB_HOME/labs/NAME)")
    plan.set_defaults(func=cmd_plan)

    render = sub.add_parser("render", help="write the Vagrantfile, inventory and lab.json into a lab folder")
    _spec_arguments(render)
    render.add_argument("--out", type=Path, metavar="DIR", help="lab folder (default: $KUBELAB_HOME/labs/NAME)")
    render.set_defaults(func=cmd_render)

    up = sub.add_parser("up", help="create the lab (or resume it): machines, then every phase up to a working cluster")
    _spec_arguments(up)
    phase_names = phases_mod.PHASE_NAMES
    up.add_argument("--until", choices=phase_names, metavar="PHASE", help="stop after PHASE: " + ", ".join(phase_names))
    up.add_argument("--from", dest="start", choices=phase_names, metavar="PHASE", help="re-run from PHASE")
    up.set_defaults(func=cmd_up)

    status = sub.add_parser("status", help="nodes, their state and addresses, phases done, API endpoint")
    _lab_arguments(status)
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.set_defaults(func=cmd_status)

    ssh = sub.add_parser("ssh", help="a shell on a node, or run a command there: kubelab ssh NODE [-- CMD]")
    _lab_arguments(ssh)
    ssh.add_argument("node", metavar="NODE", help="node name, e.g. master-1")
    ssh.add_argument("cmd", nargs="*", metavar="-- CMD", help="command to run instead of a shell (after --)")
    ssh.set_defaults(func=cmd_ssh)

    halt = sub.add_parser("halt", help="stop the lab's machines, keeping their disks")
    _lab_arguments(halt)
    halt.set_defaults(func=cmd_halt)

    resume = sub.add_parser(
        "resume", help="start a halted lab and wait until its load balancer, nodes and pods are back"
    )
    _lab_arguments(resume)
    resume.set_defaults(func=cmd_resume)

    destroy = sub.add_parser("destroy", help="remove the lab's machines and its folder")
    _lab_arguments(destroy)
    destroy.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")
    destroy.add_argument(
        "--reset", action="store_true", help="hosts labs: undo kubeadm/CNI state on your machines (they stay up)"
    )
    destroy.set_defaults(func=cmd_destroy)

    reset = sub.add_parser("reset", help="undo kubeadm and the CNI on every node, keeping the machines for a new `up`")
    _lab_arguments(reset)
    reset.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")
    reset.set_defaults(func=cmd_reset)

    kubeconfig = sub.add_parser("kubeconfig", help="print the path of the lab's admin kubeconfig")
    _lab_arguments(kubeconfig)
    kubeconfig.add_argument("--merge", action="store_true", help="merge it into ~/.kube/config as context NAME")
    kubeconfig.set_defaults(func=cmd_kubeconfig)

    verify = sub.add_parser("verify", help="check the lab's nodes, load balancers and cluster; one line per check")
    _lab_arguments(verify)
    verify.add_argument("--only", metavar="GROUPS", help="comma-separated: nodes, lb, cluster, addons, workloads")
    verify.add_argument("--workloads", action="store_true", help="also run Deployments, Jobs, StatefulSets, ...")
    verify.add_argument("--check", metavar="NAMES", help="comma-separated: only these checks (names as in the table)")
    verify.set_defaults(func=cmd_verify)

    test = sub.add_parser("test", help="disruptive tests of a running lab")
    test_sub = test.add_subparsers(dest="test_command", metavar="TEST", required=True)
    failover = test_sub.add_parser("failover", help="stop the VIP holder and a master; the API must stay up")
    _lab_arguments(failover)
    failover.set_defaults(func=cmd_test_failover)
    _node_parser(sub)
    _upgrade_parser(sub)
    _etcd_parser(sub)
    _artifacts_parser(sub)
    _image_parser(sub)
    _cache_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    remote: list[str] | None = None
    if argv[:1] == ["ssh"] and "--" in argv:  # `kubelab ssh NODE --name N -- CMD`: options may follow NODE
        split = argv.index("--")
        argv, remote = argv[:split], argv[split + 1 :]
    args = build_parser().parse_args(argv)
    if remote is not None:
        args.cmd = remote
    try:
        return args.func(args)
    except KubelabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
