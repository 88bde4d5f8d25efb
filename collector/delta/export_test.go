package delta

// Internals the external tests use.
var (
	DVRelPath       = dvRelPath
	RenameMapGroups = renameMapGroups
	Int96Micros     = int96Micros
)
