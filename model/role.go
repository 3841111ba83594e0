package model

import (
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// IncusGuestRole is the kind of Incus guest image a job runs in. It fixes the
// default image alias and the image package attribute.
type IncusGuestRole string

// The guest roles of the original executor (docs/CONTRACTS.md, "Guest roles").
const (
	RoleManagedOpenclaw IncusGuestRole = "managed-openclaw"
	RolePikaciRunner    IncusGuestRole = "pikaci-runner"
)

// Environment variables read by role and alias resolution.
const (
	EnvGuestRole  = "PIKACI_REMOTE_LINUX_VM_INCUS_GUEST_ROLE"
	EnvImageAlias = "PIKACI_REMOTE_LINUX_VM_INCUS_IMAGE_ALIAS"
)

// GuestRoles lists every role in a stable order.
func GuestRoles() []IncusGuestRole {
	return []IncusGuestRole{RoleManagedOpenclaw, RolePikaciRunner}
}

type roleInfo struct {
	defaultAlias     string
	packageAttr      string
	legacyAttr       string
	legacyImageName  string
	diskSizeMiB      int
	shortDescription string
}

var roles = map[IncusGuestRole]roleInfo{
	RoleManagedOpenclaw: {
		defaultAlias:     "pika-agent/dev",
		packageAttr:      "managed-openclaw-incus-image",
		legacyAttr:       "pika-agent-incus-dev-image",
		legacyImageName:  "pika-agent-incus-dev",
		diskSizeMiB:      8192,
		shortDescription: "server-managed OpenClaw agent guest",
	},
	RolePikaciRunner: {
		defaultAlias:     "pikaci/dev",
		packageAttr:      "pikaci-runner-incus-image",
		legacyAttr:       "pikaci-incus-dev-image",
		legacyImageName:  "pikaci-incus-dev",
		diskSizeMiB:      12288,
		shortDescription: "CI runner guest",
	},
}

// Valid reports whether r is one of the known roles.
func (r IncusGuestRole) Valid() bool { _, ok := roles[r]; return ok }

// String returns the kebab-case id.
func (r IncusGuestRole) String() string { return string(r) }

// DefaultImageAlias is the Incus alias the role resolves to without an override.
func (r IncusGuestRole) DefaultImageAlias() string { return roles[r].defaultAlias }

// ImagePackageAttr is the flake package attribute that builds the role's image.
func (r IncusGuestRole) ImagePackageAttr() string { return roles[r].packageAttr }

// LegacyImagePackageAttr is the older package attribute still exported for the role.
func (r IncusGuestRole) LegacyImagePackageAttr() string { return roles[r].legacyAttr }

// LegacyImageName is the image name the original used before guest roles.
func (r IncusGuestRole) LegacyImageName() string { return roles[r].legacyImageName }

// DiskSizeMiB is the disk size of the role's original VM image.
func (r IncusGuestRole) DiskSizeMiB() int { return roles[r].diskSizeMiB }

// Description says in a few words what the role is for.
func (r IncusGuestRole) Description() string { return roles[r].shortDescription }

// UsesDefaultImageAlias reports whether alias, trimmed, is the role's default alias.
func (r IncusGuestRole) UsesDefaultImageAlias(alias string) bool {
	return strings.TrimSpace(alias) == r.DefaultImageAlias()
}

// RoleParseError is returned for text that names no role.
type RoleParseError struct {
	Got string // the trimmed input
}

func (e *RoleParseError) Error() string {
	return fmt.Sprintf("expected `managed-openclaw` or `pikaci-runner`, got %s", strconv.Quote(e.Got))
}

// ParseIncusGuestRole parses text input (env, CLI): it trims white space and
// then matches exactly and case-sensitively.
func ParseIncusGuestRole(s string) (IncusGuestRole, error) {
	t := strings.TrimSpace(s)
	r := IncusGuestRole(t)
	if !r.Valid() {
		return "", &RoleParseError{Got: t}
	}
	return r, nil
}

// MarshalJSON writes the kebab-case id; an unknown role is an error.
func (r IncusGuestRole) MarshalJSON() ([]byte, error) {
	if !r.Valid() {
		return nil, fmt.Errorf("invalid guest role %q", string(r))
	}
	return json.Marshal(string(r))
}

// UnmarshalJSON accepts exactly a known id: JSON input is not trimmed.
func (r *IncusGuestRole) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("guest role: expected a string, got %s", string(b))
	}
	v := IncusGuestRole(s)
	if !v.Valid() {
		return &RoleParseError{Got: s}
	}
	*r = v
	return nil
}

// LookupEnv is how resolution reads the environment; os.LookupEnv in production.
type LookupEnv func(key string) (string, bool)

// OSEnv reads the process environment.
var OSEnv LookupEnv = os.LookupEnv

// GuestRoleFromEnv returns the role named by PIKACI_REMOTE_LINUX_VM_INCUS_GUEST_ROLE,
// or ok=false when it is unset or empty after trimming.
func GuestRoleFromEnv(env LookupEnv) (role IncusGuestRole, ok bool, err error) {
	v, set := env(EnvGuestRole)
	if !set || strings.TrimSpace(v) == "" {
		return "", false, nil
	}
	r, perr := ParseIncusGuestRole(v)
	if perr != nil {
		return "", false, fmt.Errorf("%s must be one of `managed-openclaw` or `pikaci-runner`, got %s",
			EnvGuestRole, strconv.Quote(strings.TrimSpace(v)))
	}
	return r, true, nil
}

// ImageAliasFor returns PIKACI_REMOTE_LINUX_VM_INCUS_IMAGE_ALIAS verbatim when
// set, else the role's default alias.
func ImageAliasFor(env LookupEnv, role IncusGuestRole) string {
	if v, ok := env(EnvImageAlias); ok {
		return v
	}
	return role.DefaultImageAlias()
}

// RecordedGuestRole is the role to record for an image: the role when the
// alias is its default, otherwise nil.
func RecordedGuestRole(role IncusGuestRole, alias string) *IncusGuestRole {
	if role.UsesDefaultImageAlias(alias) {
		r := role
		return &r
	}
	return nil
}
