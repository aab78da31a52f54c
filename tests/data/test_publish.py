"""Issue 18, finding 6: `latxa train publish DIR host:path` quotes the remote path the way the SLURM transport does.

An ssh stand-in on PATH runs what it receives with `sh -c` in a folder that plays the remote home, as a real
sshd would hand the command line to the login shell; rsync reaches it through the same stand-in.
"""

from __future__ import annotations

import shutil

import pytest

from latxa.components.train.export import write_checksums
from latxa.components.train.publish import PublishError, publish

SSH_STAND_IN = r"""#!/bin/bash
# Skip ssh's options, take the host, then run the rest as the remote login shell would: joined by spaces.
while [ $# -gt 0 ]; do
  case "$1" in
    -[bcDEeFIiJLlmOopQRSWw]) shift 2 ;;
    --) shift; break ;;
    -*) shift ;;
    *) break ;;
  esac
done
echo "$1" >> "$SSH_LOG.hosts"
shift
[ "${1:-}" = "--" ] && shift
printf '%s\n' "$*" >> "$SSH_LOG"
cd "$FAKE_REMOTE_HOME" && exec sh -c "$*"
"""


@pytest.fixture
def remote(tmp_path, monkeypatch):
    if not shutil.which("rsync") or not shutil.which("sha256sum"):
        pytest.fail("rsync and sha256sum are needed (scripts/sysdeps.sh installs rsync)")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "ssh").write_text(SSH_STAND_IN)
    (bin_dir / "ssh").chmod(0o755)
    home = tmp_path / "remote-home"
    home.mkdir()
    monkeypatch.setenv("PATH", f"{bin_dir}:{shutil.os.environ['PATH']}")
    monkeypatch.setenv("FAKE_REMOTE_HOME", str(home))
    monkeypatch.setenv("SSH_LOG", str(tmp_path / "ssh.log"))
    return home


@pytest.fixture
def model(tmp_path):
    src = tmp_path / "model"
    src.mkdir()
    (src / "config.json").write_text("{}")
    (src / "model.safetensors").write_bytes(b"\x00" * 1000)
    write_checksums(src)
    return src


@pytest.mark.parametrize("weird", ["$(touch pwned1)y", "`touch pwned2`; touch pwned3", "it's a name with spaces"])
def test_remote_path_with_shell_syntax_stays_literal(weird, remote, model):
    parent = remote / "srv"
    parent.mkdir()
    info = publish(model, f"login.example.org:{parent}/{weird}")
    assert info["verified"] and info["files"] == 2
    assert not list(remote.rglob("pwned*"))  # the commands ran nowhere (the stand-in's cwd is the remote home)
    assert sorted(p.name for p in (parent / weird).iterdir()) == ["SHA256SUMS", "config.json", "model.safetensors"]


def test_relative_and_home_paths_land_in_the_remote_home(remote, model):
    publish(model, "me@login.example.org:models/a b")
    assert (remote / "models" / "a b" / "config.json").is_file()
    publish(model, "login.example.org:~/models/c")
    assert (remote / "models" / "c" / "SHA256SUMS").is_file()


def test_a_bad_copy_is_reported(remote, model, tmp_path, monkeypatch):
    # a remote sha256sum that always disagrees stands in for a corrupted transfer
    fake = tmp_path / "bin" / "sha256sum"
    fake.write_text("#!/bin/sh\necho 'model.safetensors: FAILED'\nexit 1\n")
    fake.chmod(0o755)
    with pytest.raises(PublishError, match="does not match its checksums"):
        publish(model, "login.example.org:m")


@pytest.mark.parametrize("dest, why", [("-oProxyCommand=touch:x", "not a host name"),
                                       ("login.example.org:a\nb", "newline"), ("login.example.org:", "empty")])
def test_unusable_remote_destinations_are_one_sentence(dest, why, remote, model):
    with pytest.raises(PublishError, match=why):
        publish(model, dest)


def test_a_failed_transfer_is_one_sentence(remote, model):
    (remote / "ro").write_text("a file where the folder should be")
    with pytest.raises(PublishError, match=r"failed to (create|copy to) login.example.org:ro/model"):
        publish(model, "login.example.org:ro/model")


def test_local_destination_that_is_a_file_is_refused(model, tmp_path):
    f = tmp_path / "file"
    f.write_text("keep")
    with pytest.raises(PublishError, match="is a file"):
        publish(model, str(f), overwrite=True)
    assert f.read_text() == "keep"
