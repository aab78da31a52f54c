"""Held-out loss during training, as the reference: ``evals_per_epoch`` times per epoch, logged to MLflow.

The reference (Axolotl, ``test_datasets``) evaluated the loss on AYA (Basque, ``language_code == "eus"``) and
Magpie-Ultra-1K (English) with ``eval_batch_size: 1`` and no packing; HF Trainer averages each batch's mean token
loss over batches, so its ``eval_loss`` is the mean over *examples* of each example's mean loss on its assistant
tokens, over both sets together. We log that same number (``eval_loss``), per set too (``eval_loss.<set>``), plus
the token-weighted mean per set (``eval_token_loss.<set>``).

Our held-out sets are prepared like the training data (packed rows, attention kept inside each example), so an
example's loss is the same as unpacked; examples are told apart by ``position_ids`` restarting at 0. Rows are
spread over ranks; every rank runs the same number of decoder and head calls (ZeRO-3 and FSDP gather parameters
in them), padding with a repeated row that counts for nothing. The head runs on chunks of tokens, so a row's
full-vocabulary logits never exist at once.
"""

from __future__ import annotations

from typing import Callable

from latxa.components.train.checkpointing import every_n_steps


class HeldoutEval:
    """Built once per worker; ``due(step)`` says when, ``run(forward)`` returns the metrics (same on every rank)."""

    def __init__(self, plan, rank: int, world: int, device, reduce: Callable[[list[float]], list[float]]):
        from latxa.components.train.data import open_packed

        self.rank, self.world, self.device, self.reduce = rank, world, device, reduce
        self.sets = {name: open_packed(path) for name, path in sorted(plan.heldout.items())}
        self.every = every_n_steps(plan.evals_per_epoch, plan.steps_per_epoch, plan.total_steps) if self.sets else None

    def due(self, step: int) -> bool:
        return bool(self.every) and step % self.every == 0

    def run(self, model, losses_of: Callable) -> dict[str, float]:
        """``losses_of(batch) -> (losses (N,), targets (N,))``: per-token losses of one micro-batch of packed rows
        through the training forward, and its shifted targets (-100: no loss); the recipe's
        :meth:`~latxa.components.train.loop.TrainRecipe.heldout_token_losses` (every rank calls it in step)."""
        import torch

        was_training = model.training
        model.eval()
        sums: list[float] = []
        try:
            with torch.no_grad():
                for ds in self.sets.values():
                    sums += self._one_set(ds, losses_of)
        finally:
            model.train(was_training)
        totals = self.reduce(sums)
        out: dict[str, float] = {}
        all_example_sum = all_examples = 0.0
        for i, name in enumerate(self.sets):
            tok_sum, toks, ex_sum, exs = totals[4 * i:4 * i + 4]
            if exs:
                out[f"eval_loss.{name}"] = ex_sum / exs
            if toks:
                out[f"eval_token_loss.{name}"] = tok_sum / toks
            all_example_sum += ex_sum
            all_examples += exs
        if all_examples:
            out["eval_loss"] = all_example_sum / all_examples
        return out

    def _one_set(self, ds, losses_of) -> list[float]:
        import numpy as np
        import torch

        n = len(ds)
        per_rank = -(-n // self.world)
        tok_sum = toks = ex_sum = exs = 0.0
        for j in range(per_rank):
            idx = self.rank + j * self.world
            counts = idx < n                       # padding rows keep forward passes in step across ranks
            row = ds[[idx if counts else 0]]
            batch = {k: torch.as_tensor(np.asarray(row[k]), dtype=torch.long) for k in ("input_ids", "labels", "position_ids")}
            losses, targets = losses_of(batch)        # every rank, every row (padding too): collectives in step
            if not counts:
                continue
            mask = targets != -100
            # the example each target belongs to: documents start where position_ids is 0
            doc = torch.cumsum((batch["position_ids"].reshape(-1) == 0).to(torch.int64), dim=0).to(losses.device)
            tok_sum += float(losses[mask].sum())
            toks += float(mask.sum())
            for d in torch.unique(doc[mask]).tolist():
                sel = mask & (doc == d)
                ex_sum += float(losses[sel].mean())
                exs += 1.0
        return [tok_sum, toks, ex_sum, exs]


def token_losses(hidden, head, targets, chunk_tokens: int = 1024):
    """Per-token cross-entropy of ``head(hidden)`` (0 where the target is -100), ``chunk_tokens`` logits at a time:
    never the full-vocabulary logits of a whole row, and a fixed number of head calls for a fixed row length."""
    import torch

    chunk_tokens = chunk_tokens or hidden.shape[0]
    out = torch.zeros(hidden.shape[0], dtype=torch.float32, device=hidden.device)
    for start in range(0, hidden.shape[0], chunk_tokens):
        logits = head(hidden[start:start + chunk_tokens]).float()
        out[start:start + chunk_tokens] = torch.nn.functional.cross_entropy(
            logits, targets[start:start + chunk_tokens], ignore_index=-100, reduction="none")
    return out
