"""``DarnaxModule``: a LightningModule that trains a darnax_core network with its jitted JAX steps."""

import dataclasses
import logging
from typing import Any, Literal

import jax
import lightning as L
import numpy as np
import optax
import torch
from lightning.pytorch.callbacks import ModelSummary
from torch import Tensor, nn

import darnax_core as dc

from ._batches import check_labels, flatten_inputs, pad_rows, unpack_batch
from ._checkpoint import leaf_to_tensor, state_to_tree, tree_to_state
from ._dlpack import to_jax, to_torch
from ._options import check_seed, check_size, datamodule_size, draw_seed
from ._steps import Totals, add_eval_metrics, relax_without_labels, zero_totals
from ._summary import DarnaxModelSummary, trainable_parameter_count

logger = logging.getLogger(__name__)

_PAPER = dc.TUTORIAL_09
#: Key of the JAX state inside a Lightning checkpoint.
CHECKPOINT_KEY = "darnax"
_PRECISIONS = ("32-true", "32")
_PAPER_FIELDS = tuple(field.name for field in dataclasses.fields(dc.PaperConfig) if field.name != "epochs")


class DarnaxModule(L.LightningModule):
    """A darnax_core network trained by its local rules inside a Lightning ``Trainer``.

    The model is ``dc.paper_model``: input -> one sparse binary hidden layer -> readout, with
    frozen label feedback. Every argument from ``hidden`` to ``kernel`` is the ``dc.PaperConfig``
    field of the same name (defaults: ``dc.TUTORIAL_09``); :meth:`from_config` builds the module
    from a ``PaperConfig``.

    Parameters
    ----------
    input_dim, num_classes
        Network sizes. None takes them from the DataModule's ``input_dim`` and ``num_classes``
        properties in ``setup``; the resolved values are stored in ``hparams``.
    protocol, warmup, clamped, free, eval_sweeps, schedule, free_messages, until_converged, contrastive_sign
        Fields of ``dc.Protocol`` (``protocol`` is its ``kind``).
    optimizer
        ``"paper"``: ``dc.paper_model_optimizer`` (per-module SGD with decay, rates ``lr_*``,
        ``wd_*``). ``"sgd"`` or ``"adam"``: one Optax transform with rate ``lr`` on every
        trainable weight.
    lr
        Learning rate of ``"sgd"`` and ``"adam"``; must be None for ``"paper"``.
    model_seed
        Seed of the network's initial weights and masks (``jax.random.PRNGKey(model_seed)``).
        None draws it from torch's global RNG when the network is built.
    seed
        Seed of the JAX training keys, split as in ``dc.fit``: ``split(PRNGKey(seed), 3)`` gives
        (unused shuffle key, step key, evaluation key), and batch ``global_step`` uses
        ``fold_in(step_key, global_step)``. None draws the key from torch's global RNG in
        ``setup("fit")``. Keys only change results under ``schedule="asynchronous"``.
    batch_size
        Training batch size to pad short batches to. None takes the DataModule's (or the
        DataLoader's) ``batch_size``.
    return_hidden
        Whether ``predict_step`` returns ``{"logits", "hidden"}`` instead of the logits.

    Notes
    -----
    The JAX network lives on ``jax_device`` (``jax.devices()[0]``), not on the torch device.
    One placeholder ``nn.Parameter`` and a zero-learning-rate ``torch.optim.SGD`` make
    Lightning count one optimizer step per batch, so ``global_step``, ``max_steps`` and
    step-based checkpointing work. A step checkpoint contains the state after that step, which is
    what a resumed run needs.

    Each training step updates ``net`` and ``opt_state`` in place (their buffers are donated to
    the compiled step), so a reference kept from before a step points to deleted arrays. Keep a
    copy instead, e.g. ``jax.tree_util.tree_map(jnp.copy, module.net)``.

    Logged metrics, per epoch: ``train_acc`` (accuracy of the free-phase predictions, taken
    before each update), ``train_unsat`` (fraction of hidden units whose field disagrees with
    their state) and ``train_sweeps`` (sweeps per step). Their ``*_step`` variants contain the
    running values of the epoch so far, every ``log_every_n_steps`` steps. Evaluation logs
    ``val_acc``/``val_unsat`` and ``test_acc``/``test_unsat`` per epoch.

    Batches are ``(x, y)`` with ``x`` of any shape ``(B, ...)`` that flattens to ``input_dim``
    values and ``y`` int class indices ``(B,)`` or a +-1 ``(B, C)`` matrix. Prediction also
    accepts ``x`` alone. Empty batches, NaN or infinite inputs, wrong sizes and invalid labels
    raise ValueError or TypeError naming the batch. float64 inputs are cast to float32 and
    counted in ``float64_batches``. A short training batch is padded to ``batch_size`` with a
    sample mask, so the training step compiles once. Evaluation batches are not padded, so the
    evaluation step compiles once per distinct batch size.

    Randomness: the initial network comes from ``model_seed`` (or torch's RNG at build time),
    the JAX step and evaluation keys from ``seed`` (or torch's RNG in ``setup("fit")``), so
    ``lightning.seed_everything`` fixes both when the seeds are None. The data order is the
    DataModule's business (the darnax DataModules use their own ``seed``).
    """

    def __init__(
        self,
        hidden: int = _PAPER.hidden,
        input_dim: int | None = None,
        num_classes: int | None = None,
        j_d: float = _PAPER.j_d,
        density_in: float = _PAPER.density_in,
        density_j: float = _PAPER.density_j,
        margin_in: float = _PAPER.margin_in,
        margin_j: float = _PAPER.margin_j,
        margin_out: float = _PAPER.margin_out,
        strength_in: float = _PAPER.strength_in,
        strength_back: float = _PAPER.strength_back,
        strength_out: float = _PAPER.strength_out,
        lr_in: float = _PAPER.lr_in,
        lr_j: float = _PAPER.lr_j,
        lr_out: float = _PAPER.lr_out,
        wd_in: float = _PAPER.wd_in,
        wd_j: float = _PAPER.wd_j,
        wd_out: float = _PAPER.wd_out,
        kernel: Literal["auto", "dense", "ell"] = "auto",
        protocol: Literal["paper", "clamped_update", "contrastive"] = "paper",
        warmup: int = _PAPER.warmup,
        clamped: int = _PAPER.clamped,
        free: int = _PAPER.free,
        eval_sweeps: int = _PAPER.eval_sweeps,
        schedule: Literal["sequential", "parallel", "asynchronous"] = "sequential",
        free_messages: Literal["forward", "all_but_label"] = "forward",
        until_converged: bool = False,
        contrastive_sign: Literal["clamped_minus_free", "free_minus_clamped"] = "clamped_minus_free",
        optimizer: Literal["paper", "sgd", "adam"] = "paper",
        lr: float | None = None,
        model_seed: int | None = 44,
        seed: int | None = None,
        batch_size: int | None = None,
        return_hidden: bool = False,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.automatic_optimization = False

        check_seed(model_seed, "model_seed")
        check_seed(seed, "seed")
        check_size(hidden, "hidden", optional=False)
        for name, value in (("input_dim", input_dim), ("num_classes", num_classes), ("batch_size", batch_size)):
            check_size(value, name, optional=True)
        if optimizer not in ("paper", "sgd", "adam"):
            raise ValueError(f"`optimizer` must be 'paper', 'sgd' or 'adam', got {optimizer!r}.")
        if optimizer == "paper" and lr is not None:
            raise ValueError(f"`lr={lr}` applies to optimizer='sgd' or 'adam'; the 'paper' optimizer uses lr_in, lr_j and lr_out.")
        if optimizer != "paper" and (isinstance(lr, bool) or not isinstance(lr, (int, float)) or not 0 < lr < float("inf")):
            raise ValueError(f"optimizer={optimizer!r} needs a positive finite `lr`, got {lr!r}.")

        # Building the config validates every model hyperparameter now, named as in the signature.
        self.paper_config  # noqa: B018
        self.protocol = dc.Protocol(
            kind=protocol,
            warmup=warmup,
            clamped=clamped,
            free=free,
            eval_sweeps=eval_sweeps,
            schedule=schedule,
            free_messages=free_messages,
            until_converged=until_converged,
            contrastive_sign=contrastive_sign,
        )

        # Lightning counts optimizer steps of this placeholder; the JAX weights live in `net`.
        self.step_anchor = nn.Parameter(torch.zeros(()))
        self.jax_device: jax.Device = jax.devices()[0]
        self.net: dc.Network | None = None
        self.opt_state: Any = None
        self.float64_batches = 0
        self._keys: jax.Array | None = None
        self._pad_size: int | None = None
        self._train_totals = zero_totals(self.jax_device)
        # At most one dispatched step waits behind the running one, so the loop's Python neither
        # runs far ahead (holding batches) nor competes for the cores with a long queue of steps.
        self._window = dc.DispatchWindow()
        self._step_key_cache: tuple[jax.Array, jax.Array] | None = None
        self._mask_cache: jax.Array | None = None
        self._eval_totals = zero_totals(self.jax_device)
        if input_dim is not None and num_classes is not None:
            self._build_network(input_dim, num_classes)

    @classmethod
    def from_config(cls, config: dc.PaperConfig, **overrides: Any) -> "DarnaxModule":
        """Build the module from every field of ``config`` except ``epochs`` (a Trainer setting)."""
        if not isinstance(config, dc.PaperConfig):
            raise TypeError(f"`config` must be a darnax_core.PaperConfig, got {type(config).__name__}.")
        values = {name: getattr(config, name) for name in _PAPER_FIELDS}
        values.update(overrides)
        return cls(**values)

    @property
    def paper_config(self) -> dc.PaperConfig:
        """The ``dc.PaperConfig`` of the network (``epochs`` keeps its default)."""
        values = {name: self.hparams[name] for name in _PAPER_FIELDS if self.hparams.get(name) is not None}
        return dc.PaperConfig(**values)

    @property
    def trainable_parameters(self) -> int:
        """Number of couplings that learn in the JAX network (0 before it is built)."""
        return 0 if self.net is None else trainable_parameter_count(self.net)

    def extra_repr(self) -> str:
        if self.net is None:
            return f"hidden={self.hparams.hidden}, network not built (input_dim and num_classes come from the DataModule)"
        sizes = " -> ".join(str(size) for size in self.net.sizes)
        return (
            f"{sizes}, {self.trainable_parameters:,} trainable JAX parameters, protocol={self.protocol.kind!r}, "
            f"optimizer={self.hparams.optimizer!r}, jax_device={self.jax_device}"
        )

    # Building ---------------------------------------------------------------------------------

    def _build_network(self, input_dim: int, num_classes: int) -> None:
        if self.hparams.model_seed is None:
            self.hparams.model_seed = draw_seed()
            logger.info("Drew model_seed=%d from torch's global RNG.", self.hparams.model_seed)
        self.hparams.input_dim, self.hparams.num_classes = input_dim, num_classes
        config = self.paper_config
        net = dc.paper_model(jax.random.PRNGKey(self.hparams.model_seed), config)
        if self.hparams.optimizer == "paper":
            optimizer = dc.paper_model_optimizer(net, config)
        elif self.hparams.optimizer == "sgd":
            optimizer = optax.sgd(self.hparams.lr)
        else:
            optimizer = optax.adam(self.hparams.lr)
        self.net = jax.device_put(net, self.jax_device)
        self.opt_state = jax.device_put(dc.init_optimizer(optimizer, net), self.jax_device)
        # One compiled call per batch: the step, its key (folded with global_step) and the epoch sums.
        # The step donates the network and optimizer state, so they are updated in place.
        self.epoch_step_fn = dc.make_epoch_step(self.protocol, optimizer, donate=True)
        # The bridge checks every batch on the torch side, so the core's host-side checks are off.
        self.eval_step_fn = dc.make_eval_step(self.protocol, validate=False)

    def _ensure_network(self, input_dim: int | None, num_classes: int | None, source: str) -> None:
        """Build the network if needed, after checking the sizes that ``source`` provides against the model's."""
        for name, value in (("input_dim", input_dim), ("num_classes", num_classes)):
            own = self.hparams.get(name)
            if own is not None and value is not None and own != value:
                raise ValueError(
                    f"The model has {name}={own}, but {source} provides {name}={value}; "
                    f"build the model with {name}={value}, or with None to take it from the DataModule."
                )
        if self.net is not None:
            return
        input_dim = self.hparams.get("input_dim") or input_dim
        num_classes = self.hparams.get("num_classes") or num_classes
        if input_dim is None or num_classes is None:
            raise ValueError(
                "DarnaxModule needs input_dim and num_classes: pass them to the constructor, or train with a "
                "DataModule that has `input_dim` and `num_classes` properties."
            )
        self._build_network(input_dim, num_classes)

    def _make_keys(self) -> jax.Array:
        seed = self.hparams.seed
        if seed is None:
            seed = draw_seed()
            logger.info("Drew the JAX training seed %d from torch's global RNG.", seed)
        return jax.device_put(jax.random.split(jax.random.PRNGKey(seed), 3), self.jax_device)

    def _step_key(self) -> jax.Array:
        """Return the training key ``keys[1]``, indexed once per key array instead of once per step."""
        if self._step_key_cache is None or self._step_key_cache[0] is not self._keys:
            self._step_key_cache = (self._keys, self._keys[1])
        return self._step_key_cache[1]

    def _full_mask(self) -> jax.Array:
        """Return the all-True sample mask of a full training batch, built once per batch size."""
        if self._mask_cache is None or self._mask_cache.shape[0] != self._pad_size:
            self._mask_cache = jax.device_put(np.ones(self._pad_size, bool), self.jax_device)
        return self._mask_cache

    def _require_network(self) -> dc.Network:
        if self.net is None:
            raise RuntimeError(
                "The network is not built yet: pass input_dim and num_classes to DarnaxModule, or run it in a "
                "Trainer with a DataModule that provides them."
            )
        if self._keys is None:
            self._keys = self._make_keys()
        return self.net

    # Lightning hooks --------------------------------------------------------------------------

    def setup(self, stage: str) -> None:
        """Check the Trainer, build the network from the DataModule's sizes and draw the JAX keys."""
        precision = str(self.trainer.precision)
        if precision not in _PRECISIONS:
            raise ValueError(
                f"Trainer(precision={precision!r}) is not supported: the JAX core computes in float32 and "
                "Lightning's precision plugins do not reach it. Use precision='32-true' (the default)."
            )
        if self.trainer.world_size > 1:
            raise ValueError(
                f"DarnaxModule trains in a single process, but the Trainer runs {self.trainer.world_size} "
                "processes; multi-process strategies never synchronise the JAX weights. Use devices=1."
            )
        datamodule = self.trainer.datamodule
        self._ensure_network(
            datamodule_size(datamodule, "input_dim"), datamodule_size(datamodule, "num_classes"), "the DataModule"
        )
        if stage == "fit" or self._keys is None:
            self._keys = self._make_keys()

    def configure_optimizers(self) -> torch.optim.Optimizer:
        """Return the zero-rate SGD over the placeholder parameter (see the class notes)."""
        return torch.optim.SGD([self.step_anchor], lr=0.0)

    def configure_callbacks(self) -> list:
        """Replace Lightning's model summary by :class:`DarnaxModelSummary` when one is enabled."""
        # NOTE: only the plain ModelSummary is replaced. With `rich` installed, Lightning's default is
        # RichModelSummary, which stays and counts the one placeholder parameter.
        if any(type(callback) is ModelSummary for callback in self.trainer.callbacks):
            return [DarnaxModelSummary()]
        return []

    def on_fit_start(self) -> None:
        # A resumed fit keeps the epoch sums and padding size restored from the checkpoint.
        if self.trainer.ckpt_path is None:
            self._train_totals = zero_totals(self.jax_device)
            self._pad_size = None
        for experiment_logger in self.loggers:
            experiment_logger.log_hyperparams(
                {
                    "jax_trainable_parameters": self.trainable_parameters,
                    "input_dim": self.hparams.input_dim,
                    "num_classes": self.hparams.num_classes,
                    "model_seed": self.hparams.model_seed,
                }
            )

    def on_train_start(self) -> None:
        if self.hparams.batch_size is not None:
            self._pad_size = self.hparams.batch_size
        elif self._pad_size is None:
            loader_size = getattr(self.trainer.train_dataloader, "batch_size", None)
            self._pad_size = datamodule_size(self.trainer.datamodule, "batch_size") or loader_size

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        """Run one jitted local-learning step on the batch and take the placeholder optimizer step."""
        net = self._require_network()
        x, y = self._torch_batch(batch, f"training batch {batch_idx}", labels_required=True)
        if self._pad_size is None:
            self._pad_size = x.shape[0]
        if x.shape[0] > self._pad_size:
            raise ValueError(
                f"training batch {batch_idx} has {x.shape[0]} samples, more than the training batch size "
                f"{self._pad_size} that short batches are padded to; set DarnaxModule(batch_size=...) to the "
                "DataLoader's batch size."
            )
        if x.shape[0] == self._pad_size:
            mask = self._full_mask()
        else:
            x, y, mask = pad_rows(x, y, self._pad_size)
        # DataLoader batches and padded copies are fresh tensors that nothing writes afterwards,
        # so they are imported without a copy.
        x, y, mask = to_jax((x, y, mask), device=self.jax_device, copy=False)
        self.net, self.opt_state, self._train_totals = self.epoch_step_fn(
            net, self.opt_state, self._train_totals, x, y, mask, self._step_key(), self.global_step
        )
        self._window.push(self._train_totals)
        # With this placeholder step, Lightning's loop costs about 0.18 ms of Python per batch on a
        # 2-core CPU. It runs while the previous step computes (about 97% of dc.fit's throughput).
        self.optimizers().step()
        # Reading the totals synchronises with the device, so it happens only when Lightning logs.
        if self.trainer._logger_connector.should_update_logs:
            running = self._summarise(self._train_totals, "train")
            self.log_dict({f"{name}_step": value for name, value in running.items()})
        return torch.zeros(())

    def on_train_epoch_end(self) -> None:
        if not self.trainer.is_last_batch:
            # The epoch ended early (max_steps): keep its sums, so that a resumed run completes them.
            return
        if int(self._train_totals.count):
            self.log_dict(self._summarise(self._train_totals, "train"))
        self._train_totals = zero_totals(self.jax_device)

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self._evaluate(batch, f"validation batch {batch_idx}")

    def test_step(self, batch: Any, batch_idx: int) -> None:
        self._evaluate(batch, f"test batch {batch_idx}")

    def on_validation_epoch_start(self) -> None:
        self._eval_totals = zero_totals(self.jax_device)

    def on_test_epoch_start(self) -> None:
        self._eval_totals = zero_totals(self.jax_device)

    def on_validation_epoch_end(self) -> None:
        self._log_eval("val")

    def on_test_epoch_end(self) -> None:
        self._log_eval("test")

    def predict_step(self, batch: Any, batch_idx: int) -> Tensor | dict[str, Tensor]:
        """Return the logits ``(B, C)``, or ``{"logits", "hidden" (B, hidden)}`` when ``return_hidden``."""
        net = self._require_network()
        x, _ = self._torch_batch(batch, f"predict batch {batch_idx}", labels_required=False)
        x = to_jax(x, device=self.jax_device)
        if not self.hparams.return_hidden:
            _, metrics = self.eval_step_fn(net, x, self._keys[2])
            return to_torch(metrics.logits)
        logits, hidden = relax_without_labels(net, x, self._keys[2], protocol=self.protocol)
        return {"logits": to_torch(logits), "hidden": to_torch(hidden[0])}

    def forward(self, x: Tensor) -> Tensor:
        """Return the logits ``(B, C)`` of the evaluation dynamics for inputs ``(B, ...)``."""
        net = self._require_network()
        x, _ = self._torch_batch(x, "forward input", labels_required=False)
        _, metrics = self.eval_step_fn(net, to_jax(x, device=self.jax_device), self._keys[2])
        return to_torch(metrics.logits)

    # Checkpoints ------------------------------------------------------------------------------

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Store the full network, the Optax state, the keys and the epoch sums as torch tensors."""
        net = self._require_network()
        totals = self._train_totals
        trainer = self._trainer
        if trainer is not None and trainer.fit_loop.epoch_loop.batch_progress.is_last_batch:
            # A run resumed from here starts the next epoch without calling on_train_epoch_start,
            # so the finished epoch's sums must not travel with the checkpoint.
            totals = zero_totals(self.jax_device)
        checkpoint[CHECKPOINT_KEY] = {
            "network": tree_to_state(net),
            "opt_state": tree_to_state(self.opt_state),
            "keys": leaf_to_tensor(self._keys),
            "train_totals": tree_to_state(totals),
            "pad_size": self._pad_size,
            "trainable_parameters": self.trainable_parameters,
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Restore the state of :meth:`on_save_checkpoint` into a network rebuilt from the hyperparameters."""
        state = checkpoint.get(CHECKPOINT_KEY)
        if state is None:
            raise KeyError(
                f"The checkpoint has no {CHECKPOINT_KEY!r} entry (keys: {sorted(checkpoint)}); it was not "
                "written by DarnaxModule."
            )
        stored = checkpoint.get("hyper_parameters", {})
        self._ensure_network(stored.get("input_dim"), stored.get("num_classes"), "the checkpoint")
        device = self.jax_device
        self.net = state_to_tree(self.net, state["network"], name="network", device=device)
        self.opt_state = state_to_tree(self.opt_state, state["opt_state"], name="opt_state", device=device)
        self._train_totals = state_to_tree(zero_totals(), state["train_totals"], name="train_totals", device=device)
        self._keys = jax.device_put(state["keys"].numpy(), device)
        self._pad_size = state["pad_size"]

    # Helpers ----------------------------------------------------------------------------------

    def _torch_batch(self, batch: Any, where: str, *, labels_required: bool) -> tuple[Tensor, Tensor | None]:
        x, y = unpack_batch(batch, where, labels_required=labels_required)
        x = flatten_inputs(x, self.net.input_dim, where)
        if x.dtype == torch.float64:
            # `to_jax` casts float64 to float32 (and warns once per process); count the batches here.
            if not self.float64_batches:
                logger.info("%s has float64 inputs; to_jax casts them to float32 for the JAX core.", where)
            self.float64_batches += 1
        if y is not None:
            check_labels(y, x.shape[0], self.net.num_classes, where)
            if y.dtype == torch.int64:
                # The check above bounded the class indices by num_classes, so int32 can represent them.
                y = y.to(torch.int32)
        return x, y

    def _evaluate(self, batch: Any, where: str) -> None:
        net = self._require_network()
        x, y = self._torch_batch(batch, where, labels_required=True)
        x, y = to_jax((x, y), device=self.jax_device)
        predictions, metrics = self.eval_step_fn(net, x, self._keys[2])
        self._eval_totals = add_eval_metrics(self._eval_totals, predictions, y, metrics)

    def _log_eval(self, stage: str) -> None:
        if int(self._eval_totals.count):
            values = self._summarise(self._eval_totals, stage)
            values.pop(f"{stage}_sweeps")
            self.log_dict(values, prog_bar=stage == "val")

    @staticmethod
    def _summarise(totals: Totals, stage: str) -> dict[str, float]:
        count, steps = max(int(totals.count), 1), max(int(totals.steps), 1)
        return {
            f"{stage}_acc": int(totals.correct) / count,
            f"{stage}_unsat": float(totals.unsat) / count,
            f"{stage}_sweeps": float(totals.sweeps) / steps,
        }
