"""Safety: user values with $(...), backticks, ';' or newlines never run as commands.

Rejected where they would land on #SBATCH lines (job names, log folders), quoted everywhere else; the
quoted forms are executed for real (bash, the real cluster, a remote-shell command line) and must stay text.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from latxa.slurm import safety
from latxa.slurm.errors import UnsafeValueError
from latxa.slurm.profiles import TransportConfig, load_profile
from latxa.slurm.render import render_command, render_train
from latxa.slurm.transport import SSHTransport

EVIL = ["$(touch {m})", "`touch {m}`", "x; touch {m}", "a\ntouch {m}", "x && touch {m}", "$(touch${{IFS}}{m})"]


@pytest.mark.parametrize("template", EVIL)
def test_job_names_with_shell_syntax_are_rejected(template, tmp_path):
    name = template.format(m=tmp_path / "pwned")
    with pytest.raises(UnsafeValueError, match="Job name"):
        render_command(load_profile("local"), ["true"], name=name)
    with pytest.raises(UnsafeValueError):
        render_train(load_profile("local"), ["exp_2_101"], out="/tmp/x", name=name)


@pytest.mark.parametrize("value", ["/tmp/a b", "/tmp/$(id)", "/tmp/x\n#SBATCH --uid=0", "relative/logs", "/tmp/`id`"])
def test_sbatch_line_paths_are_strict(value):
    with pytest.raises(UnsafeValueError):
        safety.sbatch_path(value)
    with pytest.raises(UnsafeValueError):
        render_command(load_profile("local"), ["true"], name="ok", log_dir=value)


def test_newlines_are_rejected_in_any_value():
    for bad in ("/tmp/a\nrm -rf /", "x\ry", "a\x00b"):
        with pytest.raises(UnsafeValueError, match="newline or NUL"):
            render_train(load_profile("local"), ["exp_2_101"], out=bad)
        with pytest.raises(UnsafeValueError):
            render_command(load_profile("local"), ["echo", bad], name="ok")


@pytest.mark.parametrize("value", ["afterok:1;id", "afterok:$(id)", "afterok:1\n", "before:1"])
def test_dependency_and_ids_are_validated(value):
    with pytest.raises(UnsafeValueError):
        safety.dependency(value)
    for bad in ("12;id", "$(id)", "12 13", ""):
        with pytest.raises(UnsafeValueError):
            safety.job_id(bad)
    assert safety.dependency("afterok:12:13,afterany:14_2") == "afterok:12:13,afterany:14_2"


def _run_rendered(tmp_path: Path, script: str) -> tuple[subprocess.CompletedProcess, str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    stubs = {
        "scontrol": "#!/bin/bash\necho node1\n",
        "srun": "#!/bin/bash\nexec sleep 30\n",
        "python": '#!/bin/bash\n[ "$1" = -c ] && echo tok\nexit 0\n',
        "latxa": '#!/bin/bash\npython3 -c "import json,sys; print(json.dumps(sys.argv[1:]))" "$@" > "$ARGS_OUT"\n',
    }
    for name, body in stubs.items():
        (bin_dir / name).write_text(body)
        (bin_dir / name).chmod(0o755)
    args_out = tmp_path / "args.json"
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "ARGS_OUT": str(args_out), "SLURM_JOB_ID": "5", "SLURM_JOB_NAME": "t",
           "SLURM_JOB_NODELIST": "node1", "HOME": str(tmp_path)}
    res = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=60, env=env, cwd=tmp_path)
    return res, args_out.read_text() if args_out.exists() else ""


def test_training_arguments_stay_literal_when_the_script_runs(tmp_path):
    marker = tmp_path / "pwned"
    out = str(tmp_path / "o$(touch {m})`touch {m}`;touch {m}'q".format(m=marker))
    data = str(tmp_path / "d $(touch {m})".format(m=marker))
    prof = load_profile("local").model_copy(update={"python_env": None, "repo": None,
                                                    "env": {"EVIL": f"$(touch {marker})"}})
    job = render_train(prof, ["exp_2_101"], out=out, data=data, model=str(tmp_path / "m"),
                       train_args=[f"--tag=$(touch {marker})", "a;b"])
    res, args = _run_rendered(tmp_path, job.script)
    assert res.returncode == 0, res.stderr
    argv = json.loads(args)
    assert argv[argv.index("--out") + 1] == out
    assert argv[argv.index("--data") + 1] == data
    assert argv[-2:] == [f"--tag=$(touch {marker})", "a;b"]
    assert not marker.exists()


def test_ssh_remote_command_is_quoted_for_the_remote_shell(tmp_path):
    """The one string ssh hands to the remote shell: run it with sh, every argument must come back verbatim."""
    marker = tmp_path / "pwned"
    t = SSHTransport(TransportConfig(kind="ssh", host="login.example.org", port=2222, user="me",
                                     key_file=str(tmp_path / "k"), known_hosts=str(tmp_path / "kh")),
                     env={"SLURM_CONF": f"/etc/slurm $(touch {marker})/slurm.conf"})
    argv = [sys.executable, "-c", "import json,os,sys; print(json.dumps([sys.argv[1:], os.environ['SLURM_CONF']]))",
            f"$(touch {marker})", f"`touch {marker}`", "a; touch " + str(marker), "it's", "*"]
    line = t.remote_command(argv)
    res = subprocess.run(["sh", "-c", line], capture_output=True, text=True, cwd=tmp_path)
    got_args, got_conf = json.loads(res.stdout)
    assert got_args == argv[3:] and got_conf == f"/etc/slurm $(touch {marker})/slurm.conf"
    assert not marker.exists()
    full = t.ssh_argv(["squeue", "--json"])
    assert full[0] == "ssh" and "StrictHostKeyChecking=yes" in full and "BatchMode=yes" in full
    assert f"UserKnownHostsFile={tmp_path / 'kh'}" in full and full[full.index("-p") + 1] == "2222"
    assert full[-3:-1] == ["login.example.org", "--"]
    with pytest.raises(UnsafeValueError):
        t.remote_command(["echo", "a\nb"])


def test_ssh_host_key_checking_cannot_be_switched_off():
    with pytest.raises(ValidationError, match="host_key_checking"):
        TransportConfig(kind="ssh", host="h", host_key_checking="no")
    with pytest.raises(ValidationError, match="host"):
        TransportConfig(kind="ssh", host="h;id")
