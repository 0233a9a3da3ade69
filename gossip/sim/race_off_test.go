//go:build !race

package sim

const simNodes = 150
