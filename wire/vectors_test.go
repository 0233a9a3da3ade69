package wire

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/vectors.json and the fuzz seed corpora under testdata/fuzz")

const vectorsFile = "testdata/vectors.json"

// TestVectors checks the codec against testdata/vectors.json both ways:
// encoding each entry's fields gives frame_hex, and parsing frame_hex gives
// the fields. With -update it first rewrites the file (and the fuzz seeds)
// from the Go values in sampleVectors; review the diff before committing.
func TestVectors(t *testing.T) {
	if *update {
		writeVectors(t)
		writeFuzzSeeds(t)
	}
	data, err := os.ReadFile(vectorsFile)
	if err != nil {
		t.Fatalf("%v (run go generate to create it)", err)
	}
	var vs []vector
	if err := json.Unmarshal(data, &vs); err != nil {
		t.Fatalf("%s: %v", vectorsFile, err)
	}
	if want := sampleVectors(t); !deepEqual(vs, want) {
		t.Errorf("%s is not what the generator produces; run go generate ./wire/ and review the diff", vectorsFile)
	}
	seen := map[string]bool{}
	var stream []byte
	var empty, oneByte, big bool
	for _, v := range vs {
		t.Run(v.Name, func(t *testing.T) {
			if seen[v.Name] {
				t.Fatalf("duplicate vector name %q", v.Name)
			}
			seen[v.Name] = true
			payload, frame := mustHex(t, v.PayloadHex), mustHex(t, v.FrameHex)
			empty = empty || len(payload) == 0
			oneByte = oneByte || len(payload) == 1
			big = big || len(payload) > 64<<10
			// Encode.
			if got := AppendFrame(nil, Type(v.Type), v.Seq, payload); !bytes.Equal(got, frame) {
				t.Fatalf("AppendFrame gives\n%x\nwant\n%x", got, frame)
			}
			// Decode.
			f, n, err := ParseFrame(frame, 0)
			if err != nil {
				t.Fatal(err)
			}
			if n != len(frame) || f.Type != Type(v.Type) || f.Seq != v.Seq || !bytes.Equal(f.Payload, payload) {
				t.Fatalf("ParseFrame gives type %v seq %d payload %d bytes, n %d", f.Type, f.Seq, len(f.Payload), n)
			}
			// Message payloads decode and re-encode to the same bytes.
			if m := newDecoder(f.Type); m != nil {
				if err := m.Unmarshal(payload); err != nil {
					t.Fatal(err)
				}
				if b, err := m.Append(nil); err != nil || !bytes.Equal(b, payload) {
					t.Fatalf("message re-encodes to %x (%v)", b, err)
				}
			}
			stream = append(stream, frame...)
		})
	}
	if !empty || !oneByte || !big {
		t.Errorf("vectors lack an empty (%v), a 1-byte (%v) or a >64 KiB (%v) payload", empty, oneByte, big)
	}
	// The whole file as one stream, one byte at a time and all at once.
	for _, chunks := range [][]int{{1}, {len(stream)}, {1000, 7}} {
		r := NewReader(&chunkReader{data: stream, sizes: chunks}, 0)
		got, err := readAll(r)
		if err != io.EOF || len(got) != len(vs) { //nolint:errorlint // bare io.EOF
			t.Fatalf("streaming the vectors in chunks %v: %d frames, %v", chunks, len(got), err)
		}
	}
}

func writeVectors(t *testing.T) {
	t.Helper()
	vs := sampleVectors(t)
	var buf bytes.Buffer
	buf.WriteString("[\n")
	for i, v := range vs {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		buf.WriteString("  ")
		buf.Write(b)
		if i < len(vs)-1 {
			buf.WriteString(",")
		}
		buf.WriteString("\n")
	}
	buf.WriteString("]\n")
	if err := os.WriteFile(vectorsFile, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// writeFuzzSeeds writes the seed corpora under testdata/fuzz/<FuzzName>/, in
// the "go test fuzz v1" format, replacing the generated seeds (files named
// seed-*) and leaving any committed crashers alone.
func writeFuzzSeeds(t *testing.T) {
	t.Helper()
	for name, seeds := range fuzzSeeds(t) {
		dir := filepath.Join("testdata", "fuzz", name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		old, err := filepath.Glob(filepath.Join(dir, "seed-*"))
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range old {
			if err := os.Remove(f); err != nil {
				t.Fatal(err)
			}
		}
		for _, s := range seeds {
			var buf bytes.Buffer
			buf.WriteString("go test fuzz v1\n")
			for _, arg := range s.args {
				fmt.Fprintf(&buf, "[]byte(%s)\n", strconv.Quote(string(arg)))
			}
			if err := os.WriteFile(filepath.Join(dir, "seed-"+s.name), buf.Bytes(), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
}
