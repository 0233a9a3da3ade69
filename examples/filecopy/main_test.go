package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ferrynet/ferry/internal/rvtest"
	"github.com/ferrynet/ferry/internal/testutil"
	"github.com/ferrynet/ferry/sdk"
)

// receiverFixture starts a receiver into a temporary directory and returns
// the rendezvous URL, its PeerID and the directory.
func receiverFixture(t testing.TB) (url string, peer sdk.PeerID, dir string, log *testutil.SyncBuffer) {
	t.Helper()
	url = rvtest.URL(t)
	dir = t.TempDir()
	log = &testutil.SyncBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan sdk.PeerID, 1)
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"-rendezvous", url, "-loopback", "receive", dir}, log, ready) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("receiver: %v", err)
		}
	})
	select {
	case peer = <-ready:
	case err := <-done:
		t.Fatal(err)
	}
	return url, peer, dir, log
}

func randomFile(t testing.TB, size int) (string, []byte) {
	t.Helper()
	b := make([]byte, size)
	_, _ = rand.Read(b)
	path := filepath.Join(t.TempDir(), "data.bin")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return path, b
}

func sendFile(t *testing.T, url string, peer sdk.PeerID, path string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out bytes.Buffer
	err := run(ctx, []string{"-rendezvous", url, "-loopback", "send", peer.String(), path}, &out, nil)
	return out.String(), err
}

func checkReceived(t *testing.T, dir string, want []byte) {
	t.Helper()
	got, err := os.ReadFile(filepath.Join(dir, "data.bin"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("received %d bytes that differ from the %d sent", len(got), len(want))
	}
	if _, err := os.Stat(filepath.Join(dir, "data.bin.part")); !os.IsNotExist(err) {
		t.Fatalf("the partial file is still there: %v", err)
	}
}

func TestSendReceive(t *testing.T) {
	testutil.CheckLeaks(t)
	testutil.Deadline(t, time.Minute)
	url, peer, dir, log := receiverFixture(t)
	path, data := randomFile(t, 3<<20)
	out, err := sendFile(t, url, peer, path)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "100% 3145728/3145728 bytes") || !strings.Contains(out, "verified") {
		t.Fatalf("sender printed %q", out)
	}
	checkReceived(t, dir, data)
	if !strings.Contains(log.String(), "data.bin from ") {
		t.Fatalf("receiver printed %q", log.String())
	}
}

// TestResume: what an interrupted transfer left in data.bin.part is kept,
// and the sender sends only the rest.
func TestResume(t *testing.T) {
	testutil.CheckLeaks(t)
	testutil.Deadline(t, time.Minute)
	url, peer, dir, _ := receiverFixture(t)
	path, data := randomFile(t, 1<<20)
	if err := os.WriteFile(filepath.Join(dir, "data.bin.part"), data[:400000], 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := sendFile(t, url, peer, path)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "resuming at 400000 of 1048576 bytes") {
		t.Fatalf("sender printed %q", out)
	}
	checkReceived(t, dir, data)
}

// TestKilledSender: a sender killed mid-transfer leaves a partial file,
// and the next send completes it.
func TestKilledSender(t *testing.T) {
	testutil.CheckLeaks(t)
	testutil.Deadline(t, 2*time.Minute)
	url, peer, dir, _ := receiverFixture(t)
	path, data := randomFile(t, 4<<20)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// The progress bar's output cancels the send once it passed 10%.
	killer := writerFunc(func(p []byte) {
		if bytes.Contains(p, []byte(" 10%")) {
			cancel()
		}
	})
	if err := run(ctx, []string{"-rendezvous", url, "-loopback", "send", peer.String(), path}, killer, nil); err == nil {
		t.Fatal("a cancelled send succeeded")
	}
	part := filepath.Join(dir, "data.bin.part")
	testutil.WaitFor(t, 30*time.Second, "a partial file", func() bool {
		st, err := os.Stat(part)
		return err == nil && st.Size() > 0 && st.Size() < int64(len(data))
	})
	// The receiver refuses a second transfer of a name until it has seen
	// the first one end: retry until it has.
	var out string
	var err error
	testutil.WaitFor(t, 30*time.Second, "the resumed send", func() bool {
		out, err = sendFile(t, url, peer, path)
		return err == nil || !strings.Contains(err.Error(), "being received already")
	})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "resuming at ") {
		t.Fatalf("sender printed %q", out)
	}
	checkReceived(t, dir, data)
}

type writerFunc func([]byte)

func (f writerFunc) Write(p []byte) (int, error) { f(p); return len(p), nil }

// TestCorruptPart: a partial file that does not match the sender's file
// fails the checksum, clearly, and is removed, so that sending again works.
func TestCorruptPart(t *testing.T) {
	testutil.CheckLeaks(t)
	testutil.Deadline(t, time.Minute)
	url, peer, dir, _ := receiverFixture(t)
	path, data := randomFile(t, 1<<20)
	if err := os.WriteFile(filepath.Join(dir, "data.bin.part"), make([]byte, 1000), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := sendFile(t, url, peer, path); err == nil || !strings.Contains(err.Error(), "checksum mismatch") {
		t.Fatalf("send onto a corrupt partial file: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "data.bin")); !os.IsNotExist(err) {
		t.Fatalf("a file that failed its checksum was kept: %v", err)
	}
	if _, err := sendFile(t, url, peer, path); err != nil {
		t.Fatal(err)
	}
	checkReceived(t, dir, data)
}

// TestBadOffers sends offers a receiver must refuse, with a clear reply
// and nothing written outside its directory.
func TestBadOffers(t *testing.T) {
	testutil.CheckLeaks(t)
	testutil.Deadline(t, time.Minute)
	url, peer, dir, _ := receiverFixture(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	node, err := sdk.New(ctx, sdk.WithRendezvous(url), sdk.WithLoopbackCandidates(),
		sdk.WithCandidateFilter(func(ip net.IP) bool { return ip.IsLoopback() }))
	if err != nil {
		t.Fatal(err)
	}
	defer node.Close()
	sum := sha256.Sum256(nil)
	good := hex.EncodeToString(sum[:])
	for _, tc := range []struct{ line, want string }{
		{`{"name":"../evil","size":0,"sha256":"` + good + `"}`, "bad file name"},
		{`{"name":"a/b","size":0,"sha256":"` + good + `"}`, "bad file name"},
		{`{"name":"..","size":0,"sha256":"` + good + `"}`, "bad file name"},
		{`{"name":"x","size":-1,"sha256":"` + good + `"}`, "bad size"},
		{`{"name":"x","size":1099511627777,"sha256":"` + good + `"}`, "bad size"},
		{`{"name":"x","size":0,"sha256":"zz"}`, "bad sha256"},
		{`not json`, "bad offer"},
		{strings.Repeat("x", 2*maxLine), "longer than"},
	} {
		c, err := node.DialStream(ctx, peer, protocol)
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetDeadline(time.Now().Add(20 * time.Second))
		// The receiver may refuse an offer before it has all of it (the
		// line that is too long) and stop reading: the write then fails,
		// but the refusal is there to read.
		_, werr := io.WriteString(c, tc.line+"\n")
		var r reply
		if err := readLine(bufio.NewReader(c), &r); err != nil {
			t.Fatalf("offer %.40q: %v (the write: %v)", tc.line, err, werr)
		}
		if !strings.Contains(r.Error, tc.want) {
			t.Errorf("offer %.40q: reply %+v, want an error with %q", tc.line, r, tc.want)
		}
		_ = c.Close()
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(dir), "evil.part")); !os.IsNotExist(err) {
		t.Fatalf("a file was written outside the directory: %v", err)
	}
}

func TestBadArgs(t *testing.T) {
	ctx := context.Background()
	for _, args := range [][]string{
		nil,
		{"-rendezvous", "ws://127.0.0.1:1/v1/signal"},
		{"-rendezvous", "ws://127.0.0.1:1/v1/signal", "send", "x"},
		{"-rendezvous", "ws://127.0.0.1:1/v1/signal", "send", "not-a-peer", "f"},
		{"-rendezvous", "ws://127.0.0.1:1/v1/signal", "receive", "/no/such/dir"},
		{"-rendezvous", "ws://127.0.0.1:1/v1/signal", "fly", "a"},
	} {
		if err := run(ctx, args, io.Discard, nil); err == nil {
			t.Errorf("run(%q) succeeded", args)
		}
	}
}

// BenchmarkSend sends a 16 MiB file per iteration on one sending node
// (connection made once), checksums and rename included.
func BenchmarkSend(b *testing.B) {
	url, peer, _, _ := receiverFixture(b)
	path, data := randomFile(b, 16<<20)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	node, err := sdk.New(ctx, sdk.WithRendezvous(url), sdk.WithLoopbackCandidates(),
		sdk.WithCandidateFilter(func(ip net.IP) bool { return ip.IsLoopback() }))
	if err != nil {
		b.Fatal(err)
	}
	defer node.Close()
	if err := send(ctx, node, peer, path, io.Discard); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(data)))
	b.ResetTimer()
	for b.Loop() {
		if err := send(ctx, node, peer, path, io.Discard); err != nil {
			b.Fatal(err)
		}
	}
}
