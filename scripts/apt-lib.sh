# Sourced by the ensure-*.sh scripts. apt_install HINT PACKAGE... installs
# the packages with apt (running apt-get update first), or fails with HINT
# where there is no apt-get.
apt_install() {
  local hint=$1
  shift
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "$* not found and apt-get unavailable: $hint" >&2
    exit 1
  fi
  local sudo=""
  if [ "$(id -u)" != 0 ]; then sudo=sudo; fi
  echo "installing $*..." >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$@" >/dev/null
}
