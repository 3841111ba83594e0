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
setup_packages=(incus-base incus-client dnsmasq-base busybox-static bash-static btrfs-progs nix-bin chromium qemu-utils mmdebstrap zstd)

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

# created_users lists, one a line, the users and groups a setup script
# created ("group nixbld", "user nixbld1", "user jerichoci-jobs", …). Users
# and groups the machine had before are never listed, so reset-machine
# deletes these only.
created_users=$setup_state/created-users

# record_created "user NAME" | "group NAME": note a user or group a setup
# script has just created. Run as root (or with the caller's sudo in
# $as_root).
record_created() {
	${as_root[@]+"${as_root[@]}"} mkdir -p "$setup_state"
	grep -qxF "$1" "$created_users" 2>/dev/null ||
		echo "$1" | ${as_root[@]+"${as_root[@]}"} tee -a "$created_users" >/dev/null
}

# ---- Nix (scripts/nix-up) ---------------------------------------------------

# nix_current_dir is where scripts/nix-current-up puts Debian 13's Nix, a
# client of nix-up's daemon (bin/nix runs it); inside setup_state, so
# reset-machine deletes it with the record.
nix_current_dir=$setup_state/nix-current

# nix_conf_marker is the first line of a nix.conf nix-up wrote.
nix_conf_marker="# written by jerichoci scripts/nix-up"
# The nix-daemon nix-up starts: its pid file and log.
nix_daemon_pid=/run/jerichoci-nix-daemon.pid
nix_daemon_log=/var/log/jerichoci-nix-daemon.log

# nix_daemon_running prints the pid of the nix-daemon nix-up started, if it
# still runs: the pid file's process must be nix-daemon (a link to nix, so
# the program is nix's and the name it was run by is nix-daemon's).
nix_daemon_running() {
	local pid bin
	pid=$(cat "$nix_daemon_pid" 2>/dev/null || true)
	case $pid in '' | *[!0-9]*) return 1 ;; esac
	bin=$({ tr '\0' '\n' <"/proc/$pid/cmdline"; } 2>/dev/null | head -n1 || true)
	case $bin in */nix-daemon) ;; *) return 1 ;; esac
	[ "$(readlink -f "/proc/$pid/exe" 2>/dev/null || true)" = "$(readlink -f "$bin")" ] || return 1
	echo "$pid"
}

# stop_nix_daemon ends the nix-daemon nix-up started (waiting up to 10 s,
# then SIGKILL) and removes its pid file. Builds it started end with it.
stop_nix_daemon() {
	local pid
	if pid=$(nix_daemon_running); then
		echo "stopping nix-daemon (pid $pid)"
		kill "$pid" 2>/dev/null || true
		for _ in $(seq 100); do
			[ -e "/proc/$pid" ] || break
			sleep 0.1
		done
		[ ! -e "/proc/$pid" ] || kill -9 "$pid" 2>/dev/null || true
	fi
	rm -f "$nix_daemon_pid"
}

# remove_created_users deletes the users, then the groups, that
# created_users lists, each only while it exists, and then the record.
# A line that is not "user NAME" or "group NAME" with a plain name, and
# root, are skipped with a warning.
remove_created_users() {
	local kind name
	[ -s "$created_users" ] || return 0
	for want in user group; do
		while read -r kind name; do
			[ "$kind" = "$want" ] || continue
			if ! [[ $name =~ ^[a-z_][a-z0-9_-]*$ ]] || [ "$name" = root ]; then
				echo "skipping the odd line '$kind $name' of $created_users" >&2
				continue
			fi
			case $kind in
			user) getent passwd "$name" >/dev/null && echo "deleting user $name" && userdel "$name" ;;
			group) getent group "$name" >/dev/null && echo "deleting group $name" && groupdel "$name" ;;
			esac
		done <"$created_users"
	done
	rm -f "$created_users"
}
