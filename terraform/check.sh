#!/usr/bin/env bash
# Offline static checks of terraform/: checkov (no failed check unless skipped inline with its
# reason), `terraform fmt -check` and, for every module and the example environment,
# `terraform init -backend=false` + `terraform validate`. Providers come
# from a local filesystem mirror (TF_PLUGIN_MIRROR, default /opt/tf-plugins: a
# registry.terraform.io/hashicorp/aws/<version>/ tree), never from the network. Without the
# terraform binary or the mirror it says so and exits 0: the HCL parse test
# (tests/unit/test_terraform_consistency.py) still runs.
set -euo pipefail
cd "$(dirname "$0")"

# checkov in a virtualenv of its own (its pins clash with ours), installed from the frozen
# requirements/checkov.lock and kept under ~/.cache keyed by the lock's hash, so a run after the
# first only checks. It reads the HCL alone: no provider, no network (--skip-download).
lock=../requirements/checkov.lock
if ! grep -qxF "$(grep '^checkov==' ../requirements/checkov.txt)" "$lock"; then
  echo "terraform/check.sh: requirements/checkov.lock does not pin requirements/checkov.txt's checkov" >&2
  exit 1
fi
checkov_venv="${TRACE_CHECKOV_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/trace/checkov-$(sha256sum "$lock" | cut -c1-12)}"
if [[ ! -x "$checkov_venv/bin/checkov" ]]; then
  echo "+ installing checkov into $checkov_venv"
  rm -rf "$checkov_venv"
  "$(command -v python3.11 || echo python3)" -m venv "$checkov_venv"
  "$checkov_venv/bin/pip" install --quiet --no-deps -r "$lock"
fi
echo "+ checkov -d terraform"
"$checkov_venv/bin/checkov" -d . --framework terraform --skip-download --compact --quiet \
  --output cli
mirror="${TF_PLUGIN_MIRROR:-/opt/tf-plugins}"
if ! command -v terraform >/dev/null || [[ ! -d "$mirror" ]]; then
  echo "terraform/check.sh: no terraform binary or no provider mirror at $mirror: skipped"
  exit 0
fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cat >"$work/cli.tfrc" <<TFRC
provider_installation {
  filesystem_mirror {
    path    = "$mirror"
    include = ["registry.terraform.io/*/*"]
  }
  direct {
    exclude = ["registry.terraform.io/*/*"]
  }
}
TFRC
export TF_CLI_CONFIG_FILE="$work/cli.tfrc" TF_IN_AUTOMATION=1
terraform fmt -check -recursive -diff .
# A copy, so init's .terraform/ and lock files never land in the tree.
cp -r modules environments "$work/"
for root in modules/* environments/example environments/example/state; do
  echo "+ terraform validate $root"
  terraform -chdir="$work/$root" init -backend=false -input=false -no-color >/dev/null
  terraform -chdir="$work/$root" validate -no-color
done
