package testutil

import "fmt"

// panicOnDeadline ends the test binary after a Deadline expires. It lives in
// test-support code, so the repository's no-panic rule does not apply.
func panicOnDeadline(name string, d fmt.Stringer) {
	panic(fmt.Sprintf("test %s: deadline %v exceeded (stacks above)", name, d)) //nolint:forbidigo // test support only
}
