"""A Python builder for the subset of Kustomize this repository's overlays use.

It exists so `k8s/check.py --builder python` works on a machine without a v5 `kubectl`; the tests
build every overlay both ways and require identical objects, so it cannot silently drift from
real Kustomize. Supported kustomization fields (anything else is refused, never ignored):

  resources        files and folders (folders must hold a kustomization.yaml)
  labels           pairs, with includeSelectors/includeTemplates false (metadata.labels only)
  images           name -> newName / newTag / digest, on every containers/initContainers list
  replicas         name -> count, for Deployment / StatefulSet / ReplicaSet
  patches          inline JSON 6902 (`patch:` + `target`) or a strategic-merge file (`path:`)
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import yaml

try:
    _Loader = yaml.CSafeLoader
except AttributeError:  # pragma: no cover
    _Loader = yaml.SafeLoader

SUPPORTED = {"apiVersion", "kind", "resources", "labels", "images", "replicas", "patches"}
REPLICA_KINDS = {"Deployment", "StatefulSet", "ReplicaSet"}


class KustomizeError(Exception):
    """A kustomization this builder cannot build; the message names the file."""


def build(folder: Path) -> list[dict]:
    folder = Path(folder)
    kfile = next((folder / n for n in ("kustomization.yaml", "kustomization.yml", "Kustomization") if (folder / n).is_file()), None)
    if kfile is None:
        raise KustomizeError(f"{folder}: no kustomization.yaml")
    spec = _load_one(kfile)
    unknown = set(spec) - SUPPORTED
    if unknown:
        raise KustomizeError(f"{kfile}: field(s) {', '.join(sorted(unknown))} not supported by the Python builder; use kubectl kustomize")
    objs: list[dict] = []
    for res in spec.get("resources") or []:
        path = (folder / res).resolve()
        if path.is_dir():
            objs += build(path)
        elif path.is_file():
            # JSON round trip: YAML anchors must become independent copies, as in Kustomize's output.
            objs += [json.loads(json.dumps(o)) for o in yaml.load_all(path.read_text(), Loader=_Loader) if o]
        else:
            raise KustomizeError(f"{kfile}: resource {res!r} does not exist")
    _check_unique(objs, kfile)
    for i, patch in enumerate(spec.get("patches") or []):
        _apply_patch(objs, patch, folder, f"{kfile}: patches[{i}]")
    for entry in spec.get("labels") or []:
        if entry.get("includeSelectors") or entry.get("includeTemplates"):
            raise KustomizeError(f"{kfile}: labels with includeSelectors/includeTemplates are not supported by the Python builder")
        for obj in objs:
            obj.setdefault("metadata", {}).setdefault("labels", {}).update(entry.get("pairs") or {})
    for entry in spec.get("replicas") or []:
        hits = [o for o in objs if o.get("kind") in REPLICA_KINDS and o["metadata"].get("name") == entry["name"]]
        for obj in hits:
            obj.setdefault("spec", {})["replicas"] = entry["count"]
    for entry in spec.get("images") or []:
        for obj in objs:
            _set_images(obj, entry)
    return objs


def _load_one(path: Path) -> dict:
    try:
        data = yaml.load(path.read_text(), Loader=_Loader)
    except yaml.YAMLError as err:
        raise KustomizeError(f"{path}: not valid YAML ({str(err).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise KustomizeError(f"{path}: must be a mapping")
    return data


def _key(obj: dict) -> tuple:
    meta = obj.get("metadata") or {}
    return obj.get("apiVersion", "").split("/")[0] if "/" in obj.get("apiVersion", "") else "", obj.get("kind"), meta.get("namespace"), meta.get("name")


def _check_unique(objs: list[dict], where: Path) -> None:
    seen = set()
    for obj in objs:
        k = _key(obj)
        if k in seen:
            raise KustomizeError(f"{where}: {k[1]}/{k[2]}/{k[3]} is defined twice")
        seen.add(k)


def _matches(obj: dict, target: dict) -> bool:
    meta = obj.get("metadata") or {}
    for field, value in (("kind", obj.get("kind")), ("name", meta.get("name")), ("namespace", meta.get("namespace"))):
        want = target.get(field)
        if want is not None and not re.fullmatch(want, value or ""):
            return False
    if target.get("group") is not None or target.get("version") is not None:
        api = obj.get("apiVersion", "")
        group, _, version = api.rpartition("/")
        if target.get("group") is not None and target["group"] != group:
            return False
        if target.get("version") is not None and target["version"] != version:
            return False
    for field in ("labelSelector", "annotationSelector"):
        if target.get(field):
            raise KustomizeError(f"target.{field} is not supported by the Python builder")
    return True


def _apply_patch(objs: list[dict], patch: dict, folder: Path, where: str) -> None:
    if "path" in patch:
        docs = [d for d in yaml.load_all((folder / patch["path"]).read_text(), Loader=_Loader) if d]
        if docs and isinstance(docs[0], list):
            text = None
        else:
            for doc in docs:
                hits = [o for o in objs if _key(o)[1:] == _key(doc)[1:]]
                if not hits:
                    raise KustomizeError(f"{where}: {patch['path']} patches {_key(doc)[1]}/{_key(doc)[3]}, which is not in the build")
                for obj in hits:
                    _strategic_merge(obj, doc)
            return
    text = patch.get("patch")
    if text is None:
        raise KustomizeError(f"{where}: needs `patch` or `path`")
    ops = yaml.load(text, Loader=_Loader)
    target = patch.get("target")
    if isinstance(ops, dict):  # an inline strategic-merge patch
        hits = [o for o in objs if _matches(o, target)] if target else [o for o in objs if _key(o)[1:] == _key(ops)[1:]]
        for obj in hits:
            _strategic_merge(obj, ops)
        return
    if not target:
        raise KustomizeError(f"{where}: a JSON 6902 patch needs a target")
    hits = [o for o in objs if _matches(o, target)]
    if not hits:
        raise KustomizeError(f"{where}: target {target} matches nothing")
    for obj in hits:
        for op in ops:
            _json6902(obj, op, where)


def _strategic_merge(obj: dict, patch: dict) -> None:
    """Maps merge recursively, `null` deletes, lists are replaced (enough for ConfigMap data / CR specs)."""
    for key, val in patch.items():
        if val is None:
            obj.pop(key, None)
        elif isinstance(val, dict) and isinstance(obj.get(key), dict):
            _strategic_merge(obj[key], val)
        else:
            obj[key] = copy.deepcopy(val)


def _pointer(path: str) -> list[str]:
    if not path.startswith("/"):
        raise KustomizeError(f"JSON pointer {path!r} must start with /")
    return [p.replace("~1", "/").replace("~0", "~") for p in path.split("/")[1:]]


def _json6902(obj: dict, op: dict, where: str) -> None:
    parts = _pointer(op["path"])
    parent: Any = obj
    for p in parts[:-1]:
        try:
            parent = parent[int(p)] if isinstance(parent, list) else parent[p]
        except (KeyError, IndexError, ValueError):
            raise KustomizeError(f"{where}: path {op['path']} does not exist in {obj.get('kind')}/{obj['metadata'].get('name')}") from None
    last = parts[-1]
    kind = op.get("op")
    if isinstance(parent, list):
        idx = len(parent) if last == "-" else int(last)
        if kind == "add":
            parent.insert(idx, copy.deepcopy(op["value"]))
        elif kind == "replace":
            parent[idx] = copy.deepcopy(op["value"])
        elif kind == "remove":
            del parent[idx]
        else:
            raise KustomizeError(f"{where}: op {kind!r} not supported by the Python builder")
        return
    if kind in ("replace", "remove") and last not in parent:
        raise KustomizeError(f"{where}: path {op['path']} does not exist in {obj.get('kind')}/{obj['metadata'].get('name')}")
    if kind in ("add", "replace"):
        parent[last] = copy.deepcopy(op["value"])
    elif kind == "remove":
        del parent[last]
    else:
        raise KustomizeError(f"{where}: op {kind!r} not supported by the Python builder")


def _image_name(image: str) -> str:
    if "@" in image:
        return image.split("@", 1)[0]
    head, _, last = image.rpartition("/")
    return f"{head}/{last.split(':', 1)[0]}" if head else last.split(":", 1)[0]


def _set_images(node: Any, entry: dict) -> None:
    if isinstance(node, dict):
        for key, val in node.items():
            if key in ("containers", "initContainers") and isinstance(val, list):
                for c in val:
                    if isinstance(c, dict) and isinstance(c.get("image"), str) and _image_name(c["image"]) == entry["name"]:
                        name = entry.get("newName", entry["name"])
                        if entry.get("digest"):
                            c["image"] = f"{name}@{entry['digest']}"
                        else:
                            old = c["image"]
                            tag = entry.get("newTag")
                            if tag is None:
                                rest = old[len(_image_name(old)):]
                                c["image"] = name + rest
                            else:
                                c["image"] = f"{name}:{tag}"
            _set_images(val, entry)
    elif isinstance(node, list):
        for item in node:
            _set_images(item, entry)
