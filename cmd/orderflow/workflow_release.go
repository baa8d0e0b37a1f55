//go:build !rollingdeploy

package main

import "github.com/orderflow/orderflow/workflows"

// orderWorkflow is the OrderWorkflow this binary's workers run: the release's own.
func orderWorkflow() any { return workflows.OrderWorkflow }
