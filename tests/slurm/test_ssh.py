"""The SSH transport for real: a local OpenSSH server on 127.0.0.1 (generated host and user keys) stands in for
Leonardo's login node; the same bridge code submits, stages files (rsync over ssh), waits and reads logs."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from latxa.net import free_port
from latxa.slurm.bridge import SlurmBridge
from latxa.slurm.errors import SlurmError
from latxa.slurm.profiles import TransportConfig, load_profile
from latxa.slurm.render import render_command

pytestmark = pytest.mark.slurm
SSHD = shutil.which("sshd") or "/usr/sbin/sshd"


@pytest.fixture(scope="module")
def sshd(tmp_path_factory):
    if not Path(SSHD).exists() or not shutil.which("ssh") or not shutil.which("rsync"):
        pytest.fail("openssh-server, openssh-client and rsync are needed (scripts/sysdeps.sh installs them)")
    d = tmp_path_factory.mktemp("sshd")
    for key in ("host", "user", "other"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(d / key)], check=True)
    (d / "authorized_keys").write_text((d / "user.pub").read_text())
    (d / "authorized_keys").chmod(0o600)
    port = free_port()
    (d / "sshd_config").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {d / 'host'}\nAuthorizedKeysFile {d / 'authorized_keys'}\n"
        "PermitRootLogin prohibit-password\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
        f"UsePAM no\nStrictModes no\nPidFile {d / 'sshd.pid'}\n")
    if os.geteuid() == 0:
        Path("/run/sshd").mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen([SSHD, "-D", "-f", str(d / "sshd_config"), "-E", str(d / "sshd.log")])
    (d / "known_hosts").write_text(f"[127.0.0.1]:{port} {(d / 'host.pub').read_text()}")
    (d / "wrong_known_hosts").write_text(f"[127.0.0.1]:{port} {(d / 'other.pub').read_text()}")
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.2)
    yield {"dir": d, "port": port}
    proc.terminate()
    proc.wait(timeout=10)


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
