"""Backprop MLP baselines and parameter matching against the darnax model.

The authors of darnax (arXiv:2509.05041) compare it with a small MLP trained by
backpropagation: ``depth`` hidden layers of width ``h``, no bias, each layer linear ->
clamp to [-1, 1] -> sign with a straight-through gradient, a linear readout and
cross-entropy loss. Their sisyphus-darnn configs call it ``clipped-3layer-mlp`` and
train it with lr 0.003, batch 16 and 20 epochs. ReLU and tanh variants are ordinary
float baselines.

Parameter matching
------------------
A darnax model with ``H`` hidden units, an input coupling of density 0.1
(sparsity 0.9), a recurrent coupling of density 0.01 (sparsity 0.99) and a dense
readout trains about ``0.1*784*H + 0.01*H**2 + 10*H`` weights. A two-hidden-layer MLP
of width ``h = H/10`` has ``784*h + h**2 + 10*h``: the first two terms agree exactly, the
readout term is ten times smaller. :func:`matched_hidden_width` returns the width whose
count is closest to a given total, e.g. 215 (not 200) for the ``H = 2000`` model's
216,800 weights.
"""

import logging
import math
from typing import Any, Literal

import lightning as L
import torch
from jaxtyping import Float, Int
from torch import Tensor, nn
from torchmetrics.classification import MulticlassAccuracy

logger = logging.getLogger(__name__)

Activation = Literal["sign", "relu", "tanh"]
OptimizerName = Literal["adam", "sgd"]

_ACTIVATIONS: tuple[str, ...] = ("sign", "relu", "tanh")
_OPTIMIZERS: tuple[str, ...] = ("adam", "sgd")
# Default learning rates by activation. 0.003 is the authors' MNIST value for the
# sign MLP, and 1e-3 is the usual Adam default for float MLPs.
# NOTE: the authors' optimizer type is not established. These defaults were chosen
# with Adam in mind, and plain SGD usually needs a larger lr.
_DEFAULT_LR: dict[str, float] = {"sign": 3e-3, "relu": 1e-3, "tanh": 1e-3}


class SignSTE(torch.autograd.Function):
    """Sign of ``clamp(x, -1, 1)`` with the straight-through gradient of the clamp.

    Forward: ``+1`` where ``x >= 0`` (so ``sign(0) = +1``), ``-1`` elsewhere.
    Backward: the incoming gradient where ``-1 <= x <= 1``, zero outside.
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor) -> Tensor:
        ctx.save_for_backward(x)
        clamped = torch.clamp(x, -1.0, 1.0)
        return torch.where(clamped >= 0, torch.ones_like(x), -torch.ones_like(x))

    @staticmethod
    def backward(ctx: Any, grad_output: Tensor) -> Tensor:
        (x,) = ctx.saved_tensors
        inside = (x >= -1.0) & (x <= 1.0)
        return grad_output * inside.to(grad_output.dtype)


def sign_ste(x: Float[Tensor, "..."]) -> Float[Tensor, "..."]:
    """Apply :class:`SignSTE` to a float tensor of any shape."""
    return SignSTE.apply(x)


class _SignActivation(nn.Module):
    """Module wrapper of :func:`sign_ste` for use inside ``nn.Sequential``."""

    def forward(self, x: Tensor) -> Tensor:
        return sign_ste(x)


def count_parameters(module: nn.Module) -> int:
    """Count the elements of the trainable (``requires_grad``) parameters of a module."""
    if not isinstance(module, nn.Module):
        raise TypeError(
            f"`module` must be a torch.nn.Module, got {type(module).__name__}. "
            "Pass the model itself, not its state dict or parameters."
        )
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def _check_positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"`{name}` must be an int, got {value!r} of type {type(value).__name__}.")
    if value <= 0:
        raise ValueError(f"`{name}` must be a positive int, got {value}. Pass a value >= 1.")
    return value


def mlp_parameter_count(
    hidden: int, input_dim: int = 784, num_classes: int = 10, depth: int = 2
) -> int:
    """Return ``input_dim*hidden + (depth-1)*hidden**2 + hidden*num_classes``.

    This is the weight count of a bias-free MLP with ``depth`` hidden layers of width
    ``hidden``, such as :class:`BackpropMLP` with ``activation="sign"``.
    """
    hidden = _check_positive_int("hidden", hidden)
    input_dim = _check_positive_int("input_dim", input_dim)
    num_classes = _check_positive_int("num_classes", num_classes)
    depth = _check_positive_int("depth", depth)
    return input_dim * hidden + (depth - 1) * hidden * hidden + hidden * num_classes


def matched_hidden_width(
    num_params: int, input_dim: int = 784, num_classes: int = 10, depth: int = 2
) -> int:
    """Find the bias-free MLP hidden width whose weight count is closest to ``num_params``.

    The count is :func:`mlp_parameter_count`. On a tie the smaller width wins, and the
    width is at least 1.

    Examples
    --------
    The darnax model with ``H = 2000`` trains ``0.1*784*2000 + 0.01*2000**2 + 10*2000
    = 216800`` weights. The matched two-hidden-layer MLP has ``h = 215`` (216,935
    weights), not ``H/10 = 200`` (198,800 weights), because its readout is smaller.
    """
    num_params = _check_positive_int("num_params", num_params)
    input_dim = _check_positive_int("input_dim", input_dim)
    num_classes = _check_positive_int("num_classes", num_classes)
    depth = _check_positive_int("depth", depth)

    # Solve (depth-1)*h**2 + (input_dim+num_classes)*h = num_params for real h, then
    # compare the integer neighbours, because rounding the root can miss the closest.
    quadratic = depth - 1
    linear = input_dim + num_classes
    if quadratic == 0:
        root = num_params / linear
    else:
        root = (-linear + math.sqrt(linear * linear + 4 * quadratic * num_params)) / (2 * quadratic)

    candidates = {max(1, math.floor(root) + offset) for offset in (-1, 0, 1, 2)}
    return min(
        sorted(candidates),
        key=lambda h: abs(mlp_parameter_count(h, input_dim, num_classes, depth) - num_params),
    )


def _validate_choice(name: str, value: Any, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise ValueError(f"`{name}` must be one of {list(allowed)}, got {value!r}.")
    return value


class BackpropMLP(L.LightningModule):
    """MLP classifier trained by backpropagation, as a baseline for darnax.

    Parameters
    ----------
    input_dim
        Number of input features after flattening each sample.
    num_classes
        Number of classes ``C``, so the output layer has ``C`` logits.
    hidden
        Width of every hidden layer.
    depth
        Number of hidden layers.
    activation
        ``"sign"``: the authors' MLP, each hidden layer is linear -> clamp to [-1, 1]
        -> sign with a straight-through gradient (:class:`SignSTE`). ``"relu"`` and
        ``"tanh"``: ordinary float MLPs.
    bias
        Whether the linear layers have a bias. ``None`` picks ``False`` for ``"sign"``
        (as the authors) and ``True`` otherwise.
    optimizer
        ``"adam"`` (``torch.optim.Adam``) or ``"sgd"`` (plain ``torch.optim.SGD``).
    lr
        Learning rate. ``None`` picks 0.003 for ``"sign"`` (the authors' MNIST value)
        and 1e-3 for ``"relu"`` and ``"tanh"``, whichever optimizer is chosen.
    seed
        If given, the weights are initialised from ``torch.manual_seed(seed)`` without
        changing the global torch RNG state. Otherwise they come from the global RNG.

    Batches are ``(x, y)`` with ``x`` float ``(B, ...)`` flattening to ``(B, input_dim)``
    and ``y`` either int class indices ``(B,)`` or a float label matrix ``(B, C)``
    (one-hot, +-1 or rescaled), whose row-wise argmax is the class.
    Logged metrics: ``train_loss`` (per step), ``train_acc``, ``val_loss``, ``val_acc``,
    ``test_loss`` and ``test_acc`` (per epoch).
    """

    def __init__(
        self,
        input_dim: int = 784,
        num_classes: int = 10,
        hidden: int = 200,
        depth: int = 2,
        activation: Activation = "sign",
        bias: bool | None = None,
        optimizer: OptimizerName = "adam",
        lr: float | None = None,
        seed: int | None = None,
    ) -> None:
        super().__init__()
        input_dim = _check_positive_int("input_dim", input_dim)
        num_classes = _check_positive_int("num_classes", num_classes)
        hidden = _check_positive_int("hidden", hidden)
        depth = _check_positive_int("depth", depth)
        if num_classes < 2:
            raise ValueError(f"`num_classes` must be at least 2, got {num_classes}.")
        activation = _validate_choice("activation", activation, _ACTIVATIONS)
        optimizer = _validate_choice("optimizer", optimizer, _OPTIMIZERS)
        if bias is None:
            bias = activation != "sign"
        elif not isinstance(bias, bool):
            raise TypeError(f"`bias` must be True, False or None, got {bias!r}.")
        if lr is None:
            lr = _DEFAULT_LR[activation]
        elif isinstance(lr, bool) or not isinstance(lr, (int, float)):
            raise TypeError(f"`lr` must be a float or None, got {lr!r}.")
        elif not (math.isfinite(lr) and lr > 0):
            raise ValueError(f"`lr` must be a positive finite float, got {lr}.")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
            raise ValueError(f"`seed` must be a non-negative int or None, got {seed!r}.")

        self.save_hyperparameters()
        # Store the resolved values, so that checkpoints and `hparams` show what ran.
        self.hparams.bias = bias
        self.hparams.lr = float(lr)

        if seed is None:
            self.net = self._build_network(input_dim, num_classes, hidden, depth, activation, bias)
        else:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                self.net = self._build_network(
                    input_dim, num_classes, hidden, depth, activation, bias
                )

        self.train_acc = MulticlassAccuracy(num_classes=num_classes, average="micro")
        self.val_acc = MulticlassAccuracy(num_classes=num_classes, average="micro")
        self.test_acc = MulticlassAccuracy(num_classes=num_classes, average="micro")

    @staticmethod
    def _build_network(
        input_dim: int, num_classes: int, hidden: int, depth: int, activation: str, bias: bool
    ) -> nn.Sequential:
        layers: list[nn.Module] = []
        width_in = input_dim
        for _ in range(depth):
            layers.append(nn.Linear(width_in, hidden, bias=bias))
            if activation == "sign":
                layers.append(_SignActivation())
            elif activation == "relu":
                layers.append(nn.ReLU())
            else:
                layers.append(nn.Tanh())
            width_in = hidden
        layers.append(nn.Linear(width_in, num_classes, bias=bias))
        return nn.Sequential(*layers)

    def _flatten_inputs(self, x: Tensor) -> Float[Tensor, "batch input_dim"]:
        if not isinstance(x, Tensor):
            raise TypeError(f"Inputs `x` must be a torch.Tensor, got {type(x).__name__}.")
        if not torch.is_floating_point(x):
            raise TypeError(
                f"Inputs `x` must be a float tensor, got dtype {x.dtype}. "
                "Convert them first, e.g. `x.float() / 255` for uint8 pixels."
            )
        if x.ndim < 2:
            raise ValueError(
                f"Inputs `x` must have shape (batch, ...), got shape {tuple(x.shape)}. "
                "Add a batch dimension with `x.unsqueeze(0)`."
            )
        flat = x.reshape(x.shape[0], -1)
        input_dim = self.hparams.input_dim
        if flat.shape[1] != input_dim:
            raise ValueError(
                f"Inputs `x` of shape {tuple(x.shape)} flatten to {flat.shape[1]} features, "
                f"but the model has input_dim={input_dim}. Build the model with "
                f"input_dim={flat.shape[1]} or fix the data."
            )
        weight_dtype = self.net[0].weight.dtype
        return flat.to(weight_dtype)

    def _class_indices(self, y: Tensor, batch_size: int) -> Int[Tensor, " batch"]:
        """Convert labels ``(B,)`` int or ``(B, C)`` float to int64 class indices."""
        if not isinstance(y, Tensor):
            raise TypeError(f"Labels `y` must be a torch.Tensor, got {type(y).__name__}.")
        num_classes = self.hparams.num_classes
        if y.shape[0:1] != (batch_size,):
            raise ValueError(
                f"Labels `y` of shape {tuple(y.shape)} do not match the batch size {batch_size} "
                "of the inputs."
            )

        if y.ndim == 1:
            if torch.is_floating_point(y) or y.dtype == torch.bool:
                raise TypeError(
                    f"1-D labels `y` must be int class indices, got dtype {y.dtype}. "
                    "Cast them with `y.long()` or pass a (batch, num_classes) label matrix."
                )
            bad = y[(y < 0) | (y >= num_classes)]
            if bad.numel() > 0:
                raise ValueError(
                    f"Labels `y` must lie in [0, {num_classes}), got out-of-range values "
                    f"{sorted(set(bad.tolist()))}. Check num_classes or the label encoding."
                )
            return y.long()

        if y.ndim == 2:
            if not torch.is_floating_point(y):
                raise TypeError(
                    f"A label matrix `y` must be float, got dtype {y.dtype}. "
                    "Pass int class indices of shape (batch,) instead."
                )
            if y.shape[1] != num_classes:
                raise ValueError(
                    f"Label matrix `y` has {y.shape[1]} columns, but the model has "
                    f"num_classes={num_classes}. Build the model with num_classes={y.shape[1]} "
                    "or fix the labels."
                )
            if not torch.isfinite(y).all():
                raise ValueError("Label matrix `y` contains NaN or infinite values.")
            return y.argmax(dim=1)

        raise ValueError(
            f"Labels `y` must have shape (batch,) or (batch, {num_classes}), "
            f"got shape {tuple(y.shape)}."
        )

    def _unpack(self, batch: Any) -> tuple[Tensor, Tensor]:
        if not isinstance(batch, (tuple, list)) or len(batch) != 2:
            raise ValueError(
                f"A batch must be a pair (x, y), got {type(batch).__name__}"
                + (f" of length {len(batch)}" if isinstance(batch, (tuple, list)) else "")
                + "."
            )
        x, y = batch
        flat = self._flatten_inputs(x)
        return flat, self._class_indices(y, flat.shape[0])

    def forward(self, x: Float[Tensor, "batch ..."]) -> Float[Tensor, "batch classes"]:
        """Return the logits for a batch of inputs of any shape ``(B, ...)``."""
        return self.net(self._flatten_inputs(x))

    def _loss_and_logits(self, batch: Any) -> tuple[Tensor, Tensor, Tensor]:
        x, target = self._unpack(batch)
        logits = self.net(x)
        loss = nn.functional.cross_entropy(logits, target)
        return loss, logits, target

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        loss, logits, target = self._loss_and_logits(batch)
        batch_size = target.shape[0]
        self.train_acc(logits, target)
        self.log("train_loss", loss, batch_size=batch_size)
        self.log("train_acc", self.train_acc, on_step=False, on_epoch=True, batch_size=batch_size)
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        loss, logits, target = self._loss_and_logits(batch)
        batch_size = target.shape[0]
        self.val_acc(logits, target)
        self.log("val_loss", loss, batch_size=batch_size)
        self.log("val_acc", self.val_acc, prog_bar=True, batch_size=batch_size)

    def test_step(self, batch: Any, batch_idx: int) -> None:
        loss, logits, target = self._loss_and_logits(batch)
        batch_size = target.shape[0]
        self.test_acc(logits, target)
        self.log("test_loss", loss, batch_size=batch_size)
        self.log("test_acc", self.test_acc, batch_size=batch_size)

    def predict_step(self, batch: Any, batch_idx: int) -> Float[Tensor, "batch classes"]:
        """Return logits. ``batch`` is ``x`` alone or a pair ``(x, y)`` whose ``y`` is ignored."""
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        return self(x)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        if self.hparams.optimizer == "adam":
            return torch.optim.Adam(self.parameters(), lr=self.hparams.lr)
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)
