#!/usr/bin/env bash
# Installs PostgreSQL 15 (Debian 12's) and pgvector 0.8.0, built from Debian 13's source package against it:
# Debian 12 ships pgvector 0.4, and `query --db` needs 0.8's iterative index scans (a filtered HNSW search
# that still returns k). Reproducible: the source is fetched with apt (signature-checked Release, checksums
# from the .dsc) at a pinned version, and its tarball's SHA-256 is checked here. Needs root (or sudo).
#   bash scripts/deploy/install_pgvector.sh
set -euo pipefail
PG=15
VERSION=0.8.0-1
SHA256=867a2c328d4928a5a9d6f052cd3bc78c7d60228a9b914ad32aa3db88e9de27b0
SUDO=""; if [ "$(id -u)" != 0 ] && command -v sudo >/dev/null; then SUDO=sudo; fi
pg_config=/usr/lib/postgresql/$PG/bin/pg_config
if [ ! -x "$pg_config" ] || [ ! -d "$($pg_config --includedir-server 2>/dev/null || echo /nonexistent)" ]; then
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "postgresql-$PG" "postgresql-server-dev-$PG" build-essential >/dev/null
fi
if [ -f "$($pg_config --sharedir)/extension/vector--0.8.0.sql" ]; then
  echo "pgvector 0.8.0 is already installed for PostgreSQL $PG"; exit 0
fi
work="$(mktemp -d)"; trap 'rm -rf "$work"' EXIT
mkdir -p "$work/lists/partial"
echo "deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian trixie main" >"$work/src.list"
o=(-o "Dir::Etc::SourceList=$work/src.list" -o Dir::Etc::SourceParts=/dev/null -o "Dir::State::Lists=$work/lists" -o APT::Sandbox::User=root)
apt-get "${o[@]}" update -qq
(cd "$work" && apt-get "${o[@]}" source --download-only -qq "pgvector=$VERSION")
echo "$SHA256  $work/pgvector_0.8.0.orig.tar.gz" | sha256sum -c -
tar -xzf "$work/pgvector_0.8.0.orig.tar.gz" -C "$work"
make -s -C "$work/pgvector-0.8.0" PG_CONFIG="$pg_config" OPTFLAGS="" >/dev/null
$SUDO make -s -C "$work/pgvector-0.8.0" PG_CONFIG="$pg_config" install >/dev/null
echo "installed pgvector 0.8.0 for PostgreSQL $PG"
