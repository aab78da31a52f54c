"""Benchmark the SLURM bridge on the local cluster: what each operation costs, local vs SSH transport.

    make slurm-up && .venv/bin/python benchmarks/slurm_bridge.py --jobs 10

Baseline (same run): the bare SLURM client commands (`sbatch --parsable`, `squeue --json`) run directly with
subprocess. Reported as ratios: bridge submit (stage script + sbatch + record) / bare sbatch, bridge status /
bare squeue --json, the same over SSH (a local sshd on 127.0.0.1, like tests/slurm/test_ssh.py) / local, and
the submit -> COMPLETED latency of a trivial job through `wait` (poll 0.2 s) against the job's own run time.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tqdm import tqdm  # noqa: E402


def timed(fn, n: int, desc: str) -> list[float]:
    out = []
    for _ in tqdm(range(n), desc=desc, leave=False):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def start_sshd(d: Path) -> tuple[subprocess.Popen, int]:
    for key in ("host", "user"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(d / key)], check=True)
    (d / "authorized_keys").write_text((d / "user.pub").read_text())
    (d / "authorized_keys").chmod(0o600)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    (d / "sshd_config").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {d / 'host'}\nAuthorizedKeysFile {d / 'authorized_keys'}\n"
        "PermitRootLogin prohibit-password\nPasswordAuthentication no\nUsePAM no\nStrictModes no\n"
        f"PidFile {d / 'sshd.pid'}\n")
    (d / "known_hosts").write_text(f"[127.0.0.1]:{port} {(d / 'host.pub').read_text()}")
    Path("/run/sshd").mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen([shutil.which("sshd") or "/usr/sbin/sshd", "-D", "-f", str(d / "sshd_config")])
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.1)
    return proc, port


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=10, help="jobs per measurement")
    args = ap.parse_args()
    from latxa.slurm.bridge import SlurmBridge
    from latxa.slurm.profiles import TransportConfig, load_profile
    from latxa.slurm.render import render_command

    work = Path(tempfile.mkdtemp(prefix="slurm-bench-"))
    os.environ.setdefault("LATXA_HOME", str(work / "home"))
    prof = load_profile("local")
    env = {**os.environ, "SLURM_CONF": prof.slurm_conf_path}
    bridge = SlurmBridge(prof)
    job = render_command(prof, ["true"], name="bench", time="2")
    script = work / "bare.sbatch"
    script.write_text(job.script)
    (Path(prof.workdir_path) / "logs").mkdir(parents=True, exist_ok=True)
    n = args.jobs
    ids: list[str] = []

    bare_submit = timed(lambda: ids.append(subprocess.run(["sbatch", "--parsable", str(script)], env=env, check=True,
                                                          capture_output=True, text=True).stdout.strip()), n, "bare sbatch")
    bridge_submit = timed(lambda: ids.append(bridge.submit(job)), n, "bridge submit")
    bare_status = timed(lambda: subprocess.run(["squeue", "--json"], env=env, check=True, capture_output=True), n,
                        "bare squeue --json")
    bridge_status = timed(lambda: bridge.status(ids[-1]), n, "bridge status")

    sshd, port = start_sshd(work)
    try:
        ssh_prof = prof.model_copy(update={"transport": TransportConfig(
            kind="ssh", host="127.0.0.1", port=port, user=os.environ.get("USER") or "root",
            key_file=str(work / "user"), known_hosts=str(work / "known_hosts"))})
        ssh_bridge = SlurmBridge(ssh_prof)
        ssh_status = timed(lambda: ssh_bridge.status(ids[-1]), n, "ssh status")
        ssh_submit = timed(lambda: ids.append(ssh_bridge.submit(job)), n, "ssh submit")
    finally:
        sshd.terminate()
        sshd.wait(timeout=10)

    latency = []
    for _ in tqdm(range(min(n, 5)), desc="submit->COMPLETED", leave=False):
        t = time.perf_counter()
        jid = bridge.submit(job)
        bridge.wait(jid, poll=0.2, max_poll=0.2, timeout=120)
        latency.append(time.perf_counter() - t)
    for jid in ids[:n]:
        bridge.wait(jid, poll=0.2, timeout=120, raise_on_failure=False)

    med = statistics.median
    rows = [
        ("bridge submit / bare sbatch", med(bridge_submit), med(bare_submit)),
        ("bridge status / bare squeue --json", med(bridge_status), med(bare_status)),
        ("ssh status / local status", med(ssh_status), med(bridge_status)),
        ("ssh submit / local submit", med(ssh_submit), med(bridge_submit)),
    ]
    print(f"{'measure':40s} {'median s':>10s} {'baseline s':>11s} {'ratio':>7s}")
    for name, a, b in rows:
        print(f"{name:40s} {a:10.3f} {b:11.3f} {a / b:7.2f}")
    print(f"{'submit -> COMPLETED (trivial job, wait)':40s} {med(latency):10.3f}")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
