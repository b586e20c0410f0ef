"""Ship a new default model, keeping the one it replaces (packed) in acnzip/models/retired/.

    python scripts/ship-model.py NEW.pt NAME [MODELS]   (NAME: binarized-mnist.pt or mnist.pt;
                                                         MODELS: acnzip/models, for tests)

Checks that NEW.pt is an acnzip model for the same kind of images as the default NAME, packs
the current NAME against NEW.pt (acnzip/retired.py) into retired/STEM-SHA16.pt.packed,
checks that it restores byte for byte, then puts NEW.pt in place as NAME (atomic writes, in
that order, so an interruption never loses the old default). Afterwards: add the new hash to
EVER_SHIPPED in tests/acnzip/test_retired_models.py and a row to acnzip/models/README.md.
"""
from __future__ import annotations

import hashlib
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from acnzip.atomic import atomic_write_bytes                      # noqa: E402
from acnzip.modelfile import (MODELS, RETIRED, SHIPPED, ModelFileError,  # noqa: E402
                              check_fits, load_model)
from acnzip.retired import PACKED_SUFFIX, pack, unpack             # noqa: E402


def main(argv: list[str]) -> int:
    if len(argv) not in (2, 3) or argv[1] not in SHIPPED.values():
        print("usage: " + __doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 1
    new_path, name = Path(argv[0]), argv[1]
    models = Path(argv[2]) if len(argv) == 3 else MODELS
    retired = models / RETIRED.name
    old_path = models / name
    new, old = new_path.read_bytes(), old_path.read_bytes()
    shape_chw, binary = next(k for k, v in SHIPPED.items() if v == name)
    try:
        check_fits(load_model(new), shape_chw, binary, str(new_path))
    except ModelFileError as exc:
        print(f"ship-model: {new_path} does not code the images {name} serves ({exc})",
              file=sys.stderr)
        return 1
    sha_old, sha_new = (hashlib.sha256(b).hexdigest() for b in (old, new))
    if sha_old == sha_new:
        print(f"ship-model: {new_path} is already {name}", file=sys.stderr)
        return 1
    packed = pack(old, base=new)
    if unpack(packed, {sha_new: new}.get) != old:
        print("ship-model: the packed file does not restore the old model", file=sys.stderr)
        return 1
    target = retired / f"{Path(name).stem}-{sha_old[:16]}.pt{PACKED_SUFFIX}"
    atomic_write_bytes(target, packed)
    atomic_write_bytes(old_path, new)
    print(f"retired {name} (sha256 {sha_old}) as {target}: "
          f"{len(old):,} -> {len(packed):,} bytes")
    print(f"shipped {new_path} as {name}: sha256 {sha_new}")
    print("now add the new hash to EVER_SHIPPED (tests/acnzip/test_retired_models.py) and a "
          "row to acnzip/models/README.md")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
