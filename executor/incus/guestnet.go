package incus

import (
	"context"
	"maps"
	"slices"
	"strings"

	"jerichoci/executor"
)

// GuestNICDevice is the device name of a job's one NIC.
const GuestNICDevice = "eth0"

// GuestNIC is the NIC device a job's instance gets on network: the
// bridge's port isolation keeps it from other isolated guests' NICs, and
// MAC, IPv4 and IPv6 filtering from sending as any address but its own
// (the DHCP lease; no IPv6 on a bridge without it). The host's firewall
// does the rest (docs/INCUS.md, "The jobs' network").
func GuestNIC(network string) map[string]string {
	return map[string]string{
		"type": "nic", "network": network, "name": GuestNICDevice,
		"security.mac_filtering":  "true",
		"security.ipv4_filtering": "true",
		"security.ipv6_filtering": "true",
		"security.port_isolation": "true",
	}
}

// guestNIC adds the guest NIC on spec.Network to devices and masks every
// other NIC device of the profiles (type none), so the instance has that
// one NIC only.
func (b *Backend) guestNIC(ctx context.Context, spec executor.InstanceSpec, devices map[string]map[string]string) error {
	names, err := b.profileNICs(ctx, spec.Profiles)
	if err != nil {
		return err
	}
	for _, n := range names {
		if _, ok := devices[n]; !ok {
			devices[n] = map[string]string{"type": "none"}
		}
	}
	devices[GuestNICDevice] = GuestNIC(spec.Network)
	return nil
}

// profileNICs returns the names of the NIC devices the profiles give an
// instance. The answer is kept per profiles for the life of the Backend,
// as RootDisk's; a failed lookup is tried again.
func (b *Backend) profileNICs(ctx context.Context, profiles []string) ([]string, error) {
	b.nicMu.Lock()
	defer b.nicMu.Unlock()
	key := strings.Join(profiles, "\x00")
	if n, ok := b.nics[key]; ok {
		return n, nil
	}
	cl := b.c
	found := map[string]bool{}
	for _, name := range profiles {
		p, err := cl.GetProfile(ctx, name)
		if err != nil {
			return nil, notFound(err)
		}
		for dev, d := range p.Devices {
			// A later profile's device of the same name replaces it.
			found[dev] = d["type"] == "nic"
		}
	}
	var names []string
	for _, dev := range slices.Sorted(maps.Keys(found)) {
		if found[dev] {
			names = append(names, dev)
		}
	}
	b.nics[key] = names
	return names, nil
}
