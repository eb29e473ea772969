// Command dataplane is a deltaplane data plane with the built-in plugins:
// it follows dp.deltas into a local store and proxies HTTP traffic with the
// configuration it holds. The data plane itself is package dataplane.
package main

import plane "github.com/deltaplane/deltaplane/services/dataplane/dataplane"

func main() { plane.Main() }
