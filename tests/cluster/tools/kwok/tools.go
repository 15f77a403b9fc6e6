//go:build tools

// Package tools pins kwok (fake kubelets and nodes) built for tests.
package tools

import (
	_ "sigs.k8s.io/kwok/cmd/kwok"
)
