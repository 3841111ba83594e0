package main

import "jerichoci/internal/units"

// sizeFlag is a flag.Value over an int64 byte count, read and written by
// units (an Incus size: 4GiB, 512MiB, 10GB, 1048576); 0 is a count.
type sizeFlag struct{ n *int64 }

func (f sizeFlag) String() string {
	if f.n == nil {
		return ""
	}
	return units.FormatSize(*f.n)
}

func (f sizeFlag) Set(s string) error {
	n, err := units.ParseSize(s)
	if err != nil {
		return err
	}
	*f.n = n
	return nil
}
