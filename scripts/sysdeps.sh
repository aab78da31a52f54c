#!/usr/bin/env bash
# Install the Debian packages the test suite needs, only those missing.
# Later layers add theirs to PACKAGES (binary -> package).
set -euo pipefail
declare -A PACKAGES=(
  [kubectl]=kubectl
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
if ((${#missing[@]})); then
  echo "installing Debian packages: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
fi
