//go:build tools

// Package tools pins SeaweedFS, whose S3 gateway is the tests' object store (s3:// sources),
// built for tests and run as a process (tests/cluster/s3server.py).
package tools

import (
	_ "github.com/seaweedfs/seaweedfs/weed"
)
