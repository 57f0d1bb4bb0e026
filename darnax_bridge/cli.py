"""The ``darnax`` command.

``darnax fit | validate | test | predict`` are Lightning's subcommands (``LightningCLI``) for a
:class:`DarnaxModule` and any ``LightningDataModule`` (default: ``MNISTDataModule`` on the
embedded subset); every option can come from a YAML file given with ``--config``.
``darnax compare`` trains darnax and a backprop MLP on the same data and prints a comparison.
"""

import logging
import os
import sys
import warnings
from typing import Any

import lightning as L
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.loggers import CSVLogger

from ._compare import run_compare
from ._module import DarnaxModule

logger = logging.getLogger(__name__)

DESCRIPTION = (
    "Train and evaluate deep asymmetric recurrent networks (darnax) with Lightning. Subcommands: fit, "
    "validate, test, predict (Lightning's), and compare (darnax against a backprop MLP; see "
    "`darnax compare --help`). Without --trainer.logger, metrics go to a CSV logger under "
    "--trainer.default_root_dir (default: the current directory)."
)
DEFAULT_DATAMODULE = "darnax_bridge.data.MNISTDataModule"


class DarnaxCLI(LightningCLI):
    """``LightningCLI`` for :class:`DarnaxModule` with darnax's defaults.

    - the DataModule is any ``LightningDataModule`` subclass, ``MNISTDataModule`` by default;
    - the logger is a ``CSVLogger`` under ``default_root_dir`` unless ``--trainer.logger`` is given;
    - the optimizer options are not added, because the JAX core owns the optimizer;
    - an invalid value rejected by a constructor ends with a usage error instead of a traceback.
    """

    def __init__(self, args: list[str] | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("parser_kwargs", {"description": DESCRIPTION})
        super().__init__(
            DarnaxModule,
            L.LightningDataModule,
            subclass_mode_data=True,
            auto_configure_optimizers=False,
            args=args,
            **kwargs,
        )

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.set_defaults({"data": {"class_path": DEFAULT_DATAMODULE}})

    def instantiate_classes(self) -> None:
        try:
            super().instantiate_classes()
        except (ValueError, TypeError) as error:
            logger.debug("Instantiation failed.", exc_info=True)
            self._parser(self.subcommand).error(f"invalid configuration: {error}")

    def instantiate_trainer(self, **kwargs: Any) -> L.Trainer:
        trainer_config = self._get(self.config_init, "trainer", default={})
        if trainer_config.get("logger") in (None, True) and "logger" not in kwargs:
            root = trainer_config.get("default_root_dir") or os.getcwd()
            kwargs["logger"] = CSVLogger(save_dir=root)
        return super().instantiate_trainer(**kwargs)


def main(args: list[str] | None = None) -> None:
    """Run the ``darnax`` command with ``args`` (default: ``sys.argv[1:]``)."""
    # A step checkpoint of DarnaxModule contains the state after the step, which is what a resumed run
    # needs, so Lightning's advice to save the state before the optimizer step does not apply.
    warnings.filterwarnings("ignore", message="Using ModelCheckpoint with manual optimization")
    argv = sys.argv[1:] if args is None else list(args)
    if not argv:
        print(
            "usage: darnax {fit,validate,test,predict,compare} ...\n"
            "error: a subcommand is required; run `darnax --help` or `darnax compare --help`.",
            file=sys.stderr,
        )
        raise SystemExit(2)
    if argv[0] == "compare":
        run_compare(argv[1:])
        return
    # LightningCLI warns when it gets `args` while sys.argv has arguments too, so pass None then.
    try:
        DarnaxCLI(args=None if args is None else argv)
    except FileNotFoundError as error:
        # A missing data folder or checkpoint is a usage error: report it without a traceback.
        logger.debug("A file was not found.", exc_info=True)
        print(f"darnax: error: {error}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
