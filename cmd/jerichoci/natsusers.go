package main

import (
	"fmt"
	"strconv"
	"strings"

	"jerichoci/run/protocol"
)

// natsServerConfig is the nats-server configuration that docs/PROTOCOL.md
// gives for an external server (--nats-url): JetStream, and the accounts
// and users of the embedded server with the same permissions
// (protocol.RolePermissions, protocol.Exports), their passwords read from
// nats-server's environment. The test TestProtocolDocGivesTheNATSServerConfig
// keeps the document and this in step.
func natsServerConfig() string {
	return `# jerichoci's accounts, users and their permissions (docs/PROTOCOL.md).
# Start it as: nats-server -c jerichoci-nats.conf -sd /var/lib/jerichoci/nats
# with the three passwords in its environment.
listen: 127.0.0.1:4222
` + natsAccountsConfig(func(role protocol.Role) string { return "$" + passwordEnv(role) }, nil)
}

// embeddedConfig is the configuration of the embedded server: the same
// accounts and users, each password as its bcrypt hash (hashedPassword;
// the text never leaves the process anyway), and the admin in the fleet's
// account.
func embeddedConfig(users embeddedUsers) (string, error) {
	hashes := map[protocol.Role]string{}
	for role, cr := range users.Roles {
		h, err := hashedPassword(cr.Password)
		if err != nil {
			return "", err
		}
		hashes[role] = h
	}
	admin := users.Admin
	h, err := hashedPassword(admin.Password)
	if err != nil {
		return "", err
	}
	admin.Password = h
	return natsAccountsConfig(func(role protocol.Role) string { return hashes[role] }, &admin), nil
}

// passwordEnv is the variable of nats-server's environment that holds
// role's password in natsServerConfig.
func passwordEnv(role protocol.Role) string {
	return "JERICHOCI_NATS_" + strings.ToUpper(string(role)) + "_PASSWORD"
}

// natsAccountsConfig renders JetStream, the fleet's account (the worker,
// JetStream, the exports) and the clients' account (client, reader, the
// imports); password gives each role's password as configuration text;
// admin, when set, joins the fleet's account with every right (its
// Password is configuration text, as password gives).
func natsAccountsConfig(password func(protocol.Role) string, admin *credentials) string {
	var b strings.Builder
	b.WriteString("jetstream: enabled\naccounts {\n")
	for _, acc := range []string{protocol.AccountFleet, protocol.AccountClients} {
		fmt.Fprintf(&b, "  %s {\n", acc)
		if acc == protocol.AccountFleet {
			b.WriteString("    jetstream: enabled\n")
		}
		b.WriteString("    users: [\n")
		if admin != nil && acc == protocol.AccountFleet {
			fmt.Fprintf(&b, "      { user: %s, password: %s }\n", strconv.Quote(admin.User), admin.Password)
		}
		for _, role := range protocol.Roles() {
			if role.Account() != acc {
				continue
			}
			p := protocol.RolePermissions(role)
			fmt.Fprintf(&b, "      {\n        user: %s\n        password: %s\n        permissions: {\n", role, password(role))
			writeRules(&b, "publish", p.Publish)
			writeRules(&b, "subscribe", p.Subscribe)
			if p.AllowResponses {
				b.WriteString("          allow_responses: true\n")
			}
			b.WriteString("        }\n      }\n")
		}
		b.WriteString("    ]\n")
		if acc == protocol.AccountFleet {
			b.WriteString("    exports: [\n")
			for _, e := range protocol.Exports() {
				switch {
				case e.Service && e.Streamed:
					fmt.Fprintf(&b, "      { service: %q, response: stream }\n", e.Subject)
				case e.Service:
					fmt.Fprintf(&b, "      { service: %q }\n", e.Subject)
				default:
					fmt.Fprintf(&b, "      { stream: %q }\n", e.Subject)
				}
			}
		} else {
			b.WriteString("    imports: [\n")
			for _, e := range protocol.Exports() {
				kind := "stream"
				if e.Service {
					kind = "service"
				}
				fmt.Fprintf(&b, "      { %s: { account: %s, subject: %q } }\n", kind, protocol.AccountFleet, e.Subject)
			}
		}
		b.WriteString("    ]\n  }\n")
	}
	b.WriteString("}\n")
	return b.String()
}

func writeRules(b *strings.Builder, name string, r protocol.SubjectRules) {
	fmt.Fprintf(b, "          %s: {\n", name)
	for _, list := range []struct {
		key      string
		subjects []string
	}{{"allow", r.Allow}, {"deny", r.Deny}} {
		if len(list.subjects) == 0 {
			continue
		}
		fmt.Fprintf(b, "            %s: [\n", list.key)
		for _, s := range list.subjects {
			fmt.Fprintf(b, "              %q\n", s)
		}
		b.WriteString("            ]\n")
	}
	b.WriteString("          }\n")
}
