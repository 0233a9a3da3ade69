package wire

import (
	"bytes"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/dynamicpb"

	"github.com/ferrynet/ferry/internal/testutil"
)

const protosetFile = "testdata/ferry.protoset"

// protoName maps each frame type to its message in proto/ferry.proto.
var protoName = map[Type]protoreflect.FullName{
	TypeHello:  "ferry.wire.v1.Hello",
	TypePing:   "ferry.wire.v1.Ping",
	TypePong:   "ferry.wire.v1.Pong",
	TypeAck:    "ferry.wire.v1.Ack",
	TypeResume: "ferry.wire.v1.Resume",
	TypeGoAway: "ferry.wire.v1.GoAway",
	TypeStream: "ferry.wire.v1.StreamHeader",

	TypeChallenge:          "ferry.signal.v1.Challenge",
	TypeLogin:              "ferry.signal.v1.Login",
	TypeLoggedIn:           "ferry.signal.v1.LoggedIn",
	TypeOffer:              "ferry.signal.v1.Offer",
	TypeAnswer:             "ferry.signal.v1.Answer",
	TypeCandidate:          "ferry.signal.v1.Candidate",
	TypeEndOfCandidates:    "ferry.signal.v1.EndOfCandidates",
	TypeBye:                "ferry.signal.v1.Bye",
	TypeReceipt:            "ferry.signal.v1.Receipt",
	TypeSignalError:        "ferry.signal.v1.SignalError",
	TypeCredentialsRequest: "ferry.signal.v1.CredentialsRequest",
	TypeCredentials:        "ferry.signal.v1.Credentials",
	TypeBootstrapRequest:   "ferry.signal.v1.BootstrapRequest",
	TypeBootstrap:          "ferry.signal.v1.Bootstrap",
	TypeDHT:                "ferry.signal.v1.DHT",
}

func loadProtoset(t *testing.T, path string) *descriptorpb.FileDescriptorSet {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run `make generate`)", err)
	}
	set := new(descriptorpb.FileDescriptorSet)
	if err := proto.Unmarshal(data, set); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return set
}

func loadFiles(t *testing.T) *protoregistry.Files {
	t.Helper()
	files, err := protodesc.NewFiles(loadProtoset(t, protosetFile))
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// goFields returns m's field values keyed by proto field name, in the Go
// types protoreflect uses, with zero values left out (proto3 has no
// presence for them).
func goFields(m Message) map[string]any {
	f := map[string]any{}
	put := func(name string, v any, zero bool) {
		if !zero {
			f[name] = v
		}
	}
	switch m := m.(type) {
	case *Hello:
		vs := make([]uint64, len(m.Versions))
		for i, v := range m.Versions {
			vs[i] = uint64(v)
		}
		put("versions", vs, len(vs) == 0)
		put("max_payload", uint64(m.MaxPayload), m.MaxPayload == 0)
		put("capabilities", m.Capabilities, len(m.Capabilities) == 0)
		put("conn_id", m.ConnID, len(m.ConnID) == 0)
		put("recv_window", uint64(m.RecvWindow), m.RecvWindow == 0)
		put("resume", m.Resume, !m.Resume)
	case *Ping:
		put("id", m.ID, m.ID == 0)
		put("sent_unix_nano", m.SentUnixNano, m.SentUnixNano == 0)
	case *Pong:
		put("id", m.ID, m.ID == 0)
		put("sent_unix_nano", m.SentUnixNano, m.SentUnixNano == 0)
	case *Ack:
		put("cumulative", m.Cumulative, m.Cumulative == 0)
	case *Resume:
		put("last_received", m.LastReceived, m.LastReceived == 0)
		put("last_consumed", m.LastConsumed, m.LastConsumed == 0)
	case *GoAway:
		put("code", uint64(m.Code), m.Code == 0)
		put("reason", m.Reason, m.Reason == "")
		put("retry_after_millis", uint64(m.RetryAfterMillis), m.RetryAfterMillis == 0)
	case *StreamHeader:
		put("protocol", m.Protocol, m.Protocol == "")
	default:
		signalFields(m, put)
	}
	return f
}

// signalFields is goFields for the signaling messages.
func signalFields(m Message, put func(string, any, bool)) {
	fixed := func(name string, v []byte) { put(name, bytes.Clone(v), isZero(v)) }
	str := func(name, v string) { put(name, v, v == "") }
	strs := func(name string, v []string) { put(name, v, len(v) == 0) }
	u64 := func(name string, v uint64) { put(name, v, v == 0) }
	i64 := func(name string, v int64) { put(name, v, v == 0) }
	header := func(h *RouteHeader) {
		fixed("peer", h.Peer[:])
		put("session_id", h.SessionID, len(h.SessionID) == 0)
		u64("id", h.ID)
	}
	switch m := m.(type) {
	case *Challenge:
		u64("version", uint64(m.Version))
		fixed("nonce", m.Nonce[:])
		i64("server_time_unix_millis", m.ServerTimeUnixMillis)
		u64("max_payload", uint64(m.MaxPayload))
		u64("login_timeout_millis", uint64(m.LoginTimeoutMillis))
		u64("channel_binding", uint64(m.ChannelBinding))
	case *Login:
		u64("version", uint64(m.Version))
		fixed("peer_id", m.PeerID[:])
		fixed("public_key", m.PublicKey[:])
		fixed("nonce", m.Nonce[:])
		str("server_name", m.ServerName)
		i64("time_unix_millis", m.TimeUnixMillis)
		fixed("signature", m.Signature[:])
		strs("capabilities", m.Capabilities)
		u64("channel_binding", uint64(m.ChannelBinding))
	case *LoggedIn:
		fixed("peer_id", m.PeerID[:])
		str("server_id", m.ServerID)
		u64("idle_timeout_millis", uint64(m.IdleTimeoutMillis))
		u64("max_payload", uint64(m.MaxPayload))
	case *Offer:
		header(&m.RouteHeader)
		str("ufrag", m.Ufrag)
		str("pwd", m.Pwd)
		strs("candidates", m.Candidates)
		put("metadata", m.Metadata, len(m.Metadata) == 0)
	case *Answer:
		header(&m.RouteHeader)
		str("ufrag", m.Ufrag)
		str("pwd", m.Pwd)
		strs("candidates", m.Candidates)
		put("metadata", m.Metadata, len(m.Metadata) == 0)
	case *Candidate:
		header(&m.RouteHeader)
		str("ufrag", m.Ufrag)
		str("candidate", m.Candidate)
	case *EndOfCandidates:
		header(&m.RouteHeader)
		str("ufrag", m.Ufrag)
	case *Bye:
		header(&m.RouteHeader)
		str("reason", m.Reason)
	case *Receipt:
		u64("id", m.ID)
		fixed("peer", m.Peer[:])
	case *SignalError:
		u64("code", uint64(m.Code))
		str("reason", m.Reason)
		u64("id", m.ID)
		fixed("peer", m.Peer[:])
		u64("retry_after_millis", uint64(m.RetryAfterMillis))
		put("fatal", m.Fatal, !m.Fatal)
	case *CredentialsRequest:
		u64("id", m.ID)
	case *Credentials:
		u64("id", m.ID)
		str("username", m.Username)
		str("password", m.Password)
		i64("expires_unix", m.ExpiresUnix)
		strs("relay_urls", m.RelayURLs)
		strs("stun_urls", m.STUNURLs)
	case *BootstrapRequest:
		u64("id", m.ID)
	case *Bootstrap:
		u64("id", m.ID)
		strs("seeds", m.Seeds)
		peers := make([][]byte, len(m.Peers))
		for i := range m.Peers {
			peers[i] = bytes.Clone(m.Peers[i][:])
		}
		put("peers", peers, len(peers) == 0)
	case *DHT:
		u64("id", m.ID)
		fixed("node", m.Node[:])
		put("message", bytes.Clone(m.Message), len(m.Message) == 0)
	}
}

// scalar converts a protoreflect value of field fd to the Go types goFields
// uses.
func scalar(fd protoreflect.FieldDescriptor, v protoreflect.Value) any {
	switch fd.Kind() {
	case protoreflect.Uint32Kind, protoreflect.Uint64Kind:
		return v.Uint()
	case protoreflect.Int64Kind:
		return v.Int()
	case protoreflect.StringKind:
		return v.String()
	case protoreflect.BytesKind:
		return v.Bytes()
	case protoreflect.BoolKind:
		return v.Bool()
	}
	return "unexpected kind " + fd.Kind().String()
}

// dynFields returns the populated fields of a dynamic message, as goFields.
func dynFields(m *dynamicpb.Message) map[string]any {
	f := map[string]any{}
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		name := string(fd.Name())
		if !fd.IsList() {
			f[name] = scalar(fd, v)
			return true
		}
		l := v.List()
		switch fd.Kind() {
		case protoreflect.StringKind:
			s := make([]string, l.Len())
			for i := range s {
				s[i] = l.Get(i).String()
			}
			f[name] = s
		case protoreflect.BytesKind:
			s := make([][]byte, l.Len())
			for i := range s {
				s[i] = l.Get(i).Bytes()
			}
			f[name] = s
		default:
			u := make([]uint64, l.Len())
			for i := range u {
				u[i] = l.Get(i).Uint()
			}
			f[name] = u
		}
		return true
	})
	return f
}

// setDyn fills a dynamic message from goFields output.
func setDyn(t *testing.T, m *dynamicpb.Message, fields map[string]any) {
	t.Helper()
	for name, v := range fields {
		fd := m.Descriptor().Fields().ByName(protoreflect.Name(name))
		if fd == nil {
			t.Fatalf("%s has no field %q", m.Descriptor().FullName(), name)
		}
		switch v := v.(type) {
		case []uint64:
			l := m.Mutable(fd).List()
			for _, x := range v {
				l.Append(protoreflect.ValueOfUint32(uint32(x)))
			}
		case []string:
			l := m.Mutable(fd).List()
			for _, x := range v {
				l.Append(protoreflect.ValueOfString(x))
			}
		case [][]byte:
			l := m.Mutable(fd).List()
			for _, x := range v {
				l.Append(protoreflect.ValueOfBytes(x))
			}
		case int64:
			m.Set(fd, protoreflect.ValueOfInt64(v))
		case uint64:
			if fd.Kind() == protoreflect.Uint32Kind {
				m.Set(fd, protoreflect.ValueOfUint32(uint32(v)))
			} else {
				m.Set(fd, protoreflect.ValueOfUint64(v))
			}
		default:
			m.Set(fd, protoreflect.ValueOf(v))
		}
	}
}

func conformanceMessages() []decoder {
	msgs := []decoder{
		&Hello{},
		&Hello{Versions: []uint32{0, 1, 300, math.MaxUint32}, Capabilities: []string{"", "ünï"}},
		&Hello{Versions: []uint32{1}, Resume: true},
		&Ping{ID: 1, SentUnixNano: -1},
		&Ping{SentUnixNano: math.MinInt64},
		&Pong{ID: math.MaxUint64, SentUnixNano: math.MaxInt64},
		&Ack{}, &Ack{Cumulative: math.MaxUint64},
		&Resume{LastConsumed: 1},
		&GoAway{Code: GoAwayCode(math.MaxUint32), RetryAfterMillis: 1},
		&StreamHeader{Protocol: "ferry/chat/1"},
	}
	for _, s := range sampleMessages() {
		msgs = append(msgs, s.msg)
	}
	return msgs
}

// TestProtoConformance checks the hand-written codec against the schema in
// proto/ferry.proto, through the Go protobuf runtime: the hand encoding
// decodes to the same field values, a deterministic Marshal of those values
// gives the same bytes, and the hand decoder reads what Marshal writes.
func TestProtoConformance(t *testing.T) {
	files := loadFiles(t)
	for _, pkg := range []protoreflect.FullName{"ferry.wire.v1", "ferry.signal.v1"} {
		if n := files.NumFilesByPackage(pkg); n != 1 {
			t.Fatalf("%d files in package %s, want 1", n, pkg)
		}
	}
	descs := map[Type]protoreflect.MessageDescriptor{}
	for typ, name := range protoName {
		d, err := files.FindDescriptorByName(name)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		descs[typ] = d.(protoreflect.MessageDescriptor)
	}
	for _, m := range conformanceMessages() {
		md := descs[m.Type()]
		t.Run(string(md.Name()), func(t *testing.T) {
			hand, err := m.Append(nil)
			if err != nil {
				t.Fatal(err)
			}
			want := goFields(m)

			// Hand encoding -> protobuf runtime.
			dm := dynamicpb.NewMessage(md)
			if err = proto.Unmarshal(hand, dm); err != nil {
				t.Fatalf("proto.Unmarshal(%x): %v", hand, err)
			}
			if got := dynFields(dm); !deepEqual(got, want) {
				t.Fatalf("protobuf reads %x as %v, want %v", hand, got, want)
			}
			if len(dm.GetUnknown()) != 0 {
				t.Fatalf("protobuf sees unknown fields %x in %x", dm.GetUnknown(), hand)
			}

			// Protobuf runtime encoding == hand encoding.
			dm2 := dynamicpb.NewMessage(md)
			setDyn(t, dm2, want)
			pb, err := proto.MarshalOptions{Deterministic: true}.Marshal(dm2)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(pb, hand) {
				t.Fatalf("protobuf encodes %+v as\n%x\nhand encoding\n%x", m, pb, hand)
			}
		})
	}
}

// TestProtoConformanceUnpacked checks that the hand decoder reads repeated
// scalars written unpacked (a legal protobuf encoding) as the runtime does.
func TestProtoConformanceUnpacked(t *testing.T) {
	files := loadFiles(t)
	d, err := files.FindDescriptorByName(protoName[TypeHello])
	if err != nil {
		t.Fatal(err)
	}
	in := enc(nil).varint(1, 1).varint(1, 2).bytes(1, []byte{3, 4}).varint(5, 9)
	dm := dynamicpb.NewMessage(d.(protoreflect.MessageDescriptor))
	if err := proto.Unmarshal(in, dm); err != nil {
		t.Fatal(err)
	}
	var h Hello
	if err := h.Unmarshal(in); err != nil {
		t.Fatal(err)
	}
	if got, want := goFields(&h), dynFields(dm); !deepEqual(got, want) {
		t.Fatalf("hand decoder: %v, protobuf: %v", got, want)
	}
}

// TestProtosetCurrent regenerates the descriptor set with protoc and checks
// that the committed one describes the same schema.
func TestProtosetCurrent(t *testing.T) {
	protoc := testutil.RequireBinary(t, "protoc", "protobuf-compiler")
	out := filepath.Join(t.TempDir(), "ferry.protoset")
	// The same command as the go:generate line in doc.go.
	cmd := exec.Command(protoc, "--proto_path=proto", "--descriptor_set_out="+out, "proto/ferry.proto", "proto/signal.proto")
	if msg, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("protoc: %v\n%s", err, msg)
	}
	fresh, committed := loadProtoset(t, out), loadProtoset(t, protosetFile)
	if !proto.Equal(fresh, committed) {
		t.Fatalf("%s is stale: run `make generate` and commit it", protosetFile)
	}
	// And the go:generate line is the command run here.
	doc, err := os.ReadFile("doc.go")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(doc), "//go:generate protoc --proto_path=proto --descriptor_set_out="+protosetFile+" proto/ferry.proto proto/signal.proto\n") {
		t.Fatal("doc.go's go:generate line differs from the command this test runs")
	}
}
