module github.com/deltaplane/deltaplane/e2e

go 1.26

require github.com/deltaplane/deltaplane/shared v0.0.0

replace github.com/deltaplane/deltaplane/shared => ../shared
