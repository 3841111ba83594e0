# shellcheck shell=bash
# Reading the machine's own apt sources, shared by scripts/incus-up and
# scripts/runner-image: they use the mirrors the machine already names and
# never write a mirror host into the repository.

# debian_uris prints the URIs of the Debian entries for suite $1, read from
# the machine's own apt sources (deb822 first, then one-line format).
debian_uris() {
	local suite=$1 f
	for f in /etc/apt/sources.list.d/*.sources; do
		[ -e "$f" ] || continue
		awk -v suite="$suite" '
			BEGIN { RS = ""; FS = "\n" }
			{
				types = ""; uris = ""; suites = ""; enabled = "yes"
				for (i = 1; i <= NF; i++) {
					if ($i ~ /^[ \t#]/) continue
					split($i, kv, ":")
					key = tolower(kv[1]); val = substr($i, length(kv[1]) + 2)
					if (key == "types") types = val
					else if (key == "uris") uris = val
					else if (key == "suites") suites = val
					else if (key == "enabled") enabled = val
				}
				if (enabled ~ /no/) next
				if ((" " types " ") !~ / deb /) next
				if ((" " suites " ") !~ (" " suite " ")) next
				n = split(uris, u, /[ \t]+/)
				for (j = 1; j <= n; j++) if (u[j] != "") print u[j]
			}' "$f"
	done
	for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
		[ -e "$f" ] || continue
		# deb [options] URI SUITE COMPONENTS...
		sed -E 's/\[[^]]*\]//' "$f" | awk -v suite="$suite" '$1 == "deb" && $3 == suite { print $2 }'
	done
}
