#!/usr/bin/env python3
"""Checks deploy/ where no cluster can run it: the Kubernetes manifest parsed as YAML, each field
a sharded run depends on, and the Dockerfile that makes its container image.

Usage: check_deploy.py SOURCE_DIR. Exits 77 (ctest: skipped) when python3-yaml is missing.
"""
import re
import sys
from pathlib import Path

try:
    import yaml
except ImportError:
    print("SKIPPED: python3-yaml is not installed (bash scripts/setup.sh --tests installs it)")
    sys.exit(77)

failures = []


def check(condition, what):
    if not condition:
        failures.append(what)
    return condition


def option(command, name):
    """The value after `name` in an argument list, or None."""
    return command[command.index(name) + 1] if name in command else None


def mounted_at(pod, path):
    """The volume mount of the pod's first container whose mountPath holds path, or None."""
    for mount in pod["containers"][0].get("volumeMounts", []):
        if path == mount["mountPath"] or path.startswith(mount["mountPath"].rstrip("/") + "/"):
            return mount
    return None


def check_volumes(job_name, pod):
    """Every mount names a volume of the pod, and every volume is a PersistentVolumeClaim."""
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    for container in pod["containers"]:
        for mount in container.get("volumeMounts", []):
            check(mount["name"] in volumes,
                  f"{job_name}: mount {mount['name']} names no volume of the pod")
    for name, volume in volumes.items():
        check("persistentVolumeClaim" in volume,
              f"{job_name}: volume {name} is not a PersistentVolumeClaim, which every pod shares")
    return volumes


def check_shards(job):
    spec = job["spec"]
    pod = spec["template"]["spec"]
    command = pod["containers"][0]["command"]
    check(spec.get("completionMode") == "Indexed", "shards: completionMode is not Indexed")
    check(command[:2] == ["vitscope", "run"], f"shards: the command {command} is not vitscope run")
    shard = option(command, "--shard") or ""
    match = re.fullmatch(r"auto/([0-9]+)", shard)
    if check(match, f"shards: --shard is '{shard}', not auto/N (JOB_COMPLETION_INDEX of N)"):
        count = int(match.group(1))
        check(spec.get("completions") == count,
              f"shards: completions {spec.get('completions')} is not --shard's {count}")
        check(spec.get("parallelism") == count,
              f"shards: parallelism {spec.get('parallelism')} is not --shard's {count}")
    check(pod.get("restartPolicy") == "Never", "shards: podFailurePolicy needs restartPolicy Never")
    for rule in spec.get("podFailurePolicy", {}).get("rules", []):
        name = rule.get("onExitCodes", {}).get("containerName")
        check(name in [c["name"] for c in pod["containers"]],
              f"shards: podFailurePolicy names container {name}, which the pod has not")
    volumes = check_volumes("shards", pod)

    # The inputs and the model on read-only volumes, --out on a writable one.
    inputs = command[2]
    for what, path, read_only in (("the inputs", inputs, True),
                                  ("the model", option(command, "--model"), True),
                                  ("--out", option(command, "--out"), False)):
        if path is None:
            continue
        mount = mounted_at(pod, path)
        if check(mount, f"shards: {what} ({path}) on no mounted volume"):
            check(bool(mount.get("readOnly")) == read_only,
                  f"shards: {what} ({path}) should be mounted {'read-only' if read_only else 'writable'}")
            claim = volumes.get(mount["name"], {}).get("persistentVolumeClaim", {})
            check(bool(claim.get("readOnly")) == read_only,
                  f"shards: the claim of {what} should be {'read-only' if read_only else 'writable'}")


def check_merge(job, shards_pod):
    pod = job["spec"]["template"]["spec"]
    command = pod["containers"][0]["command"]
    out = option(shards_pod["containers"][0]["command"], "--out")
    check(command == ["vitscope", "merge", out],
          f"merge: the command {command} is not vitscope merge {out}")
    volumes = check_volumes("merge", pod)
    mount = mounted_at(pod, out)
    if check(mount, f"merge: --out ({out}) on no mounted volume"):
        shard_mount = mounted_at(shards_pod, out)
        shard_volumes = {v["name"]: v for v in shards_pod["volumes"]}
        check(mount["mountPath"] == shard_mount["mountPath"],
              "merge: --out is mounted elsewhere than in the shards")
        check(volumes[mount["name"]] == shard_volumes[shard_mount["name"]],
              "merge: --out's volume is not the shards'")
        check(not mount.get("readOnly"), "merge: --out is read-only, but merge writes into it")


source = Path(sys.argv[1])
manifest = source / "deploy/kubernetes/vitscope-job.yaml"
documents = [d for d in yaml.safe_load_all(manifest.read_text()) if d is not None]
by_component = {}
for document in documents:
    check(document.get("apiVersion") == "batch/v1" and document.get("kind") == "Job",
          f"{document.get('metadata', {}).get('name')}: not a batch/v1 Job")
    component = document["metadata"]["labels"]["app.kubernetes.io/component"]
    check(component not in by_component, f"two Jobs labelled component={component}")
    by_component[component] = document
check(sorted(by_component) == ["merge", "shards"],
      f"the Jobs are labelled {sorted(by_component)}, not merge and shards (kubectl apply -l)")
shards, merge = by_component["shards"], by_component["merge"]
check_shards(shards)
check_merge(merge, shards["spec"]["template"]["spec"])
check(shards["spec"]["template"]["spec"]["containers"][0]["image"] ==
      merge["spec"]["template"]["spec"]["containers"][0]["image"],
      "the shards and the merge run different images")
check(f"job/{shards['metadata']['name']}" in manifest.read_text(),
      "the comment's kubectl wait names another Job than the shards'")

dockerfile = (source / "deploy/Dockerfile").read_text()
check(re.search(r"^FROM debian:12\s*$", dockerfile, re.M), "Dockerfile: not FROM debian:12")
check("scripts/setup.sh" in dockerfile, "Dockerfile: does not install with scripts/setup.sh")
check("/usr/local/bin/vitscope" in dockerfile, "Dockerfile: vitscope is not put on the PATH")

for failure in failures:
    print("FAILED:", failure)
if failures:
    sys.exit(1)
print(f"ok: {manifest.relative_to(source)}: an Indexed Job of {shards['spec']['completions']} "
      f"shards and its merge; deploy/Dockerfile")
