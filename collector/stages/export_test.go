package stages

// CommitStepNames are the names of an epoch's commit steps, in order.
func CommitStepNames() []string {
	names := make([]string, len(commitSteps))
	for i, s := range commitSteps {
		names[i] = s.name
	}
	return names
}

// SetAfterStep sets the hook called after each commit step succeeds (nil:
// none). Set it before Run.
func SetAfterStep(f func(epoch int64, step string)) { afterStep = f }
