//go:build race

package sim

// The race detector slows the simulator about tenfold.
const simNodes = 50
