#!/usr/bin/env bash
# Run the README's two commands, exactly as written, on a stock Debian 12 (bookworm) root:
# a system Python that is externally managed (PEP 668) and has no pip.
#
#   bench/debian_readme.sh [--tests] [CHECKOUT]   (as root; CHECKOUT defaults to this repository)
#
# --tests runs the README's test command only, and exits with its exit code (pytest's: 5 when
# no test was collected); `.ci/run` runs it so, to prove the suite on a fresh machine.
#
# Too slow for the default suite (a debootstrap the first time, ~3 GB of torch from the package
# registry, the whole test suite). What it does:
#   1. builds a minimal bookworm root with debootstrap, with the README's prerequisites and
#      nothing else (once; the pristine tarball is the one the image test's base image is made
#      from, tests/support/image_base.py, under $COMFY_IMAGE_BASE_CACHE, default
#      /work/cache/image-base), unpacks it afresh under $DEBIAN_ROOT_CACHE (default /work/cache)
#      so every run starts from a clean root, and checks that its Python is marked externally
#      managed;
#   2. clones CHECKOUT's committed HEAD to /src/comfy-install inside the root and copies the
#      shared fixtures (/work/shared, or $SHARED) beside it to /src/shared;
#   3. maps the ComfyUI GitHub URL to a local repository holding the fixture bundles (git
#      url.<base>.insteadOf, in the root's /etc/gitconfig), since GitHub may be unreachable;
#   4. runs the README's first two ```bash blocks, read from the committed README.md, in /src/comfy-install
#      with a clean environment (HOME=/root, so the install goes to the root's throwaway ~/ComfyUI);
#   5. prints each command's exit code and duration, and exits non-zero if one failed.
#
# The host's uv and pip caches ($DEBIAN_README_UV_CACHE, default `uv cache dir`'s answer or
# ~/.cache/uv; $DEBIAN_README_PIP_CACHE, default ~/.cache/pip; `none` for neither) are
# brought into the root's ~/.cache, so the real tests' torch wheels stay warm: they hold
# downloads only, checked by hash, and change nothing a test sees. On the root's filesystem the
# uv cache is a hardlinked copy (`cp -al`, seconds), so the root's uv hardlinks into venvs as it
# does on a user's machine (copying the 3 GB of CUDA wheels of each real install cost minutes);
# elsewhere it is bind-mounted and uv copies (UV_LINK_MODE=copy: no hardlink crosses a mount).
#
# Where this machine cannot reach what the install command needs, the command as written cannot
# finish, whatever the README says: the pinned upstream ComfyUI commit is not in the local
# fixture bundles (they are snapshots with their own hashes), and without a GPU the plan takes
# torch from download.pytorch.org/whl/cpu. Then the install command is run as written first
# (its result is reported: everything up to the step that needs the network is proven), and
# once more with the flags the real tests use appended (`--comfyui-ref TAG --torch-index
# default`); that second run is the one that decides. Set DEBIAN_README_STRICT=1 to count only
# the command as written.
set -euo pipefail

HERE="$(cd "$(dirname "$0")/.." && pwd)"
TESTS_ONLY=0
if [ "${1:-}" = --tests ]; then TESTS_ONLY=1; shift; fi
CHECKOUT="$(cd "${1:-$HERE}" && pwd)"
CACHE="${DEBIAN_ROOT_CACHE:-/work/cache}"
ROOT="$CACHE/debian-bookworm-root"
SHARED="${SHARED:-}"
STRICT="${DEBIAN_README_STRICT:-0}"
UV_CACHE="${DEBIAN_README_UV_CACHE:-}"
if [ -z "$UV_CACHE" ]; then
    UV_CACHE="$("$HERE/.tool/bin/uv" cache dir 2>/dev/null || true)"
    UV_CACHE="${UV_CACHE:-${UV_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/uv}}"
fi
PIP_CACHE="${DEBIAN_README_PIP_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/pip}"

log() { printf '== %s\n' "$*" >&2; }
die() { printf 'debian_readme: %s\n' "$*" >&2; exit 2; }

[ "$(id -u)" = 0 ] || die "needs root (debootstrap, chroot, mount)"
git -C "$CHECKOUT" cat-file -e HEAD:README.md 2>/dev/null || die "$CHECKOUT has no committed README.md"
if [ -z "$SHARED" ]; then
    for candidate in "$CHECKOUT/../shared" /work/shared; do
        if [ -d "$candidate/fixtures" ]; then SHARED="$(cd "$candidate" && pwd)"; break; fi
    done
fi
[ -n "$SHARED" ] && [ -d "$SHARED/fixtures" ] || die "no shared fixtures (set SHARED=DIR)"

# --- the README's commands: its first two ```bash blocks, one line each -------------------------
readme_block() {  # N: the Nth ```bash block of README.md, joined into one line
    awk -v want="$1" '
        /^```bash[[:space:]]*$/ { n++; inside = (n == want); next }
        /^```/ { if (inside) exit; next }
        inside { printf "%s%s", sep, $0; sep = "\n" }
    ' <(git -C "$CHECKOUT" show HEAD:README.md)
}
INSTALL_CMD="$(readme_block 1)"
TEST_CMD="$(readme_block 2)"
[ -n "$INSTALL_CMD" ] && [ -n "$TEST_CMD" ] || die "README.md has no two \`\`\`bash blocks"
if ! git -C "$CHECKOUT" diff --quiet HEAD -- 2>/dev/null; then
    log "warning: $CHECKOUT has uncommitted changes; the root gets its committed HEAD only"
fi

# --- mounts, undone on every exit ---------------------------------------------------------------
MOUNTED=()
mounted_under_root() { awk -v r="$ROOT" '$2 == r || index($2, r "/") == 1 { print $2 }' /proc/mounts; }
cleanup() {
    local i
    for ((i = ${#MOUNTED[@]} - 1; i >= 0; i--)); do
        umount "${MOUNTED[i]}" 2>/dev/null || umount -l "${MOUNTED[i]}" || true
    done
    MOUNTED=()
    local left
    left="$(mounted_under_root)"
    [ -z "$left" ] || printf 'debian_readme: still mounted: %s\n' "$left" >&2
}
trap cleanup EXIT
trap 'exit 130' INT TERM
bind() {  # SRC DEST: bind-mount a host path into the root
    mkdir -p "$ROOT$2"
    mount --bind "$1" "$ROOT$2"
    MOUNTED+=("$ROOT$2")
}

# --- 1. a clean bookworm root -------------------------------------------------------------------
mkdir -p "$CACHE"
[ -z "$(mounted_under_root)" ] || die "something is still mounted under $ROOT; unmount it first"
# One debootstrap'd tarball for this script and the image test: tests/support/image_base.py
# makes it (stdlib only, so the system Python runs it) and says where it is.
image_base() {  # FUNCTION: call support.image_base.FUNCTION() and print what it returns
    python3 -c 'import sys; sys.path.insert(0, sys.argv[1]); import support.image_base as m; print(getattr(m, sys.argv[2])())' \
        "$CHECKOUT/tests" "$1"
}
TARBALL="$(image_base tarball_path)"
if [ ! -f "$TARBALL" ]; then
    command -v debootstrap >/dev/null || {
        log "installing debootstrap"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
    }
    log "debootstrap bookworm into $TARBALL (tests/support/image_base.py)"
    start=$SECONDS
    TARBALL="$(image_base base_tarball)" || die "debootstrap failed (see above)"
    log "debootstrap took $((SECONDS - start)) s"
fi
log "unpacking the pristine root from $TARBALL"
rm -rf "$ROOT"
mkdir -p "$ROOT"
tar -C "$ROOT" -xf "$TARBALL"
compgen -G "$ROOT/usr/lib/python3.*/EXTERNALLY-MANAGED" >/dev/null \
    || die "the root's Python is not marked externally managed (no /usr/lib/python3.*/EXTERNALLY-MANAGED)"
log "externally managed: $(cd "$ROOT" && ls usr/lib/python3.*/EXTERNALLY-MANAGED)"
if chroot "$ROOT" /usr/bin/python3 -c 'import pip' 2>/dev/null; then
    die "the root's system Python has pip; it should not (no python3-pip)"
fi

# --- 2. the checkout and the fixtures inside it -------------------------------------------------
SHA="$(git -C "$CHECKOUT" rev-parse HEAD)"
git clone -q --no-hardlinks "$CHECKOUT" "$ROOT/src/comfy-install"
git -C "$ROOT/src/comfy-install" checkout -q --detach "$SHA"
cp -a "$SHARED" "$ROOT/src/shared"
cp -L /etc/resolv.conf "$ROOT/etc/resolv.conf"
# debootstrap writes no /etc/hosts (the Debian installer does): without it `localhost` does not
# resolve, which a stock Debian machine never sees.
[ -f "$ROOT/etc/hosts" ] || printf '127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\n' >"$ROOT/etc/hosts"

# This machine's network may pass through a TLS proxy whose CA only the host trusts: give the
# root the host's CAs that it lacks (Debian's way: /usr/local/share/ca-certificates) and the same
# CA variables the host sets (uv reads SSL_CERT_FILE; pip, curl and git theirs).
HOST_BUNDLE=/etc/ssl/certs/ca-certificates.crt
if [ -f "$HOST_BUNDLE" ]; then
    python3 - "$HOST_BUNDLE" "$ROOT$HOST_BUNDLE" "$ROOT/usr/local/share/ca-certificates" <<'PY'
import re, sys
from pathlib import Path
pem = re.compile(r"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.S)
host, root, dest = (Path(a) for a in sys.argv[1:])
known = set(pem.findall(root.read_text()))
extra = [c for c in pem.findall(host.read_text()) if c not in known]
dest.mkdir(parents=True, exist_ok=True)
for n, cert in enumerate(extra):
    (dest / f"host-{n}.crt").write_text(cert + "\n")
print(f"== {len(extra)} CA certificate(s) of this host added to the root", file=sys.stderr)
PY
    chroot "$ROOT" /usr/sbin/update-ca-certificates >/dev/null
fi
CA_ENV=()
for name in SSL_CERT_FILE PIP_CERT REQUESTS_CA_BUNDLE CURL_CA_BUNDLE GIT_SSL_CAINFO; do
    [ -z "${!name:-}" ] || CA_ENV+=("$name=$HOST_BUNDLE")
done
for name in http_proxy https_proxy no_proxy HTTP_PROXY HTTPS_PROXY NO_PROXY; do
    [ -z "${!name:-}" ] || CA_ENV+=("$name=${!name}")
done

mkdir -p "$ROOT/proc" && mount -t proc proc "$ROOT/proc" && MOUNTED+=("$ROOT/proc")
bind /sys /sys
bind /dev /dev
bind /dev/pts /dev/pts
if mountpoint -q /dev/shm; then bind /dev/shm /dev/shm; fi
# The host's download caches (see the top): warm wheels, nothing else of the host.
if [ "$UV_CACHE" != none ] && [ -d "$UV_CACHE" ]; then
    mkdir -p "$ROOT/root/.cache"
    if [ "$(stat -c %d "$UV_CACHE")" = "$(stat -c %d "$ROOT")" ] \
        && cp -al "$UV_CACHE" "$ROOT/root/.cache/uv" 2>/dev/null; then
        # Same filesystem: a hardlinked copy (seconds), so the root's uv hardlinks from it
        # into venvs as uv does on a user's machine; what the root adds stays in the root.
        log "the host's uv cache $UV_CACHE is hardlinked into the root's /root/.cache/uv"
    else
        rm -rf "$ROOT/root/.cache/uv"
        bind "$UV_CACHE" /root/.cache/uv
        CA_ENV+=(UV_LINK_MODE=copy)
        log "the host's uv cache $UV_CACHE is the root's /root/.cache/uv (mounted; uv copies)"
    fi
fi
if [ "$PIP_CACHE" != none ] && [ -d "$PIP_CACHE" ]; then
    bind "$PIP_CACHE" /root/.cache/pip
    log "the host's pip cache $PIP_CACHE is the root's /root/.cache/pip"
fi

in_root() {  # COMMAND: run in the root, in the clone, with a clean environment
    chroot "$ROOT" /usr/bin/env -i HOME=/root USER=root LOGNAME=root SHELL=/bin/bash \
        PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        LANG=C.UTF-8 TERM=dumb ${CA_ENV[@]+"${CA_ENV[@]}"} /bin/bash -c "cd /src/comfy-install && $1"
}

# --- 3. GitHub's ComfyUI URL -> the fixture bundles (for the install command) -------------------
[ "$TESTS_ONLY" = 1 ] || in_root '
    set -e
    git init -q --bare /srv/git/ComfyUI.git
    for b in /src/shared/fixtures/comfyui-*.bundle; do
        git -C /srv/git/ComfyUI.git fetch -q "$b" "refs/tags/*:refs/tags/*"
    done
    default=$(python3 -c "import json; print(json.load(open(\"dependencies.json\"))[\"comfyui\"][\"ref\"])")
    git -C /srv/git/ComfyUI.git update-ref refs/heads/master "refs/tags/$default^{commit}"
    for url in https://github.com/comfyanonymous/ComfyUI.git https://github.com/comfyanonymous/ComfyUI \
               https://github.com/Comfy-Org/ComfyUI.git https://github.com/Comfy-Org/ComfyUI; do
        git config --system --add url./srv/git/ComfyUI.git.insteadOf "$url"
    done
    echo "ComfyUI tags here: $(git -C /srv/git/ComfyUI.git tag | tr "\n" " ")" >&2
'
[ "$TESTS_ONLY" = 1 ] || DEFAULT_REF="$(in_root 'python3 -c "import json; print(json.load(open(\"dependencies.json\"))[\"comfyui\"][\"ref\"])"')"

reachable() {  # URL: answers at all (any HTTP status), from inside the root
    in_root "python3 -c 'import sys, urllib.request, urllib.error
try:
    urllib.request.urlopen(sys.argv[1], timeout=15)
except urllib.error.HTTPError:
    pass' $1" 2>/dev/null
}

# --- 4. the README's commands -------------------------------------------------------------------
SUMMARY=()
run_timed() {  # LABEL COMMAND: run, record exit code and duration; returns the exit code
    local start rc
    log "$1: $2"
    start=$SECONDS
    set +e
    in_root "$2"
    rc=$?
    set -e
    SUMMARY+=("$(printf '%-34s exit %3d  %5d s  %s' "$1" "$rc" $((SECONDS - start)) "$2")")
    return "$rc"
}

install_rc=0
[ "$TESTS_ONLY" = 1 ] || run_timed "install (as written)" "$INSTALL_CMD" || install_rc=$?
if [ "$TESTS_ONLY" = 0 ] && [ "$install_rc" != 0 ] && [ "$STRICT" != 1 ]; then
    offline=()
    reachable https://download.pytorch.org/whl/cpu/ || offline+=("download.pytorch.org")
    reachable https://github.com/ || offline+=("github.com")
    if [ ${#offline[@]} -gt 0 ]; then
        SUMMARY+=("  (unreachable from here: ${offline[*]}; the pinned upstream ComfyUI commit is not in the fixture bundles)")
        install_rc=0
        run_timed "install (+ --comfyui-ref --torch-index)" \
            "$INSTALL_CMD --comfyui-ref $DEFAULT_REF --torch-index default" || install_rc=$?
    fi
fi
test_rc=0
run_timed "tests (as written)" "$TEST_CMD" || test_rc=$?

# --- 5. summary ---------------------------------------------------------------------------------
printf '\nDebian bookworm root %s, checkout %s (%s)\n' "$ROOT" "$CHECKOUT" "${SHA:0:12}"
printf '%s\n' "${SUMMARY[@]}"
if [ "$TESTS_ONLY" = 1 ]; then
    [ "$test_rc" = 0 ] && printf 'OK\n' || printf 'FAILED (the test command exited %s)\n' "$test_rc"
    exit "$test_rc"
fi
if [ "$install_rc" != 0 ] || [ "$test_rc" != 0 ]; then
    printf 'FAILED\n'
    exit 1
fi
printf 'OK\n'
