"""The per-worker training loop (what Ray Train's ``TorchTrainer`` runs on every worker).

One code path for every scale: plain DDP (ZeRO stage 0) or a DeepSpeed engine (ZeRO 1/2/3), CPU with gloo
or GPU with NCCL. The same function also runs in a single plain process (:class:`LocalContext`), which is
what the benchmark's baseline uses.

Loss: token-weighted mean over the whole global batch (all micro-batches of all ranks), as one big batch
would give; the step's trainable-token count is all-reduced before the backward passes.

Checkpoints (when :class:`latxa.components.train.checkpointing.CheckpointPolicy` says so: saves per epoch, every
``checkpoint_every`` steps, every ``checkpoint_minutes``, on a stop request (SIGUSR1), at the end) hold model,
optimizer, scheduler, step and each rank's RNG state; a stop request ends the loop right after its checkpoint.
The held-out loss (:class:`latxa.components.train.heldout.HeldoutEval`) runs ``evals_per_epoch`` times per epoch. the batch order is a pure function of (seed, epoch), so a resumed run continues
exactly where the checkpoint was taken. ``ray.train.report`` is called only with checkpoints (it costs
about a second); per-step metrics go straight to MLflow from rank 0, buffered until each checkpoint.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import tempfile
import time
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any, Iterator

STATE_FILE = "trainer_state.json"
MODEL_FILE = "model.pt"
OPTIM_FILE = "optimizer.pt"
SCHED_FILE = "scheduler.pt"
DS_TAG = "state"


# ---------------------------------------------------------------------------------------------
# Where the loop runs: a Ray Train worker, or one plain process.
# ---------------------------------------------------------------------------------------------
class RayContext:
    def __init__(self) -> None:
        import ray.train

        self._train = ray.train
        ctx = ray.train.get_context()
        self.rank = ctx.get_world_rank()
        self.world_size = ctx.get_world_size()

    def device(self):
        import ray.train.torch

        return ray.train.torch.get_device()

    @contextmanager
    def latest_checkpoint(self) -> Iterator[Path | None]:
        ckpt = self._train.get_checkpoint()
        if ckpt is None:
            yield None
            return
        with ckpt.as_directory() as path:
            yield Path(path)

    def report(self, metrics: dict, checkpoint_dir: Path | None, name: str | None) -> None:
        from ray.train import Checkpoint

        ckpt = Checkpoint.from_directory(str(checkpoint_dir)) if checkpoint_dir else None
        self._train.report(metrics, checkpoint=ckpt, checkpoint_dir_name=name if ckpt else None)


class LocalContext:
    """A single process without Ray or torch.distributed (benchmark baseline, debugging)."""

    rank = 0
    world_size = 1

    def __init__(self, resume_from: Path | None = None) -> None:
        self.resume_from = resume_from
        self.reports: list[dict] = []
        self.checkpoints = False          # no persistent storage: report metrics only

    def device(self):
        import torch

        return torch.device("cuda" if torch.cuda.is_available() else "cpu")

    @contextmanager
    def latest_checkpoint(self):
        yield self.resume_from

    def report(self, metrics: dict, _checkpoint_dir: Path | None, _name: str | None) -> None:
        self.reports.append(dict(metrics))


def train_loop_per_worker(config: dict) -> None:
    """Entry point for Ray Train (``TorchTrainer(train_loop_per_worker, train_loop_config=plan.to_dict())``)."""
    from latxa.components.train.plan import TrainPlan

    run_worker(TrainPlan.from_dict(config), RayContext())


# ---------------------------------------------------------------------------------------------
# Pieces
# ---------------------------------------------------------------------------------------------
def _dist():
    import torch.distributed as dist

    return dist if dist.is_available() and dist.is_initialized() else None


def _all_reduce_sum(values: list[float], device) -> list[float]:
    import torch

    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist = _dist()
    if dist is not None:
        if device.type == "cpu" or dist.get_backend() != "nccl":
            dist.all_reduce(t)
        else:
            t32 = t.float()
            dist.all_reduce(t32)
            t = t32.double()
    return t.tolist()


def rng_state() -> dict:
    import numpy as np
    import torch

    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    import numpy as np
    import torch

    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_everything(seed: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _skip_cpu_inference_shm_op() -> None:
    """Do not JIT-compile DeepSpeed's CPU shared-memory all-reduce kernel.

    On the CPU accelerator, ``deepspeed.comm`` builds the ``deepspeed_shm_comm`` C++ op at start-up (minutes of
    g++ on 2 cores, once per machine). It serves only ``inference_all_reduce``; ZeRO training collectives go
    through torch.distributed (gloo here), so marking the op unavailable changes nothing in training.
    """
    import deepspeed.ops

    deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False


def add_neftune(model, alpha: float):
    """NEFTune (Jain et al. 2023): uniform noise on input embeddings during training, scaled by alpha/sqrt(L*d)."""
    import torch

    if alpha <= 0:
        return None
    embed = model.get_input_embeddings()

    def hook(module, _args, output):
        if not module.training:
            return output
        dims = output.size(1) * output.size(2)
        mag = alpha / (dims ** 0.5)
        return output + torch.zeros_like(output).uniform_(-mag, mag)

    return embed.register_forward_hook(hook)


def load_model(plan, device):
    import torch
    from transformers import AutoModelForCausalLM

    dtype = torch.float32
    model = AutoModelForCausalLM.from_pretrained(plan.model_dir, dtype=dtype, attn_implementation="sdpa")
    model.config.use_cache = False
    if plan.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    return model.to(device)


def _stack(values):
    import numpy as np

    arr = np.asarray(values)
    return np.stack(list(values)) if arr.dtype == object else arr


# ---------------------------------------------------------------------------------------------
# The loop
# ---------------------------------------------------------------------------------------------
class _Metrics:
    """Rank 0's per-step metrics, sent to MLflow in batches (at checkpoints and at the end)."""

    def __init__(self, plan, rank: int) -> None:
        self.rows: list[tuple[int, dict]] = []
        self.logger = None
        self.monitor = None
        if rank == 0 and plan.mlflow_run_id:
            from latxa.components.tracking import BufferedRunLogger

            self.logger = BufferedRunLogger(plan.mlflow_run_id, plan.tracking_uri)
            try:
                from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

                self.monitor = SystemMetricsMonitor(plan.mlflow_run_id, sampling_interval=2, samples_before_logging=1,
                                                    resume_logging=True, tracking_uri=self.logger.uri)
                self.monitor.start()
            except Exception as err:  # system metrics are a nicety; say so rather than fail the run
                print(f"[train] system metrics not logged: {err}", flush=True)
                self.monitor = None

    def add(self, step: int, values: dict) -> None:
        if self.logger is not None:
            self.rows.append((step, values))

    def flush(self) -> None:
        if self.logger is None:
            return
        for step, values in self.rows:
            self.logger.log_metrics(values, step=step)
        self.rows.clear()

    def close(self) -> None:
        self.flush()
        if self.monitor is not None:
            self.monitor.finish()
            # The monitor publishes only after a full sampling interval, so a run shorter than that
            # (a short CPU run on a fast machine) would have no system metrics at all: always log one
            # closing sample, taken now that the monitor thread has stopped.
            try:
                self.monitor.collect_metrics()
                self.monitor.publish_metrics(self.monitor.aggregate_metrics())
                self.monitor.mlflow_logger.flush()
            except Exception as err:
                print(f"[train] closing system metrics sample not logged: {err}", flush=True)
        if self.logger is not None:
            self.logger.close()


def run_worker(plan, ctx) -> dict:
    """Train according to ``plan`` on this worker; returns the final metrics (rank 0's view)."""
    import numpy as np
    import torch

    from latxa.components.train.data import epoch_order, open_packed, packed_attention_mask, rank_micro_batches
    from latxa.components.train.optim import build_optimizer, build_scheduler, deepspeed_config

    rank, world = ctx.rank, ctx.world_size
    if world != plan.world_size:
        raise RuntimeError(f"plan expects {plan.world_size} workers but {world} started")
    device = ctx.device()
    seed_everything(plan.seed + rank)
    model = load_model(plan, device)
    neft = add_neftune(model, plan.neftune_alpha)
    optimizer = build_optimizer(model, plan)
    scheduler = build_scheduler(optimizer, plan)
    use_ds = plan.deepspeed_stage > 0
    engine = None
    if use_ds:
        if plan.backend == "cpu":
            os.environ.setdefault("DS_ACCELERATOR", "cpu")
            _skip_cpu_inference_shm_op()
        import deepspeed

        engine, optimizer, _, scheduler = deepspeed.initialize(
            model=model, optimizer=optimizer, lr_scheduler=scheduler, config=deepspeed_config(plan),
            dist_init_required=_dist() is None and world > 1)
        net = engine
    elif _dist() is not None and world > 1:
        from torch.nn.parallel import DistributedDataParallel

        net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    else:
        net = model

    state = {"step": 0, "tokens_seen": 0, "last_loss": None, "first_loss": None}
    with ctx.latest_checkpoint() as ckpt:
        if ckpt is not None:
            state = _load_checkpoint(ckpt, plan, rank, model, optimizer, scheduler, engine)
            if rank == 0:
                print(f"[train] resumed from {ckpt} at step {state['step']}/{plan.total_steps}", flush=True)

    amp = (torch.autocast(device_type=device.type, dtype=torch.bfloat16)
           if plan.precision == "bf16" and not use_ds else nullcontext())
    ds = open_packed(plan.data_dir)
    metrics = _Metrics(plan, rank)
    from latxa.components.train.checkpointing import CheckpointPolicy
    from latxa.components.train.heldout import HeldoutEval

    def reduce(values: list[float]) -> list[float]:
        return _all_reduce_sum(values, device)

    policy = CheckpointPolicy(plan, rank, reduce)
    heldout = HeldoutEval(plan, rank, world, device, reduce) if plan.heldout else None

    def forward_logits(input_ids, position_ids):
        """The training forward (packed-document attention), for the held-out loss."""
        mask = packed_attention_mask(position_ids, torch.float32 if plan.precision == "fp32" else torch.bfloat16)
        with amp:
            return net(input_ids=input_ids, attention_mask=mask, position_ids=position_ids).logits
    progress = None
    if rank == 0:
        from tqdm import tqdm

        progress = tqdm(total=plan.total_steps, initial=state["step"], desc=f"train {plan.variant}", unit="step",
                        mininterval=2.0, ascii=True, dynamic_ncols=False, ncols=100)
    model.train()
    timed_tokens, timed_trainable, timed_seconds, timed_steps, timed_cpu = 0, 0, 0.0, 0, 0.0
    window_t0, window_tokens = time.perf_counter(), 0
    last_report: dict[str, Any] = {}
    order, order_epoch = None, -1
    step = state["step"]
    while step < plan.total_steps:
        epoch, in_epoch = divmod(step, plan.steps_per_epoch)
        if epoch != order_epoch:
            order, order_epoch = epoch_order(plan.num_rows, plan.global_batch, plan.seed, epoch, plan.shuffle), epoch
        t0, c0 = time.perf_counter(), time.process_time()
        micro = rank_micro_batches(order[in_epoch], rank, world, plan.micro_batch_size)
        batches = []
        local_tokens = 0
        for rows in micro:
            b = ds[np.sort(rows).tolist()]
            batch = {k: torch.as_tensor(_stack(b[k]), dtype=torch.long) for k in ("input_ids", "labels", "position_ids")}
            # shift once here: token t predicts token t+1; the label of the last position is dropped
            local_tokens += int((batch["labels"][:, 1:] != -100).sum())
            batches.append(batch)
        (global_tokens,) = _all_reduce_sum([local_tokens], device)
        global_tokens = max(global_tokens, 1.0)
        loss_sum = 0.0
        lr = scheduler.get_last_lr()[0]
        for i, batch in enumerate(batches):
            input_ids = batch["input_ids"].to(device)
            labels = batch["labels"].to(device)
            position_ids = batch["position_ids"].to(device)
            mask = packed_attention_mask(position_ids, torch.float32 if plan.precision == "fp32" else torch.bfloat16)
            sync = (i == len(batches) - 1)
            no_sync = net.no_sync() if (not use_ds and net is not model and not sync) else nullcontext()
            with no_sync:
                with amp:
                    out = net(input_ids=input_ids, attention_mask=mask, position_ids=position_ids)
                logits = out.logits[:, :-1, :].float()
                tgt = labels[:, 1:]
                summed = torch.nn.functional.cross_entropy(
                    logits.reshape(-1, logits.size(-1)), tgt.reshape(-1), ignore_index=-100, reduction="sum")
                # gradient of the global token-weighted mean: DDP and DeepSpeed average over ranks (x world);
                # DeepSpeed also divides by gradient_accumulation_steps (x accum).
                scale = world * (plan.grad_accum if use_ds else 1) / global_tokens
                if use_ds:
                    engine.backward(summed * scale)
                    engine.step()  # DeepSpeed steps the optimizer only at the accumulation boundary
                else:
                    (summed * scale).backward()
            loss_sum += float(summed.detach())
        if use_ds:
            grad_norm = engine.get_global_grad_norm()
            grad_norm = float(grad_norm) if grad_norm is not None else float("nan")
        else:
            grad_norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), plan.max_grad_norm))
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
        step += 1
        tokens = sum(int(b["input_ids"].numel()) for b in batches) * world
        state["tokens_seen"] += int(global_tokens)
        dt, dc = time.perf_counter() - t0, time.process_time() - c0
        if step > plan.bench_steps_to_skip + state.get("resumed_at", 0):
            timed_steps += 1
            timed_tokens += tokens
            timed_trainable += int(global_tokens)
            timed_seconds += dt
            timed_cpu += dc
        window_tokens += tokens
        want_log = step % plan.log_every == 0 or step == plan.total_steps or step == 1
        if want_log:
            (loss_total,) = _all_reduce_sum([loss_sum], device)
            loss = loss_total / global_tokens
            state["last_loss"] = loss
            if state["first_loss"] is None:
                state["first_loss"] = loss
            now = time.perf_counter()
            values = {"loss": loss, "lr": lr, "grad_norm": grad_norm, "tokens_seen": state["tokens_seen"],
                      "tokens_per_s": window_tokens / max(now - window_t0, 1e-9), "epoch": step / plan.steps_per_epoch}
            window_t0, window_tokens = now, 0
            metrics.add(step, values)
            if progress is not None:
                progress.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.2e}", refresh=False)
        if progress is not None:
            progress.update(1)
        if heldout is not None and heldout.due(step):
            values = heldout.run(model, forward_logits)
            metrics.add(step, values)
            if rank == 0:
                print(f"[train] step {step}: " + ", ".join(f"{k} {v:.4f}" for k, v in values.items()), flush=True)
        decision = policy.decide(step)
        if decision.save:
            last_report = {"step": step, "loss": state["last_loss"], "first_loss": state["first_loss"],
                           "tokens_seen": state["tokens_seen"],
                           "tokens_per_s": timed_tokens / timed_seconds if timed_seconds else 0.0,
                           "trainable_tokens_per_s": timed_trainable / timed_seconds if timed_seconds else 0.0,
                           # per CPU-second of this worker process (all its threads): robust to a shared machine
                           "tokens_per_cpu_s": timed_tokens / world / timed_cpu if timed_cpu else 0.0,
                           "timed_steps": timed_steps, "keep_score": decision.keep_score,
                           "stopped_for_requeue": float(decision.stop)}
            metrics.flush()
            _save_and_report(ctx, plan, rank, step, state, model, optimizer, scheduler, engine, last_report)
            policy.saved()
            if decision.stop:
                if rank == 0:
                    print(f"[train] stop requested: checkpoint at step {step}/{plan.total_steps} saved; stopping "
                          "to be requeued", flush=True)
                break
    if progress is not None:
        progress.close()
    metrics.close()
    if neft is not None:
        neft.remove()
    if not last_report:  # resumed from the final checkpoint: nothing left to do
        last_report = {"step": step, "loss": state["last_loss"], "first_loss": state["first_loss"],
                       "tokens_seen": state["tokens_seen"], "tokens_per_s": 0.0, "trainable_tokens_per_s": 0.0,
                       "timed_steps": 0}
        ctx.report(last_report, None, None)
    return last_report


# ---------------------------------------------------------------------------------------------
# Checkpoints
# ---------------------------------------------------------------------------------------------
def _save_and_report(ctx, plan, rank, step, state, model, optimizer, scheduler, engine, metrics) -> None:
    import torch

    if not getattr(ctx, "checkpoints", True):
        ctx.report(dict(metrics), None, None)
        return
    tmp = Path(tempfile.mkdtemp(prefix=f"latxa-ckpt-{step}-r{rank}-"))
    try:
        trainer_state = {"step": step, "tokens_seen": state["tokens_seen"], "last_loss": state["last_loss"],
                         "first_loss": state["first_loss"], "world_size": plan.world_size,
                         "deepspeed_stage": plan.deepspeed_stage, "variant": plan.variant,
                         "mlflow_run_id": plan.mlflow_run_id, "total_steps": plan.total_steps,
                         "model_size": getattr(plan, "model_size", "8b"), "model_name": getattr(plan, "model_name", None)}
        if engine is not None:
            engine.save_checkpoint(str(tmp), tag=DS_TAG, client_state={"latxa_step": step}, save_latest=True)
        elif rank == 0:
            torch.save(model.state_dict(), tmp / MODEL_FILE)
            torch.save(optimizer.state_dict(), tmp / OPTIM_FILE)
            torch.save(scheduler.state_dict(), tmp / SCHED_FILE)
        torch.save(rng_state(), tmp / f"rng_rank{rank}.pt")
        if rank == 0:
            (tmp / STATE_FILE).write_text(json.dumps(trainer_state, indent=2) + "\n", encoding="utf-8")
        ctx.report(dict(metrics), tmp, f"step-{step:08d}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _load_checkpoint(path: Path, plan, rank, model, optimizer, scheduler, engine) -> dict:
    import torch

    trainer_state = json.loads((path / STATE_FILE).read_text(encoding="utf-8"))
    if trainer_state["world_size"] != plan.world_size or trainer_state["deepspeed_stage"] != plan.deepspeed_stage:
        raise RuntimeError(
            f"checkpoint {path} was written by {trainer_state['world_size']} workers at ZeRO stage "
            f"{trainer_state['deepspeed_stage']}; resume with the same layout")
    if engine is not None:
        engine.load_checkpoint(str(path), tag=DS_TAG, load_optimizer_states=True, load_lr_scheduler_states=True)
    else:
        model.load_state_dict(torch.load(path / MODEL_FILE, map_location="cpu", weights_only=True))
        optimizer.load_state_dict(torch.load(path / OPTIM_FILE, map_location="cpu", weights_only=True))
        scheduler.load_state_dict(torch.load(path / SCHED_FILE, map_location="cpu", weights_only=True))
    set_rng_state(torch.load(path / f"rng_rank{rank}.pt", weights_only=False))
    return {"step": trainer_state["step"], "tokens_seen": trainer_state["tokens_seen"],
            "last_loss": trainer_state["last_loss"], "first_loss": trainer_state["first_loss"],
            "resumed_at": trainer_state["step"]}
