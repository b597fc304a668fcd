#!/usr/bin/env bash
# The system packages a make target needs beyond Python's: checks for each command named on the command
# line and installs what is missing with apt, or stops at once with the one command to run.
#
#   bash tools/system_deps.sh bwrap chromium    (make test)     bash tools/system_deps.sh bwrap    (make grade)
#
#   bwrap     Debian's bubblewrap: the grading sandbox (make grade, tests/test_grading.py); it must also be
#             able to start a sandbox here (unprivileged user namespaces, or root with the rights to use them)
#   chromium  Debian's chromium: the website's browser test (tests/test_site.py); QLORA_COURSE_CHROMIUM
#             may name another Chromium or Chrome executable instead
#
# Silent and quick when everything is there (no apt call). When something is missing: as root it runs
# apt-get update once and apt-get install -y --no-install-recommends; with password-less sudo the same
# through sudo -n; otherwise, or without apt-get, one line says what to run and it exits 1. It uses only
# bash builtins and the commands it looks for (id, apt-get, sudo, bwrap), so tests/test_system_deps.py can
# run it on a PATH of stand-ins.
set -euo pipefail

me="tools/system_deps.sh"
fail() {
    printf '%s: %s\n' "$me" "$1" >&2
    exit 1
}

package_of() {
    case "$1" in
        bwrap) echo bubblewrap ;;
        chromium) echo chromium ;;
        *)
            printf '%s: unknown requirement %s (known: bwrap chromium)\n' "$me" "$1" >&2
            exit 2
            ;;
    esac
}

present() {
    if [ "$1" = chromium ] && [ -n "${QLORA_COURSE_CHROMIUM:-}" ]; then
        [ -x "$QLORA_COURSE_CHROMIUM" ] && [ ! -d "$QLORA_COURSE_CHROMIUM" ] && return 0
        fail "QLORA_COURSE_CHROMIUM=$QLORA_COURSE_CHROMIUM is not an executable; point it to a Chromium or Chrome, or unset it to use Debian's chromium"
    fi
    command -v "$1" >/dev/null 2>&1
}

[ $# -gt 0 ] || {
    echo "usage: bash $me bwrap|chromium ..." >&2
    exit 2
}

missing=()
packages=()
for need in "$@"; do
    package=$(package_of "$need")
    if ! present "$need"; then
        missing+=("$need")
        packages+=("$package")
    fi
done

if [ ${#missing[@]} -gt 0 ]; then
    what="${missing[*]}"
    if ! command -v apt-get >/dev/null 2>&1; then
        fail "needs ${what// / and } (Debian packages: ${packages[*]}); no apt-get here: install them with your package manager (bubblewrap exists only on Linux; QLORA_COURSE_CHROMIUM may name a Chrome), or run make test-fast, which needs neither"
    fi
    uid=$(id -u 2>/dev/null || echo unknown)
    if [ "$uid" = 0 ]; then
        as=()
        how="as root"
    elif command -v sudo >/dev/null 2>&1 && sudo -n true >/dev/null 2>&1; then
        as=(sudo -n)
        how="with sudo -n"
    else
        fail "${what// / and } missing (make test-fast runs without them); run: sudo apt-get install -y ${packages[*]}"
    fi
    printf '%s: %s missing; installing %s with apt-get (%s)\n' "$me" "${what// / and }" "${packages[*]}" "$how" >&2
    export DEBIAN_FRONTEND=noninteractive
    ${as[@]+"${as[@]}"} apt-get update -qq >/dev/null || fail "apt-get update failed (above)"
    ${as[@]+"${as[@]}"} apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null ||
        fail "apt-get install ${packages[*]} failed (above); on a system without Debian's chromium package, set QLORA_COURSE_CHROMIUM to a Chromium or Chrome"
    for need in "${missing[@]}"; do
        present "$need" || fail "apt-get installed $(package_of "$need"), but $need is still not on PATH ($PATH)"
    done
fi

for need in "$@"; do
    if [ "$need" = bwrap ]; then
        if ! err=$(bwrap --unshare-all --ro-bind / / true 2>&1); then
            err=${err%%$'\n'*}
            fail "bwrap is installed but cannot start a sandbox here (${err:-no message}): user namespaces are disabled or blocked; fix as root: sysctl -w kernel.unprivileged_userns_clone=1 (Debian), sysctl -w kernel.apparmor_restrict_unprivileged_userns=0 (Ubuntu 24.04+), or in a container: --security-opt seccomp=unconfined --security-opt apparmor=unconfined (or --privileged); or make grade UNSAFE=1 for trusted notebooks only"
        fi
    fi
done
