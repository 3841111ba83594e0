# shellcheck shell=bash
# The customize hook of scripts/runner-image: mmdebstrap runs it on the host
# with the finished Debian root as $1. It lays out what the original's
# NixOS guest has (docs/INCUS.md, "The pikaci-runner image") and removes
# what would make two builds differ.
set -euo pipefail
root=${1:?usage: runner-image-customize.sh ROOT}
sw=/run/current-system/sw # for the README below

pgver=$(ls "$root/usr/lib/postgresql" | sort -V | tail -n1)

# /run is not kept in mmdebstrap's tarball: scripts/runner-image lays out
# /run/current-system/sw and /run/pika-cloud in its image stage.

# The CA bundle where the original's SSL_CERT_FILE points.
[ -s "$root/etc/ssl/certs/ca-certificates.crt" ] || { echo "no CA bundle in the root" >&2; exit 1; }
ln -s ca-certificates.crt "$root/etc/ssl/certs/ca-bundle.crt"

# uid 1000 `pikaci` in group users (gid 100, from base-passwd), home
# /home/pikaci, as the original's isNormalUser.
grep -q '^users:x:100:' "$root/etc/group" || { echo "no users group with gid 100" >&2; exit 1; }
echo "pikaci:x:1000:100:pikaci:/home/pikaci:$sw/bin/bash" >>"$root/etc/passwd"
echo "pikaci:!:19675:0:99999:7:::" >>"$root/etc/shadow"
sed -i 's/^users:x:100:$/users:x:100:pikaci/' "$root/etc/group"
[ ! -f "$root/etc/gshadow" ] || sed -i 's/^users:\*::$/users:*::pikaci/' "$root/etc/gshadow"

# The original's tmpfiles rules.
install -d -m 0755 -o 1000 -g 100 "$root/home/pikaci" "$root/cargo-home" "$root/cargo-target"
install -d -m 0755 "$root/workspace/snapshot" "$root/staged/linux-rust/workspace-deps" \
	"$root/staged/linux-rust/workspace-build"

# PID 1: busybox init idling (no systemd in the guest).
ln -s /usr/bin/busybox "$root/usr/sbin/init"
printf '::sysinit:/usr/bin/true\n::shutdown:/usr/bin/true\n' >"$root/etc/inittab"
echo jerichoci-runner >"$root/etc/hostname"
# mmdebstrap leaves these two as the build saw them (mode 0755 here): data,
# not programs.
chmod 0644 "$root/etc/hostname" "$root/etc/resolv.conf"
printf '127.0.0.1\tlocalhost\n::1\tlocalhost\n' >"$root/etc/hosts"

# Nothing random or host-made: no PostgreSQL cluster (its system
# identifier is random), no snakeoil key, no machine id, no logs or caches.
rm -rf "$root/var/lib/postgresql/$pgver/main" "$root/etc/postgresql/$pgver/main" \
	"$root"/var/log/postgresql/* "$root/etc/ssl/private/ssl-cert-snakeoil.key" \
	"$root/etc/ssl/certs/ssl-cert-snakeoil.pem" "$root"/var/cache/apt/* "$root"/var/lib/apt/lists/* \
	"$root"/var/log/*.log "$root/var/cache/ldconfig/aux-cache" "$root"/var/cache/debconf/*-old
: >"$root/etc/machine-id"

# What went in, for the report and the image.
chroot "$root" dpkg-query -W -f='${Package} ${Version}\n' | LC_ALL=C sort >"$root/etc/jerichoci-image.packages"
cat >"$root/etc/pikaci-incus.README" <<EOF
jerichoci pikaci-runner container image (scripts/runner-image)

- a Debian $(cat "$root/etc/debian_version") root with the original's guest layout, for container hosts
- workspace snapshots are mounted at /workspace/snapshot
- staged Linux workspace outputs are mounted under /staged/linux-rust
- lifecycle files are written under /run/pika-cloud
- programs are linked into $sw/bin; PostgreSQL's share is $sw/share/postgresql
- $sw/bin/pikaci-incus-run owns guest job bootstrap
- packages: /etc/jerichoci-image.packages
EOF
