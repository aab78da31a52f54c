#!/usr/bin/env bash
# Install the Debian packages the test suite needs, only those missing.
# Later layers add theirs to PACKAGES (binary -> package).
# kubectl is not here: Debian has no package for it. k8s/check.py uses it when present and
# otherwise builds the overlays with its own Python kustomize subset (docs/k8s.md).
set -euo pipefail
declare -A PACKAGES=(
  [slurmctld]=slurm-wlm
  [munged]=munge
  [sshd]=openssh-server
  [ssh]=openssh-client
  [rsync]=rsync
  [chromium]=chromium
)
missing=()
for bin in "${!PACKAGES[@]}"; do
  command -v "$bin" >/dev/null 2>&1 || missing+=("${PACKAGES[$bin]}")
done
# PostgreSQL (the arena's production database, tested for real): Debian keeps its server binaries off PATH.
if ! compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null && ! command -v initdb >/dev/null 2>&1; then
  missing+=(postgresql)
fi
if ((${#missing[@]})); then
  echo "installing Debian packages: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
fi
