package incus

import (
	"context"
	"fmt"
	"slices"
	"strings"
)

// Server is what GET /1.0 returns (the fields we use).
type Server struct {
	APIVersion    string            `json:"api_version"`
	Auth          string            `json:"auth"` // "trusted" when we may do anything
	APIExtensions []string          `json:"api_extensions"`
	Environment   ServerEnvironment `json:"environment"`
}

// ServerEnvironment describes the host and daemon.
type ServerEnvironment struct {
	Architectures []string `json:"architectures"`
	// Driver lists the working instance drivers, e.g. "lxc" or
	// "lxc | qemu"; a driver that is not operational is left out.
	Driver        string `json:"driver"`
	DriverVersion string `json:"driver_version"`
	KernelVersion string `json:"kernel_version"`
	ServerName    string `json:"server_name"`
	ServerVersion string `json:"server_version"`
	Storage       string `json:"storage"`
	Project       string `json:"project"`
}

// Server returns the server's description.
func (c *Client) Server(ctx context.Context) (*Server, error) {
	var s Server
	if err := c.get(ctx, "", nil, &s); err != nil {
		return nil, fmt.Errorf("incus: get server info: %w", err)
	}
	return &s, nil
}

// InstanceTypes lists the instance types the server can run now:
// "container" with the lxc driver, "virtual-machine" with qemu.
func (s *Server) InstanceTypes() []string {
	types := []string{}
	for _, d := range strings.Split(s.Environment.Driver, "|") {
		switch strings.TrimSpace(d) {
		case "lxc":
			types = append(types, TypeContainer)
		case "qemu":
			types = append(types, TypeVirtualMachine)
		}
	}
	return types
}

// Supports reports whether the server can run instances of the type.
func (s *Server) Supports(instanceType string) bool {
	return slices.Contains(s.InstanceTypes(), instanceType)
}
