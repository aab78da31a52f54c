#!/usr/bin/env python3
"""Offline checks for the Kubernetes deployment (what `make k8s-check` runs).

For every overlay under k8s/overlays (or the folders given):
  1. build it with `kubectl kustomize` (or the in-repo Python builder, k8s/kustomize_lite.py);
  2. validate every core object with kubernetes-validate --strict against KUBERNETES_VERSION,
     including the pod templates embedded in KubeRay objects;
  3. validate KubeRay objects (RayService, RayJob, RayCluster) against the CRD schemas in
     ../shared/schemas/kuberay/ with jsonschema, unknown fields rejected;
  4. policy: resources, probes, non-root/read-only securityContext, no `latest`, no inline
     secret values, references resolve, PDB and NetworkPolicy coverage, the arena DB reachable
     only from the arena API, the arena Ingress passes the Reflex WebSocket;
and the Dockerfiles in k8s/images/ (pinned bases, multi-stage, non-root, Ray version).

Each problem is one line `<overlay>: <Kind>/<namespace>/<name>: <field>: <what is wrong>`;
the exit status is 1 when there is any, 2 when the check itself cannot run.

    python k8s/check.py                      # every overlay
    python k8s/check.py k8s/overlays/dev     # one overlay
    python k8s/check.py --builder python     # without kubectl
"""

from __future__ import annotations

import argparse
import copy
import fnmatch
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterator

import yaml

try:  # libyaml: the KubeRay CRDs are 3 MB of YAML
    _Loader = yaml.CSafeLoader
except AttributeError:  # pragma: no cover
    _Loader = yaml.SafeLoader

K8S_DIR = Path(__file__).resolve().parent
REPO_ROOT = K8S_DIR.parent
KUBERNETES_VERSION = "1.32.0"
KUBECTL_MIN_KUSTOMIZE = (5, 0)
DEFAULT_KUBERAY_SCHEMAS = REPO_ROOT.parent / "shared" / "schemas" / "kuberay"

# Secrets the operator creates (docs/k8s.md, "Secrets"): name -> keys. Manifests may only
# reference these, and the repository never holds their values.
OPERATOR_SECRETS: dict[tuple[str, str], set[str]] = {
    ("latxa-mlflow", "mlflow-db"): {"username", "password", "uri"},
    ("latxa-mlflow", "mlflow-s3"): {"access-key-id", "secret-access-key"},
    ("latxa-mlflow", "mlflow-basic-auth"): {"auth"},
    ("latxa-arena", "arena-db"): {"username", "password", "uri"},
    ("latxa-arena", "arena-redis"): {"password", "url"},
    ("latxa-arena", "arena-admin"): {"token", "export-salt"},
    ("latxa-arena", "arena-llm-keys"): {"openai-api-key", "anthropic-api-key"},
    ("latxa-arena", "arena-proxy"): {"token"},
    ("latxa-arena", "arena-api-keys"): {"keys"},
    ("latxa-arena", "arena-tls"): {"tls.crt", "tls.key"},
    ("latxa-mlflow", "mlflow-tls"): {"tls.crt", "tls.key"},
    ("kubeflow", "latxa-slurm-ssh"): {"leonardo", "leonardo-cert.pub", "known_hosts"},   # latxa slurm login
}

# Pods whose ingress must come only from the named app (see _app: latxa.eus/app, else app.kubernetes.io/name).
ONLY_FROM: dict[tuple[str, str], str] = {
    ("latxa-arena", "arena-db"): "arena-api",
    ("latxa-mlflow", "mlflow-db"): "mlflow",
}

WRITABLE_ROOT_ANNOTATION = "latxa.eus/writable-root-filesystem"
SECRETISH_NAME = re.compile(
    r"(PASSWORD|PASSWD|PASS|SECRET|TOKEN|API_?KEY|ACCESS_?KEY(_ID)?|PRIVATE_?KEY|CREDENTIALS?|AUTH)$", re.I)
CREDENTIAL_URL = re.compile(r"[a-z][a-z0-9+.-]*://[^/\s:@]*:[^/\s@]+@", re.I)
LONG_RUNNING_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet"}
KUBERAY_KINDS = {"RayService", "RayJob", "RayCluster"}


@dataclass(frozen=True)
class Finding:
    where: str      # overlay (or file) the object came from
    obj: str        # Kind/namespace/name
    field: str      # dotted path to the offending field
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.obj}: {self.field}: {self.message}"


class CheckUnavailable(Exception):
    """The check cannot run here (no kustomize builder, no schemas)."""


# ----------------------------------------------------------------------------- helpers

def obj_id(obj: dict) -> str:
    meta = obj.get("metadata") or {}
    ns = meta.get("namespace", "-")
    return f"{obj.get('kind', '?')}/{ns}/{meta.get('name', '?')}"


def fmt_path(parts) -> str:
    out = ""
    for p in parts:
        if isinstance(p, int):
            out += f"[{p}]"
        else:
            out += ("." if out else "") + str(p)
    return out or "(root)"


def get(d: Any, *keys, default=None):
    for k in keys:
        if isinstance(d, dict) and k in d:
            d = d[k]
        elif isinstance(d, list) and isinstance(k, int) and 0 <= k < len(d):
            d = d[k]
        else:
            return default
    return d


# ----------------------------------------------------------------------------- building

def kubectl_usable() -> str | None:
    """Path of a kubectl whose embedded kustomize is v5+, or None."""
    exe = shutil.which("kubectl")
    if not exe:
        return None
    try:
        out = subprocess.run([exe, "version", "--client"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    m = re.search(r"Kustomize Version: v(\d+)\.(\d+)", out)
    if not m or (int(m.group(1)), int(m.group(2))) < KUBECTL_MIN_KUSTOMIZE:
        return None
    return exe


def build(overlay: Path, builder: str = "auto") -> list[dict]:
    """Render an overlay to a list of objects."""
    kubectl = kubectl_usable() if builder in ("auto", "kubectl") else None
    if builder == "kubectl" and not kubectl:
        raise CheckUnavailable("kubectl with kustomize v5 or newer is not on PATH; install it (docs/k8s.md) or use --builder python.")
    if kubectl:
        proc = subprocess.run([kubectl, "kustomize", str(overlay)], capture_output=True, text=True, timeout=120)
        if proc.returncode != 0:
            raise BuildError(overlay, proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "kustomize failed")
        text = proc.stdout
        return [o for o in yaml.load_all(text, Loader=_Loader) if o]
    sys.path.insert(0, str(K8S_DIR))
    try:
        import kustomize_lite
    finally:
        sys.path.pop(0)
    try:
        return kustomize_lite.build(overlay)
    except kustomize_lite.KustomizeError as err:
        raise BuildError(overlay, str(err)) from None
    except (KeyError, IndexError, TypeError, ValueError, OSError, yaml.YAMLError) as err:
        raise BuildError(overlay, f"malformed kustomization or resource ({type(err).__name__}: {err})") from None


class BuildError(Exception):
    def __init__(self, overlay: Path, message: str):
        super().__init__(f"{overlay}: kustomize build failed: {message}")
        self.overlay = overlay


# ----------------------------------------------------------------------------- schemas

def validate_core(where: str, objs: list[dict], version: str) -> list[Finding]:
    findings: list[Finding] = []
    for obj in objs:
        if obj.get("kind") in KUBERAY_KINDS:
            continue
        findings += _kv(where, obj, obj, version, prefix=[])
    return findings


def _kv(where: str, owner: dict, doc: dict, version: str, prefix: list) -> list[Finding]:
    import kubernetes_validate
    from kubernetes_validate.utils import SchemaNotFoundError, ValidationError

    try:
        kubernetes_validate.validate(doc, version, strict=True)
    except ValidationError as err:
        return [Finding(where, obj_id(owner), fmt_path(prefix + _err_path(err)), f"{_err_message(err)} "
                        f"(kubernetes-validate --strict, Kubernetes {version})")]
    except SchemaNotFoundError:
        return [Finding(where, obj_id(owner), "apiVersion", f"no schema for {doc.get('kind')} {doc.get('apiVersion')} in "
                        f"Kubernetes {version} (unknown kind or removed API version)")]
    return []


def _err_path(err) -> list:
    path = list(err.absolute_path)
    m = re.search(r"\('([^']+)' (?:was|were) unexpected\)", err.message)
    if err.validator == "additionalProperties" and m:
        path.append(m.group(1))
    return path


def _err_message(err) -> str:
    if err.validator == "additionalProperties":
        return "unknown field (" + err.message.split("(", 1)[-1]
    return err.message


@lru_cache(maxsize=None)
def _crd_schemas(schema_dir: str) -> dict[tuple[str, str], dict]:
    """(apiVersion, kind) -> strict openAPIV3Schema, from the KubeRay CRDs."""
    out: dict[tuple[str, str], dict] = {}
    files = sorted(Path(schema_dir).glob("*.yaml"))
    if not files:
        raise CheckUnavailable(f"no KubeRay CRD schemas in {schema_dir}; pass --kuberay-schemas DIR (ray-operator/config/crd/bases).")
    for f in files:
        for crd in yaml.load_all(f.read_text(), Loader=_Loader):
            if not crd or crd.get("kind") != "CustomResourceDefinition":
                continue
            group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
            for ver in crd["spec"]["versions"]:
                if ver.get("served", True):
                    out[(f"{group}/{ver['name']}", kind)] = _strictify(copy.deepcopy(ver["schema"]["openAPIV3Schema"]))
    return out


def _strictify(schema: Any) -> Any:
    """Reject unknown fields where the API server would prune or refuse them."""
    if isinstance(schema, dict):
        for key, val in list(schema.items()):
            if key != "enum":
                schema[key] = _strictify(val)
        if ("properties" in schema and "additionalProperties" not in schema
                and not schema.get("x-kubernetes-preserve-unknown-fields")):
            schema["additionalProperties"] = False
    elif isinstance(schema, list):
        return [_strictify(s) for s in schema]
    return schema


def kuberay_pod_templates(obj: dict) -> Iterator[tuple[list, dict, bool]]:
    """(path, template, long_running) for each pod template inside a KubeRay object."""
    kind, spec = obj.get("kind"), obj.get("spec") or {}
    if kind == "RayService":
        base, cluster = ["spec", "rayClusterConfig"], spec.get("rayClusterConfig") or {}
    elif kind == "RayJob":
        base, cluster = ["spec", "rayClusterSpec"], spec.get("rayClusterSpec") or {}
        if spec.get("submitterPodTemplate"):
            yield ["spec", "submitterPodTemplate"], spec["submitterPodTemplate"], False
    elif kind == "RayCluster":
        base, cluster = ["spec"], spec
    else:
        return
    if get(cluster, "headGroupSpec", "template"):
        yield base + ["headGroupSpec", "template"], cluster["headGroupSpec"]["template"], True
    for i, group in enumerate(cluster.get("workerGroupSpecs") or []):
        if group.get("template"):
            yield base + ["workerGroupSpecs", i, "template"], group["template"], True


def validate_kuberay(where: str, objs: list[dict], schema_dir: Path, version: str) -> list[Finding]:
    import jsonschema

    schemas = _crd_schemas(str(schema_dir))
    findings: list[Finding] = []
    for obj in objs:
        if obj.get("kind") not in KUBERAY_KINDS and not str(obj.get("apiVersion", "")).startswith("ray.io/"):
            continue
        schema = schemas.get((obj.get("apiVersion"), obj.get("kind")))
        if schema is None:
            findings.append(Finding(where, obj_id(obj), "apiVersion",
                                    f"{obj.get('apiVersion')} {obj.get('kind')} is not served by the KubeRay CRDs in {schema_dir}"))
            continue
        validator = jsonschema.Draft7Validator(schema)
        for err in sorted(validator.iter_errors(obj), key=lambda e: list(map(str, e.absolute_path))):
            findings.append(Finding(where, obj_id(obj), fmt_path(_err_path(err)),
                                    f"{_err_message(err)} (KubeRay CRD schema)"))
        # The CRD leaves pod templates loosely typed; hold them to the core schema.
        for path, template, _ in kuberay_pod_templates(obj):
            wrapper = {"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": "embedded"}, "template": template}
            for f in _kv(where, obj, wrapper, version, prefix=[]):
                inner = f.field[len("template"):] if f.field.startswith("template") else "." + f.field
                findings.append(Finding(where, f.obj, fmt_path(path) + inner, f.message))
        if obj.get("kind") == "RayService":
            findings += _check_serve_config(where, obj)
    return findings


def _check_serve_config(where: str, obj: dict) -> list[Finding]:
    text = get(obj, "spec", "serveConfigV2")
    if not text:
        return [Finding(where, obj_id(obj), "spec.serveConfigV2", "missing: KubeRay needs the Serve applications to deploy")]
    try:
        cfg = yaml.safe_load(text)
    except yaml.YAMLError as err:
        return [Finding(where, obj_id(obj), "spec.serveConfigV2", f"not valid YAML: {str(err).splitlines()[0]}")]
    apps = (cfg or {}).get("applications") if isinstance(cfg, dict) else None
    if not apps:
        return [Finding(where, obj_id(obj), "spec.serveConfigV2.applications", "no Serve application defined")]
    out = []
    for i, app in enumerate(apps):
        if not isinstance(app, dict) or not re.fullmatch(r"[\w.]+:[\w.]+", str(app.get("import_path", ""))):
            out.append(Finding(where, obj_id(obj), f"spec.serveConfigV2.applications[{i}].import_path",
                               "must be 'module:attribute'"))
    return out


# ----------------------------------------------------------------------------- policy

def pod_templates(obj: dict) -> Iterator[tuple[list, dict, bool]]:
    """(path to the template, template, long_running) for every pod the object creates."""
    kind = obj.get("kind")
    if kind in LONG_RUNNING_KINDS or kind == "Job":
        t = get(obj, "spec", "template")
        if t:
            yield ["spec", "template"], t, kind in LONG_RUNNING_KINDS
    elif kind == "CronJob":
        t = get(obj, "spec", "jobTemplate", "spec", "template")
        if t:
            yield ["spec", "jobTemplate", "spec", "template"], t, False
    elif kind == "PodTemplate":
        if obj.get("template"):
            yield ["template"], obj["template"], False
    elif kind == "Pod":
        yield [], {"metadata": obj.get("metadata", {}), "spec": obj.get("spec", {})}, True
    elif kind in KUBERAY_KINDS:
        yield from kuberay_pod_templates(obj)


def image_problem(image: Any) -> str | None:
    if not image or not isinstance(image, str):
        return "missing image"
    if "@sha256:" in image:
        return None
    last = image.rsplit("/", 1)[-1]
    if ":" not in last:
        return f"image {image!r} has no tag (means `latest`): pin a version"
    tag = last.split(":", 1)[1]
    if tag.lower() == "latest" or tag.lower().endswith("-latest"):
        return f"image {image!r} uses a `latest` tag: pin a version"
    if not re.search(r"\d", tag):
        return f"image {image!r} tag {tag!r} is not a version: pin one"
    return None


def check_policy(where: str, objs: list[dict]) -> list[Finding]:
    findings: list[Finding] = []
    index = {(o.get("kind"), get(o, "metadata", "namespace"), get(o, "metadata", "name")): o for o in objs}
    pods: list[tuple[dict, list, dict, bool]] = []
    for obj in objs:
        for path, tpl, long_running in pod_templates(obj):
            pods.append((obj, path, tpl, long_running))
            findings += _check_pod(where, obj, path, tpl, long_running, index)
            if obj.get("kind") in KUBERAY_KINDS and "submitterPodTemplate" not in path \
                    and "app.kubernetes.io/name" in _pod_labels(tpl):
                findings.append(Finding(where, obj_id(obj), fmt_path(path + ["metadata", "labels", "app.kubernetes.io/name"]),
                                        "KubeRay owns this label on Ray pods (its Services select on it): use latxa.eus/app"))
        findings += _check_inline_secrets(where, obj)
    findings += _check_services(where, objs, pods)
    findings += _check_pdbs(where, objs, pods)
    findings += _check_network(where, objs, pods)
    findings += _check_ingress(where, objs, index, pods)
    findings += _check_service_urls(where, objs, index)
    return findings


SERVICE_URL = re.compile(r"\bhttps?://([a-z0-9-]+)\.([a-z0-9-]+)\.svc(?:\.cluster\.local)?:(\d+)")
# Services KubeRay creates for a RayService / RayCluster: suffix -> port.
KUBERAY_SERVICES = {"-serve-svc": {8000}, "-head-svc": {6379, 8265, 10001, 8000}}


def _strings(node: Any, path: list) -> Iterator[tuple[list, str]]:
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _strings(v, path + [k])
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _strings(v, path + [i])
    elif isinstance(node, str):
        yield path, node


def _check_service_urls(where, objs, index) -> list[Finding]:
    """Every in-cluster URL (http://svc.ns.svc...:port) names a Service and port this build creates."""
    out = []
    ray_names = {(get(o, "metadata", "namespace"), get(o, "metadata", "name")) for o in objs if o.get("kind") in ("RayService", "RayCluster")}
    for obj in objs:
        for path, text in _strings(obj, []):
            for m in SERVICE_URL.finditer(text):
                name, ns, port = m.group(1), m.group(2), int(m.group(3))
                svc = index.get(("Service", ns, name))
                if svc is not None:
                    ok = port in {p.get("port") for p in get(svc, "spec", "ports") or []}
                else:
                    ok = any(name == f"{rn}{suffix}" and port in ports and rns == ns
                             for rns, rn in ray_names for suffix, ports in KUBERAY_SERVICES.items())
                    if not ok and not any(name == f"{rn}{suffix}" and rns == ns for rns, rn in ray_names for suffix in KUBERAY_SERVICES):
                        out.append(Finding(where, obj_id(obj), fmt_path(path), f"{m.group(0)}: no Service {ns}/{name} in this build"))
                        continue
                if not ok:
                    out.append(Finding(where, obj_id(obj), fmt_path(path), f"{m.group(0)}: Service {ns}/{name} has no port {port}"))
    return out


def _check_pod(where, obj, path, tpl, long_running, index) -> list[Finding]:
    out: list[Finding] = []
    oid, ns = obj_id(obj), get(obj, "metadata", "namespace")
    spec = tpl.get("spec") or {}
    sp = path + ["spec"]
    annotations = get(tpl, "metadata", "annotations") or {}
    writable_ok = bool(str(annotations.get(WRITABLE_ROOT_ANNOTATION, "")).strip())
    psc = spec.get("securityContext") or {}

    sa = spec.get("serviceAccountName")
    if not sa or sa == "default":
        out.append(Finding(where, oid, fmt_path(sp + ["serviceAccountName"]), "set a dedicated ServiceAccount (not `default`)"))
    elif ("ServiceAccount", ns, sa) not in index:
        out.append(Finding(where, oid, fmt_path(sp + ["serviceAccountName"]), f"ServiceAccount {ns}/{sa} is not defined in this build"))
    for flag in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(flag):
            out.append(Finding(where, oid, fmt_path(sp + [flag]), "host namespaces are not allowed"))
    if psc.get("runAsUser") == 0:
        out.append(Finding(where, oid, fmt_path(sp + ["securityContext", "runAsUser"]), "runs as root (uid 0)"))

    for vi, vol in enumerate(spec.get("volumes") or []):
        vp = sp + ["volumes", vi]
        if "hostPath" in vol:
            out.append(Finding(where, oid, fmt_path(vp + ["hostPath"]), "hostPath volumes are not allowed"))
        if "secret" in vol:
            out += _secret_ref(where, oid, ns, get(vol, "secret", "secretName"), None, vp + ["secret", "secretName"])
        if "configMap" in vol:
            out += _cm_ref(where, oid, ns, get(vol, "configMap", "name"), None, vp + ["configMap", "name"], index)
        if "persistentVolumeClaim" in vol:
            claim = get(vol, "persistentVolumeClaim", "claimName")
            if ("PersistentVolumeClaim", ns, claim) not in index:
                out.append(Finding(where, oid, fmt_path(vp + ["persistentVolumeClaim", "claimName"]),
                                   f"PersistentVolumeClaim {ns}/{claim} is not defined in this build"))

    for group in ("initContainers", "containers"):
        for ci, c in enumerate(spec.get(group) or []):
            cp = sp + [group, ci]
            name = c.get("name", ci)
            problem = image_problem(c.get("image"))
            if problem:
                out.append(Finding(where, oid, fmt_path(cp + ["image"]), problem))
            for section, keys in (("requests", ("cpu", "memory")), ("limits", ("cpu", "memory"))):
                for key in keys:
                    if get(c, "resources", section, key) in (None, ""):
                        out.append(Finding(where, oid, fmt_path(cp + ["resources", section, key]),
                                           f"container {name!r} has no {section[:-1]} {key}"))
            if long_running and group == "containers":
                for probe in ("readinessProbe", "livenessProbe"):
                    if not c.get(probe):
                        out.append(Finding(where, oid, fmt_path(cp + [probe]), f"container {name!r} has no {probe}"))
            csc = c.get("securityContext") or {}
            non_root = csc.get("runAsNonRoot", psc.get("runAsNonRoot"))
            uid = csc.get("runAsUser", psc.get("runAsUser"))
            if non_root is not True:
                out.append(Finding(where, oid, fmt_path(cp + ["securityContext", "runAsNonRoot"]),
                                   f"container {name!r} may run as root: set runAsNonRoot: true"))
            if uid == 0:
                out.append(Finding(where, oid, fmt_path(cp + ["securityContext", "runAsUser"]), f"container {name!r} runs as uid 0"))
            if csc.get("privileged"):
                out.append(Finding(where, oid, fmt_path(cp + ["securityContext", "privileged"]), f"container {name!r} is privileged"))
            if csc.get("allowPrivilegeEscalation") is not False:
                out.append(Finding(where, oid, fmt_path(cp + ["securityContext", "allowPrivilegeEscalation"]),
                                   f"container {name!r}: set allowPrivilegeEscalation: false"))
            if "ALL" not in (get(csc, "capabilities", "drop") or []):
                out.append(Finding(where, oid, fmt_path(cp + ["securityContext", "capabilities", "drop"]),
                                   f"container {name!r}: drop ALL capabilities"))
            if get(csc, "capabilities", "add"):
                out.append(Finding(where, oid, fmt_path(cp + ["securityContext", "capabilities", "add"]),
                                   f"container {name!r} adds capabilities"))
            if csc.get("readOnlyRootFilesystem") is not True and not writable_ok:
                out.append(Finding(where, oid, fmt_path(cp + ["securityContext", "readOnlyRootFilesystem"]),
                                   f"container {name!r}: set readOnlyRootFilesystem: true (or annotate the pod with "
                                   f"{WRITABLE_ROOT_ANNOTATION}: <why>)"))
            for ei, env in enumerate(c.get("env") or []):
                ep = cp + ["env", ei]
                if "value" in env and env.get("value") not in (None, ""):
                    if SECRETISH_NAME.search(env.get("name", "")):
                        out.append(Finding(where, oid, fmt_path(ep + ["value"]),
                                           f"env {env['name']} holds an inline secret value: use valueFrom.secretKeyRef"))
                    elif CREDENTIAL_URL.search(str(env["value"])):
                        out.append(Finding(where, oid, fmt_path(ep + ["value"]),
                                           f"env {env.get('name')} holds a URL with credentials: use valueFrom.secretKeyRef"))
                ref = get(env, "valueFrom", "secretKeyRef")
                if ref:
                    out += _secret_ref(where, oid, ns, ref.get("name"), ref.get("key"), ep + ["valueFrom", "secretKeyRef"])
                ref = get(env, "valueFrom", "configMapKeyRef")
                if ref:
                    out += _cm_ref(where, oid, ns, ref.get("name"), ref.get("key"), ep + ["valueFrom", "configMapKeyRef"], index)
            for ei, src in enumerate(c.get("envFrom") or []):
                if "secretRef" in src:
                    out += _secret_ref(where, oid, ns, get(src, "secretRef", "name"), None, cp + ["envFrom", ei, "secretRef"])
                if "configMapRef" in src:
                    out += _cm_ref(where, oid, ns, get(src, "configMapRef", "name"), None, cp + ["envFrom", ei, "configMapRef"], index)
            for key in ("command", "args"):
                for ai, arg in enumerate(c.get(key) or []):
                    if CREDENTIAL_URL.search(str(arg)) or re.search(r"(password|secret|token)=[^$\s]", str(arg), re.I):
                        out.append(Finding(where, oid, fmt_path(cp + [key, ai]), "inline secret value in the command line"))
    return out


def _secret_ref(where, oid, ns, name, key, path) -> list[Finding]:
    keys = OPERATOR_SECRETS.get((ns, name))
    if keys is None:
        return [Finding(where, oid, fmt_path(path), f"Secret {ns}/{name} is not one the operator creates "
                        f"(known: {', '.join(sorted(n for s, n in OPERATOR_SECRETS if s == ns)) or 'none in this namespace'})")]
    if key is not None and key not in keys:
        return [Finding(where, oid, fmt_path(path + ["key"]), f"Secret {ns}/{name} has no key {key!r} (keys: {', '.join(sorted(keys))})")]
    return []


def _cm_ref(where, oid, ns, name, key, path, index) -> list[Finding]:
    cm = index.get(("ConfigMap", ns, name))
    if cm is None:
        return [Finding(where, oid, fmt_path(path), f"ConfigMap {ns}/{name} is not defined in this build")]
    if key is not None and key not in (cm.get("data") or {}):
        return [Finding(where, oid, fmt_path(path + ["key"]), f"ConfigMap {ns}/{name} has no key {key!r}")]
    return []


def _check_inline_secrets(where: str, obj: dict) -> list[Finding]:
    out = []
    if obj.get("kind") == "Secret":
        for field in ("data", "stringData"):
            if obj.get(field):
                out.append(Finding(where, obj_id(obj), field, "Secret values must not live in the repository: "
                                   "create the Secret on the cluster (docs/k8s.md) and reference it"))
    if obj.get("kind") == "ConfigMap":
        for key, val in (obj.get("data") or {}).items():
            if val and SECRETISH_NAME.search(key):
                out.append(Finding(where, obj_id(obj), f"data.{key}", "looks like a secret value in a ConfigMap: use a Secret reference"))
            elif CREDENTIAL_URL.search(str(val)):
                out.append(Finding(where, obj_id(obj), f"data.{key}", "URL with embedded credentials in a ConfigMap: use a Secret reference"))
    return out


def _labels_match(selector: dict | None, labels: dict) -> bool:
    """Kubernetes LabelSelector semantics (matchLabels + matchExpressions); None matches nothing."""
    if selector is None:
        return False
    for k, v in (selector.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and labels.get(key) in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def _pod_labels(tpl: dict) -> dict:
    return get(tpl, "metadata", "labels") or {}


def _app(labels: dict) -> str | None:
    """Which application a pod belongs to: `latxa.eus/app` (used on Ray pods, where KubeRay owns
    app.kubernetes.io/name), else `app.kubernetes.io/name`."""
    return labels.get("latxa.eus/app") or labels.get("app.kubernetes.io/name")


def _check_services(where, objs, pods) -> list[Finding]:
    out = []
    for svc in (o for o in objs if o.get("kind") == "Service"):
        sel = get(svc, "spec", "selector")
        if not sel:
            continue
        ns = get(svc, "metadata", "namespace")
        targets = [(o, tpl) for o, _, tpl, _ in pods
                   if get(o, "metadata", "namespace") == ns and _labels_match({"matchLabels": sel}, _pod_labels(tpl))]
        if not targets:
            out.append(Finding(where, obj_id(svc), "spec.selector", f"selects no pod in this build ({sel})"))
            continue
        for pi, port in enumerate(get(svc, "spec", "ports") or []):
            tp = port.get("targetPort", port.get("port"))
            if isinstance(tp, str):
                named = {p.get("name") for _, tpl in targets for c in get(tpl, "spec", "containers") or [] for p in c.get("ports") or []}
                if tp not in named:
                    out.append(Finding(where, obj_id(svc), f"spec.ports[{pi}].targetPort", f"no selected container has a port named {tp!r}"))
    return out


def _check_pdbs(where, objs, pods) -> list[Finding]:
    pdbs = [o for o in objs if o.get("kind") == "PodDisruptionBudget"]
    out = []
    for obj, path, tpl, long_running in pods:
        if not long_running:
            continue
        ns = get(obj, "metadata", "namespace")
        if not any(get(p, "metadata", "namespace") == ns and _labels_match(get(p, "spec", "selector"), _pod_labels(tpl)) for p in pdbs):
            out.append(Finding(where, obj_id(obj), fmt_path(path + ["metadata", "labels"]),
                               "no PodDisruptionBudget selects these pods"))
    return out


def _peer_allows(peer: dict, src_ns: str, src_labels: dict, dst_ns: str, ns_labels: dict[str, dict]) -> bool:
    if "ipBlock" in peer:
        return True  # an address range may contain anything: treat as open
    pod_sel, ns_sel = peer.get("podSelector"), peer.get("namespaceSelector")
    if ns_sel is not None:
        src_ns_labels = ns_labels.get(src_ns, {"kubernetes.io/metadata.name": src_ns})
        if not _labels_match(ns_sel, src_ns_labels):
            return False
    elif src_ns != dst_ns:
        return False
    return pod_sel is None or _labels_match(pod_sel, src_labels)


def ingress_allowed(policies: list[dict], src_ns: str, src_labels: dict, dst_ns: str, dst_labels: dict,
                    port: int | None = None, ns_labels: dict[str, dict] | None = None) -> bool:
    """NetworkPolicy ingress semantics for one source pod -> one destination pod (named ports aside)."""
    ns_labels = ns_labels or {}
    selecting = [p for p in policies if get(p, "metadata", "namespace") == dst_ns
                 and "Ingress" in (get(p, "spec", "policyTypes") or ["Ingress"])
                 and _labels_match(get(p, "spec", "podSelector") or {}, dst_labels)]
    if not selecting:
        return True
    for pol in selecting:
        for rule in get(pol, "spec", "ingress") or []:
            ports = rule.get("ports")
            if port is not None and ports and not any(p.get("port") in (port, None) for p in ports):
                continue
            peers = rule.get("from")
            if not peers or any(_peer_allows(peer, src_ns, src_labels, dst_ns, ns_labels) for peer in peers):
                return True
    return False


def _check_network(where, objs, pods) -> list[Finding]:
    out = []
    policies = [o for o in objs if o.get("kind") == "NetworkPolicy"]
    ns_labels = {get(o, "metadata", "name"): {**(get(o, "metadata", "labels") or {}),
                                              "kubernetes.io/metadata.name": get(o, "metadata", "name")}
                 for o in objs if o.get("kind") == "Namespace"}
    workload_ns = {get(o, "metadata", "namespace") for o, _, _, lr in pods if lr}
    for ns in sorted(n for n in workload_ns if n):
        if not any(get(p, "metadata", "namespace") == ns and get(p, "spec", "podSelector") == {}
                   and "Ingress" in (get(p, "spec", "policyTypes") or []) and not get(p, "spec", "ingress")
                   for p in policies):
            out.append(Finding(where, f"Namespace/-/{ns}", "NetworkPolicy", "no default-deny ingress NetworkPolicy in this namespace"))
    # Who may reach the protected pods: every pod of the build, plus a pod in an unrelated namespace.
    sources = [(get(o, "metadata", "namespace"), _pod_labels(tpl), obj_id(o)) for o, _, tpl, _ in pods]
    sources.append(("default", {"app": "anything"}, "Pod/default/outsider"))
    for (ns, app), allowed_app in ONLY_FROM.items():
        targets = [(o, tpl) for o, _, tpl, _ in pods if get(o, "metadata", "namespace") == ns and _app(_pod_labels(tpl)) == app]
        for obj, tpl in targets:
            reached_by_allowed = False
            for src_ns, src_labels, src_id in sources:
                if not ingress_allowed(policies, src_ns, src_labels, ns, _pod_labels(tpl), None, ns_labels):
                    continue
                if src_ns == ns and _app(src_labels) == allowed_app:
                    reached_by_allowed = True
                elif _app(src_labels) != app:
                    out.append(Finding(where, obj_id(obj), "NetworkPolicy",
                                       f"{app} pods are reachable from {src_id}; only {allowed_app} may reach them"))
            if not reached_by_allowed:
                out.append(Finding(where, obj_id(obj), "NetworkPolicy", f"{allowed_app} pods cannot reach {app}"))
    return out


def _check_ingress(where, objs, index, pods) -> list[Finding]:
    out = []
    for ing in (o for o in objs if o.get("kind") == "Ingress"):
        ns = get(ing, "metadata", "namespace")
        for ri, rule in enumerate(get(ing, "spec", "rules") or []):
            for pi, p in enumerate(get(rule, "http", "paths") or []):
                svc_name = get(p, "backend", "service", "name")
                path = f"spec.rules[{ri}].http.paths[{pi}].backend.service"
                svc = index.get(("Service", ns, svc_name))
                if svc is None:
                    out.append(Finding(where, obj_id(ing), path + ".name", f"Service {ns}/{svc_name} is not defined in this build"))
                    continue
                port = get(p, "backend", "service", "port") or {}
                ports = get(svc, "spec", "ports") or []
                if "name" in port and port["name"] not in {x.get("name") for x in ports}:
                    out.append(Finding(where, obj_id(ing), path + ".port.name", f"Service {svc_name} has no port named {port['name']!r}"))
                if "number" in port and port["number"] not in {x.get("port") for x in ports}:
                    out.append(Finding(where, obj_id(ing), path + ".port.number", f"Service {svc_name} has no port {port['number']}"))
    # The arena: Reflex's event WebSocket must reach the backend workers, with long timeouts.
    arena = index.get(("Ingress", "latxa-arena", "arena"))
    if arena is not None:
        routes = {p.get("path"): get(p, "backend", "service", "name")
                  for r in get(arena, "spec", "rules") or [] for p in get(r, "http", "paths") or []}
        backend = routes.get("/_event")
        svc = index.get(("Service", "latxa-arena", backend)) if backend else None
        sel = get(svc, "spec", "selector") if svc else None
        if not backend or not sel or not any(_labels_match({"matchLabels": sel}, _pod_labels(t)) and
                                             _app(_pod_labels(t)) == "arena-ui-backend"
                                             for _, _, t, _ in pods):
            out.append(Finding(where, obj_id(arena), "spec.rules[].http.paths", "/_event (Reflex WebSocket) must route to the arena-ui-backend Service"))
        ann = get(arena, "metadata", "annotations") or {}
        for key in ("nginx.ingress.kubernetes.io/proxy-read-timeout", "nginx.ingress.kubernetes.io/proxy-send-timeout"):
            try:
                ok = int(str(ann.get(key, "0"))) >= 3600
            except ValueError:
                ok = False
            if not ok:
                out.append(Finding(where, obj_id(arena), f"metadata.annotations.{key}",
                                   "WebSocket connections need a timeout of at least 3600 seconds"))
    return out


# ----------------------------------------------------------------------------- images

def ray_versions_pinned(images_dir: Path) -> dict[str, str]:
    """Dockerfile name -> its RAY_VERSION build argument."""
    out = {}
    for f in sorted(images_dir.glob("*.Dockerfile")):
        m = re.search(r"^ARG RAY_VERSION=(\S+)", f.read_text(), re.M)
        if m:
            out[f.name] = m.group(1)
    return out


def _dockerignore(dockerfile: Path) -> list[str]:
    """Patterns of <Dockerfile>.dockerignore (BuildKit reads it next to the Dockerfile)."""
    f = dockerfile.with_name(dockerfile.name + ".dockerignore")
    if not f.is_file():
        return []
    return [ln.strip() for ln in f.read_text().splitlines() if ln.strip() and not ln.strip().startswith("#")]


def _ignored(path: str, patterns: list[str]) -> bool:
    """.dockerignore semantics, simplified: last matching pattern wins, `!` re-includes, a match on a parent
    folder covers its contents, `**` matches any number of folders."""
    result = False
    parts = path.strip("/").split("/")
    prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    for pat in patterns:
        negate = pat.startswith("!")
        glob = pat.lstrip("!").strip("/").replace("**", "*")
        if any(fnmatch.fnmatchcase(p, glob) for p in prefixes):
            result = not negate
    return result


def check_dockerfiles(images_dir: Path, context: Path = REPO_ROOT) -> list[Finding]:
    """Pinned base images, multi-stage builds, every runtime stage non-root, COPY sources present in the
    build context (the repository root) and not excluded by the Dockerfile's .dockerignore."""
    out: list[Finding] = []
    files = sorted(images_dir.glob("*.Dockerfile"))
    if not files:
        return [Finding(str(images_dir), "Dockerfile/-/*", "(file)", "no Dockerfiles found")]
    for f in files:
        where = str(f.resolve().relative_to(REPO_ROOT)) if f.resolve().is_relative_to(REPO_ROOT) else str(f)
        oid = f"Dockerfile/-/{f.name}"
        args: dict[str, str] = {}
        stages: list[dict] = []
        ignore = _dockerignore(f)
        for no, raw in enumerate(f.read_text().splitlines(), 1):
            line = raw.strip()
            m = re.match(r"(?:COPY|ADD)\s+(.*)", line, re.I)
            if m and "--from=" not in m.group(1) and not line.endswith("\\"):
                words = [w for w in m.group(1).split() if not w.startswith("--")]
                for src in words[:-1]:
                    if any(ch in src for ch in "*?[$"):
                        continue
                    if not (context / src).exists():
                        out.append(Finding(where, oid, f"line {no}: COPY {src}", "source does not exist in the build context (repository root)"))
                    elif _ignored(src, ignore):
                        out.append(Finding(where, oid, f"line {no}: COPY {src}", f"source is excluded by {f.name}.dockerignore"))
            m = re.match(r"ARG\s+(\w+)=(\S+)", line)
            if m:
                args.setdefault(m.group(1), m.group(2).strip('"'))
            m = re.match(r"FROM\s+(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?", line, re.I)
            if m:
                image = re.sub(r"\$\{?(\w+)\}?", lambda mm, a=args: a.get(mm.group(1), mm.group(0)), m.group(1))
                stages.append({"line": no, "image": image, "name": (m.group(2) or "").lower(), "user": None})
                continue
            m = re.match(r"USER\s+(\S+)", line, re.I)
            if m and stages:
                stages[-1]["user"] = (no, m.group(1))
        names = {s["name"] for s in stages if s["name"]}
        if len(stages) < 2:
            out.append(Finding(where, oid, "FROM", "not multi-stage: build in one stage, copy the result into a slim one"))
        for st in stages:
            if st["image"].lower() in names or st["image"] == "scratch":
                continue
            problem = image_problem(st["image"])
            if problem:
                out.append(Finding(where, oid, f"line {st['line']}: FROM", problem))
        # Build stages are named build*; every other stage is an image someone runs.
        runtime = [st for st in stages if not st["name"].startswith("build")] or stages[-1:]
        for st in runtime:
            label = st["name"] or "final"
            if st["user"] is None:
                out.append(Finding(where, oid, f"line {st['line']}: stage {label}",
                                   "no USER: the image would run as root"))
            elif st["user"][1].split(":")[0] in ("root", "0"):
                out.append(Finding(where, oid, f"line {st['user'][0]}: USER", f"stage {label} runs as root"))
    return out


# ----------------------------------------------------------------------------- driver

def check_overlay(overlay: Path, *, builder: str = "auto", version: str = KUBERNETES_VERSION,
                  kuberay_schemas: Path = DEFAULT_KUBERAY_SCHEMAS, images_dir: Path = K8S_DIR / "images") -> list[Finding]:
    where = str(overlay.resolve().relative_to(REPO_ROOT)) if overlay.resolve().is_relative_to(REPO_ROOT) else str(overlay)
    try:
        objs = build(overlay, builder)
    except BuildError as err:
        return [Finding(where, "Kustomization/-/" + overlay.name, "kustomization.yaml", str(err).split(": ", 1)[1])]
    findings = validate_core(where, objs, version)
    findings += validate_kuberay(where, objs, kuberay_schemas, version)
    findings += check_policy(where, objs)
    findings += check_ray_versions(where, objs, images_dir)
    return findings


def check_ray_versions(where: str, objs: list[dict], images_dir: Path) -> list[Finding]:
    """KubeRay's rayVersion must be the Ray the images install."""
    out = []
    pinned = ray_versions_pinned(images_dir)
    for obj in objs:
        cluster = get(obj, "spec", "rayClusterConfig") or get(obj, "spec", "rayClusterSpec")
        if cluster is None:
            continue
        field = "spec.rayClusterConfig.rayVersion" if obj.get("kind") == "RayService" else "spec.rayClusterSpec.rayVersion"
        for dockerfile, version in sorted(pinned.items()):
            if cluster.get("rayVersion") != version:
                out.append(Finding(where, obj_id(obj), field, f"{cluster.get('rayVersion')!r} differs from "
                                   f"RAY_VERSION={version} in {images_dir.name}/{dockerfile}: the image's Ray must match"))
    return out


def default_overlays() -> list[Path]:
    return sorted(p.parent for p in (K8S_DIR / "overlays").glob("*/kustomization.yaml"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="k8s/check.py",
        description="Offline checks of the Kubernetes overlays and Dockerfiles (schemas, KubeRay CRDs, policy).",
        epilog="Example:\n  python k8s/check.py k8s/overlays/dev --builder kubectl",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("overlays", nargs="*", type=Path, help="overlay folders (default: every k8s/overlays/*)")
    parser.add_argument("--builder", choices=["auto", "kubectl", "python"], default="auto",
                        help="kustomize builder: kubectl (v5 kustomize), python (k8s/kustomize_lite.py), auto = kubectl if usable")
    parser.add_argument("--kubernetes-version", default=KUBERNETES_VERSION, help=f"schemas to validate against (default {KUBERNETES_VERSION})")
    parser.add_argument("--kuberay-schemas", type=Path, default=Path(os.environ.get("LATXA_KUBERAY_SCHEMAS", DEFAULT_KUBERAY_SCHEMAS)),
                        help="folder with the KubeRay CRD YAMLs (default ../shared/schemas/kuberay)")
    parser.add_argument("--images", type=Path, default=K8S_DIR / "images", help="folder with the *.Dockerfile files")
    parser.add_argument("--list-secrets", action="store_true", help="print the Secrets the operator must create, and exit")
    args = parser.parse_args(argv)

    if args.list_secrets:
        for (ns, name), keys in sorted(OPERATOR_SECRETS.items()):
            print(f"{ns}/{name}: {', '.join(sorted(keys))}")
        return 0
    overlays = args.overlays or default_overlays()
    findings: list[Finding] = []
    try:
        if not sorted(Path(args.kuberay_schemas).glob("*.yaml")):  # fail early, in one sentence
            raise CheckUnavailable(f"no KubeRay CRD schemas in {args.kuberay_schemas}; pass --kuberay-schemas DIR "
                                   "(ray-operator/config/crd/bases).")
        for overlay in overlays:
            if not (overlay / "kustomization.yaml").is_file():
                print(f"error: {overlay} is not a kustomization folder (no kustomization.yaml).", file=sys.stderr)
                return 2
            found = check_overlay(overlay, builder=args.builder, version=args.kubernetes_version,
                                  kuberay_schemas=args.kuberay_schemas, images_dir=args.images)
            findings += found
            print(f"{overlay}: {'ok' if not found else f'{len(found)} problem(s)'}", file=sys.stderr)
        findings += check_dockerfiles(args.images)
    except CheckUnavailable as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for f in findings:
        print(f)
    if findings:
        print(f"k8s-check: {len(findings)} problem(s)", file=sys.stderr)
        return 1
    print(f"k8s-check: {len(overlays)} overlay(s) and the Dockerfiles pass (Kubernetes {args.kubernetes_version}, strict)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
