package main

import (
	"fmt"
	"strings"

	"jerichoci/run/protocol"
)

// natsServerConfig is the nats-server configuration that docs/PROTOCOL.md
// gives for an external server (--nats-url): JetStream, and the users of
// the embedded server with the same permissions (protocol.RolePermissions),
// their passwords read from nats-server's environment. The test
// TestProtocolDocGivesTheNATSServerConfig keeps the document and this in
// step.
func natsServerConfig() string {
	var b strings.Builder
	b.WriteString(`# jerichoci's users and their permissions (docs/PROTOCOL.md).
# Start it as: nats-server -c jerichoci-nats.conf -sd /var/lib/jerichoci/nats
# with the three passwords in its environment.
listen: 127.0.0.1:4222
jetstream: enabled
authorization {
  users: [
`)
	for _, role := range protocol.Roles() {
		p := protocol.RolePermissions(role)
		fmt.Fprintf(&b, "    {\n      user: %s\n      password: $%s\n      permissions: {\n", role, passwordEnv(role))
		writeRules(&b, "publish", p.Publish)
		writeRules(&b, "subscribe", p.Subscribe)
		if p.AllowResponses {
			b.WriteString("        allow_responses: true\n")
		}
		b.WriteString("      }\n    }\n")
	}
	b.WriteString("  ]\n}\n")
	return b.String()
}

// passwordEnv is the variable of nats-server's environment that holds
// role's password in natsServerConfig.
func passwordEnv(role protocol.Role) string {
	return "JERICHOCI_NATS_" + strings.ToUpper(string(role)) + "_PASSWORD"
}

func writeRules(b *strings.Builder, name string, r protocol.SubjectRules) {
	fmt.Fprintf(b, "        %s: {\n", name)
	for _, list := range []struct {
		key      string
		subjects []string
	}{{"allow", r.Allow}, {"deny", r.Deny}} {
		if len(list.subjects) == 0 {
			continue
		}
		fmt.Fprintf(b, "          %s: [\n", list.key)
		for _, s := range list.subjects {
			fmt.Fprintf(b, "            %q\n", s)
		}
		b.WriteString("          ]\n")
	}
	b.WriteString("        }\n")
}
