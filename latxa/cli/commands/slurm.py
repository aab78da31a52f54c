"""`latxa slurm render|submit|status|logs|cancel|wait`: the SLURM bridge (Leonardo, or the local test cluster)."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated, List, Optional

import typer

from latxa.cli.commands._common import OutputFormat, emit_json, example

_PROFILE_HELP = "Cluster profile: local, leonardo, leonardo-8b, leonardo-70b, or a YAML file."

# The job options `render` and `submit` share (submit adds --dependency and --format), declared once.
_Variants = Annotated[Optional[List[str]], typer.Option("--variant", "-v", help="Variant code; repeat or comma-separate for a job array.")]
_Profile = Annotated[str, typer.Option("--profile", "-p", help=_PROFILE_HELP)]
_StudyProfile = Annotated[Optional[str], typer.Option("--study-profile", help="Study profile to train with (default: the cluster profile's).")]
_Out = Annotated[Optional[str], typer.Option("--out", help="Output folder on the cluster (one sub-folder per variant for arrays).")]
_Data = Annotated[Optional[str], typer.Option("--data", help="Packed data folder on the cluster (default: prepare it inside the job).")]
_Model = Annotated[Optional[str], typer.Option("--model", help="Base model: folder or HF name[@revision], resolved "
                                               "offline from HF_HOME in the job (default: the profile's backbone for "
                                               "each variant; the tiny model on CPU profiles without backbones).")]
_Name = Annotated[Optional[str], typer.Option("--name", help="Job name (letters, digits, . _ -).")]
_Time = Annotated[Optional[str], typer.Option("--time", help="Time limit, e.g. 24:00:00 (default: the profile's).")]
_TrainArgs = Annotated[Optional[List[str]], typer.Option("--train-arg", help="Extra argument for latxa train (repeat), e.g. --train-arg=--max-steps=20.")]
_Array = Annotated[Optional[str], typer.Option("--array", help="Array spec for a command job, e.g. 0-3.")]
_MaxParallel = Annotated[Optional[int], typer.Option("--max-parallel", help="At most this many array tasks at once.")]
_Config = Annotated[Optional[Path], typer.Option("--config", help="Study YAML to stage with the job and pass to latxa train.")]
_Env = Annotated[Optional[List[str]], typer.Option("--env", help="NAME=VALUE exported in the job (repeat).")]
_Command = Annotated[Optional[List[str]], typer.Argument(help="A command to run instead of training (after '--').")]
_Revision = Annotated[Optional[str], typer.Option("--revision", help="Branch, tag or commit of a --model HF name.")]
# A command job's own allocation (default: the profile's jobs.command: one node), never the training's.
_Nodes = Annotated[Optional[int], typer.Option("--nodes", min=1, help="Command jobs: nodes (default: the profile's jobs.command, 1).")]
_Gpus = Annotated[Optional[int], typer.Option("--gpus", min=0, help="Command jobs: GPUs per node.")]
_Cpus = Annotated[Optional[int], typer.Option("--cpus", min=1, help="Command jobs: CPUs per task.")]
_Mem = Annotated[Optional[str], typer.Option("--mem", help="Command jobs: memory per node, e.g. 168GB.")]
_Qos = Annotated[Optional[str], typer.Option("--qos", help="QoS, e.g. boost_qos_dbg.")]
_Partition = Annotated[Optional[str], typer.Option("--partition", help="Partition (default: the profile's).")]
_Kind = Annotated[str, typer.Option("--kind", help="Command jobs: which of the profile's jobs.* allocations to use "
                                    "(command, prep, export, eval, register).")]


def _split_variants(values: list[str]) -> list[str]:
    out: list[str] = []
    for v in values:
        out += [x.strip() for x in v.split(",") if x.strip()]
    return out


def _build(*, profile: str, study_profile: Optional[str], variants: list[str], command: list[str],
           out: Optional[str], data: Optional[str], model: Optional[str], name: Optional[str],
           time_limit: Optional[str], train_args: list[str], array: Optional[str], max_parallel: Optional[int],
           config: Optional[Path], env: list[str], revision: Optional[str] = None, nodes: Optional[int] = None,
           gpus: Optional[int] = None, cpus: Optional[int] = None, mem: Optional[str] = None,
           qos: Optional[str] = None, partition: Optional[str] = None, kind: str = "command"):
    from latxa.slurm.errors import SlurmError
    from latxa.slurm.profiles import load_profile
    from latxa.slurm.render import join_path, render_command, render_train

    prof = load_profile(profile).for_study(study_profile, config)
    if qos:
        prof = prof.model_copy(update={"qos": qos})
    if partition:
        prof = prof.model_copy(update={"partition": partition})
    extra_env = {}
    for item in env:
        if "=" not in item:
            raise SlurmError(f"--env takes NAME=VALUE, not '{item}'.")
        k, v = item.split("=", 1)
        extra_env[k] = v
    if command:
        if variants:
            raise SlurmError("Give either --variant (a training job) or a command after '--', not both.")
        res = prof.job_resources(kind)
        update = {k: v for k, v in (("nodes", nodes), ("gpus_per_node", gpus), ("cpus_per_task", cpus), ("mem", mem),
                                    ("qos", qos), ("partition", partition)) if v is not None}
        res = res.model_validate({**res.model_dump(), **update})
        return prof, render_command(prof, command, name=name or Path(command[0]).name.replace(" ", "_") or "job",
                                    time=time_limit, array=array, env=extra_env, resources=res, kind=kind)
    if not variants:
        raise SlurmError("Give --variant CODE (a training job) or a command after '--' (e.g. -- latxa data prepare ...).")
    if array:
        raise SlurmError("--array is for command jobs; several --variant values make a training array.")
    if any(v is not None for v in (nodes, gpus, cpus, mem)):
        raise SlurmError("--nodes, --gpus, --cpus and --mem are for command jobs; a training job takes the profile's "
                         "allocation (or --study-profile).")
    if revision:
        if not model:
            raise SlurmError("--revision needs --model NAME (a Hugging Face name).")
        model = f"{model}@{revision}"
    if out is None:
        from latxa.components.config import load_config
        from latxa.components.registry import parse

        size = load_config().resolve(prof.study_profile).target.model_size
        base = prof.storage.runs or f"{prof.workdir_path}/runs"
        out = join_path(base, parse(variants[0], size=size).run_name) if len(variants) == 1 else join_path(base, "sweep")
    job = render_train(prof, variants, out=out, data=data, model=model, name=name, time=time_limit,
                       train_args=train_args, max_parallel=max_parallel, env=extra_env,
                       config_staged=config is not None, check_study=study_profile is None)
    return prof, job


def register(app: typer.Typer) -> None:
    group = typer.Typer(help="Run training (Ray Train inside a SLURM allocation) and other jobs on a SLURM cluster: "
                        "Leonardo over SSH, or the local single-node test cluster (make slurm-up).",
                        no_args_is_help=True)

    @group.command(
        "render",
        help="Print the sbatch script for a training job (Ray head on the first node, one worker per other node, "
        "latxa train --resume, Ray teardown) or, after '--', for any command." + example(
            "latxa slurm render --variant exp_2_101 --profile leonardo-8b"),
    )
    def render(
        variant: _Variants = None, profile: _Profile = "local", study_profile: _StudyProfile = None, out: _Out = None,
        data: _Data = None, model: _Model = None, revision: _Revision = None, name: _Name = None,
        time_limit: _Time = None, train_arg: _TrainArgs = None, array: _Array = None,
        max_parallel: _MaxParallel = None, config: _Config = None, env: _Env = None, nodes: _Nodes = None,
        gpus: _Gpus = None, cpus: _Cpus = None, mem: _Mem = None, qos: _Qos = None, partition: _Partition = None,
        kind: _Kind = "command", command: _Command = None,
    ) -> None:
        _, job = _build(profile=profile, study_profile=study_profile, variants=_split_variants(variant or []),
                        command=command or [], out=out, data=data, model=model, name=name, time_limit=time_limit,
                        train_args=train_arg or [], array=array, max_parallel=max_parallel, config=config,
                        env=env or [], revision=revision, nodes=nodes, gpus=gpus, cpus=cpus, mem=mem, qos=qos,
                        partition=partition, kind=kind)
        typer.echo(job.script, nl=False)

    @group.command(
        "submit",
        help="Stage and submit a job; prints the job id (alone on the last line of stdout)." + example(
            "latxa slurm submit --variant exp_2_101 --profile local --data .latxa/data/exp_2_101 --train-arg=--max-steps=20"),
    )
    def submit(
        variant: _Variants = None, profile: _Profile = "local", study_profile: _StudyProfile = None, out: _Out = None,
        data: _Data = None, model: _Model = None, revision: _Revision = None, name: _Name = None,
        time_limit: _Time = None, train_arg: _TrainArgs = None, array: _Array = None,
        max_parallel: _MaxParallel = None, config: _Config = None, env: _Env = None, nodes: _Nodes = None,
        gpus: _Gpus = None, cpus: _Cpus = None, mem: _Mem = None, qos: _Qos = None, partition: _Partition = None,
        kind: _Kind = "command", command: _Command = None,
        dependency: Optional[str] = typer.Option(None, "--dependency", "-d", help="e.g. afterok:123 (chain prep -> train -> eval)."),
        fmt: OutputFormat = typer.Option(OutputFormat.table, "--format", help="table or json"),
    ) -> None:
        from latxa.slurm.bridge import SlurmBridge
        from latxa.slurm.errors import SlurmError

        prof, job = _build(profile=profile, study_profile=study_profile, variants=_split_variants(variant or []),
                           command=command or [], out=out, data=data, model=model, name=name, time_limit=time_limit,
                           train_args=train_arg or [], array=array, max_parallel=max_parallel, config=config,
                           env=env or [], revision=revision, nodes=nodes, gpus=gpus, cpus=cpus, mem=mem, qos=qos,
                           partition=partition, kind=kind)
        if config is not None and not config.is_file():
            raise SlurmError(f"Study config {config} does not exist.")
        bridge = SlurmBridge(prof)
        job_id = bridge.submit(job, dependency=dependency, stage={"study.yaml": config} if config else None)
        rec = bridge.record(job_id)
        if fmt == OutputFormat.json:
            emit_json({"job_id": job_id, "name": job.name, "log": rec.log if rec else job.log, "array": job.array,
                       "variants": job.variants, "out": job.out, "jobdir": rec.jobdir if rec else None})
            return
        typer.echo(f"submitted {job.name} to {bridge.transport.describe()} (log: {job.log})", err=True)
        typer.echo(job_id)

    @group.command("status", help="Show a job's state (PENDING, RUNNING, COMPLETED, FAILED, CANCELLED, TIMEOUT, "
                   "PREEMPTED, NODE_FAIL, OUT_OF_MEMORY)." + example("latxa slurm status 12 --format json"))
    def status(
        job_id: str = typer.Argument(..., help="Job id (12) or array task (12_3)."),
        profile: str = typer.Option("local", "--profile", "-p", help=_PROFILE_HELP),
        fmt: OutputFormat = typer.Option(OutputFormat.table, "--format", help="table or json"),
    ) -> None:
        from latxa.slurm.bridge import SlurmBridge

        st = SlurmBridge(profile).status(job_id)
        if fmt == OutputFormat.json:
            emit_json(st.as_dict())
            return
        code = "" if st.exit_code is None or not st.terminal else f" exit={st.exit_code}"
        typer.echo(f"{st.job_id}\t{st.state}{code}\t{st.name or ''}\t(from {st.source})")
        for t in st.tasks:
            typer.echo(f"  {t.job_id}\t{t.state}" + ("" if t.exit_code is None else f" exit={t.exit_code}"))

    @group.command("logs", help="Print the tail of a job's log, or follow it until the job ends." + example(
        "latxa slurm logs 12 --follow"))
    def logs(
        job_id: str = typer.Argument(..., help="Job id (12) or array task (12_3)."),
        profile: str = typer.Option("local", "--profile", "-p", help=_PROFILE_HELP),
        tail: int = typer.Option(50, "--tail", "-n", help="Lines from the end (0: the whole log)."),
        follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing new lines until the job ends."),
    ) -> None:
        from latxa.slurm.bridge import SlurmBridge

        bridge = SlurmBridge(profile)
        if follow:
            for line in bridge.follow(job_id):
                typer.echo(line)
            return
        typer.echo(bridge.logs(job_id, tail=tail or None), nl=False)

    @group.command("cancel", help="Cancel a job (or a whole array)." + example("latxa slurm cancel 12"))
    def cancel(
        job_id: str = typer.Argument(..., help="Job id (12) or array task (12_3)."),
        profile: str = typer.Option("local", "--profile", "-p", help=_PROFILE_HELP),
    ) -> None:
        from latxa.slurm.bridge import SlurmBridge

        SlurmBridge(profile).cancel(job_id)
        typer.echo(f"cancel requested for job {job_id}")

    @group.command(
        "wait",
        help="Wait until a job ends (polling with backoff). On TIMEOUT, PREEMPTED or NODE_FAIL the job is resubmitted "
        "(training resumes from its latest checkpoint) up to --resubmit times; any other failure exits 1 and prints "
        "the log tail." + example("latxa slurm wait 12 --timeout 3600 --resubmit 2"),
    )
    def wait(
        job_id: str = typer.Argument(..., help="Job id (12) or array id."),
        profile: str = typer.Option("local", "--profile", "-p", help=_PROFILE_HELP),
        timeout: Optional[float] = typer.Option(None, "--timeout", help="Give up after this many seconds (exit 3)."),
        poll: float = typer.Option(1.0, "--poll", help="First poll interval in seconds (grows x1.5 up to --max-poll)."),
        max_poll: float = typer.Option(30.0, "--max-poll", help="Longest poll interval in seconds."),
        resubmit: Optional[int] = typer.Option(None, "--resubmit", help="Resubmissions on TIMEOUT/PREEMPTED/NODE_FAIL (default: the profile's max_resubmits)."),
        fmt: OutputFormat = typer.Option(OutputFormat.table, "--format", help="table or json"),
    ) -> None:
        from rich.console import Console

        from latxa.slurm.bridge import SlurmBridge
        from latxa.slurm.errors import JobFailedError

        console = Console(stderr=True)
        bridge = SlurmBridge(profile)
        t0 = time.monotonic()
        current = {"id": job_id}

        def show(st):
            if st.job_id != current["id"]:
                console.print(f"resubmitted as job {st.job_id}")
                current["id"] = st.job_id
            console.print(f"[{time.monotonic() - t0:7.1f}s] job {st.job_id}: {st.state}")

        try:
            with console.status(f"waiting for job {job_id}", spinner="dots"):
                st = bridge.wait(job_id, timeout=timeout, poll=poll, max_poll=max_poll, resubmit=resubmit, on_update=show)
        except JobFailedError as err:
            if err.log_tail:
                console.print(f"--- last lines of the log of job {err.status.job_id if err.status else job_id} ---")
                sys.stderr.write(err.log_tail if err.log_tail.endswith("\n") else err.log_tail + "\n")
            if fmt == OutputFormat.json and err.status is not None:
                emit_json(err.status.as_dict())
            raise
        if fmt == OutputFormat.json:
            emit_json(st.as_dict())
        else:
            again = f" after resubmission(s) of {', '.join(st.attempts)}" if st.attempts else ""
            typer.echo(f"job {st.job_id} {st.state}{again}")

    @group.command(
        "login",
        help="Get a fresh short-lived SSH certificate for the cluster (CINECA: 12 h, from smallstep: the profile's "
        "transport.login_command, e.g. `step ssh certificate`), check it, and optionally put key, certificate and "
        "known_hosts into the Kubernetes Secret the Kubeflow SLURM steps mount (--secret-out FILE, or --apply with "
        "kubectl). --check only reports how long the current certificate is valid." + example(
            "latxa slurm login --profile leonardo --identity you@example.org --apply --namespace kubeflow"),
    )
    def login(
        profile: str = typer.Option("leonardo", "--profile", "-p", help=_PROFILE_HELP),
        identity: Optional[str] = typer.Option(None, "--identity", help="Who you are to the certificate authority "
                                               "(CINECA: your registered e-mail)."),
        check: bool = typer.Option(False, "--check", help="Do not log in: check the current certificate."),
        secret_out: Optional[Path] = typer.Option(None, "--secret-out", help="Write the Secret manifest here (mode 600)."),
        apply: bool = typer.Option(False, "--apply", help="Apply the Secret with `kubectl apply -f -`."),
        namespace: Optional[str] = typer.Option(None, "--namespace", help="Namespace of the Secret (KFP's)."),
        secret_name: str = typer.Option("latxa-slurm-ssh", "--secret-name", help="The Secret the SLURM steps mount."),
    ) -> None:
        import os
        import subprocess

        from latxa.slurm import certs
        from latxa.slurm.errors import SlurmError
        from latxa.slurm.profiles import load_profile
        from latxa.slurm.transport import SSHTransport

        prof = load_profile(profile)
        if prof.transport.kind != "ssh" or not prof.transport.key_file:
            raise SlurmError(f"Cluster profile '{prof.name}' does not reach its cluster over ssh with a key_file.")
        tr = SSHTransport(prof.transport)
        key = os.path.expanduser(prof.transport.key_file)
        cert = str(tr.certificate_path() or (key + "-cert.pub"))
        if check:
            v = certs.check_certificate(cert, tr.describe())
        else:
            if not identity:
                raise SlurmError("Give --identity (your identity at the certificate authority, e.g. your e-mail).")
            v = certs.login(prof.transport.login_command, identity=identity, key_file=key, cert=cert,
                            where=tr.describe())
        left = v.remaining()
        typer.echo(f"certificate {cert} valid " + ("forever" if left is None else
                   f"until {v.end:%Y-%m-%d %H:%M} ({left.total_seconds() / 3600:.1f} h left)"))
        if secret_out or apply:
            known = os.path.expanduser(prof.transport.known_hosts) if prof.transport.known_hosts else None
            manifest = certs.secret_manifest(key_file=key, cert=cert, known_hosts=known, name=secret_name,
                                             namespace=namespace)
            if secret_out:
                certs.write_private(secret_out, manifest)
                typer.echo(f"Secret {secret_name} written to {secret_out}")
            if apply:
                try:
                    res = subprocess.run(["kubectl", "apply", "-f", "-"], input=manifest, capture_output=True, text=True,
                                         timeout=120)
                except FileNotFoundError:
                    raise SlurmError("kubectl is not installed, so the Secret cannot be applied (use --secret-out).") from None
                if res.returncode != 0:
                    detail = (res.stderr or res.stdout).strip().splitlines()
                    raise SlurmError(f"kubectl apply failed: {detail[-1] if detail else res.returncode}")
                typer.echo(res.stdout.strip())

    app.add_typer(group, name="slurm")
