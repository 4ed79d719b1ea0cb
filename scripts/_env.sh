# Sourced by scripts/demo and scripts/test: make .venv and install mlverify into it.
# Re-installs only when pyproject.toml changed since the last install.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "setting up .venv (first run only)..." >&2
  "$PY" -m venv .venv
fi
extras=${MLVERIFY_EXTRAS:-test}
stamp=".venv/.mlverify-installed-$extras"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  if [ "$extras" = none ]; then target="."; else target=".[$extras]"; fi
  echo "installing mlverify ($target) into .venv..." >&2
  # editable_mode=compat: a plain .pth entry, no import hook (about 8 ms less start-up,
  # which pre-commit pays on every run); falls back to the default editable mode.
  pipi() { .venv/bin/python -m pip install --disable-pip-version-check -q "$@"; }
  if ! { pipi --upgrade pip &&
         { pipi --config-settings editable_mode=compat -e "$target" || pipi -e "$target"; }; } \
       >.venv/install.log 2>&1; then
    cat .venv/install.log >&2
    echo "set-up failed: see the pip output above" >&2
    exit 2
  fi
  if [ "$extras" = test ]; then
    # Benign-sample tests write real torch checkpoints. Only a CPU wheel found locally is
    # installed (a plain `pip install torch` would pull a multi-GB CUDA build); without
    # one those tests skip, and say so.
    wheel=$(ls "${PIP_FIND_LINKS:-/opt/wheels}"/torch-*cpu*.whl 2>/dev/null | head -n 1 || true)
    if [ -n "$wheel" ]; then
      # accelerate (for the transformers Trainer test) needs torch: installed after it
      { pipi "$wheel" && pipi accelerate; } \
        >>.venv/install.log 2>&1 || echo "note: could not install $wheel; torch tests will skip" >&2
    else
      echo "note: no local CPU torch wheel; torch-based scanner tests will skip" >&2
    fi
  fi
  touch "$stamp"
fi
export PATH="$PWD/.venv/bin:$PATH"
