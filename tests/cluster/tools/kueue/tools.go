//go:build tools

// Package tools pins Kueue's controller manager (quota, admission and preemption of Jobs), built
// for tests and run as a process beside the control plane.
package tools

import (
	_ "sigs.k8s.io/kueue/cmd/kueue"
)
