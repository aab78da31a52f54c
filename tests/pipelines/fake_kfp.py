"""A small in-process fake of the KFP v2beta1 REST API: just what `kfp.Client` calls for upload + run.

No Kubeflow can run here (it needs a Kubernetes cluster), so `latxa pipeline submit` is tested against
this fake. It stores what it receives (the uploaded pipeline YAML, the run bodies) for the tests to check,
and answers with the JSON shapes of the real API (kfp_server_api's models).
"""

from __future__ import annotations

import json
import threading
import uuid
from email.parser import BytesParser
from email.policy import default as email_policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

PREFIX = "/apis/v2beta1"


def run_latxa(*args: str, env: dict | None = None, timeout: float = 600):
    """The real `latxa` entry point in a subprocess (like the `cli` fixture, usable from module fixtures)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    exe = Path(sys.executable).with_name("latxa")
    return subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})}, cwd=Path(__file__).resolve().parents[2])
NOW = "2026-01-01T00:00:00Z"


class FakeKFP:
    def __init__(self) -> None:
        self.pipelines: dict[str, dict] = {}
        self.versions: dict[str, list[dict]] = {}
        self.experiments: dict[str, dict] = {}
        self.runs: dict[str, dict] = {}
        self.requests: list[tuple[str, str]] = []
        self.uploads: list[dict] = []  # {"kind": pipeline|version, "name":..., "yaml": text}
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> "FakeKFP":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)

    # ----------------------------------------------------------------------------------------
    @staticmethod
    def _filter_name(query: dict) -> str | None:
        raw = query.get("filter", [None])[0]
        if not raw:
            return None
        for pred in json.loads(raw).get("predicates", []):
            if pred.get("key") in ("display_name", "name"):
                return pred.get("stringValue") or pred.get("string_value")
        return None

    def _new_version(self, pipeline_id: str, name: str, yaml_text: str) -> dict:
        ver = {"pipeline_id": pipeline_id, "pipeline_version_id": uuid.uuid4().hex, "display_name": name,
               "name": name, "created_at": NOW}
        self.versions.setdefault(pipeline_id, []).insert(0, ver)
        return ver

    def handle(self, method: str, path: str, query: dict, body: bytes, headers) -> tuple[int, dict]:
        self.requests.append((method, path))
        if not path.startswith(PREFIX):
            return 404, {"error": "not found"}
        path = path[len(PREFIX):]
        if method == "GET" and path == "/healthz":
            return 200, {"multi_user": False, "commit_sha": "fake", "tag_name": "2.4.0-fake"}
        if method == "GET" and path == "/pipelines":
            name = self._filter_name(query)
            found = [p for p in self.pipelines.values() if name is None or p["display_name"] == name]
            return 200, ({"pipelines": found, "total_size": len(found)} if found else {})
        if method == "POST" and path in ("/pipelines/upload", "/pipelines/upload_version"):
            msg = BytesParser(policy=email_policy).parsebytes(
                b"Content-Type: " + headers["Content-Type"].encode() + b"\r\n\r\n" + body)
            parts = [p for p in msg.iter_parts() if p.get_param("name", header="content-disposition") == "uploadfile"]
            if not parts:
                return 400, {"error": "no uploadfile part"}
            text = parts[0].get_payload(decode=True).decode("utf-8")
            name = query.get("name", [None])[0] or query.get("display_name", [None])[0]
            if path.endswith("upload"):
                pid = uuid.uuid4().hex
                pipe = {"pipeline_id": pid, "display_name": name, "name": name, "created_at": NOW}
                self.pipelines[pid] = pipe
                self._new_version(pid, name, text)
                self.uploads.append({"kind": "pipeline", "name": name, "yaml": text})
                return 200, pipe
            pid = query.get("pipelineid", [None])[0]
            if pid not in self.pipelines:
                return 404, {"error": f"pipeline {pid} not found"}
            self.uploads.append({"kind": "version", "name": name, "yaml": text})
            return 200, self._new_version(pid, name, text)
        if method == "GET" and path.startswith("/pipelines/") and path.endswith("/versions"):
            pid = path.split("/")[2]
            vers = self.versions.get(pid, [])
            return 200, {"pipeline_versions": vers, "total_size": len(vers)}
        if method == "GET" and path == "/experiments":
            name = self._filter_name(query)
            found = [e for e in self.experiments.values() if name is None or e["display_name"] == name]
            return 200, ({"experiments": found, "total_size": len(found)} if found else {})
        if method == "POST" and path == "/experiments":
            data = json.loads(body or b"{}")
            eid = uuid.uuid4().hex
            exp = {"experiment_id": eid, "display_name": data.get("display_name"), "created_at": NOW,
                   "storage_state": "AVAILABLE"}
            self.experiments[eid] = exp
            return 200, exp
        if method == "POST" and path == "/runs":
            data = json.loads(body or b"{}")
            if data.get("experiment_id") not in self.experiments:
                return 400, {"error": "unknown experiment"}
            ref = data.get("pipeline_version_reference") or {}
            if ref and not any(v["pipeline_version_id"] == ref.get("pipeline_version_id")
                               for v in self.versions.get(ref.get("pipeline_id"), [])):
                return 400, {"error": "unknown pipeline version"}
            rid = uuid.uuid4().hex
            run = {**data, "run_id": rid, "state": "SUCCEEDED", "created_at": NOW, "finished_at": NOW}
            self.runs[rid] = run
            return 200, run
        if method == "GET" and path.startswith("/runs/"):
            rid = path.split("/")[2]
            return (200, self.runs[rid]) if rid in self.runs else (404, {"error": "no such run"})
        return 404, {"error": f"{method} {path} not implemented by the fake"}

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _do(self, method: str) -> None:
                url = urlparse(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                status, payload = fake.handle(method, url.path, parse_qs(url.query), body, self.headers)
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                self._do("GET")

            def do_POST(self):
                self._do("POST")

            def log_message(self, *args):
                pass

        return Handler
