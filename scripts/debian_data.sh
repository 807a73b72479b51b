#!/usr/bin/env bash
# make data: fetch Debian packages without installing them (apt-get download + dpkg-deb -x into a temp
# folder) and let `deeperfour data WHAT --source <that folder>` copy what the project uses into DIR.
# Usage: scripts/debian_data.sh DIR WHAT CONSEQUENCE PACKAGE...   (BIN: the venv's bin, default .venv/bin)
# Nothing happens when DIR exists. On failure: one message (what failed, what is missing without it), exit 1.
set -u
dir=$1 what=$2 consequence=$3
shift 3
if [ -d "$dir" ]; then
  echo "$dir present"
  exit 0
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fetch() {
  cd "$tmp" || return 1
  apt-get download "$@" >/dev/null 2>&1 || { apt-get update -qq && apt-get download "$@" >/dev/null; } || return 1
  for deb in *.deb; do dpkg-deb -x "$deb" unpacked || return 1; done
}
if ! (fetch "$@") || ! "${BIN:-.venv/bin}/deeperfour" data "$what" --source "$tmp/unpacked"; then
  echo "make data: could not fetch $* with apt-get (needs the Debian archive; apt-get update needs root);" \
       "without it $consequence" >&2
  exit 1
fi
