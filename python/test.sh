#!/usr/bin/env bash
# The Python package's tests: builds the wheel from this checkout (cargo's dev profile, so the
# dependencies the workspace's `cargo test` compiled are reused), installs it into a fresh virtual
# environment with pytest and librosa, and runs python/tests against it and the `soundalike` binary.
# Where another CPython (3.9, the oldest the abi3 wheel is for) is on the machine, the same wheel is
# installed there too and embeds a file.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=target/py-test
rm -rf "$VENV" target/py-wheel
"$PY" -m venv "$VENV"
"$VENV/bin/pip" install -q --disable-pip-version-check "maturin>=1.5,<2" "pytest>=7" "librosa>=0.10"
(cd python && "../$VENV/bin/maturin" build --locked --profile dev --out ../target/py-wheel)
wheel=$(ls target/py-wheel/soundalike-*-abi3-*.whl)
"$VENV/bin/pip" install -q --disable-pip-version-check --force-reinstall --no-deps "$wheel"
cargo build --locked --bin soundalike
SOUNDALIKE_BIN=target/debug/soundalike SOUNDALIKE_PY_REQUIRE=1 "$VENV/bin/python" -m pytest -q python/tests
old=""
for c in "$HOME/.pyenv/versions/3.9"*/bin/python3.9 /usr/bin/python3.9 python3.9; do
  if "$c" -c "import venv" >/dev/null 2>&1; then old=$c; break; fi
done
if [ -n "$old" ]; then
  rm -rf target/py-test-39
  "$old" -m venv target/py-test-39
  target/py-test-39/bin/pip install -q --disable-pip-version-check "$wheel"
  target/py-test-39/bin/python -c "
import sys, soundalike
v = soundalike.Model().embed('tests/data/clip.mp3')
assert v.shape == (128,), v.shape
print('abi3 wheel on Python', sys.version.split()[0], ': embeds,', v.shape)"
else
  echo "no CPython 3.9 here: the abi3 wheel was tested on $("$PY" --version) only"
fi
