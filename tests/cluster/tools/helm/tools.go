//go:build tools

// Package tools pins helm built for tests and the demo.
package tools

import (
	_ "helm.sh/helm/v3/cmd/helm"
)
