package exampleflags

import (
	"flag"
	"io"
	"testing"
)

func TestRegister(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want Node
		opts int
	}{
		{[]string{"-rendezvous", "ws://127.0.0.1:1"}, Node{Rendezvous: "ws://127.0.0.1:1"}, 1},
		{[]string{"-rendezvous", "ws://h", "-key", "a.key"}, Node{Rendezvous: "ws://h", Key: "a.key"}, 2},
		{[]string{"-rendezvous", "ws://h", "-loopback"}, Node{Rendezvous: "ws://h", Loopback: true}, 3},
		{[]string{"-rendezvous", "ws://h", "-key", "k", "-loopback"}, Node{Rendezvous: "ws://h", Key: "k", Loopback: true}, 4},
	} {
		fs := flag.NewFlagSet("x", flag.ContinueOnError)
		n := Register(fs, "")
		if err := fs.Parse(tc.args); err != nil {
			t.Fatalf("%q: %v", tc.args, err)
		}
		if *n != tc.want {
			t.Errorf("%q: got %+v, want %+v", tc.args, *n, tc.want)
		}
		if got := len(n.Options()); got != tc.opts {
			t.Errorf("%q: %d options, want %d", tc.args, got, tc.opts)
		}
	}
}

func TestRegisterKeyUsage(t *testing.T) {
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	Register(fs, "")
	if got := fs.Lookup("key").Usage; got != DefaultKeyUsage {
		t.Errorf("default -key usage %q", got)
	}
	fs = flag.NewFlagSet("x", flag.ContinueOnError)
	Register(fs, "keep this key")
	if got := fs.Lookup("key").Usage; got != "keep this key" {
		t.Errorf("-key usage %q", got)
	}
}

func TestBadFlag(t *testing.T) {
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	Register(fs, "")
	if err := fs.Parse([]string{"-loopback=maybe"}); err == nil {
		t.Error("-loopback=maybe parsed")
	}
}
