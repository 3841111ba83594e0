# shellcheck shell=bash
# Helpers shared by scripts/incus-up, scripts/incus-down and scripts/bench-pool.

# incus_socket prints the socket the incus CLI and jerichoci use:
# $INCUS_SOCKET, else the standard paths.
incus_socket() {
	local s
	for s in "${INCUS_SOCKET:-}" /var/lib/incus/unix.socket /run/incus/unix.socket; do
		[ -n "$s" ] && [ -S "$s" ] && { echo "$s"; return 0; }
	done
	return 1
}

# incus_get PATH prints the answer to a REST GET of PATH (a path below
# /1.0, query string allowed) and fails unless it succeeded. It uses curl
# when there is one (a few ms), else `incus query` (about 60 ms).
incus_get() {
	local sock
	sock=$(incus_socket) || return 1
	if command -v curl >/dev/null; then
		curl -sf --max-time 10 --unix-socket "$sock" "http://incus$1"
	else
		INCUS_SOCKET=$sock incus query "$1" 2>/dev/null
	fi
}

# incus_ok PATH: the REST GET of PATH succeeds (daemon up, object exists).
incus_ok() {
	incus_get "$1" >/dev/null
}

# incus_has PATH TEXT: the REST GET of PATH succeeds and its answer, with
# all blanks removed, contains TEXT (write TEXT without blanks too).
incus_has() {
	local out
	out=$(incus_get "$1") || return 1
	out=${out//[$' \t\r\n']/}
	[[ $out == *"$2"* ]]
}

# urlenc TEXT: percent-encode the characters an alias may hold in a path.
urlenc() {
	local s=$1
	s=${s//%/%25}
	s=${s//\//%2F}
	s=${s// /%20}
	s=${s//\?/%3F}
	s=${s//#/%23}
	echo "$s"
}

# host_has_btrfs: this host can make a loop-backed btrfs pool (the kernel
# knows btrfs and loop devices can be set up). btrfs-progs is the caller's.
host_has_btrfs() {
	grep -qw btrfs /proc/filesystems 2>/dev/null && [ -e /dev/loop-control ]
}

# pool_driver SETTING prints the storage driver JERICHOCI_INCUS_POOL_DRIVER
# asks for: `auto` (or empty) is btrfs where host_has_btrfs, else dir;
# `btrfs` and `dir` are themselves. Anything else fails.
pool_driver() {
	case ${1:-auto} in
	auto) if host_has_btrfs; then echo btrfs; else echo dir; fi ;;
	btrfs | dir) echo "$1" ;;
	*) return 1 ;;
	esac
}

# create_pool NAME DRIVER SIZE creates storage pool NAME: btrfs on a sparse
# loop file of SIZE (e.g. 30GiB, under /var/lib/incus/disks/) or dir (SIZE
# unused). The caller checks that NAME does not exist and, for btrfs, that
# btrfs-progs is installed (incusd runs mkfs.btrfs).
create_pool() {
	local name=$1 driver=$2 size=$3
	case $driver in
	btrfs) incus storage create "$name" btrfs size="$size" >/dev/null ;;
	dir) incus storage create "$name" dir >/dev/null ;;
	*)
		echo "create_pool: unknown driver $driver (btrfs or dir)" >&2
		return 2
		;;
	esac
}
