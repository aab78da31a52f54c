"""The offline Kubernetes checks (k8s/check.py): the shipped overlays pass, and deliberately broken
copies fail with the object and the field named."""

from __future__ import annotations

import copy
import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "k8s"
SCHEMAS = REPO.parent / "shared" / "schemas" / "kuberay"
OVERLAYS = ["dev", "prod"]


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


check = _load("latxa_k8s_check", K8S / "check.py")
kustomize_lite = _load("kustomize_lite", K8S / "kustomize_lite.py")

needs_schemas = pytest.mark.skipif(not SCHEMAS.is_dir(), reason="../shared/schemas/kuberay is not here (CI has it)")
needs_kubectl = pytest.mark.skipif(check.kubectl_usable() is None, reason="no kubectl with kustomize v5 (scripts/sysdeps.sh installs it)")


@pytest.fixture(scope="module")
def built() -> dict[str, list[dict]]:
    """Each overlay rendered once (kubectl when usable, else the Python builder)."""
    return {name: check.build(K8S / "overlays" / name) for name in OVERLAYS}


def find(objs: list[dict], kind: str, name: str) -> dict:
    return next(o for o in objs if o["kind"] == kind and o["metadata"]["name"] == name)


def messages(findings) -> list[str]:
    return [str(f) for f in findings]


def assert_named(findings, obj: str, field: str, text: str = "") -> None:
    hits = [f for f in findings if f.obj == obj and f.field == field and text in f.message]
    assert hits, f"expected a finding for {obj} {field} {text!r}; got:\n" + "\n".join(messages(findings))


# ----------------------------------------------------------------------------- the shipped manifests pass

@needs_schemas
def test_make_k8s_check_passes_on_the_shipped_manifests():
    """What `make k8s-check` runs: every overlay built, validated (core strict + KubeRay CRDs), policy, Dockerfiles."""
    proc = _run()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout == ""
    for overlay in OVERLAYS:
        assert f"overlays/{overlay}: ok" in proc.stderr


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_shipped_overlays_hold_every_part_and_no_secret(overlay, built):
    objs = built[overlay]
    kinds = {o["kind"] for o in objs}
    assert {"RayService", "RayJob", "StatefulSet", "Deployment", "Ingress", "NetworkPolicy", "PodDisruptionBudget",
            "ServiceAccount", "Role", "RoleBinding", "PodTemplate", "Namespace"} <= kinds
    assert not any(o["kind"] == "Secret" for o in objs), "no Secret objects ship in the repository"
    assert check.check_policy(overlay, objs) == []


def test_dockerfiles_pass():
    assert check.check_dockerfiles(K8S / "images") == []
    assert {"components.Dockerfile", "serving.Dockerfile", "arena-ui.Dockerfile"} <= {p.name for p in (K8S / "images").glob("*.Dockerfile")}


@needs_kubectl
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_python_builder_matches_kubectl_kustomize(overlay):
    def key(o):
        return o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"]

    real = {key(o): o for o in check.build(K8S / "overlays" / overlay, "kubectl")}
    lite = {key(o): o for o in kustomize_lite.build(K8S / "overlays" / overlay)}
    assert set(real) == set(lite)
    differ = [k for k in real if json.dumps(real[k], sort_keys=True) != json.dumps(lite[k], sort_keys=True)]
    assert differ == []


def test_python_builder_refuses_what_it_does_not_implement(tmp_path):
    (tmp_path / "kustomization.yaml").write_text("resources: []\nnamePrefix: x-\n")
    with pytest.raises(kustomize_lite.KustomizeError, match="namePrefix"):
        kustomize_lite.build(tmp_path)


# ----------------------------------------------------------------------------- overlay differences that matter

def test_prod_puts_models_on_gpus_with_vllm_and_dev_stays_on_cpu(built, tmp_path, monkeypatch):
    dev, prod = find(built["dev"], "RayService", "latxa-arena"), find(built["prod"], "RayService", "latxa-arena")
    groups = prod["spec"]["rayClusterConfig"]["workerGroupSpecs"]
    assert [g["groupName"] for g in groups] == ["gpu-x8"]
    gpu = groups[0]["template"]["spec"]
    assert gpu["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "8" == groups[0]["rayStartParams"]["num-gpus"]
    assert gpu["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert any(t["key"] == "nvidia.com/gpu" for t in gpu["tolerations"])
    assert gpu["containers"][0]["image"].endswith(":0.1.0-cuda")
    apps = {a["name"]: a for a in yaml.safe_load(prod["spec"]["serveConfigV2"])["applications"]}
    # both applications are built from the one serving YAML
    assert apps["llm"]["import_path"] == "latxa.serving.rayservice:build_llm_app" and apps["llm"]["route_prefix"] == "/llm"
    assert apps["llm"]["args"] == apps["arena"]["args"] == {"config": "/etc/latxa/serve.yaml"}
    # the study's 21 models: 19 on vLLM, GPT-4o (OpenAI), Claude (Anthropic), under the study's protocol
    monkeypatch.setenv("LATXA_ARENA_DB_URL", f"sqlite:///{tmp_path / 'arena.db'}")
    import os

    from latxa.serving.placement import llm_configs, plan_placement, validate_llm_configs
    from latxa.serving.registry import load_serve_config

    (tmp_path / "prod.yaml").write_text(os.path.expandvars(
        find(built["prod"], "ConfigMap", "arena-serve-config")["data"]["serve.yaml"]))
    cfg = load_serve_config(tmp_path / "prod.yaml")
    kinds = [m.kind for m in cfg.arena_models()]
    assert (len(kinds), kinds.count("vllm"), kinds.count("openai"), kinds.count("anthropic")) == (21, 19, 1, 1)
    assert cfg.arena.protocol == "ebaluatoia-2025"
    assert {m.base_url for m in cfg.models if m.kind == "vllm"} == {
        "http://latxa-arena-serve-svc.latxa-arena.svc.cluster.local:8000/llm/v1"}
    assert validate_llm_configs(llm_configs(cfg)) == 19
    # the placement fits the stated budget, and the budget is what the worker group provides
    plan = plan_placement(cfg)
    pods = groups[0]["replicas"] * int(groups[0]["rayStartParams"]["num-gpus"])
    assert plan["budget_gpus"] == pods == 16 and plan["used_gpus"] <= pods
    assert [n.gpus for n in cfg.placement.nodes] == [int(groups[0]["rayStartParams"]["num-gpus"])] * groups[0]["replicas"]
    # the keys come from the Secret, mounted where the serving config reads them
    mounts = {m["name"]: m["mountPath"] for m in gpu["containers"][0]["volumeMounts"]}
    assert {m.api_key_file.rsplit("/", 1)[0] for m in cfg.models if m.api_key_file} == {mounts["llm-keys"]}
    dev_worker = dev["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]["template"]["spec"]
    assert "nvidia.com/gpu" not in json.dumps(dev_worker)
    assert any(o["metadata"]["name"] == "minio" for o in built["dev"]) and not any(o["metadata"]["name"] == "minio" for o in built["prod"])


def test_wiring_between_layers_is_consistent(built):
    objs = built["dev"]
    # The UI backend calls the Serve service KubeRay creates for the RayService, on Serve's HTTP port.
    rs = find(objs, "RayService", "latxa-arena")
    port = yaml.safe_load(rs["spec"]["serveConfigV2"])["http_options"]["port"]
    backend = find(objs, "Deployment", "arena-ui-backend")["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in backend["env"]}
    assert env["LATXA_ARENA_API_URL"] == f"http://latxa-arena-serve-svc.latxa-arena.svc.cluster.local:{port}"
    assert env["REFLEX_STATE_MANAGER_MODE"] == "redis"
    ui_sources = "\n".join(p.read_text() for p in (REPO / "arena_ui").rglob("*.py"))
    for name in ("LATXA_ARENA_API_URL", "REFLEX_STATE_MANAGER_MODE", "REFLEX_REDIS_URL"):
        assert name in ui_sources, f"arena_ui does not read {name}"
    # The SLURM bridge's Leonardo profile reads ~/.ssh/...: the component pod mounts the Secret exactly there.
    profile = yaml.safe_load((REPO / "slurm" / "profiles" / "leonardo.yaml").read_text())
    tpl = find(objs, "PodTemplate", "latxa-component")["template"]["spec"]
    home = next(e["value"] for e in tpl["containers"][0]["env"] if e["name"] == "HOME")
    mount = next(m for m in tpl["containers"][0]["volumeMounts"] if m["name"] == "slurm-ssh")
    secret = next(v for v in tpl["volumes"] if v["name"] == "slurm-ssh")["secret"]
    assert secret["secretName"] == "latxa-slurm-ssh"
    for key in ("key_file", "certificate_file", "known_hosts"):
        path = Path(profile["transport"][key].replace("~", home))
        assert path.parent == Path(mount["mountPath"]) and path.name in check.OPERATOR_SECRETS[("kubeflow", "latxa-slurm-ssh")]


def test_rayservice_serve_config_loads_in_the_serving_layer(built, tmp_path, monkeypatch):
    """The dev ConfigMap, rendered as the head's init container renders it, is a valid `latxa serve` config,
    and the RayService builder turns it into the project's Serve application (binding only: the models
    themselves are loaded by the replicas on the cluster, so two folders with a config.json stand in for them)."""
    pytest.importorskip("ray.serve")
    text = find(built["dev"], "ConfigMap", "arena-serve-config")["data"]["serve.yaml"]
    for name in ("tiny-a", "tiny-b"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.json").write_text("{}")
        text = text.replace(f"/models/{name}", str(tmp_path / name))
    monkeypatch.setenv("LATXA_ARENA_DB_URL", f"sqlite:///{tmp_path / 'arena.db'}")
    monkeypatch.setenv("LATXA_ARENA_ADMIN_TOKEN", "t0ken-for-test")
    monkeypatch.setenv("LATXA_ARENA_EXPORT_SALT", "salt")
    import os

    path = tmp_path / "serve.yaml"
    path.write_text(os.path.expandvars(text))
    from latxa.serving.registry import load_serve_config

    cfg = load_serve_config(path)
    assert [m.name for m in cfg.arena_models()] == ["tiny-a", "tiny-b"]
    assert cfg.arena.database_url.startswith("sqlite:///") and cfg.arena.admin_token == "t0ken-for-test"
    import importlib

    from ray.serve import Application

    for obj in (find(built["dev"], "RayService", "latxa-arena"), find(built["prod"], "RayService", "latxa-arena")):
        paths = {a["name"]: a["import_path"] for a in yaml.safe_load(obj["spec"]["serveConfigV2"])["applications"]}
        module, _, attr = paths["arena"].partition(":")
        assert getattr(importlib.import_module(module), attr)  # the manifests name an importable builder
    builder = importlib.import_module("latxa.serving.rayservice")

    assert isinstance(builder.build_app({"config": str(path)}), Application)
    import latxa.errors

    with pytest.raises(latxa.errors.LatxaError, match="args.config"):
        builder.build_app({})


# ----------------------------------------------------------------------------- broken copies fail, naming object and field

@pytest.fixture
def dev(built):
    return copy.deepcopy(built["dev"])


def policy(objs):
    return check.check_policy("broken", objs)


def container(objs, kind, name, i=0):
    return find(objs, kind, name)["spec"]["template"]["spec"]["containers"][i]


def test_missing_resources_are_named(dev):
    del container(dev, "Deployment", "mlflow")["resources"]["limits"]["memory"]
    assert_named(policy(dev), "Deployment/latxa-mlflow/mlflow", "spec.template.spec.containers[0].resources.limits.memory")


def test_latest_and_untagged_images_are_named(dev):
    container(dev, "Deployment", "arena-redis")["image"] = "docker.io/library/redis:latest"
    find(dev, "RayService", "latxa-arena")["spec"]["rayClusterConfig"]["headGroupSpec"]["template"]["spec"]["containers"][0]["image"] = "ghcr.io/latxa-mlops/serving"
    found = policy(dev)
    assert_named(found, "Deployment/latxa-arena/arena-redis", "spec.template.spec.containers[0].image", "latest")
    assert_named(found, "RayService/latxa-arena/latxa-arena",
                 "spec.rayClusterConfig.headGroupSpec.template.spec.containers[0].image", "no tag")


def test_missing_probe_is_named(dev):
    del container(dev, "Deployment", "arena-ui-backend")["readinessProbe"]
    del find(dev, "RayService", "latxa-arena")["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]["template"]["spec"]["containers"][0]["livenessProbe"]
    found = policy(dev)
    assert_named(found, "Deployment/latxa-arena/arena-ui-backend", "spec.template.spec.containers[0].readinessProbe")
    assert_named(found, "RayService/latxa-arena/latxa-arena",
                 "spec.rayClusterConfig.workerGroupSpecs[0].template.spec.containers[0].livenessProbe")


def test_root_and_writable_root_filesystem_are_named(dev):
    pod = find(dev, "StatefulSet", "arena-db")["spec"]["template"]["spec"]
    del pod["securityContext"]["runAsNonRoot"]
    pod["containers"][0]["securityContext"]["readOnlyRootFilesystem"] = False
    pod["containers"][0]["securityContext"]["allowPrivilegeEscalation"] = True
    found = policy(dev)
    for field in ("runAsNonRoot", "readOnlyRootFilesystem", "allowPrivilegeEscalation"):
        assert_named(found, "StatefulSet/latxa-arena/arena-db", f"spec.template.spec.containers[0].securityContext.{field}")


def test_inline_secret_values_are_named(dev):
    dev.append({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "oops", "namespace": "latxa-arena"},
                "stringData": {"password": "hunter2"}})
    container(dev, "Deployment", "mlflow")["env"].append({"name": "MLFLOW_TRACKING_PASSWORD", "value": "hunter2"})
    find(dev, "ConfigMap", "mlflow-config")["data"]["DB"] = "postgresql://mlflow:hunter2@mlflow-db:5432/mlflow"
    found = policy(dev)
    assert_named(found, "Secret/latxa-arena/oops", "stringData")
    env_index = len(container(dev, "Deployment", "mlflow")["env"]) - 1
    assert_named(found, "Deployment/latxa-mlflow/mlflow", f"spec.template.spec.containers[0].env[{env_index}].value", "inline secret")
    assert_named(found, "ConfigMap/latxa-mlflow/mlflow-config", "data.DB", "credentials")


def test_dangling_references_are_named(dev):
    env = container(dev, "Deployment", "mlflow")["env"]
    ref = next(e for e in env if e["name"] == "MLFLOW_BACKEND_STORE_URI")["valueFrom"]["secretKeyRef"]
    ref["key"] = "url"
    find(dev, "Deployment", "arena-ui")["spec"]["template"]["spec"]["serviceAccountName"] = "arena-frontend"
    find(dev, "ConfigMap", "latxa-pipeline-config")["data"]["MLFLOW_TRACKING_URI"] = "http://mlflow.latxa-mlflow.svc.cluster.local:5001"
    found = policy(dev)
    i = env.index(next(e for e in env if e["name"] == "MLFLOW_BACKEND_STORE_URI"))
    assert_named(found, "Deployment/latxa-mlflow/mlflow", f"spec.template.spec.containers[0].env[{i}].valueFrom.secretKeyRef.key", "no key 'url'")
    assert_named(found, "Deployment/latxa-arena/arena-ui", "spec.template.spec.serviceAccountName", "not defined")
    assert_named(found, "ConfigMap/kubeflow/latxa-pipeline-config", "data.MLFLOW_TRACKING_URI", "no port 5001")


def test_ray_pods_leave_kuberays_name_label_alone(dev):
    tpl = find(dev, "RayJob", "latxa-train")["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]
    tpl["metadata"]["labels"]["app.kubernetes.io/name"] = "latxa-train"
    assert_named(policy(dev), "RayJob/latxa-training/latxa-train",
                 "spec.rayClusterSpec.headGroupSpec.template.metadata.labels.app.kubernetes.io/name", "KubeRay owns")


def test_missing_pdb_is_named(dev):
    dev[:] = [o for o in dev if not (o["kind"] == "PodDisruptionBudget" and o["metadata"]["name"] == "arena-ray-workers")]
    assert_named(policy(dev), "RayService/latxa-arena/latxa-arena",
                 "spec.rayClusterConfig.workerGroupSpecs[0].template.metadata.labels", "PodDisruptionBudget")


def test_arena_db_reachable_from_anything_but_the_api_is_named(dev):
    pol = find(dev, "NetworkPolicy", "arena-db-from-arena-api-only")
    pol["spec"]["ingress"][0]["from"].append({"podSelector": {"matchLabels": {"app.kubernetes.io/name": "arena-ui-backend"}}})
    found = policy(dev)
    assert_named(found, "StatefulSet/latxa-arena/arena-db", "NetworkPolicy", "reachable from Deployment/latxa-arena/arena-ui-backend")


def test_arena_db_without_policies_is_named(dev):
    # Without default-deny and without the DB policy, everything reaches the DB: named, per source.
    dev[:] = [o for o in dev if not (o["kind"] == "NetworkPolicy" and o["metadata"]["namespace"] == "latxa-arena"
                                     and o["metadata"]["name"] in ("default-deny-ingress", "arena-db-from-arena-api-only"))]
    found = policy(dev)
    assert_named(found, "Namespace/-/latxa-arena", "NetworkPolicy", "default-deny")
    assert_named(found, "StatefulSet/latxa-arena/arena-db", "NetworkPolicy", "reachable from Pod/default/outsider")


def test_arena_api_cut_off_from_its_db_is_named(dev):
    find(dev, "NetworkPolicy", "arena-db-from-arena-api-only")["spec"]["ingress"][0]["from"][0]["podSelector"]["matchLabels"]["latxa.eus/app"] = "arena"
    assert_named(policy(dev), "StatefulSet/latxa-arena/arena-db", "NetworkPolicy", "arena-api pods cannot reach arena-db")


def test_websocket_route_and_timeouts_are_named(dev):
    ing = find(dev, "Ingress", "arena")
    for p in ing["spec"]["rules"][0]["http"]["paths"]:
        if p["path"] == "/_event":
            p["backend"]["service"]["name"] = "arena-ui"
    ing["metadata"]["annotations"]["nginx.ingress.kubernetes.io/proxy-read-timeout"] = "60"
    found = policy(dev)
    assert_named(found, "Ingress/latxa-arena/arena", "spec.rules[].http.paths", "/_event")
    assert_named(found, "Ingress/latxa-arena/arena", "metadata.annotations.nginx.ingress.kubernetes.io/proxy-read-timeout")


def test_service_selecting_nothing_is_named(dev):
    find(dev, "Service", "arena-redis")["spec"]["selector"] = {"app.kubernetes.io/name": "redis"}
    assert_named(policy(dev), "Service/latxa-arena/arena-redis", "spec.selector", "selects no pod")


def test_unknown_and_mistyped_core_fields_fail_strict_validation(dev):
    find(dev, "Deployment", "mlflow")["spec"]["replica"] = 2
    container(dev, "Deployment", "arena-ui")["ports"][0]["containerPort"] = "8080"
    found = check.validate_core("broken", [find(dev, "Deployment", "mlflow"), find(dev, "Deployment", "arena-ui")],
                                check.KUBERNETES_VERSION)
    assert_named(found, "Deployment/latxa-mlflow/mlflow", "spec.replica", "unknown field")
    assert_named(found, "Deployment/latxa-arena/arena-ui", "spec.template.spec.containers[0].ports[0].containerPort")
    assert all("Kubernetes 1.32.0" in f.message for f in found)


@needs_schemas
def test_kuberay_objects_fail_the_crd_schema_with_the_field_named(dev):
    rs = find(dev, "RayService", "latxa-arena")
    rs["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]["replicaz"] = 3
    rs["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]["minReplicas"] = "1"
    rs["spec"]["rayClusterConfig"]["headGroupSpec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = "Always"
    job = find(dev, "RayJob", "latxa-train")
    job["spec"]["rayClusterSpec"]["rayVersion"] = "2.9.0"
    del job["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["groupName"]
    found = check.validate_kuberay("broken", dev, SCHEMAS, check.KUBERNETES_VERSION)
    obj = "RayService/latxa-arena/latxa-arena"
    assert_named(found, obj, "spec.rayClusterConfig.workerGroupSpecs[0].replicaz", "unknown field")
    assert_named(found, obj, "spec.rayClusterConfig.workerGroupSpecs[0].minReplicas", "integer")
    assert_named(found, obj, "spec.rayClusterConfig.headGroupSpec.template.spec.containers[0].imagePullPolicyy", "unknown field")
    assert_named(found, "RayJob/latxa-training/latxa-train", "spec.rayClusterSpec.workerGroupSpecs[0]", "groupName")


def test_ray_version_must_match_the_images(dev, tmp_path):
    assert check.check_ray_versions("dev", dev, K8S / "images") == []
    images = tmp_path / "images"
    shutil.copytree(K8S / "images", images)
    f = images / "serving.Dockerfile"
    f.write_text(f.read_text().replace("ARG RAY_VERSION=2.60.0", "ARG RAY_VERSION=2.61.0"))
    found = check.check_ray_versions("broken", dev, images)
    assert_named(found, "RayService/latxa-arena/latxa-arena", "spec.rayClusterConfig.rayVersion", "RAY_VERSION=2.61.0")
    assert_named(found, "RayJob/latxa-training/latxa-train", "spec.rayClusterSpec.rayVersion", "serving.Dockerfile")


def test_broken_dockerfiles_are_named(tmp_path):
    (tmp_path / "a.Dockerfile").write_text("FROM python:latest\nRUN true\n")
    (tmp_path / "b.Dockerfile").write_text("FROM python:3.11.10-slim AS build\nRUN true\nFROM python:3.11.10-slim AS runtime\nUSER root\n")
    (tmp_path / "c.Dockerfile").write_text("FROM python:3.11.10-slim AS build\nFROM nginx:1.27.2 AS web\nUSER 101\nFROM python:3.11.10-slim AS backend\n")
    found = check.check_dockerfiles(tmp_path)
    assert_named(found, "Dockerfile/-/a.Dockerfile", "FROM", "multi-stage")
    assert_named(found, "Dockerfile/-/a.Dockerfile", "line 1: FROM", "latest")
    assert_named(found, "Dockerfile/-/a.Dockerfile", "line 1: stage final", "no USER")
    assert_named(found, "Dockerfile/-/b.Dockerfile", "line 4: USER", "root")
    assert_named(found, "Dockerfile/-/c.Dockerfile", "line 4: stage backend", "no USER")
    assert not [f for f in found if f.obj == "Dockerfile/-/c.Dockerfile" and "web" in f.field]


def test_copy_sources_must_exist_and_not_be_dockerignored(tmp_path):
    (tmp_path / "x.Dockerfile").write_text("FROM python:3.11.10-slim AS build\nCOPY latxa /src/latxa\n"
                                           "COPY k8s/images/arena-ui.nginx.conf /a.conf\nCOPY no/such/file /b\n"
                                           "FROM python:3.11.10-slim AS runtime\nCOPY --from=build /src /src\nUSER 10001\n")
    (tmp_path / "x.Dockerfile.dockerignore").write_text("**\n!latxa\nlatxa/__pycache__\n")
    found = check.check_dockerfiles(tmp_path)
    assert_named(found, "Dockerfile/-/x.Dockerfile", "line 4: COPY no/such/file", "does not exist")
    assert_named(found, "Dockerfile/-/x.Dockerfile", "line 3: COPY k8s/images/arena-ui.nginx.conf", "excluded")
    assert not [f for f in found if "COPY latxa" in f.field or "--from" in f.field]


def test_network_policy_semantics():
    pols = [
        {"metadata": {"namespace": "a"}, "spec": {"podSelector": {"matchLabels": {"app": "db"}}, "policyTypes": ["Ingress"],
                                                   "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "api"}}}],
                                                                "ports": [{"port": 5432}]}]}},
        {"metadata": {"namespace": "a"}, "spec": {"podSelector": {"matchLabels": {"app": "web"}}, "policyTypes": ["Ingress"],
                                                   "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "edge"}}}]}]}},
    ]
    allowed = check.ingress_allowed
    assert allowed(pols, "a", {"app": "api"}, "a", {"app": "db"}, 5432)
    assert not allowed(pols, "a", {"app": "api"}, "a", {"app": "db"}, 22)
    assert not allowed(pols, "a", {"app": "web"}, "a", {"app": "db"})
    assert not allowed(pols, "b", {"app": "api"}, "a", {"app": "db"})  # podSelector alone: same namespace only
    assert allowed(pols, "edge", {}, "a", {"app": "web"})
    assert not allowed(pols, "a", {"app": "api"}, "a", {"app": "web"})
    assert allowed(pols, "z", {}, "a", {"app": "unselected"})  # no policy selects it: open


# ----------------------------------------------------------------------------- the command line (what `make k8s-check` runs)

def _copy_tree(tmp_path: Path) -> Path:
    dest = tmp_path / "k8s"
    shutil.copytree(K8S, dest, ignore=shutil.ignore_patterns("__pycache__"))
    return dest


def _run(*args):
    return subprocess.run([sys.executable, str(K8S / "check.py"), *args], capture_output=True, text=True, timeout=300)


@needs_schemas
@pytest.mark.slow
def test_cli_fails_on_a_broken_copy_naming_object_and_field(tmp_path):
    tree = _copy_tree(tmp_path)
    redis = tree / "base" / "arena" / "redis.yaml"
    redis.write_text(redis.read_text().replace("              memory: 512Mi\n", "", 1))
    proc = _run(str(tree / "overlays" / "dev"), "--images", str(tree / "images"), "--kuberay-schemas", str(SCHEMAS))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Deployment/latxa-arena/arena-redis: spec.template.spec.containers[0].resources.limits.memory" in proc.stdout
    assert "1 problem(s)" in proc.stderr


@needs_schemas
def test_cli_names_a_kustomization_that_does_not_build(tmp_path):
    tree = _copy_tree(tmp_path)
    k = tree / "overlays" / "dev" / "kustomization.yaml"
    k.write_text(k.read_text().replace("  - minio.yaml\n", "  - minio-missing.yaml\n"))
    proc = _run(str(tree / "overlays" / "dev"), "--images", str(tree / "images"), "--kuberay-schemas", str(SCHEMAS))
    assert proc.returncode == 1
    assert "Kustomization/-/dev: kustomization.yaml:" in proc.stdout and "minio-missing.yaml" in proc.stdout


def test_cli_without_schemas_says_so_in_one_sentence(tmp_path):
    proc = _run(str(K8S / "overlays" / "dev"), "--kuberay-schemas", str(tmp_path))
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("error: no KubeRay CRD schemas in")


def test_docs_create_every_secret_the_manifests_reference():
    """docs/k8s.md's `kubectl create secret` commands create exactly the Secrets and keys the check accepts
    (TLS Secrets come from cert-manager)."""
    import re

    text = (REPO / "docs" / "k8s.md").read_text()
    text = text.replace("\\\n", " ")
    created = {}
    for line in text.splitlines():
        m = re.search(r"kubectl -n (\S+) create secret generic (\S+)(.*)", line)
        if m:
            keys = set(re.findall(r"--from-(?:literal|file)=([\w.-]+)=", m.group(3)))
            keys |= {k for k in re.findall(r"--from-file=([\w.-]+)(?:\s|$)", m.group(3))}
            created[(m.group(1), m.group(2))] = keys
    expected = {k: v for k, v in check.OPERATOR_SECRETS.items() if not k[1].endswith("-tls")}
    assert created == expected


def test_cli_help_has_an_example_and_lists_the_secrets():
    assert "Example:" in _run("--help").stdout
    out = _run("--list-secrets").stdout
    assert "kubeflow/latxa-slurm-ssh: known_hosts, leonardo, leonardo-cert.pub" in out
    assert "latxa-arena/arena-db: password, uri, username" in out
