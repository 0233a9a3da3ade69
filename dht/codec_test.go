package dht

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/ferrynet/ferry/dht/kbucket"
)

var update = flag.Bool("update", false, "rewrite testdata/vectors.json and the fuzz seeds under testdata/fuzz")

const vectorsFile = "testdata/vectors.json"

type vector struct {
	Name string `json:"name"`
	Type string `json:"type"`
	Hex  string `json:"hex"` // type byte and payload
}

type sample struct {
	name string
	msg  Message
}

// sampleMessages returns one or more messages of every type, built from
// deterministic keys (Ed25519 signatures are deterministic).
func sampleMessages(t testing.TB) []sample {
	t.Helper()
	alice, bob := testIdentity(t, "alice"), testIdentity(t, "bob")
	peer := signedRecord(t, alice, 3, nil)
	withAddrs := signedRecord(t, bob, 1<<40, func(r *Record) {
		r.Rendezvous = []string{"wss://rv1.example.net/v1/signal", "wss://rv2.example.org/v1/signal"}
		r.Addrs = parseAddrs("203.0.113.5:7000", "[2001:db8:1::5]:7000")
	})
	ann := signedRecord(t, alice, 1, func(r *Record) { r.Topic = TopicKey("ferry/chat") })
	c1 := testContact(t, "c1", "198.51.100.1:4001")
	c2 := testContact(t, "c2", "[2001:db8::2]:4001")
	c3 := testContact(t, "c3", "")
	return []sample{
		{"ping-client", &Ping{}},
		{"ping-server", &Ping{Server: true}},
		{"pong", &Pong{}},
		{"find-node", &FindNode{Target: alice.PeerID(), Server: true}},
		{"nodes-empty", &Nodes{}},
		{"nodes-3", &Nodes{Closer: []kbucket.Contact{c1, c2, c3}}},
		{"get", &Get{Key: TopicKey("ferry/chat")}},
		{"values-peer", &Values{Records: []*Record{peer}, Closer: []kbucket.Contact{c1}}},
		{"values-topic", &Values{Records: []*Record{ann, withAddrs}}},
		{"values-closer-only", &Values{Closer: []kbucket.Contact{c2, c3}}},
		{"put-peer", &Put{Record: withAddrs, Server: true}},
		{"put-announcement", &Put{Record: ann}},
		{"put-result-stored", &PutResult{}},
		{"put-result-old-seq", &PutResult{Code: PutOldSeq, Reason: "seq 3, stored 5"}},
	}
}

func sampleVectors(t testing.TB) []vector {
	var vs []vector
	for _, s := range sampleMessages(t) {
		b, err := AppendMessage(nil, s.msg)
		if err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		vs = append(vs, vector{Name: s.name, Type: s.msg.Type().String(), Hex: hex.EncodeToString(b)})
	}
	return vs
}

// TestVectors checks the codec against testdata/vectors.json both ways.
// With -update it rewrites the file and the fuzz seeds first; review the
// diff before committing.
func TestVectors(t *testing.T) {
	if *update {
		writeVectors(t)
		writeFuzzSeeds(t)
	}
	data, err := os.ReadFile(vectorsFile)
	if err != nil {
		t.Fatalf("%v (run go test ./dht -run TestVectors -update)", err)
	}
	var vs []vector
	if err := json.Unmarshal(data, &vs); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(vs, sampleVectors(t)) {
		t.Fatalf("%s is not what the samples encode to; rerun with -update and review the diff", vectorsFile)
	}
	for _, v := range vs {
		t.Run(v.Name, func(t *testing.T) {
			b, err := hex.DecodeString(v.Hex)
			if err != nil {
				t.Fatal(err)
			}
			m, err := ParseMessage(b)
			if err != nil {
				t.Fatal(err)
			}
			if m.Type().String() != v.Type {
				t.Fatalf("type %v, want %s", m.Type(), v.Type)
			}
			again, err := AppendMessage(nil, m)
			if err != nil || !bytes.Equal(again, b) {
				t.Fatalf("re-encodes to %x (%v)", again, err)
			}
			if m.Len() != len(b)-1 {
				t.Fatalf("Len %d, payload %d", m.Len(), len(b)-1)
			}
			for _, r := range records(m) {
				if err := r.Verify(); err != nil {
					t.Fatalf("vector record does not verify: %v", err)
				}
			}
		})
	}
}

func records(m Message) []*Record {
	switch m := m.(type) {
	case *Values:
		return m.Records
	case *Put:
		return []*Record{m.Record}
	}
	return nil
}

func writeVectors(t *testing.T) {
	b, err := json.MarshalIndent(sampleVectors(t), "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(vectorsFile, append(b, '\n'), 0o644); err != nil {
		t.Fatal(err)
	}
}

// enc builds raw protobuf for malformed-input cases.
type enc []byte

func (e enc) bytes(num protowire.Number, v []byte) enc {
	return protowire.AppendBytes(protowire.AppendTag(e, num, protowire.BytesType), v)
}

func (e enc) varint(num protowire.Number, v uint64) enc {
	return protowire.AppendVarint(protowire.AppendTag(e, num, protowire.VarintType), v)
}

func msg(t Type, payload []byte) []byte { return append([]byte{byte(t)}, payload...) }

// badInputs are malformed messages, each with the error it must give.
func badInputs(t testing.TB) []struct {
	name string
	in   []byte
	want error
} {
	good := signedRecord(t, testIdentity(t, "alice"), 1, nil)
	goodBytes, err := good.Append(nil)
	if err != nil {
		t.Fatal(err)
	}
	contact := enc(nil).bytes(1, bytes.Repeat([]byte{1}, 32))
	var manyContacts enc
	for range MaxContacts + 1 {
		manyContacts = manyContacts.bytes(1, contact)
	}
	var manyRecords enc
	for range MaxValues + 1 {
		manyRecords = manyRecords.bytes(1, goodBytes)
	}
	body := enc(nil).bytes(1, good.PublicKey).varint(3, 1).varint(4, 1900000000)
	sig := bytes.Repeat([]byte{9}, 64)
	return []struct {
		name string
		in   []byte
		want error
	}{
		{"empty", nil, ErrMalformed},
		{"unknown type", []byte{0x7f}, ErrUnknownType},
		{"too large", msg(TypePong, make([]byte, MaxMessageSize)), ErrMessageTooLarge},
		{"truncated tag", msg(TypePing, []byte{0x80}), ErrMalformed},
		{"wrong wire type", msg(TypePing, enc(nil).bytes(1, nil)), ErrMalformed},
		{"truncated bytes", msg(TypeFindNode, []byte{0x0a, 0x20, 1, 2}), ErrMalformed},
		{"short target", msg(TypeFindNode, enc(nil).bytes(1, []byte{1, 2, 3})), ErrMalformed},
		{"long key", msg(TypeGet, enc(nil).bytes(1, make([]byte, 33))), ErrMalformed},
		{"contact without id", msg(TypeNodes, enc(nil).bytes(1, nil)), ErrMalformed},
		{"contact bad addr", msg(TypeNodes, enc(nil).bytes(1, contact.bytes(2, []byte{1, 2, 3}))), ErrMalformed},
		{"too many contacts", msg(TypeNodes, manyContacts), ErrMalformed},
		{"too many records", msg(TypeValues, manyRecords), ErrMalformed},
		{"put without record", msg(TypePut, enc(nil).varint(2, 1)), ErrMalformed},
		{"record without signature", msg(TypePut, enc(nil).bytes(1, enc(nil).bytes(1, body))), ErrMalformed},
		{"record short signature", msg(TypePut, enc(nil).bytes(1, enc(nil).bytes(1, body).bytes(2, sig[:63]))), ErrMalformed},
		{"record without key", msg(TypePut, enc(nil).bytes(1, enc(nil).bytes(1, enc(nil).varint(3, 1)).bytes(2, sig))), ErrMalformed},
		{"record short key", msg(TypePut, enc(nil).bytes(1, enc(nil).bytes(1, enc(nil).bytes(1, make([]byte, 31))).bytes(2, sig))), ErrMalformed},
		{"record bad topic", msg(TypePut, enc(nil).bytes(1, enc(nil).bytes(1, body.bytes(2, []byte{1})).bytes(2, sig))), ErrMalformed},
		{"record bad url", msg(TypePut, enc(nil).bytes(1, enc(nil).bytes(1, body.bytes(5, []byte{0xff})).bytes(2, sig))), ErrMalformed},
		{"record empty addr", msg(TypePut, enc(nil).bytes(1, enc(nil).bytes(1, body.bytes(6, nil)).bytes(2, sig))), ErrMalformed},
		{"record huge expiry", msg(TypePut, enc(nil).bytes(1, enc(nil).bytes(1, body.varint(4, 1<<62)).bytes(2, sig))), ErrMalformed},
		{"record too large", msg(TypePut, enc(nil).bytes(1, make([]byte, MaxRecordSize+1))), ErrMalformed},
		{"put result code overflow", msg(TypePutResult, enc(nil).varint(1, 1<<32)), ErrMalformed},
		{"put result long reason", msg(TypePutResult, enc(nil).bytes(2, make([]byte, MaxReasonLen+1))), ErrMalformed},
		{"unknown field truncated", msg(TypePong, []byte{0x7a, 0x05, 1}), ErrMalformed},
	}
}

func TestParseMalformed(t *testing.T) {
	for _, tt := range badInputs(t) {
		t.Run(tt.name, func(t *testing.T) {
			m, err := ParseMessage(tt.in)
			if !errors.Is(err, tt.want) {
				t.Fatalf("ParseMessage = %v, %v; want %v", m, err, tt.want)
			}
		})
	}
}

func TestUnknownFieldsSkipped(t *testing.T) {
	for _, s := range sampleMessages(t) {
		b, err := s.msg.Append(nil)
		if err != nil {
			t.Fatal(err)
		}
		in := msg(s.msg.Type(), append(enc(nil).varint(90, 1).bytes(91, []byte("future")), b...))
		m, err := ParseMessage(in)
		if err != nil {
			t.Fatalf("%s with unknown fields: %v", s.name, err)
		}
		again, err := m.Append(nil)
		if err != nil || !bytes.Equal(again, b) {
			t.Fatalf("%s: unknown fields changed the message", s.name)
		}
	}
}

// A record body with fields this version does not know still verifies: the
// signature covers the bytes as received.
func TestRecordUnknownBodyFieldVerifies(t *testing.T) {
	alice := testIdentity(t, "alice")
	r := signedRecord(t, alice, 1, nil)
	body := append(r.appendBody(nil), enc(nil).bytes(40, []byte("future"))...)
	env := enc(nil).bytes(1, body).bytes(2, alice.Sign(signedBytes(body)))
	var got Record
	if err := got.Unmarshal(env); err != nil {
		t.Fatal(err)
	}
	if err := got.Verify(); err != nil {
		t.Fatal(err)
	}
	b, _ := got.Append(nil)
	if !bytes.Equal(b, env) {
		t.Fatal("re-encoding dropped the signed unknown field")
	}
}

func TestEncodeRefusesOverBounds(t *testing.T) {
	many := make([]kbucket.Contact, MaxContacts+1)
	for i := range many {
		many[i].ID[0] = byte(i + 1)
	}
	r := signedRecord(t, testIdentity(t, "a"), 1, nil)
	for name, m := range map[string]Message{
		"nodes":        &Nodes{Closer: many},
		"zero contact": &Nodes{Closer: []kbucket.Contact{{}}},
		"values":       &Values{Records: slices.Repeat([]*Record{r}, MaxValues+1)},
		"put":          &Put{},
		"reason":       &PutResult{Reason: strings.Repeat("x", MaxReasonLen+1)},
	} {
		if _, err := AppendMessage(nil, m); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v, want ErrMalformed", name, err)
		}
	}
}

// Fuzzing. Seeds come from the samples and the malformed inputs, and are
// committed under testdata/fuzz by TestVectors -update.

func fuzzSeeds(t testing.TB) map[string][][]byte {
	seeds := map[string][][]byte{}
	for _, v := range sampleVectors(t) {
		b, _ := hex.DecodeString(v.Hex)
		seeds["FuzzParseMessage"] = append(seeds["FuzzParseMessage"], b)
	}
	for _, bad := range badInputs(t) {
		if len(bad.in) < 4096 {
			seeds["FuzzParseMessage"] = append(seeds["FuzzParseMessage"], bad.in)
		}
	}
	for _, s := range sampleMessages(t) {
		for _, r := range records(s.msg) {
			b, _ := r.Append(nil)
			seeds["FuzzRecord"] = append(seeds["FuzzRecord"], b)
		}
	}
	return seeds
}

func writeFuzzSeeds(t *testing.T) {
	for target, ss := range fuzzSeeds(t) {
		dir := filepath.Join("testdata", "fuzz", target)
		if err := os.RemoveAll(dir); err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for i, s := range ss {
			data := fmt.Sprintf("go test fuzz v1\n[]byte(%s)\n", strconv.Quote(string(s)))
			if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("seed-%03d", i)), []byte(data), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func FuzzParseMessage(f *testing.F) {
	for _, s := range fuzzSeeds(f)["FuzzParseMessage"] {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := ParseMessage(b)
		if err != nil {
			return
		}
		enc1, err := AppendMessage(nil, m)
		if err != nil {
			t.Fatalf("decoded message does not encode: %v", err)
		}
		if len(enc1) != m.Len()+1 {
			t.Fatalf("Len %d, encoded %d", m.Len(), len(enc1)-1)
		}
		m2, err := ParseMessage(enc1)
		if err != nil {
			t.Fatalf("re-encoded message does not decode: %v", err)
		}
		enc2, err := AppendMessage(nil, m2)
		if err != nil || !bytes.Equal(enc1, enc2) {
			t.Fatalf("round trip differs:\n%x\n%x (%v)", enc1, enc2, err)
		}
	})
}

func FuzzRecord(f *testing.F) {
	for _, s := range fuzzSeeds(f)["FuzzRecord"] {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var r Record
		if err := r.Unmarshal(b); err != nil {
			return
		}
		_ = r.Verify() // must not panic
		enc1, err := r.Append(nil)
		if err != nil {
			t.Fatalf("decoded record does not encode: %v", err)
		}
		var r2 Record
		if err := r2.Unmarshal(enc1); err != nil {
			t.Fatal(err)
		}
		enc2, _ := r2.Append(nil)
		if !bytes.Equal(enc1, enc2) || r.Key() != r2.Key() || r.Seq != r2.Seq {
			t.Fatal("round trip differs")
		}
	})
}
