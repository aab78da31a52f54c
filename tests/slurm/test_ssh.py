"""The SSH transport for real: a local OpenSSH server on 127.0.0.1 (generated host and user keys) stands in for
Leonardo's login node; the same bridge code submits, stages files (rsync over ssh), waits and reads logs."""

from __future__ import annotations

import base64
import os
import re
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from latxa.net import free_port
from latxa.slurm.bridge import SlurmBridge
from latxa.slurm.certs import check_certificate, validity
from latxa.slurm.errors import CertificateExpired, SlurmError
from latxa.slurm.profiles import TransportConfig, load_profile
from latxa.slurm.render import render_command

pytestmark = pytest.mark.slurm
SSHD = shutil.which("sshd") or "/usr/sbin/sshd"


class _Sshd:
    """A loopback sshd (generated host/user keys, and a user CA: the stand-in for CINECA's certificate authority)."""

    def __init__(self, d: Path):
        self.d = d
        for key in ("host", "user", "other", "ca"):
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(d / key)], check=True)
        (d / "authorized_keys").write_text((d / "user.pub").read_text())
        (d / "authorized_keys").chmod(0o600)
        self.port = free_port()
        (d / "sshd_config").write_text(
            f"Port {self.port}\nListenAddress 127.0.0.1\nHostKey {d / 'host'}\nAuthorizedKeysFile {d / 'authorized_keys'}\n"
            f"TrustedUserCAKeys {d / 'ca.pub'}\n"
            "PermitRootLogin prohibit-password\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
            f"UsePAM no\nStrictModes no\nPidFile {d / 'sshd.pid'}\n")
        if os.geteuid() == 0:
            Path("/run/sshd").mkdir(parents=True, exist_ok=True)
        (d / "known_hosts").write_text(f"[127.0.0.1]:{self.port} {(d / 'host.pub').read_text()}")
        (d / "wrong_known_hosts").write_text(f"[127.0.0.1]:{self.port} {(d / 'other.pub').read_text()}")
        self.proc = None
        self.start()

    def start(self) -> None:
        self.proc = subprocess.Popen([SSHD, "-D", "-f", str(self.d / "sshd_config"), "-E", str(self.d / "sshd.log")])
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.2)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)

    def __getitem__(self, key):   # the dict interface older tests use
        return {"dir": self.d, "port": self.port}[key]


@pytest.fixture(scope="module")
def sshd(tmp_path_factory):
    if not Path(SSHD).exists() or not shutil.which("ssh") or not shutil.which("rsync"):
        pytest.fail("openssh-server, openssh-client and rsync are needed (scripts/sysdeps.sh installs them)")
    server = _Sshd(tmp_path_factory.mktemp("sshd"))
    yield server
    server.stop()


def _profile(sshd, known_hosts: str = "known_hosts"):
    d = sshd["dir"]
    transport = TransportConfig(kind="ssh", host="127.0.0.1", port=sshd["port"], user=os.environ.get("USER") or "root",
                                key_file=str(d / "user"), known_hosts=str(d / known_hosts))
    return load_profile("local").model_copy(update={"transport": transport})


def test_submit_stage_wait_and_logs_over_ssh(sshd, slurm_cluster, latxa_home, tmp_path):
    bridge = SlurmBridge(_profile(sshd))
    assert type(bridge.transport).__name__ == "SSHTransport"
    staged = tmp_path / "input.txt"
    staged.write_text("kaixo from the laptop\n")
    job = render_command(bridge.profile, ["bash", "-c", 'cat "$LATXA_JOB_DIR/input.txt"; echo "conf=$SLURM_CONF"'],
                         name="over-ssh", time="2")
    job_id = bridge.submit(job, stage={"input.txt": staged})
    st = bridge.wait(job_id, timeout=120, poll=0.3)
    assert st.state == "COMPLETED" and st.source in ("squeue", "scontrol")
    log = bridge.logs(job_id)
    assert "kaixo from the laptop" in log and f"conf={slurm_cluster / 'slurm.conf'}" in log
    # the login node really was reached over ssh (the server logged our key), over one shared connection
    assert "Accepted publickey" in (sshd["dir"] / "sshd.log").read_text()
    assert (sshd["dir"] / "sshd.log").read_text().count("Accepted publickey") == 1
    bridge.transport.close()


def test_unknown_host_key_is_refused(sshd, slurm_cluster, latxa_home):
    bridge = SlurmBridge(_profile(sshd, "wrong_known_hosts"))
    with pytest.raises(SlurmError, match="ssh to .* failed: .*(Host key verification failed|REMOTE HOST IDENTIFICATION)"):
        bridge.status("1")
    bridge.transport.close()


# ---------------------------------------------------------------------------------------------------------------
# Short-lived certificates (CINECA: 12 h from smallstep) and dropped connections
# ---------------------------------------------------------------------------------------------------------------
SIGN = """#!/bin/bash
# stand-in for `step ssh certificate IDENTITY KEYFILE --provisioner cineca-hpc`: a fresh key signed by the test CA
set -e
[ -f "$2" ] || ssh-keygen -q -t ed25519 -N "" -f "$2"
ssh-keygen -q -s "$CA" -I "$1" -n "$CERT_USER" -V "${VALIDITY:-+12h}" "$2.pub"
"""


def _cert_profile(sshd, tmp_path) -> Path:
    sign = tmp_path / "sign.sh"
    sign.write_text(SIGN)
    prof = tmp_path / "leo.yaml"
    prof.write_text(
        "study_profile: local\nslurm_conf: \"{slurm_dir}/slurm.conf\"\npartition: debug\ncpus_per_task: 1\n"
        "python_env: auto\nsacct_completion: true\ntransport:\n  kind: ssh\n  host: 127.0.0.1\n"
        f"  port: {sshd.port}\n  user: {os.environ.get('USER') or 'root'}\n  key_file: {tmp_path / 'leonardo'}\n"
        f"  known_hosts: {sshd.d / 'known_hosts'}\n  retries: 20\n  retry_delay_s: 0.5\n"
        f"  login_command: [bash, {sign}, '{{identity}}', '{{key_file}}']\n")
    return prof


def test_certificate_login_secret_and_expiry(sshd, slurm_cluster, latxa_home, tmp_path, cli):
    prof = _cert_profile(sshd, tmp_path)
    env = {"CA": str(sshd.d / "ca"), "CERT_USER": os.environ.get("USER") or "root"}
    res = cli("slurm", "login", "--profile", str(prof), "--identity", "ikerlari@ehu.eus", "--secret-out",
              str(tmp_path / "secret.yaml"), "--namespace", "kubeflow", env=env)
    assert res.returncode == 0, res.stderr
    assert re.search(r"valid until .* \((11\.9|12\.0) h left\)", res.stdout), res.stdout
    # the Secret the Kubeflow SLURM steps mount: key, certificate and known_hosts under the names the profile uses
    import yaml

    secret = yaml.safe_load((tmp_path / "secret.yaml").read_text())
    assert (tmp_path / "secret.yaml").stat().st_mode & 0o777 == 0o600
    assert secret["kind"] == "Secret" and secret["metadata"] == {
        "name": "latxa-slurm-ssh", "namespace": "kubeflow", "labels": {"app.kubernetes.io/part-of": "latxa-mlops"},
        "annotations": {"latxa.eus/certificate-valid-until": secret["metadata"]["annotations"][
            "latxa.eus/certificate-valid-until"]}}
    for name, path in (("leonardo", tmp_path / "leonardo"), ("leonardo-cert.pub", tmp_path / "leonardo-cert.pub"),
                       ("known_hosts", sshd.d / "known_hosts")):
        assert base64.b64decode(secret["data"][name]) == path.read_bytes()
    # the certificate (not an authorized key: this key is in no authorized_keys file) logs in
    res = cli("slurm", "status", "999999", "--profile", str(prof))
    assert res.returncode == 2 and "unknown to SLURM" in res.stderr, res.stderr
    assert 'Accepted publickey' in (sshd.d / "sshd.log").read_text() and "ID ikerlari@ehu.eus" in (sshd.d / "sshd.log").read_text()
    # an expired certificate: one sentence naming the fix, before ssh even tries
    res = cli("slurm", "login", "--profile", str(prof), "--identity", "ikerlari@ehu.eus",
              env={**env, "VALIDITY": "20200101:20200102"})
    assert res.returncode == 2 and "expired at 2020-01-02" in res.stderr
    res = cli("slurm", "status", "1", "--profile", str(prof))
    assert res.returncode == 2 and res.stderr.startswith("error: The SSH certificate") and "latxa slurm login" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    res = cli("slurm", "login", "--profile", str(prof), "--check")
    assert res.returncode == 2 and "expired" in res.stderr


def test_wait_rides_out_a_dropped_connection(sshd, slurm_cluster, latxa_home, tmp_path):
    """The login node drops the connection mid-wait (sshd stopped, then back): wait retries and follows the job."""
    prof = load_profile("local").model_copy(update={"transport": TransportConfig(
        kind="ssh", host="127.0.0.1", port=sshd.port, user=os.environ.get("USER") or "root",
        key_file=str(sshd.d / "user"), known_hosts=str(sshd.d / "known_hosts"), retries=30, retry_delay_s=0.5)})
    bridge = SlurmBridge(prof)
    job = bridge.submit(render_command(prof, ["bash", "-c", "sleep 8; echo survived"], name="drop-test", time="2"))
    seen: list[str] = []
    import threading

    result: dict = {}
    t = threading.Thread(target=lambda: result.update(st=bridge.wait(job, timeout=120, poll=0.3, max_poll=1.0,
                                                                     on_update=lambda s: seen.append(s.state))))
    t.start()
    time.sleep(2)
    sshd.stop()
    bridge.transport.close()          # the shared connection goes down with the server
    time.sleep(3)
    sshd.start()
    t.join(timeout=120)
    assert result["st"].state == "COMPLETED" and "survived" in bridge.logs(job)
    bridge.transport.close()


def test_certificate_checks_without_a_server(tmp_path):
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "ca")], check=True)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "k")], check=True)
    subprocess.run(["ssh-keygen", "-q", "-s", str(tmp_path / "ca"), "-I", "me", "-V", "+1h", str(tmp_path / "k.pub")],
                   check=True)
    v = check_certificate(tmp_path / "k-cert.pub", "leonardo")
    assert 0.9 < v.remaining().total_seconds() / 3600 <= 1.0
    with pytest.raises(CertificateExpired, match="does not exist"):
        check_certificate(tmp_path / "nope-cert.pub", "leonardo")
    with pytest.raises(SlurmError, match="is not an SSH certificate"):
        validity(tmp_path / "k.pub")
