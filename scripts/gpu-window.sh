#!/usr/bin/env bash
# Make room for a GPU window, and put things back after it.
#
#   scripts/gpu-window.sh prepare    before the device calls
#   scripts/gpu-window.sh restore    right after them (also after a failed call)
#
# A device call sends the working tree: tracked files, untracked files git does not ignore,
# and the carried .gpu folder (the training data, 9.9 MB), 64 MiB at most, and is refused
# above that. The retired models (acnzip/models/retired/: every default ever replaced, kept
# because archives made with them must stay decodable) grow by 3-4 MB with each new default,
# and scripts/train-gpu.sh never reads them. `prepare` takes them out of git's index only
# (`git rm --cached`: the files stay on disk, byte for byte) and ignores them in
# .git/info/exclude, so they neither travel nor show as untracked; it then prints what will
# travel and fails if that is over 64 MiB. `restore` puts their index entries back from HEAD
# and removes the exclude line; each refuses to run out of turn, and `prepare` refuses while
# retired/ has changes not in HEAD. Do not commit in between: the commit would delete them,
# and CI refuses it (test_every_model_ever_shipped_is_still_shipped_and_found_by_its_hash).
# `prepare` needs .gpu/data (scripts/gpu-data.py) and .gpu/whl (see scripts/train-gpu.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
retired=acnzip/models/retired
line=/$retired/
exclude=$(git rev-parse --git-path info/exclude)
limit=$((64 * 1024 * 1024))

prepared() { grep -qxF "$line" "$exclude" 2>/dev/null; }

case ${1:-} in
prepare)
    if prepared; then
        echo "gpu-window: already prepared (run 'scripts/gpu-window.sh restore' after the calls)" >&2
        exit 1
    fi
    if [[ -n $(git status --porcelain -- "$retired") ]]; then
        echo "gpu-window: $retired has changes not in HEAD; commit or undo them first" >&2
        exit 1
    fi
    if ! ls .gpu/data/*.npy.xz >/dev/null 2>&1 || ! ls .gpu/whl/*.whl >/dev/null 2>&1; then
        echo "gpu-window: build .gpu/data (scripts/gpu-data.py) and .gpu/whl first" >&2
        exit 1
    fi
    mkdir -p "$(dirname "$exclude")"
    grep -qxF /.gpu/ "$exclude" 2>/dev/null || echo /.gpu/ >> "$exclude"
    echo "$line" >> "$exclude"            # first: an interrupted prepare is still 'prepared'
    git rm -r -q --cached -- "$retired"
    tracked=$( (git ls-files -z --cached --others --exclude-standard | xargs -0 -r stat -c %s \
                2>/dev/null || true) | awk '{s += $1} END {print s + 0}')
    carried=$(du -sb .gpu | cut -f1)
    echo "gpu-window: $((tracked + carried)) bytes will travel ($tracked of the tree, $carried" \
         "of .gpu; limit $limit); $retired stays on disk, out of the index until 'restore'"
    if ((tracked + carried > limit)); then
        echo "gpu-window: over the limit; run 'scripts/gpu-window.sh restore'" >&2
        exit 1
    fi
    ;;
restore)
    if ! prepared; then
        echo "gpu-window: not prepared (no '$line' in $exclude); nothing changed" >&2
        exit 1
    fi
    git reset -q -- "$retired"
    rc=0
    grep -vxF "$line" "$exclude" > "$exclude.tmp" || rc=$?
    if ((rc > 1)); then                   # 1: no other lines; 2: could not read
        rm -f "$exclude.tmp"
        echo "gpu-window: cannot rewrite $exclude; remove the line '$line' yourself" >&2
        exit 1
    fi
    mv "$exclude.tmp" "$exclude"
    if [[ -n $(git status --porcelain -- "$retired") ]]; then
        echo "gpu-window: $retired differs from HEAD after restoring:" >&2
        git status --short -- "$retired" >&2
        exit 1
    fi
    echo "gpu-window: $retired is tracked again, as in HEAD"
    ;;
*)
    echo "usage: scripts/gpu-window.sh prepare|restore" >&2
    exit 2
    ;;
esac
