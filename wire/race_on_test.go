//go:build race

package wire

// raceEnabled: the race detector changes allocation counts, so exact
// allocation checks hold only without it (they run in `make bench-once`
// and plain `go test`).
const raceEnabled = true
