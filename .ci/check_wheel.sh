#!/usr/bin/env bash
# The installed-wheel checks: what a user gets from `pip install llm-notebook`, with no Node.js.
#
#  1. Builds the wheel from a clean copy of the working tree (the files git would commit), with
#     pip's build isolation: hatch-jupyter-builder runs `npm ci && npm run build` in js/, which
#     also builds the JupyterLab plugin (js/lab) into llm_notebook/labextension.
#  2. Installs the wheel into a fresh virtualenv, then hides node/npm/npx from PATH.
#  3. Checks, in that environment:
#       - `jupyter labextension list` shows llm-notebook enabled and OK;
#       - `jupyter server extension list` shows llm_notebook enabled and OK;
#       - `python -m jupyterlab.browser_check --no-browser-test` (server side, no browser);
#       - the same browser check with a browser: .ci/browser_check.py runs jupyterlab's
#         browser_check but drives Debian's Chromium with Python Playwright, because its own
#         driver needs Node.js, npm's playwright and a browser download (none exist here);
#       - a new user's first steps: .ci/new_user_check.py starts jupyter lab from the venv,
#         runs a %%llm cell against the loopback server and finds the call in the LLM sidebar.
#
# Environment: PYTHON (default python3) builds the wheel and creates the venv; CHECK_WHEEL_KEEP=1
# keeps the work directory; CHECK_WHEEL_SYSTEM_SITE=1 lets the venv see the system's packages
# (faster; the default installs every dependency fresh, as a user would).
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
# Absolute interpreter paths: PATH changes below (the venv first, node hidden).
PYTHON=$("${PYTHON:-python3}" -c 'import sys; print(sys.executable)')
PLAYWRIGHT_PYTHON=$("${PLAYWRIGHT_PYTHON:-$PYTHON}" -c 'import sys; print(sys.executable)')
"$PLAYWRIGHT_PYTHON" -c 'import playwright' 2>/dev/null ||
  { echo "FAILED: $PLAYWRIGHT_PYTHON has no playwright package (pip install playwright)" >&2; exit 1; }
WORK=$(mktemp -d -t llmnb-wheel-XXXXXX)
cleanup() {
  if [ "${CHECK_WHEEL_KEEP:-0}" = 1 ]; then echo "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

step() { printf '\n== %s\n' "$*"; }
fail() { printf 'FAILED: %s\n' "$*" >&2; exit 1; }
strip_colors() { sed 's/\x1b\[[0-9;]*m//g'; }

step "clean copy of the working tree"
mkdir -p "$WORK/src"
"$PYTHON" - "$REPO" "$WORK/src" <<'EOF'
import os, shutil, subprocess, sys
repo, dest = sys.argv[1:3]
listed = subprocess.run(["git", "-C", repo, "ls-files", "-z", "--cached", "--others",
                         "--exclude-standard"], check=True, capture_output=True).stdout
count = 0
for rel in filter(None, listed.decode().split("\0")):
    src = os.path.join(repo, rel)
    if os.path.isfile(src):  # skips files deleted but not yet committed
        os.makedirs(os.path.dirname(os.path.join(dest, rel)), exist_ok=True)
        shutil.copy2(src, os.path.join(dest, rel))
        count += 1
print(f"{count} files")
EOF
for built in llm_notebook/static llm_notebook/labextension js/node_modules js/lab/node_modules; do
  [ ! -e "$WORK/src/$built" ] || fail "$built is in the copy: it must be git-ignored"
done

step "build the wheel (Node.js used here only)"
command -v node >/dev/null || fail "building needs Node.js 20+ on PATH"
# The lock (.ci/constraints.txt) pins the build backends too, as in .ci/install.
CONSTRAINTS="$REPO/.ci/constraints.txt"
(cd "$WORK/src" && "$PYTHON" -m pip wheel --no-deps --build-constraint "$CONSTRAINTS" \
  --wheel-dir "$WORK/dist" . 2>&1 | tail -n 5)
WHEEL=$(ls "$WORK"/dist/llm_notebook-*.whl)
echo "$WHEEL"
"$PYTHON" - "$WHEEL" <<'EOF'
import sys, zipfile
names = set(zipfile.ZipFile(sys.argv[1]).namelist())
data = [n for n in names if ".data/data/share/jupyter/labextensions/llm-notebook/" in n]
config = [n for n in names if n.endswith("etc/jupyter/jupyter_server_config.d/llm_notebook.json")]
needed = {"package.json", "install.json", "static/style.js", "schemas/llm-notebook/plugin.json"}
found = {n.split("/labextensions/llm-notebook/", 1)[1] for n in data}
missing = needed - found
static = [n for n in names if n.startswith("llm_notebook/static/") and n.endswith(".js")]
print(f"lab extension files: {len(data)}, server config: {len(config)}, widget bundles: {len(static)}")
if missing or not config or not static:
    sys.exit(f"wheel is missing {sorted(missing)} / server config / widget bundles")
EOF

step "fresh virtualenv"
if [ "${CHECK_WHEEL_SYSTEM_SITE:-0}" = 1 ]; then
  "$PYTHON" -m venv --system-site-packages "$WORK/venv"
else
  "$PYTHON" -m venv "$WORK/venv"
fi
VENV_BIN="$WORK/venv/bin"
# The venv's own pip may predate the lock's: bring it to the locked version first. The wheel's
# dependencies come from the lock, as everywhere in CI (a user's pip resolves the open ranges).
"$VENV_BIN/python" -m pip install -q -c "$CONSTRAINTS" --upgrade pip >"$WORK/pip-install.log" 2>&1
"$VENV_BIN/python" -m pip install -q -c "$CONSTRAINTS" "$WHEEL" >>"$WORK/pip-install.log" 2>&1 ||
  { tail -n 30 "$WORK/pip-install.log"; fail "pip install of the wheel failed"; }
"$VENV_BIN/python" -m pip list 2>/dev/null | grep -Ei "^(llm-notebook|jupyterlab|jupyter_server|jupyter-server) "

step "hide Node.js"
# Each PATH directory holding node/npm is replaced by a shadow directory with links to all its
# other programs (on merged-/usr systems node sits in /usr/bin beside everything else).
NO_NODE_PATH="$VENV_BIN"
IFS=: read -r -a dirs <<<"$PATH"
i=0
for dir in "${dirs[@]}"; do
  [ -d "$dir" ] || continue
  if [ -e "$dir/node" ] || [ -e "$dir/npm" ] || [ -e "$dir/nodejs" ]; then
    i=$((i + 1)); shadow="$WORK/path$i"; mkdir -p "$shadow"
    for f in "$dir"/*; do
      case "$(basename "$f")" in node|nodejs|npm|npx|corepack|yarn|yarnpkg|pnpm) continue ;; esac
      ln -s "$f" "$shadow/" 2>/dev/null || true
    done
    NO_NODE_PATH="$NO_NODE_PATH:$shadow"
  else
    NO_NODE_PATH="$NO_NODE_PATH:$dir"
  fi
done
export PATH="$NO_NODE_PATH"
hash -r
if command -v node >/dev/null || command -v npm >/dev/null; then fail "node is still on PATH"; fi
echo "node: not on PATH; jupyter: $(command -v jupyter)"

# Nothing from the user's own Jupyter dirs may make the checks pass.
export JUPYTER_CONFIG_DIR="$WORK/jupyter-config" JUPYTER_DATA_DIR="$WORK/jupyter-data"
export JUPYTER_RUNTIME_DIR="$WORK/jupyter-runtime" LLM_NOTEBOOK_LOG="$WORK/log.db"
unset JUPYTER_PATH JUPYTER_CONFIG_PATH PYTHONPATH
cd "$WORK"
# Jupyter refuses to run as root unless told (CI containers run as root).
ROOT_FLAG=()
if [ "$(id -u)" = 0 ]; then ROOT_FLAG=(--allow-root); fi

step "jupyter labextension list"
jupyter labextension list 2>&1 | strip_colors | tee "$WORK/labext.txt"
grep -Eq "llm-notebook v[0-9][^ ]* enabled +OK" "$WORK/labext.txt" ||
  fail "llm-notebook is not listed as enabled and OK"

step "jupyter server extension list"
jupyter server extension list 2>&1 | strip_colors | tee "$WORK/serverext.txt"
grep -Eq "^ +llm_notebook enabled" "$WORK/serverext.txt" || fail "llm_notebook server extension not enabled"
grep -Eq "llm_notebook [0-9][^ ]* OK" "$WORK/serverext.txt" || fail "llm_notebook server extension not OK"

step "python -m jupyterlab.browser_check --no-browser-test"
python -m jupyterlab.browser_check --no-browser-test "${ROOT_FLAG[@]}" 2>&1 | tail -n 5

step "browser check in Chromium (jupyterlab.browser_check, Python Playwright driver)"
export PLAYWRIGHT_PYTHON
python "$REPO/.ci/browser_check.py" "${ROOT_FLAG[@]}" 2>&1 | tail -n 12

step "a new user's first %%llm call, found in the sidebar"
"$PLAYWRIGHT_PYTHON" "$REPO/.ci/new_user_check.py" "$VENV_BIN/python"

printf '\nall installed-wheel checks passed\n'
