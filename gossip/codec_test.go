package gossip

import (
	"bytes"
	"encoding/hex"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ferrynet/ferry/identity"
)

var update = flag.Bool("update", false, "rewrite testdata/vectors.txt")

// vectorFrames are the frames of testdata/vectors.txt, made with fixed
// keys so that the encoding is stable (Ed25519 signatures are
// deterministic).
func vectorFrames(t testing.TB) []struct {
	name string
	f    Frame
} {
	seed := make([]byte, 32)
	for i := range seed {
		seed[i] = byte(i)
	}
	key := mustKey(t, seed)
	data := []byte("hello, topic")
	var origin identity.PeerID
	for i := range origin {
		origin[i] = byte(0xa0 + i)
	}
	return []struct {
		name string
		f    Frame
	}{
		{"msg", Frame{Type: TypeMsg, Topic: "chat", Msg: Msg{
			PublicKey: key.PublicKey(), First: 1000, Seq: 1002, Hops: 3, Data: data,
			Sig: key.Sign(signedBytes("chat", 1000, 1002, data)),
		}}},
		{"msg-empty", Frame{Type: TypeMsg, Topic: "t", Msg: Msg{
			PublicKey: key.PublicKey(), First: 1, Seq: 1, Data: []byte{},
			Sig: key.Sign(signedBytes("t", 1, 1, nil)),
		}}},
		{"ihave", Frame{Type: TypeIHave, Topic: "chat", IHave: []Announce{{ID: MsgID{Origin: origin, Seq: 7}, Hops: 2}, {ID: MsgID{Origin: origin, Seq: 8}}}}},
		{"graft", Frame{Type: TypeGraft, Topic: "chat", Graft: []MsgID{{Origin: origin, Seq: 7}}}},
		{"graft-empty", Frame{Type: TypeGraft, Topic: "chat", Graft: []MsgID{}}},
		{"prune", Frame{Type: TypePrune, Topic: "chat"}},
		{"join", Frame{Type: TypeJoin, Topic: "chat"}},
		{"leave", Frame{Type: TypeLeave, Topic: "chat"}},
	}
}

func mustKey(t testing.TB, seed []byte) *identity.Identity {
	t.Helper()
	k, err := identity.FromPrivateKey(ed25519NewKeyFromSeed(seed))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestVectors(t *testing.T) {
	path := filepath.Join("testdata", "vectors.txt")
	var out strings.Builder
	for _, v := range vectorFrames(t) {
		b, err := v.f.Append(nil)
		if err != nil {
			t.Fatalf("%s: %v", v.name, err)
		}
		if len(b) != v.f.Len() {
			t.Errorf("%s: Len %d, encoded %d", v.name, v.f.Len(), len(b))
		}
		out.WriteString(v.name + " " + hex.EncodeToString(b) + "\n")
	}
	if *update {
		if err := os.WriteFile(path, []byte(out.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if out.String() != string(want) {
		t.Errorf("encodings differ from %s (run with -update if the change is meant):\n%s", path, out.String())
	}
	for _, line := range strings.Split(strings.TrimSpace(string(want)), "\n") {
		name, hx, _ := strings.Cut(line, " ")
		b, err := hex.DecodeString(hx)
		if err != nil {
			t.Fatal(err)
		}
		f, err := ParseFrame(b)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		again, err := f.Append(nil)
		if err != nil || !bytes.Equal(again, b) {
			t.Errorf("%s: round trip differs (%v)", name, err)
		}
		if f.Type == TypeMsg {
			if !ed25519Verify(f.Msg.PublicKey, signedBytes(f.Topic, f.Msg.First, f.Msg.Seq, f.Msg.Data), f.Msg.Sig) {
				t.Errorf("%s: signature does not verify", name)
			}
		}
	}
}

func TestParseErrors(t *testing.T) {
	frames := vectorFrames(t)
	msg, _ := frames[0].f.Append(nil)
	ihave, _ := frames[2].f.Append(nil)
	tests := []struct {
		name string
		b    []byte
		want error
	}{
		{"empty", nil, ErrMalformed},
		{"short header", []byte{1, 1}, ErrMalformed},
		{"version", []byte{2, 6, 1, 't'}, ErrBadVersion},
		{"unknown type", []byte{1, 42, 1, 't'}, ErrUnknownType},
		{"empty topic", []byte{1, 6, 0}, ErrMalformed},
		{"topic past end", []byte{1, 6, 5, 't'}, ErrMalformed},
		{"trailing after LEAVE", []byte{1, 6, 1, 't', 0}, ErrMalformed},
		{"truncated MSG", msg[:len(msg)-1], ErrMalformed},
		{"MSG trailing", append(append([]byte{}, msg...), 0), ErrMalformed},
		{"MSG header only", msg[:7+40], ErrMalformed},
		{"truncated IHAVE", ihave[:len(ihave)-1], ErrMalformed},
		{"IHAVE zero", []byte{1, 2, 1, 't', 0}, ErrMalformed},
		{"IHAVE over max", []byte{1, 2, 1, 't', MaxIDs + 1}, ErrMalformed},
		{"GRAFT over max", []byte{1, 3, 1, 't', MaxIDs + 1}, ErrMalformed},
		{"GRAFT no count", []byte{1, 3, 1, 't'}, ErrMalformed},
		{"GRAFT truncated", []byte{1, 3, 1, 't', 1, 0}, ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := ParseFrame(tt.b); !errors.Is(err, tt.want) {
				t.Errorf("got %v, want %v", err, tt.want)
			}
		})
	}
}

func TestAppendErrors(t *testing.T) {
	for _, f := range []Frame{
		{Type: TypeJoin},
		{Type: TypeJoin, Topic: strings.Repeat("x", MaxTopicLen+1)},
		{Type: TypeMsg, Topic: "t"},
		{Type: TypeIHave, Topic: "t"},
		{Type: TypeIHave, Topic: "t", IHave: make([]Announce, MaxIDs+1)},
		{Type: TypeGraft, Topic: "t", Graft: make([]MsgID, MaxIDs+1)},
		{Type: 77, Topic: "t"},
	} {
		if _, err := f.Append(nil); err == nil {
			t.Errorf("Append(%v, topic %d bytes) succeeded", f.Type, len(f.Topic))
		}
	}
}

func FuzzParseFrame(f *testing.F) {
	for _, v := range vectorFrames(f) {
		b, err := v.f.Append(nil)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		fr, err := ParseFrame(b)
		if err != nil {
			return
		}
		again, err := fr.Append(nil)
		if err != nil {
			t.Fatalf("re-encoding a parsed frame: %v", err)
		}
		if !bytes.Equal(again, b) {
			t.Fatalf("round trip differs:\n%x\n%x", b, again)
		}
		if _, err := ParseFrame(again); err != nil {
			t.Fatal(err)
		}
	})
}

// FuzzRouter feeds arbitrary frames to a router in a small mesh: it must
// neither panic nor deliver anything unsigned.
func FuzzRouter(f *testing.F) {
	for _, v := range vectorFrames(f) {
		b, _ := v.f.Append(nil)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		net := newTestNet(t)
		a := net.add()
		net.add()
		net.run(100 * time.Millisecond)
		a.r.HandleFrame(testKey(t, 77).PeerID(), b)
		net.run(5 * time.Second)
		if m := a.r.Metrics(); m.Delivered > 0 && m.Forged > 0 {
			t.Fatalf("delivered %d with %d forged", m.Delivered, m.Forged)
		}
	})
}
