"""The per-worker training loop (what Ray Train's ``TorchTrainer`` runs on every worker).

One code path for every scale: plain DDP (ZeRO stage 0) or a DeepSpeed engine (ZeRO 1/2/3), CPU with gloo
or GPU with NCCL. :class:`TrainRecipe` holds the run (setup, step, checkpoint, report, with hook points for
checkpoint triggers and per-step work); :func:`run_worker` runs it. The same recipe also runs in a single plain
process (:class:`LocalContext`), which is what the benchmarks use.

Loss: token-weighted mean over the whole global batch (all micro-batches of all ranks), as one big batch
would give; the step's trainable-token count is all-reduced before the backward passes.

Checkpoints (when :class:`latxa.components.train.checkpointing.CheckpointPolicy` says so: saves per epoch, every
``checkpoint_every`` steps, every ``checkpoint_minutes``, on a stop request (SIGUSR1), at the end) hold model,
optimizer, scheduler, step and each rank's RNG state; a stop request ends the loop right after its checkpoint.
The held-out loss (:class:`latxa.components.train.heldout.HeldoutEval`) runs ``evals_per_epoch`` times per epoch; the batch order is a pure function of (seed, epoch), so a resumed run continues
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
from dataclasses import dataclass, field
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


def add_neftune(model, alpha: float, seq_len: int | None = None):
    """NEFTune (Jain et al. 2023): uniform noise on input embeddings during training, scaled by alpha/sqrt(L*d).

    L is the length of one packed row (``seq_len``), not of the flattened micro-batch the maskless path feeds
    the model (``B*L`` tokens in one row): the noise is what HF's NEFTune gives the reference's rows.
    """
    import torch

    if alpha <= 0:
        return None
    embed = model.get_input_embeddings()

    def hook(module, _args, output):
        if not module.training:
            return output
        dims = (seq_len or output.size(1)) * output.size(2)
        mag = alpha / (dims ** 0.5)
        return output + torch.zeros_like(output).uniform_(-mag, mag)

    return embed.register_forward_hook(hook)


def load_model(plan, device, attn_implementation: str = "sdpa"):
    """The whole model on this rank (DDP and DeepSpeed): fp32 for DDP (autocast runs the bf16 maths), the plan's
    half precision for DeepSpeed (its optimizer keeps the fp32 master copy). FSDP builds on meta instead."""
    import torch
    from transformers import AutoModelForCausalLM

    half = plan.deepspeed_stage > 0 and plan.precision in ("bf16", "fp16")
    dtype = getattr(torch, {"bf16": "bfloat16", "fp16": "float16"}[plan.precision]) if half else torch.float32
    first = "flash_attention_2" if attn_implementation == "flash_attention_2" else "sdpa"
    model = AutoModelForCausalLM.from_pretrained(plan.model_dir, dtype=dtype, attn_implementation=first)
    if attn_implementation != first:
        model.set_attn_implementation(attn_implementation)
    model.config.use_cache = False
    if plan.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    return model.to(device)


def build_sharded_model(plan, device, *, rank: int, world: int, attn_implementation: str):
    """FSDP2: built on the meta device, sharded, then filled one tensor at a time from rank 0 (see sharding.py)."""
    from latxa.components.train import sharding

    model = sharding.build_on_meta(plan.model_dir, "sdpa")
    if attn_implementation != "sdpa":
        model.set_attn_implementation(attn_implementation)
    if plan.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    mesh = sharding.device_mesh(plan.fsdp, world, plan.fsdp_shard_size, device.type)
    sharding.shard(model, mesh, bf16=plan.precision == "bf16", prefetch=plan.prefetch_layers)
    sharding.load_sharded(model, plan.model_dir, device, rank=rank)
    return model


def _stack(values):
    import numpy as np

    arr = np.asarray(values)
    return np.stack(list(values)) if arr.dtype == object else arr


# ---------------------------------------------------------------------------------------------
# The recipe
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


@dataclass
class TrainerState:
    """What a checkpoint restores besides the model/optimizer/scheduler tensors."""

    step: int = 0
    tokens_seen: int = 0
    last_loss: float | None = None
    first_loss: float | None = None
    resumed_at: int = 0


@dataclass
class StepStats:
    """One optimizer step as this rank saw it."""

    loss_sum: float            # this rank's summed token losses (all its micro-batches)
    global_tokens: float       # trainable tokens of the whole global batch (all ranks)
    tokens: int                # tokens of the whole global batch (all ranks, padding included)
    lr: float
    grad_norm: float
    seconds: float
    cpu_seconds: float


@dataclass
class _Throughput:
    """Timed steps (after the benchmark warm-up) and the current logging window."""

    tokens: int = 0
    trainable: int = 0
    seconds: float = 0.0
    cpu_seconds: float = 0.0
    steps: int = 0
    window_t0: float = field(default_factory=time.perf_counter)
    window_tokens: int = 0


class TrainRecipe:
    """The training run of one worker, in the shape of a torchtune recipe.

    ``setup()`` builds everything (model, engine, optimizer, checkpoint restore, data, logging); ``train()`` runs
    the steps and returns the final report. Hook points for subclasses and callers:

    - :meth:`should_checkpoint` ``(step) -> reason | None``: whether to checkpoint after ``step``
      (``"interval"`` every ``checkpoint_every`` steps, ``"final"`` at the last step);
    - :meth:`save_checkpoint` ``(reason)``: checkpoint now (every rank calls it; Ray merges the ranks' files);
    - :meth:`on_step_end` ``(step, stats)``: after each optimizer step, before the checkpoint decision;
    - :meth:`request_stop`: end the loop after the current step (its checkpoint, if any, is written first).
    """

    def __init__(self, plan, ctx) -> None:
        self.plan, self.ctx = plan, ctx
        self.rank, self.world = ctx.rank, ctx.world_size
        self.state = TrainerState()
        self.stop_requested = False
        self.last_report: dict[str, Any] | None = None
        self._throughput = _Throughput()
        self._order, self._order_epoch = None, -1
        self.engine = None            # the DeepSpeed engine (ZeRO 1/2/3), else None
        self.net = None               # what the forward pass calls: engine, DDP wrapper or the model
        self.progress = None
        self.metrics: _Metrics | None = None
        self._neftune = None

    # --- setup ---------------------------------------------------------------------------------
    def setup(self) -> "TrainRecipe":
        if self.world != self.plan.world_size:
            raise RuntimeError(f"plan expects {self.plan.world_size} workers but {self.world} started")
        self.device = self.ctx.device()
        seed_everything(self.plan.seed + self.rank)
        self._setup_model()
        self._setup_optimizer()
        self._setup_engine()
        self._restore_checkpoint()
        self._setup_data()
        self._setup_logging()
        self._setup_production()
        return self

    @property
    def use_deepspeed(self) -> bool:
        return self.plan.deepspeed_stage > 0

    @property
    def use_fsdp(self) -> bool:
        return self.plan.fsdp != "none"

    def _setup_model(self) -> None:
        from latxa.components.train.attention import attention_implementation
        from latxa.components.train.loss import install_packed_loss

        self._set_matmul_precision()
        self.attn = attention_implementation(self.plan.backend, self.plan.attention)
        if self.use_fsdp:
            if _dist() is None:
                raise RuntimeError("FSDP needs torch.distributed; run it on Ray Train (or torchrun)")
            self.model = build_sharded_model(self.plan, self.device, rank=self.rank, world=self.world,
                                             attn_implementation=self.attn)
        else:
            self.model = load_model(self.plan, self.device, self.attn)
        install_packed_loss(self.model, self.plan.loss_chunk_tokens, fused=not self.use_deepspeed)
        self._neftune = add_neftune(self.model, self.plan.neftune_alpha, self.plan.seq_len)

    def _set_matmul_precision(self) -> None:
        import torch

        if self.device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = self.plan.tf32
            torch.backends.cudnn.allow_tf32 = self.plan.tf32

    def _setup_optimizer(self) -> None:
        from latxa.components.train.optim import build_optimizer, build_scheduler

        self.optimizer = build_optimizer(self.model, self.plan)
        self.scheduler = build_scheduler(self.optimizer, self.plan)

    def _setup_engine(self) -> None:
        """Wrap the model for data parallelism: a DeepSpeed engine (ZeRO 1/2/3), DDP, or nothing (one rank)."""
        if self.use_deepspeed:
            if self.plan.backend == "cpu":
                os.environ.setdefault("DS_ACCELERATOR", "cpu")
                _skip_cpu_inference_shm_op()
            import deepspeed

            from latxa.components.train.optim import deepspeed_config

            self.engine, self.optimizer, _, self.scheduler = deepspeed.initialize(
                model=self.model, optimizer=self.optimizer, lr_scheduler=self.scheduler,
                config=deepspeed_config(self.plan), dist_init_required=_dist() is None and self.world > 1)
            self.net = self.engine
        elif self.use_fsdp:
            self.net = self.model      # fully_shard wrapped the modules in place
        elif _dist() is not None and self.world > 1:
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device.index] if self.device.type == "cuda" else None
            self.net = DistributedDataParallel(self.model, device_ids=ids, bucket_cap_mb=self.plan.bucket_mb)
        else:
            self.net = self.model

    def _restore_checkpoint(self) -> None:
        with self.ctx.latest_checkpoint() as ckpt:
            if ckpt is None:
                return
            self.state = self._load_checkpoint(ckpt)
            if self.rank == 0:
                print(f"[train] resumed from {ckpt} at step {self.state.step}/{self.plan.total_steps}", flush=True)

    def _setup_data(self) -> None:
        from latxa.components.train.data import open_packed

        self.dataset = open_packed(self.plan.data_dir)

    def _setup_logging(self) -> None:
        self.metrics = _Metrics(self.plan, self.rank)
        if self.rank == 0:
            from tqdm import tqdm

            self.progress = tqdm(total=self.plan.total_steps, initial=self.state.step, desc=f"train {self.plan.variant}",
                                 unit="step", mininterval=2.0, ascii=True, dynamic_ncols=False, ncols=100)

    def _setup_production(self) -> None:
        """The checkpoint policy (saves per epoch, time-based, stop requests) and the held-out loss: issue 15."""
        from latxa.components.train.checkpointing import CheckpointPolicy
        from latxa.components.train.heldout import HeldoutEval

        def reduce(values: list[float]) -> list[float]:
            return _all_reduce_sum(values, self.device)

        self.policy = CheckpointPolicy(self.plan, self.rank, reduce)
        self.heldout = HeldoutEval(self.plan, self.rank, self.world, self.device, reduce) if self.plan.heldout else None
        self._decision = None

    def heldout_token_losses(self, batch: dict):
        """Per-token losses of one micro-batch through the training forward, for the held-out loss: (losses (N,),
        shifted targets (N,)). The model is called as in training (``self.net``: FSDP/ZeRO-3 gather as they do
        there) with every target ignored, so the packed loss does no work; a hook on the decoder computes each
        token's loss from its hidden state with the LM head, chunk by chunk, while the head's weights are gathered."""
        import torch

        from latxa.components.train.heldout import token_losses

        inputs = self._model_inputs(batch)
        targets = inputs["targets"]
        head = self.model.get_output_embeddings()
        found: dict = {}

        def hook(_module, _args, output):
            hidden = output.last_hidden_state if hasattr(output, "last_hidden_state") else output[0]
            found["losses"] = token_losses(hidden.reshape(-1, hidden.shape[-1]), head, targets,
                                           self.plan.loss_chunk_tokens)

        handle = self.model.model.register_forward_hook(hook)
        try:
            with self._autocast():
                self.net(**{**inputs, "targets": torch.full_like(targets, -100)})
        finally:
            handle.remove()
        return found["losses"], targets

    # --- the loop ------------------------------------------------------------------------------
    def train(self) -> dict[str, Any]:
        """Run the remaining steps; returns the final report (rank 0's view of the metrics)."""
        plan = self.plan
        self.model.train()
        while self.state.step < plan.total_steps and not self.stop_requested:
            batches = self._step_batches(self.state.step)
            stats = self.train_step(batches)
            self.state.step += 1
            self._record(stats)
            self.on_step_end(self.state.step, stats)
            reason = self.should_checkpoint(self.state.step)
            if reason is not None:
                self.save_checkpoint(reason)
        self.close()
        if self.last_report is None:   # resumed from the final checkpoint: nothing left to do
            self.last_report = self.report()
            self.ctx.report(self.last_report, None, None)
        return self.last_report

    def _step_batches(self, step: int) -> list[dict]:
        """This rank's micro-batches (CPU tensors) of optimizer step ``step``; batch order is a function of step."""
        import numpy as np
        import torch

        from latxa.components.train.data import epoch_order, rank_micro_batches

        plan = self.plan
        epoch, in_epoch = divmod(step, plan.steps_per_epoch)
        if epoch != self._order_epoch:
            self._order = epoch_order(plan.num_rows, plan.global_batch, plan.seed, epoch, plan.shuffle)
            self._order_epoch = epoch
        batches = []
        for rows in rank_micro_batches(self._order[in_epoch], self.rank, self.world, plan.micro_batch_size):
            b = self.dataset[np.sort(rows).tolist()]
            batches.append({k: torch.as_tensor(_stack(b[k]), dtype=torch.long)
                            for k in ("input_ids", "labels", "position_ids")})
        return batches

    def train_step(self, batches: list[dict]) -> StepStats:
        """Forward/backward over this rank's micro-batches, then one optimizer step."""
        t0, c0 = time.perf_counter(), time.process_time()
        # token t predicts token t+1: the label of each row's first position is never a target
        local_tokens = sum(int((b["labels"][:, 1:] != -100).sum()) for b in batches)
        (global_tokens,) = _all_reduce_sum([local_tokens], self.device)
        global_tokens = max(global_tokens, 1.0)
        lr = self.scheduler.get_last_lr()[0]
        loss_sum = 0.0
        for i, batch in enumerate(batches):
            loss_sum += self._forward_backward(batch, global_tokens=global_tokens, sync=i == len(batches) - 1)
        grad_norm = self._optimizer_step()
        tokens = sum(int(b["input_ids"].numel()) for b in batches) * self.world
        return StepStats(loss_sum=loss_sum, global_tokens=global_tokens, tokens=tokens, lr=lr, grad_norm=grad_norm,
                         seconds=time.perf_counter() - t0, cpu_seconds=time.process_time() - c0)

    def _autocast(self):
        import torch

        if self.plan.precision == "bf16" and not self.use_deepspeed and not self.use_fsdp:
            return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)
        return nullcontext()

    def _model_inputs(self, batch: dict) -> dict:
        """Model kwargs of one micro-batch: flattened to one packed row with document boundaries (no mask), or,
        on the reference path (``attention: masked_sdpa``), rows with their 4D block-diagonal mask."""
        import torch

        from latxa.components.train.attention import packed_kwargs
        from latxa.components.train.data import packed_attention_mask
        from latxa.components.train.loss import shifted_targets

        ids = batch["input_ids"].to(self.device)
        pos = batch["position_ids"].to(self.device)
        targets = shifted_targets(batch["labels"].to(self.device)).reshape(-1)
        if self.attn == "sdpa":
            dtype = torch.float32 if self.plan.precision == "fp32" else torch.bfloat16
            return {"input_ids": ids, "position_ids": pos, "targets": targets,
                    "attention_mask": packed_attention_mask(pos, dtype)}
        return {"input_ids": ids.reshape(1, -1), "position_ids": pos.reshape(1, -1), "targets": targets,
                **packed_kwargs(pos)}

    def _forward_backward(self, batch: dict, *, global_tokens: float, sync: bool) -> float:
        """One micro-batch; returns its summed token loss. Gradients accumulate into the model."""
        plan = self.plan
        inputs = self._model_inputs(batch)
        ddp = not self.use_deepspeed and not self.use_fsdp and self.net is not self.model
        if self.use_fsdp:
            self.model.set_requires_gradient_sync(sync)     # reduce-scatter only after the last micro-batch
        with (self.net.no_sync() if ddp and not sync else nullcontext()):
            with self._autocast():
                summed = self.net(**inputs)   # the packed loss (loss.install_packed_loss): no full logits
            # gradient of the global token-weighted mean: DDP, FSDP and DeepSpeed average over ranks (x world);
            # DeepSpeed also divides by gradient_accumulation_steps (x accum).
            scale = self.world * (plan.grad_accum if self.use_deepspeed else 1) / global_tokens
            if self.use_deepspeed:
                self.engine.backward(summed * scale)
                self.engine.step()  # DeepSpeed steps the optimizer only at the accumulation boundary
            else:
                (summed * scale).backward()
        return float(summed.detach())

    def _optimizer_step(self) -> float:
        """Clip, step, schedule, zero the gradients (DeepSpeed did all of it in ``engine.step``); the grad norm."""
        import torch

        if self.use_deepspeed:
            norm = self.engine.get_global_grad_norm()
            return float(norm) if norm is not None else float("nan")
        norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.plan.max_grad_norm)
        norm = float(norm.full_tensor() if hasattr(norm, "full_tensor") else norm)   # FSDP: a DTensor
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return norm

    def _record(self, stats: StepStats) -> None:
        """Throughput counters, token count, and (every ``log_every`` steps) the loss and metrics to MLflow."""
        plan, step, tp = self.plan, self.state.step, self._throughput
        self.state.tokens_seen += int(stats.global_tokens)
        if step > plan.bench_steps_to_skip + self.state.resumed_at:
            tp.steps += 1
            tp.tokens += stats.tokens
            tp.trainable += int(stats.global_tokens)
            tp.seconds += stats.seconds
            tp.cpu_seconds += stats.cpu_seconds
        tp.window_tokens += stats.tokens
        if step % plan.log_every == 0 or step == plan.total_steps or step == 1:
            (loss_total,) = _all_reduce_sum([stats.loss_sum], self.device)
            loss = loss_total / stats.global_tokens
            self.state.last_loss = loss
            if self.state.first_loss is None:
                self.state.first_loss = loss
            now = time.perf_counter()
            self.metrics.add(step, {"loss": loss, "lr": stats.lr, "grad_norm": stats.grad_norm,
                                    "tokens_seen": self.state.tokens_seen,
                                    "tokens_per_s": tp.window_tokens / max(now - tp.window_t0, 1e-9),
                                    "epoch": step / plan.steps_per_epoch})
            tp.window_t0, tp.window_tokens = now, 0
            if self.progress is not None:
                self.progress.set_postfix(loss=f"{loss:.4f}", lr=f"{stats.lr:.2e}", refresh=False)
        if self.progress is not None:
            self.progress.update(1)

    # --- hooks ---------------------------------------------------------------------------------
    def on_step_end(self, step: int, stats: StepStats) -> None:  # noqa: ARG002 (the hook signature)
        """Called on every rank after optimizer step ``step`` (1-based), before :meth:`should_checkpoint`: the
        held-out loss ``evals_per_epoch`` times per epoch (every rank runs it: ZeRO-3 gathers in each forward)."""
        if self.heldout is not None and self.heldout.due(step):
            values = self.heldout.run(self.model, self.heldout_token_losses)
            self.metrics.add(step, values)
            if self.rank == 0:
                print(f"[train] step {step}: " + ", ".join(f"{k} {v:.4f}" for k, v in values.items()), flush=True)

    def should_checkpoint(self, step: int) -> str | None:
        """The reason to checkpoint after ``step`` (1-based), or None; every rank answers the same (the policy
        all-reduces rank 0's clock and stop-request check). A stop request (SIGUSR1) also ends the loop."""
        self._decision = d = self.policy.decide(step)
        if d.stop:
            self.request_stop()
        return "+".join(d.reasons) if d.save else None

    def request_stop(self) -> None:
        """End :meth:`train` after the current step (and its checkpoint, if one is due)."""
        self.stop_requested = True

    # --- checkpoints and the report -------------------------------------------------------------
    def report(self) -> dict[str, Any]:
        """The metrics reported with each checkpoint and returned at the end (the one place they are built)."""
        tp, st = self._throughput, self.state
        return {"step": st.step, "loss": st.last_loss, "first_loss": st.first_loss, "tokens_seen": st.tokens_seen,
                "tokens_per_s": tp.tokens / tp.seconds if tp.seconds else 0.0,
                "trainable_tokens_per_s": tp.trainable / tp.seconds if tp.seconds else 0.0,
                # per CPU-second of this worker process (all its threads): robust to a shared machine
                "tokens_per_cpu_s": tp.tokens / self.world / tp.cpu_seconds if tp.cpu_seconds else 0.0,
                "timed_steps": tp.steps,
                # Ray keeps the best keep_checkpoints by this score (scheduled saves first) and always the latest
                "keep_score": d.keep_score if (d := getattr(self, "_decision", None)) else float(st.step),
                "stopped_for_requeue": float(bool(d and d.stop))}

    def save_checkpoint(self, reason: str) -> None:
        """Checkpoint the current step on every rank and hand it to the context (Ray merges the ranks' files)."""
        import torch

        step = self.state.step
        self.metrics.flush()
        self.last_report = self.report()
        if self.stop_requested and self.rank == 0:
            print(f"[train] stop requested: checkpoint at step {step}/{self.plan.total_steps} saved; stopping to be "
                  "requeued", flush=True)
        if not getattr(self.ctx, "checkpoints", True):
            self.ctx.report(dict(self.last_report), None, None)
            return
        tmp = Path(tempfile.mkdtemp(prefix=f"latxa-ckpt-{step}-r{self.rank}-"))
        try:
            if self.engine is not None:
                self.engine.save_checkpoint(str(tmp), tag=DS_TAG, client_state={"latxa_step": step}, save_latest=True)
            elif self.use_fsdp:
                from latxa.components.train import sharding

                sharding.save_checkpoint(tmp, self.model, self.optimizer)
                if self.rank == 0:
                    torch.save(self.scheduler.state_dict(), tmp / SCHED_FILE)
            elif self.rank == 0:
                torch.save(self.model.state_dict(), tmp / MODEL_FILE)
                torch.save(self.optimizer.state_dict(), tmp / OPTIM_FILE)
                torch.save(self.scheduler.state_dict(), tmp / SCHED_FILE)
            torch.save(rng_state(), tmp / f"rng_rank{self.rank}.pt")
            if self.rank == 0:
                (tmp / STATE_FILE).write_text(json.dumps(self._trainer_state(reason), indent=2) + "\n", encoding="utf-8")
            self.ctx.report(dict(self.last_report), tmp, f"step-{step:08d}")
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def _trainer_state(self, reason: str) -> dict[str, Any]:
        plan, st = self.plan, self.state
        return {"step": st.step, "checkpoint_reason": reason, "tokens_seen": st.tokens_seen, "last_loss": st.last_loss, "first_loss": st.first_loss,
                "world_size": plan.world_size, "deepspeed_stage": plan.deepspeed_stage, "fsdp": plan.fsdp,
                "fsdp_shard_size": plan.fsdp_shard_size, "variant": plan.variant,
                "mlflow_run_id": plan.mlflow_run_id, "total_steps": plan.total_steps,
                "model_size": getattr(plan, "model_size", "8b"), "model_name": getattr(plan, "model_name", None)}

    def _load_checkpoint(self, path: Path) -> TrainerState:
        import torch

        plan = self.plan
        saved = json.loads((path / STATE_FILE).read_text(encoding="utf-8"))
        layout = (saved["world_size"], saved["deepspeed_stage"], saved.get("fsdp", "none"))
        if layout != (plan.world_size, plan.deepspeed_stage, plan.fsdp):
            raise RuntimeError(
                f"checkpoint {path} was written by {saved['world_size']} workers at ZeRO stage "
                f"{saved['deepspeed_stage']} with FSDP {layout[2]}; resume with the same layout")
        if self.engine is not None:
            self.engine.load_checkpoint(str(path), tag=DS_TAG, load_optimizer_states=True, load_lr_scheduler_states=True)
        elif self.use_fsdp:
            from latxa.components.train import sharding

            sharding.load_checkpoint(path, self.model, self.optimizer)
            self.scheduler.load_state_dict(torch.load(path / SCHED_FILE, map_location="cpu", weights_only=True))
        else:
            self.model.load_state_dict(torch.load(path / MODEL_FILE, map_location="cpu", weights_only=True))
            self.optimizer.load_state_dict(torch.load(path / OPTIM_FILE, map_location="cpu", weights_only=True))
            self.scheduler.load_state_dict(torch.load(path / SCHED_FILE, map_location="cpu", weights_only=True))
        set_rng_state(torch.load(path / f"rng_rank{self.rank}.pt", weights_only=False))
        return TrainerState(step=saved["step"], tokens_seen=saved["tokens_seen"], last_loss=saved["last_loss"],
                            first_loss=saved["first_loss"], resumed_at=saved["step"])

    def close(self) -> None:
        if self.progress is not None:
            self.progress.close()
        if self.metrics is not None:
            self.metrics.close()
        if self._neftune is not None:
            self._neftune.remove()
            self._neftune = None


def run_worker(plan, ctx) -> dict:
    """Train according to ``plan`` on this worker; returns the final metrics (rank 0's view)."""
    return TrainRecipe(plan, ctx).setup().train()
