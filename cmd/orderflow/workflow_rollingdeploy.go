//go:build rollingdeploy

package main

// orderWorkflow is the OrderWorkflow this binary's workers run: in this build, the
// changed one a next release would ship (changedOrderWorkflow), so that the chaos suite
// can deploy it over the release's own workers.
func orderWorkflow() any { return changedOrderWorkflow }
