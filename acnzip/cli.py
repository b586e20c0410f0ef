"""The `acnzip` command line: a click group; each command is a thin wrapper over a module.

Errors the user can fix (bad data, a missing checkpoint, an existing output) print one line
on stderr and exit 1, without a traceback: wrap a command in @user_errors.
"""
from __future__ import annotations

import functools
import shlex
import sys
from pathlib import Path

import click

from . import __version__
from .archive import ArchiveError
from .config import CONFIG_NAMES
from .errors import AcnzipError

# Exceptions whose message is meant for the user (extend when adding commands). OSError
# covers unwritable outputs, a full disk, an existing output (OutputExistsError).
USER_ERRORS: tuple[type[BaseException], ...] = (AcnzipError, ArchiveError, OSError)


def user_errors(fn):
    """Turn USER_ERRORS into click errors: 'Error: <one line>' on stderr, exit status 1."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except click.ClickException:
            raise
        except USER_ERRORS as exc:
            msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise click.ClickException(msg) from None
    return wrapper


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "-V", "--version", prog_name="acnzip")
def main():
    """acnzip: lossless compression of image datasets with Associative Compression Networks.

    Train a model on a dataset with `acnzip train`.
    """


def _set_threads(threads: int | None) -> None:
    if threads:
        import torch
        torch.set_num_threads(threads)


def _explicit(ctx: click.Context, name: str) -> bool:
    return ctx.get_parameter_source(name) in (click.core.ParameterSource.COMMANDLINE,
                                              click.core.ParameterSource.ENVIRONMENT)


@main.command()
@click.argument("data", metavar="DATA")
@click.option("-o", "--output", required=True, metavar="MODEL.pt",
              type=click.Path(dir_okay=False, path_type=Path),
              help="Model file to write (configs, averaged weights, p(z), metadata).")
@click.option("--valid", metavar="DATA", help="Validation data of the same shape: periodic "
              "validation, choosing p(z)'s size, final nats/image.")
@click.option("--config", type=click.Choice(CONFIG_NAMES), default="cpu", show_default=True,
              help="Architecture and defaults: paper (ACN paper, MNIST; GPU), cpu (trainable "
              "on a few cores), tiny (tests).")
@click.option("--epochs", type=click.IntRange(min=0), help="Epochs in all [config's].")
@click.option("--batch-size", type=click.IntRange(min=1), help="[config's, 64]")
@click.option("--lr", type=click.FloatRange(min=0, min_open=True),
              help="Learning rate [1e-3 for adam, 1e-5 for rmsprop].")
@click.option("--optimizer", type=click.Choice(["adam", "rmsprop"]), help="[adam]")
@click.option("--polyak-decay", type=click.FloatRange(0, 1, max_open=True),
              help="Weight averaging decay [config's: 0.9999 paper, 0.999 cpu].")
@click.option("--seed", type=int, help="Seeds initialisation, code store, batches, noise [0].")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto",
              show_default=True)
@click.option("--threads", type=click.IntRange(min=1), help="CPU threads for torch.")
@click.option("--resume", type=click.Path(dir_okay=False, path_type=Path), metavar="CKPT",
              help="Continue from a checkpoint exactly where it stopped, with its settings "
              "(options repeated must agree; --epochs may extend the run). Overwrites MODEL.pt.")
@click.option("--checkpoint", type=click.Path(dir_okay=False, path_type=Path), metavar="CKPT",
              help="Checkpoint file [MODEL.pt.ckpt, or CKPT of --resume].")
@click.option("--checkpoint-every", type=click.FloatRange(min=0, min_open=True), default=10.0,
              show_default=True, metavar="MINUTES", help="Wall time between checkpoints.")
@click.option("--max-minutes", type=click.FloatRange(min=0, min_open=True), metavar="M",
              help="Stop after M minutes of training with a checkpoint, then write MODEL.pt "
              "as it stands (fitting p(z) and validating take a little longer).")
@click.option("--max-steps", type=click.IntRange(min=1), metavar="N",
              help="Stop after N steps in all (smoke runs), like --max-minutes.")
@click.option("-f", "--force", is_flag=True, help="Overwrite MODEL.pt if it exists.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
@click.pass_context
@user_errors
def train(ctx, data, output, valid, config, epochs, batch_size, lr, optimizer, polyak_decay,
          seed, device, threads, resume, checkpoint, checkpoint_every, max_minutes, max_steps,
          force, quiet):
    """Train an ACN on DATA and write MODEL.pt.

    DATA is a folder of images (searched recursively; all the same size and mode) or a .npy /
    .npz array of uint8 (N, H, W) or (N, H, W, C); FILE.npz:KEY picks an array. Binary data
    ({0,1} or {0,255}) gets a Bernoulli decoder, other data a 256-way one. Losses are in nats
    per image. Checkpoints are written every --checkpoint-every minutes, at each epoch end and
    when stopping; Ctrl-C stops after the current step with a checkpoint.
    """
    from .atomic import check_output
    from .data import load_dataset
    from .train import RunOptions, TrainingInterrupted, train as run_training

    check_output(output, force or resume is not None)
    _set_threads(threads)
    dataset = load_dataset(data)
    valid_set = load_dataset(valid) if valid else None
    ckpt = checkpoint or resume or output.with_name(output.name + ".ckpt")
    opts = RunOptions(checkpoint=ckpt, checkpoint_minutes=checkpoint_every,
                      max_minutes=max_minutes, max_steps=max_steps, progress=not quiet)
    overrides = dict(epochs=epochs, batch_size=batch_size, lr=lr, optimizer=optimizer,
                     polyak_decay=polyak_decay, seed=seed)
    command = shlex.join(["acnzip", *sys.argv[1:]])
    try:
        result = run_training(dataset, output, valid=valid_set,
                              config=config if _explicit(ctx, "config") or not resume else None,
                              overrides=overrides, resume=resume, device=device, opts=opts,
                              command=command)
    except TrainingInterrupted as stop:
        click.echo(f"interrupted at step {stop.step}; checkpoint {stop.checkpoint}; continue "
                   f"with --resume {stop.checkpoint}", err=True)
        ctx.exit(130)
    _report(result, output)


def _report(result, output: Path) -> None:
    meta = result.metadata
    line = f"wrote {output}: {result.steps} steps ({result.reason})"
    if meta.get("final_valid"):
        fv = meta["final_valid"]
        line += (f"; validation {fv['total']:.2f} nats/image ({fv['bits_per_dim']:.4f} bits/dim),"
                 f" {fv['total_gmm']:.2f} with p(z) alone")
    line += f"; p(z) has {meta['gmm_components']} components; checkpoint {result.checkpoint}"
    click.echo(line, err=True)
