# shellcheck shell=bash
# incusd over HTTPS for workers on other hosts (scripts/incus-up --https
# ADDR; docs/INCUS.md, "A remote incusd over HTTPS"): the listen address,
# a client certificate for jerichoci trusted restricted to the project,
# and what a worker needs to use them.
#
# What it creates goes with scripts/reset-machine without a record of its
# own: core.https_address and the trust entry live in incusd's database
# (/var/lib/incus), the certificate files under $setup_state.
#
# The caller sets: project, https_dir (where the certificate files go),
# https_trust_name (the trust entry's name), and the functions say, die and
# incus_get/incus_has (scripts/lib/incus.sh); `changed` is set to 1 when
# something changed.

# https_addr_ok ADDR: ADDR is HOST:PORT, [V6]:PORT or :PORT with a port.
https_addr_ok() {
	[[ $1 =~ ^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]*):[0-9]{1,5}$ ]]
}

# https_url ADDR prints the URL a worker dials for listen address ADDR: a
# wildcard host (empty, 0.0.0.0, [::]) is left for the caller to fill in.
https_url() {
	local host=${1%:*} port=${1##*:}
	case $host in '' | 0.0.0.0 | '[::]') host=HOST ;; esac
	echo "https://$host:$port"
}

# ensure_https_address ADDR sets core.https_address to ADDR unless it is.
# The setting is server-wide: another value is replaced, and said so.
ensure_https_address() {
	local want=$1 have
	have=$(incus config get core.https_address)
	[ "$have" = "$want" ] && return 0
	changed=1
	say "incusd listens on HTTPS at $want${have:+ (was $have)}"
	incus config set core.https_address "$want" >/dev/null
}

# ensure_client_cert makes jerichoci's client certificate and key in
# $https_dir when missing (ECDSA P-384, ten years, self-signed: incusd
# trusts it by its fingerprint).
ensure_client_cert() {
	[ -s "$https_dir/client.crt" ] && [ -s "$https_dir/client.key" ] && return 0
	command -v openssl >/dev/null || die "openssl not found: it makes jerichoci's client certificate (apt-get install openssl)"
	changed=1
	mkdir -p "$https_dir"
	chmod 700 "$https_dir"
	say "making jerichoci's client certificate $https_dir/client.crt"
	(umask 077 && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-384 -nodes -days 3650 \
		-subj "/CN=jerichoci@$(hostname)" -keyout "$https_dir/client.key" -out "$https_dir/client.crt" 2>/dev/null) ||
		die "openssl could not make the client certificate"
	chmod 644 "$https_dir/client.crt"
}

# cert_fingerprint FILE prints the SHA-256 fingerprint of a PEM
# certificate, as incusd names it.
cert_fingerprint() {
	openssl x509 -in "$1" -outform der | sha256sum | cut -d' ' -f1
}

# ensure_client_trust trusts $https_dir/client.crt, restricted to
# $project: added when missing; an entry that is unrestricted or lacks the
# project is restricted to its projects plus $project.
ensure_client_trust() {
	local fp out projects
	fp=$(cert_fingerprint "$https_dir/client.crt")
	if ! out=$(incus_get "/1.0/certificates/$fp"); then
		changed=1
		say "trusting the client certificate ${fp:0:12} as $https_trust_name, restricted to project $project"
		incus config trust add-certificate "$https_dir/client.crt" --name "$https_trust_name" \
			--restricted --projects "$project" >/dev/null
		return 0
	fi
	out=${out//[$' \t\r\n']/}
	if [[ $out == *'"restricted":true'* ]] && [[ $out =~ \"projects\":\[([^]]*)\] ]]; then
		projects=${BASH_REMATCH[1]}
		[[ ",$projects," == *",\"$project\","* ]] && return 0
	else
		projects=
	fi
	changed=1
	say "restricting the client certificate ${fp:0:12} to project $project${projects:+ and ${projects//\"/}}"
	incus query -X PATCH "/1.0/certificates/$fp" \
		--data "{\"restricted\": true, \"projects\": [${projects:+$projects,}\"$project\"]}" >/dev/null
}

# ensure_server_cert keeps a copy of incusd's own certificate (what a
# worker pins) in $https_dir/server.crt.
ensure_server_cert() {
	local out pem
	out=$(incus query /1.0) || die "GET /1.0 failed"
	pem=$(printf '%s' "$out" | sed -n 's/^[[:space:]]*"certificate": "\(.*\)",\{0,1\}$/\1/p' | head -n1)
	pem=${pem//\\n/$'\n'}
	pem=${pem%$'\n'}
	[[ $pem == "-----BEGIN CERTIFICATE-----"* ]] || die "no server certificate in GET /1.0"
	if [ "$(cat "$https_dir/server.crt" 2>/dev/null)" != "$(printf '%s' "$pem")" ]; then
		changed=1
		printf '%s\n' "$pem" >"$https_dir/server.crt"
	fi
}

# print_worker_settings ADDR prints what a worker on another host needs:
# the flags of serve, run and image, or their environment twins.
print_worker_settings() {
	local url
	url=$(https_url "$1")
	say "a worker reaches this incusd over HTTPS (copy the three files to its host) with the flags"
	echo "  --incus-url $url"
	echo "  --incus-client-cert $https_dir/client.crt"
	echo "  --incus-client-key $https_dir/client.key"
	echo "  --incus-server-cert $https_dir/server.crt"
	say "or the environment"
	echo "  INCUS_URL=$url"
	echo "  INCUS_CLIENT_CERT=$https_dir/client.crt"
	echo "  INCUS_CLIENT_KEY=$https_dir/client.key"
	echo "  INCUS_SERVER_CERT=$https_dir/server.crt"
	say "client certificate $(cert_fingerprint "$https_dir/client.crt" | cut -c1-12), trusted for project $project only"
	[[ $url != *HOST* ]] || say "HOST: an address of this machine that the worker reaches"
}

# ensure_https ADDR: all of the above.
ensure_https() {
	https_addr_ok "$1" || die "--https $1: want HOST:PORT, [IPV6]:PORT or :PORT (e.g. 127.0.0.1:8443)"
	ensure_https_address "$1"
	ensure_client_cert
	ensure_client_trust
	ensure_server_cert
	print_worker_settings "$1"
}
