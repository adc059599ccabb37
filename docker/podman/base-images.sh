#!/usr/bin/env bash
# Local stand-ins for the two base images of Dockerfile and docker-compose.yml, for a podman without an image
# registry: root filesystems made by mmdebstrap from Debian's packages (bookworm, the machines' own release), each
# imported under the name the files use, so that they build and run unchanged.
#
#   python:3.11-slim   Debian's python3 (3.11) with pip and venv, `python` and `pip` on PATH, no
#                      EXTERNALLY-MANAGED marker (the official image's Python is its own, pip installs into it)
#   postgres:15        Debian's postgresql-15 with docker/podman/postgres-entrypoint.sh, the official image's contract
#                      as far as docker-compose.yml uses it; run it with POSTGRES_VERSION=15
#
#   base-images.sh [--force] [python] [postgres]     (no name: both)
#
# Each image is built only when podman does not have it (--force: again). The builds run at once; they spend most
# of their time downloading packages. podman's own settings come from the environment (CONTAINERS_CONF,
# CONTAINERS_STORAGE_CONF), as for any podman command.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
force=false
images=()
for arg in "$@"; do
  case "$arg" in
  --force) force=true ;;
  python | postgres) images+=("$arg") ;;
  *) echo "usage: $0 [--force] [python] [postgres]" >&2 && exit 2 ;;
  esac
done
((${#images[@]})) || images=(python postgres)

suite=bookworm
mirrors=(
  "deb http://deb.debian.org/debian $suite main"
  "deb http://deb.debian.org/debian $suite-updates main"
  "deb http://deb.debian.org/debian-security $suite-security main"
)
# No documentation, manual pages or translations in the images.
slim=(--dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*'
  --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-include=/usr/share/doc/*/copyright')

needed() { $force || ! podman image exists "$1"; }

python_image() {
  local tag=python:3.11-slim
  needed "$tag" || return 0
  mmdebstrap --quiet --variant=minbase "${slim[@]}" \
    --include=ca-certificates,netbase,tzdata,python3,python3-pip,python3-venv,python-is-python3 \
    --customize-hook='rm -f "$1"/usr/lib/python3.*/EXTERNALLY-MANAGED' \
    --customize-hook='ln -sf pip3 "$1"/usr/bin/pip' \
    --customize-hook='"$1"/usr/bin/python3 -c "import sys; assert sys.version_info[:2] == (3, 11), sys.version"' \
    "$suite" - "${mirrors[@]}" |
    podman import --change 'ENV LANG=C.UTF-8' --change 'CMD ["python3"]' - "$tag" >/dev/null
  echo "built $tag"
}

postgres_image() {
  local version=15 # bookworm's
  local tag="postgres:$version"
  needed "$tag" || return 0
  # The package creates and starts nothing in the image: the entrypoint makes the cluster in PGDATA.
  mmdebstrap --quiet --variant=minbase "${slim[@]}" --include="postgresql-$version" \
    --customize-hook='rm -rf "$1"/var/lib/postgresql/'"$version"' "$1"/etc/postgresql/'"$version" \
    --customize-hook='mkdir -p "$1"/var/lib/postgresql/data "$1"/var/run/postgresql' \
    --customize-hook='chroot "$1" chown postgres:postgres /var/lib/postgresql/data /var/run/postgresql' \
    --customize-hook="copy-in $here/postgres-entrypoint.sh /usr/local/bin" \
    "$suite" - "${mirrors[@]}" |
    podman import \
      --change "ENV PATH=/usr/lib/postgresql/$version/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
      --change 'ENV PGDATA=/var/lib/postgresql/data' --change 'ENV LANG=C.UTF-8' \
      --change 'VOLUME /var/lib/postgresql/data' \
      --change 'ENTRYPOINT ["/usr/local/bin/postgres-entrypoint.sh"]' --change 'CMD ["postgres"]' \
      --change 'STOPSIGNAL SIGINT' --change 'EXPOSE 5432' - "$tag" >/dev/null
  echo "built $tag"
}

pids=()
for image in "${images[@]}"; do
  "${image}_image" &
  pids+=($!)
done
status=0
for pid in "${pids[@]}"; do
  wait "$pid" || status=$?
done
exit "$status"
