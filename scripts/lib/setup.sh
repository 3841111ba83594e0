# shellcheck shell=bash
# What the setup scripts (incus-up, nix-up, chromium-up) leave on the
# machine, written down in one place so that scripts/reset-machine can take
# exactly that away again.

# setup_state is where the setup scripts keep their record (not a cache:
# it must outlive /var/cache/jerichoci until reset-machine has read it).
setup_state=${JERICHOCI_SETUP_STATE:-/var/lib/jerichoci}
# setup_manifest lists, one a line, the Debian packages a setup script
# installed because they were missing. Packages the machine had before
# are never listed, so reset-machine leaves them alone.
setup_manifest=$setup_state/installed-packages

# setup_packages are all the packages the setup scripts may install:
# reset-machine falls back to them on a machine set up before the
# manifest existed. Keep in step with the scripts' own lists.
setup_packages=(incus-base incus-client dnsmasq-base busybox-static bash-static btrfs-progs nix-bin chromium)

# setup_backports_source is the apt source incus-up adds on bookworm.
setup_backports_source=/etc/apt/sources.list.d/jerichoci-backports.sources

# record_installed PKG...: note packages a setup script has just
# installed. Run as root (or with the caller's sudo in $as_root).
record_installed() {
	local p
	${as_root[@]+"${as_root[@]}"} mkdir -p "$setup_state"
	for p in "$@"; do
		grep -qxF "$p" "$setup_manifest" 2>/dev/null ||
			echo "$p" | ${as_root[@]+"${as_root[@]}"} tee -a "$setup_manifest" >/dev/null
	done
}

# setup_users lists, one a line, the system users a setup script created
# (hostjobs-up's jerichoci-jobs); users the machine had before are never
# listed, so reset-machine deletes only these.
setup_users=$setup_state/created-users

# record_created_user NAME: note a user a setup script has just created.
record_created_user() {
	${as_root[@]+"${as_root[@]}"} mkdir -p "$setup_state"
	grep -qxF "$1" "$setup_users" 2>/dev/null ||
		echo "$1" | ${as_root[@]+"${as_root[@]}"} tee -a "$setup_users" >/dev/null
}
