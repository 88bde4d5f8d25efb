package delta

import "slices"

// Internals the external tests use.
var (
	DVRelPath       = dvRelPath
	RenameMapGroups = renameMapGroups
	Int96Micros     = int96Micros
)

// SidecarGroups returns the TagSidecarGroup of each sidecar of the
// checkpoint s was read from or last written, sorted.
func SidecarGroups(s *Snapshot) []string {
	var out []string
	for _, r := range s.sidecars {
		if g := r.action.Tags[TagSidecarGroup]; g != "" {
			out = append(out, g)
		}
	}
	slices.Sort(out)
	return out
}
