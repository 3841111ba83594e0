package targets

import "jerichoci/internal/wording"

// IDs returns every target id, in catalog order.
func (c *Catalog) IDs() []string {
	out := make([]string, len(c.targets))
	for i, t := range c.targets {
		out[i] = t.ID
	}
	return out
}

// LaneTitles returns every lane title, in catalog order.
func (c *Catalog) LaneTitles() []string {
	var out []string
	for _, t := range c.targets {
		if t.Lane != "" {
			out = append(out, t.Lane)
		}
	}
	return out
}

// unknown is the error for a name the catalog lacks, suggesting the
// closest of candidates.
func (c *Catalog) unknown(name string, candidates []string) *UnknownTargetError {
	return &UnknownTargetError{Name: name, Suggestion: wording.Suggest(name, candidates)}
}
