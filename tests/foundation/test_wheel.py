"""The wheel works outside the checkout, as a non-root user, and the images' install and entrypoint steps work.

The wheel is built from this checkout and installed (not editable) into a fresh venv of Debian's Python, in a
folder outside the checkout. Its third-party dependencies come from the development venv through a ``.pth``
view that leaves this project out, so nothing is downloaded and nothing of the checkout is importable. Commands
run as another user (root creates one) with no ``LATXA_HOME``, from a folder of their own.

No container engine runs here, so each Dockerfile's steps are replayed instead: the wheel install with the
Dockerfile's own extra (``pip install --no-index``: every requirement must be met) and the runtime stage's
``CMD`` as the stage's ``USER`` with its ``ENV`` (paths that name the cluster's mounts are replaced by test
folders, and servers bind 127.0.0.1).
"""

from __future__ import annotations

import json
import os
import pwd
import re
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from latxa.net import free_port

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
IMAGES = REPO / "k8s" / "images"
PYTHON = Path("/usr/bin/python3.11")
OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "RAY_USAGE_STATS_ENABLED": "0", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "TOKENIZERS_PARALLELISM": "false",
           "MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING": "false", "REFLEX_TELEMETRY_ENABLED": "false"}


@dataclass
class User:
    uid: int
    gid: int
    name: str
    home: Path
    ray_tmp: Path   # short: Ray's socket paths must stay under 107 bytes


@dataclass
class Installed:
    root: Path
    venv: Path
    wheel: Path

    def bin(self, name: str) -> str:
        return str(self.venv / "bin" / name)


def _user(name: str, uid: int | None, root: Path) -> User:
    """A user other than root to run as (created when this process is root), with a fresh home under ``root``."""
    home = Path(tempfile.mkdtemp(prefix=f"home-{name}-", dir=root))
    home.chmod(0o755)
    ray_tmp = Path(tempfile.mkdtemp(prefix="lr", dir=root))
    if os.geteuid() != 0:  # not root: run as ourselves, still without LATXA_HOME and outside the checkout
        me = pwd.getpwuid(os.geteuid())
        return User(me.pw_uid, me.pw_gid, me.pw_name, home, ray_tmp)
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        cmd = ["useradd", "--no-create-home", "--home-dir", str(home), "--shell", "/bin/sh", "--user-group", name]
        if uid is not None:
            cmd[1:1] = ["--uid", str(uid)]
        subprocess.run(cmd, check=True, capture_output=True)
        entry = pwd.getpwnam(name)
    for path in (home, ray_tmp):
        os.chown(path, entry.pw_uid, entry.pw_gid)
    return User(entry.pw_uid, entry.pw_gid, name, home, ray_tmp)


def _env(user: User, **extra: str) -> dict[str, str]:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(user.home), "USER": user.name, "LOGNAME": user.name, "LANG": "C.UTF-8",
           **OFFLINE, **extra}
    env["RAY_TMPDIR"] = str(user.ray_tmp)  # not the shared /tmp/ray of root's tests
    return env


def _run(user: User, argv: list[str], *, cwd: Path, env: dict, timeout: float = 600) -> subprocess.CompletedProcess:
    kw = {"user": user.uid, "group": user.gid, "extra_groups": []} if os.geteuid() == 0 else {}
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, **kw)


def _popen(user: User, argv: list[str], *, cwd: Path, env: dict, log: Path) -> subprocess.Popen:
    kw = {"user": user.uid, "group": user.gid, "extra_groups": []} if os.geteuid() == 0 else {}
    fh = log.open("w")
    return subprocess.Popen(argv, cwd=cwd, env=env, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True, **kw)


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)  # background processes ignore SIGINT
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)


def _wait_http(url: str, proc: subprocess.Popen, log: Path, timeout: float = 240) -> bytes:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"{url}: the server exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                return r.read()
        except OSError:
            time.sleep(1)
    pytest.fail(f"{url} did not answer in {timeout} s:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def installed() -> Installed:
    if not PYTHON.is_file():
        pytest.skip(f"{PYTHON} (Debian's python3.11) is needed to build a venv another user can run")
    root = Path(tempfile.mkdtemp(prefix="lw", dir="/tmp"))
    root.chmod(0o755)
    wheels = root / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheels), str(REPO)],
                   check=True, capture_output=True, timeout=300)
    (wheel,) = wheels.glob("latxa_mlops-*.whl")
    venv = root / "venv"
    subprocess.run([str(PYTHON), "-m", "venv", str(venv)], check=True, capture_output=True, timeout=120)
    # the venv's own old setuptools would shadow the development venv's (torch requires a newer one)
    subprocess.run([str(venv / "bin" / "pip"), "uninstall", "-y", "-q", "setuptools"], check=True, capture_output=True)
    # the development venv's packages, this project left out (no editable finder, no metadata of ours)
    deps = root / "deps"
    deps.mkdir()
    dev_site = Path(sysconfig.get_paths()["purelib"])
    for entry in dev_site.iterdir():
        if entry.name.startswith(("latxa", "__editable__", "_latxa")) or entry.suffix == ".pth":
            continue
        (deps / entry.name).symlink_to(entry)
    (venv / "lib" / "python3.11" / "site-packages" / "_latxa_test_deps.pth").write_text(f"{deps}\n")
    res = subprocess.run([str(venv / "bin" / "pip"), "install", "--no-deps", "--no-index", "-q", str(wheel)],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    yield Installed(root, venv, wheel)
    shutil.rmtree(root, ignore_errors=True)


def test_the_wheel_has_one_import_root_and_its_package_data(installed):
    import zipfile

    with zipfile.ZipFile(installed.wheel) as zf:
        names = zf.namelist()
        (top,) = [n for n in names if n.endswith(".dist-info/top_level.txt")]
        assert zf.read(top).decode().split() == ["latxa"]
    assert {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")} == {"latxa"}
    for data in ("latxa/sample_data/instructions/eu.jsonl", "latxa/sample_data/NOTICE",
                 "latxa/components/configs/study.yaml", "latxa/components/configs/data/sample.yaml",
                 "latxa/components/templates/llama31_chat_template.jinja",
                 "latxa/components/eval/tasks/eu_mini/_eu_mini.yaml", "latxa/slurm/templates/ray_train.sbatch.j2",
                 "latxa/slurm/profiles/leonardo-8b.yaml", "latxa/slurm/local/up.sh",
                 "latxa/serving/arena/migrations/versions/0001_initial.py", "latxa/mlflow_config/local.env"):
        assert data in names, data
    assert not any(n.startswith("latxa/mlflow/") for n in names)  # never an importable `mlflow`


def test_the_installed_wheel_runs_outside_the_checkout_as_another_user(installed):
    user = _user("latxa-wheel", None, installed.root)
    work = installed.root / "work"
    work.mkdir()
    os.chown(work, user.uid, user.gid)
    # a Kubeflow user's own components/ and pipelines/ folders on the path must not clash with ours
    for pkg in ("components", "pipelines", "serving"):
        (work / pkg).mkdir()
        (work / pkg / "__init__.py").write_text("MINE = True\n")
    env = _env(user, PYTHONPATH=str(work))
    probe = ("import json, latxa, latxa.components.registry, latxa.paths as p, components; "
             "print(json.dumps([latxa.__file__, components.MINE, str(p.state_dir()), str(p.CHECKOUT)]))")
    res = _run(user, [installed.bin("python"), "-c", probe], cwd=work, env=env)
    assert res.returncode == 0, res.stderr
    where, mine, state, checkout = json.loads(res.stdout)
    assert where.startswith(str(installed.venv)) and mine is True and checkout == "None"
    assert state == str(user.home / ".cache" / "latxa")   # no LATXA_HOME, no checkout: the user's cache folder

    steps = [(["model", "tiny"], 300), (["data", "prepare", "--variant", "exp_2_101", "--quiet"], 600),
             (["pipeline", "compile"], 300)]
    for args, timeout in steps:
        res = _run(user, [installed.bin("latxa"), *args], cwd=work, env=env, timeout=timeout)
        assert res.returncode == 0, f"latxa {' '.join(args)}: {res.stdout}\n{res.stderr}"
        assert "Traceback" not in res.stderr
    state = Path(state)
    assert (state / "models" / "tiny" / "config.json").is_file()
    stats = json.loads((state / "data" / "exp_2_101" / "stats.json").read_text())
    assert stats["read"] == stats["written"] + stats["skipped"] and stats["rows"] > 0
    compiled = sorted((state / "pipelines").glob("*.yaml"))
    assert len(compiled) == 4
    text = compiled[0].read_text()
    assert "from latxa.pipelines import steps_impl" in text and "from pipelines" not in text

    port = free_port()
    log = installed.root / "arena.log"
    proc = _popen(user, [installed.bin("latxa"), "arena", "serve", "--port", str(port)], cwd=work, env=env, log=log)
    try:
        health = json.loads(_wait_http(f"http://127.0.0.1:{port}/api/health", proc, log))
        assert health.get("status") == "ok" or health, health
    finally:
        _stop(proc)
    assert (state / "arena" / "arena.db").is_file()


def _dockerfile(name: str) -> dict:
    """The runtime-relevant parts of a Dockerfile: the wheel extra it installs, and its last stage's ENV, USER,
    WORKDIR and CMD."""
    text = (IMAGES / name).read_text().replace("\\\n", " ")
    stages = re.split(r"^FROM\s+", text, flags=re.M)[1:]
    last = stages[-1]
    extra = re.search(r'latxa_mlops-\*\.whl\)\[(\w+)\]', text)
    env: dict[str, str] = {}
    for line in re.findall(r"^ENV\s+(.+)$", last, flags=re.M):
        for k, v in re.findall(r'(\w+)=("[^"]*"|\S+)', line):
            env[k] = v.strip('"')
    user = re.findall(r"^USER\s+(\S+)", last, flags=re.M)
    cmd = re.findall(r"^CMD\s+(\[.*\])", last, flags=re.M)
    workdir = re.findall(r"^WORKDIR\s+(\S+)", last, flags=re.M)
    return {"extra": extra.group(1) if extra else None, "env": env, "user": user[-1] if user else None,
            "cmd": json.loads(cmd[-1]) if cmd else None, "workdir": workdir[-1] if workdir else None}


def _image_user(spec: dict, root: Path) -> User:
    uid = int(spec["user"].split(":")[0])
    assert uid != 0, "the image runs as root"
    return _user("latxa", uid, root)


def test_components_image_install_and_entrypoint(installed):
    spec = _dockerfile("components.Dockerfile")
    assert spec["extra"] == "pipelines" and spec["cmd"] == ["latxa", "--help"]
    res = subprocess.run([installed.bin("pip"), "install", "--no-index", "-q", f"{installed.wheel}[{spec['extra']}]"],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr   # every requirement of the extra is met, nothing downloaded
    user = _image_user(spec, installed.root)
    env = _env(user, **{k: v for k, v in spec["env"].items() if k not in ("PATH", "HOME")})
    res = _run(user, [installed.bin(spec["cmd"][0]), *spec["cmd"][1:]], cwd=user.home, env=env)
    assert res.returncode == 0 and "pipeline" in res.stdout, res.stderr
    # what the KFP steps, the training RayJob and the RayService init container run in this image
    for args in (["variants", "show", "exp_2_101"], ["model", "tiny", "--out", str(user.home / "models" / "tiny-a")],
                 ["slurm", "render", "--variant", "exp_2_101", "--profile", "leonardo-8b"]):
        res = _run(user, [installed.bin("latxa"), *args], cwd=user.home, env=env)
        assert res.returncode == 0, f"latxa {' '.join(args)}: {res.stderr}"


def test_serving_image_install_and_entrypoint(installed):
    spec = _dockerfile("serving.Dockerfile")
    assert spec["extra"] == "serve" and spec["cmd"][:2] == ["latxa", "serve"]
    res = subprocess.run([installed.bin("pip"), "install", "--no-index", "-q", f"{installed.wheel}[{spec['extra']}]"],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    user = _image_user(spec, installed.root)
    env = _env(user, **{k: v for k, v in spec["env"].items() if k not in ("PATH", "HOME")})
    models = user.home / "models"
    for seed, name in ((33, "tiny-a"), (34, "tiny-b")):   # as the RayService init container does
        res = _run(user, [installed.bin("latxa"), "model", "tiny", "--out", str(models / name), "--seed", str(seed)],
                   cwd=user.home, env=env)
        assert res.returncode == 0, res.stderr
    config = user.home / "serve.yaml"
    config.write_text(f"models:\n  - {{name: tiny-a, path: {models / 'tiny-a'}}}\n"
                      f"  - {{name: tiny-b, path: {models / 'tiny-b'}}}\n"
                      f"arena:\n  database_url: sqlite:///{user.home / 'arena.db'}\n")
    os.chown(config, user.uid, user.gid)
    probe = ("from latxa.serving.rayservice import build_app; from ray.serve import Application; "
             f"assert isinstance(build_app({{'config': '{config}'}}), Application)")
    res = _run(user, [installed.bin("python"), "-c", probe], cwd=user.home, env=env)
    assert res.returncode == 0, res.stderr     # the RayService import_path works in this image
    port = free_port()
    cmd = [installed.bin("latxa"), *spec["cmd"][1:], "--port", str(port)]
    cmd[cmd.index("/etc/latxa/serve.yaml")] = str(config)      # the ConfigMap mount
    cmd[cmd.index("0.0.0.0")] = "127.0.0.1"                    # loopback only here
    log = installed.root / "serve.log"
    proc = _popen(user, cmd, cwd=user.home, env=env, log=log)
    try:
        body = json.loads(_wait_http(f"http://127.0.0.1:{port}/v1/models", proc, log, timeout=400))
        assert {m["id"] for m in body["data"]} >= {"tiny-a", "tiny-b"}
    finally:
        _stop(proc)


def test_arena_ui_backend_image_entrypoint(installed):
    """The UI image installs Reflex (not the wheel) and copies arena_ui/: its backend stage's CMD, as its USER."""
    text = (IMAGES / "arena-ui.Dockerfile").read_text()
    backend = re.split(r"^FROM\s+", text, flags=re.M)
    (stage,) = [s for s in backend if s.split("\n", 1)[0].strip().endswith("AS backend")]
    user_spec = re.findall(r"^USER\s+(\S+)", stage, flags=re.M)[-1]
    cmd = json.loads(re.findall(r"^CMD\s+(\[.*\])", stage, flags=re.M)[-1])
    assert cmd[:2] == ["reflex", "run"] and "--backend-only" in cmd
    user = _image_user({"user": user_spec}, installed.root)
    app = user.home / "app" / "arena_ui"
    shutil.copytree(REPO / "arena_ui", app, ignore=shutil.ignore_patterns(".web", "__pycache__"))
    subprocess.run(["chown", "-R", f"{user.uid}:{user.gid}", str(user.home / "app")], check=True)
    port = free_port()
    argv = [installed.bin("python"), "-m", "reflex", *cmd[1:]]
    argv[argv.index("0.0.0.0")] = "127.0.0.1"
    argv[argv.index("--backend-port") + 1] = str(port)
    env = _env(user, REFLEX_TELEMETRY_ENABLED="false", PYTHONUNBUFFERED="1", REFLEX_CHECK_LATEST_VERSION="0")
    log = installed.root / "ui-backend.log"
    proc = _popen(user, argv, cwd=app, env=env, log=log)
    try:
        assert json.loads(_wait_http(f"http://127.0.0.1:{port}/ping", proc, log)) == "pong"
    finally:
        _stop(proc)
