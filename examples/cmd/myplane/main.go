// Command myplane is a deltaplane data plane with the example plugin
// tenant-headers besides the built-in ones.
//
//	go build -o myplane ./cmd/myplane
//	./myplane schemas -out schemas/   # for admin-api's ADMIN_PLUGIN_SCHEMAS_DIR
//	./myplane                         # the data plane, configured as any (DP_*, KAFKA_BROKERS, ...)
package main

import (
	"github.com/deltaplane/deltaplane/examples/tenantheaders"
	"github.com/deltaplane/deltaplane/services/dataplane/dataplane"
)

func main() { dataplane.Main(tenantheaders.Plugin()) }
