package dht

import (
	"bytes"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/dynamicpb"

	"github.com/ferrynet/ferry/internal/testutil"
)

const protosetFile = "testdata/dht.protoset"

var protoName = map[Type]protoreflect.FullName{
	TypePing:      "ferry.dht.v1.Ping",
	TypePong:      "ferry.dht.v1.Pong",
	TypeFindNode:  "ferry.dht.v1.FindNode",
	TypeNodes:     "ferry.dht.v1.Nodes",
	TypeGet:       "ferry.dht.v1.Get",
	TypeValues:    "ferry.dht.v1.Values",
	TypePut:       "ferry.dht.v1.Put",
	TypePutResult: "ferry.dht.v1.PutResult",
}

func loadDescriptors(t *testing.T, path string) *descriptorpb.FileDescriptorSet {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go generate ./dht)", err)
	}
	set := new(descriptorpb.FileDescriptorSet)
	if err := proto.Unmarshal(data, set); err != nil {
		t.Fatal(err)
	}
	return set
}

// TestConformance checks the hand encoding against proto/dht.proto: the
// protobuf library decodes every vector (and every record body in it) with
// the schema and re-encodes it to the same bytes.
func TestConformance(t *testing.T) {
	files, err := protodesc.NewFiles(loadDescriptors(t, protosetFile))
	if err != nil {
		t.Fatal(err)
	}
	desc := func(name protoreflect.FullName) protoreflect.MessageDescriptor {
		d, err := files.FindDescriptorByName(name)
		if err != nil {
			t.Fatal(err)
		}
		return d.(protoreflect.MessageDescriptor)
	}
	roundTrip := func(name protoreflect.FullName, b []byte) {
		t.Helper()
		m := dynamicpb.NewMessage(desc(name))
		if err := (proto.UnmarshalOptions{DiscardUnknown: false}).Unmarshal(b, m); err != nil {
			t.Fatalf("%s: protobuf cannot decode %x: %v", name, b, err)
		}
		if len(m.GetUnknown()) != 0 {
			t.Fatalf("%s: fields unknown to the schema in %x", name, b)
		}
		again, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
		if err != nil || !bytes.Equal(again, b) {
			t.Fatalf("%s: protobuf re-encodes\n%x\nas\n%x (%v)", name, b, again, err)
		}
	}
	for _, v := range sampleVectors(t) {
		t.Run(v.Name, func(t *testing.T) {
			b, err := hex.DecodeString(v.Hex)
			if err != nil {
				t.Fatal(err)
			}
			m, err := ParseMessage(b)
			if err != nil {
				t.Fatal(err)
			}
			roundTrip(protoName[m.Type()], b[1:])
			for _, r := range records(m) {
				enc, err := r.Append(nil)
				if err != nil {
					t.Fatal(err)
				}
				roundTrip("ferry.dht.v1.Record", enc)
				roundTrip("ferry.dht.v1.RecordBody", r.encodedBody())
			}
		})
	}
}

// TestProtosetFresh checks that testdata/dht.protoset is what protoc makes
// of proto/dht.proto.
func TestProtosetFresh(t *testing.T) {
	protoc := testutil.RequireBinary(t, "protoc", "protobuf-compiler")
	out := filepath.Join(t.TempDir(), "dht.protoset")
	cmd := exec.Command(protoc, "--proto_path=proto", "--descriptor_set_out="+out, "proto/dht.proto")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("protoc: %v\n%s", err, b)
	}
	if !proto.Equal(loadDescriptors(t, out), loadDescriptors(t, protosetFile)) {
		t.Fatalf("%s is stale: run go generate ./dht and commit it", protosetFile)
	}
}
