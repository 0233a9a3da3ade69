// Command filecopy sends a file to a Ferry peer over a stream, with a
// progress bar and a SHA-256 checked at the end. The receiver keeps what it
// got of an interrupted transfer in NAME.part; sending the same file again
// resumes from there. A file whose checksum does not match is not kept.
//
//	filecopy -rendezvous wss://rv.example.com -key recv.key receive DIR
//	filecopy -rendezvous wss://rv.example.com send PEERID FILE
package main

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/ferrynet/ferry/examples/internal/exampleflags"
	"github.com/ferrynet/ferry/sdk"
)

// protocol is the stream protocol of a transfer.
const protocol = "filecopy/1"

// maxLine bounds a header or reply line.
const maxLine = 4096

// maxSize bounds the size a receiver accepts (1 TiB).
const maxSize = 1 << 40

// offer is the sender's first line: what it sends.
type offer struct {
	Name   string `json:"name"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// reply is a receiver's line: where to start (after the offer), or how it
// ended (after the data).
type reply struct {
	Offset int64  `json:"offset"`
	Done   bool   `json:"done,omitempty"`
	Error  string `json:"error,omitempty"`
}

func main() {
	exampleflags.Main("filecopy", func(ctx context.Context) error { return run(ctx, os.Args[1:], os.Stdout, nil) })
}

// run parses args and runs the command. ready, if not nil, receives the
// receiving node's PeerID once it accepts transfers.
func run(ctx context.Context, args []string, stdout io.Writer, ready chan<- sdk.PeerID) error {
	fs := flag.NewFlagSet("filecopy", flag.ContinueOnError)
	nf := exampleflags.Register(fs, "")
	if err := fs.Parse(args); err != nil {
		return err
	}
	usage := errors.New("usage: filecopy -rendezvous URL [-key FILE] receive DIR | send PEERID FILE")
	if nf.Rendezvous == "" || fs.NArg() == 0 {
		return usage
	}
	cmd := fs.Arg(0)
	switch {
	case cmd == "receive" && fs.NArg() == 2:
	case cmd == "send" && fs.NArg() == 3:
	default:
		return usage
	}
	opts := nf.Options()
	if cmd == "send" {
		peer, err := sdk.ParsePeerID(fs.Arg(1))
		if err != nil {
			return err
		}
		node, err := sdk.New(ctx, opts...)
		if err != nil {
			return err
		}
		defer node.Close()
		return send(ctx, node, peer, fs.Arg(2), stdout)
	}
	dir := fs.Arg(1)
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		return fmt.Errorf("receive: %s is not a directory", dir)
	}
	node, err := sdk.New(ctx, opts...)
	if err != nil {
		return err
	}
	defer node.Close() // waits for transfers under way
	r := &receiver{dir: dir, out: stdout, busy: map[string]bool{}}
	if err := node.Handle(protocol, r.handle); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "receiving on %s into %s\n", node.PeerID(), dir)
	if ready != nil {
		ready <- node.PeerID()
	}
	<-ctx.Done()
	return nil
}

// send offers path to peer and sends what the peer does not have yet.
func send(ctx context.Context, node *sdk.Node, peer sdk.PeerID, path string, stdout io.Writer) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	h := sha256.New()
	size, err := io.Copy(h, f)
	if err != nil {
		return err
	}
	c, err := node.DialStream(ctx, peer, protocol)
	if err != nil {
		return err
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { _ = c.Close() })
	defer stop()
	o := offer{Name: filepath.Base(path), Size: size, SHA256: hex.EncodeToString(h.Sum(nil))}
	if err := writeLine(c, o); err != nil {
		return err
	}
	br := bufio.NewReaderSize(c, maxLine)
	var start reply
	if err := readLine(br, &start); err != nil {
		return fmt.Errorf("offer: %w", err)
	}
	if start.Error != "" {
		return fmt.Errorf("receiver refused: %s", start.Error)
	}
	if start.Offset < 0 || start.Offset > size {
		return fmt.Errorf("receiver asked for offset %d of %d bytes", start.Offset, size)
	}
	if start.Offset > 0 {
		fmt.Fprintf(stdout, "resuming at %d of %d bytes\n", start.Offset, size)
	}
	if _, err := f.Seek(start.Offset, io.SeekStart); err != nil {
		return err
	}
	bar := &progress{w: stdout, done: start.Offset, total: size}
	if _, err := io.CopyN(io.MultiWriter(c, bar), f, size-start.Offset); err != nil {
		return fmt.Errorf("send: %w", err)
	}
	if err := c.(*sdk.StreamConn).CloseWrite(); err != nil {
		return err
	}
	var end reply
	if err := readLine(br, &end); err != nil {
		return fmt.Errorf("waiting for the receiver's checksum: %w", err)
	}
	if !end.Done {
		return fmt.Errorf("receiver: %s", end.Error)
	}
	fmt.Fprintf(stdout, "\nsent %s (%d bytes), sha256 %s verified\n", o.Name, size, o.SHA256)
	return nil
}

// receiver takes transfers into dir.
type receiver struct {
	dir string
	out io.Writer

	mu   sync.Mutex
	busy map[string]bool // names being received
}

func (r *receiver) handle(s *sdk.Stream) {
	br := bufio.NewReaderSize(s, maxLine)
	var o offer
	if err := readLine(br, &o); err != nil {
		_ = writeLine(s, reply{Error: "bad offer: " + err.Error()})
		return
	}
	if err := r.receive(s, br, o); err != nil {
		fmt.Fprintf(r.out, "%s from %s: %v\n", o.Name, s.Conn().RemotePeer(), err)
		_ = writeLine(s, reply{Error: err.Error()})
		return
	}
	fmt.Fprintf(r.out, "%s from %s: %d bytes, sha256 verified\n", o.Name, s.Conn().RemotePeer(), o.Size)
	_ = writeLine(s, reply{Done: true})
}

func (r *receiver) receive(s *sdk.Stream, br *bufio.Reader, o offer) error {
	if err := o.check(); err != nil {
		return err
	}
	r.mu.Lock()
	if r.busy[o.Name] {
		r.mu.Unlock()
		return fmt.Errorf("%s is being received already", o.Name)
	}
	r.busy[o.Name] = true
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		delete(r.busy, o.Name)
		r.mu.Unlock()
	}()

	part := filepath.Join(r.dir, o.Name+".part")
	f, err := os.OpenFile(part, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	// What a killed transfer left is hashed again: the final check covers
	// every byte, old and new.
	h := sha256.New()
	have, err := io.Copy(h, io.LimitReader(f, o.Size))
	if err != nil {
		return err
	}
	if err := f.Truncate(have); err != nil {
		return err
	}
	if err := writeLine(s, reply{Offset: have}); err != nil {
		return err
	}
	if _, err := io.CopyN(io.MultiWriter(f, h), br, o.Size-have); err != nil {
		// Keep what arrived: the next send resumes after it.
		return fmt.Errorf("interrupted at %d of %d bytes: %w", have, o.Size, err)
	}
	// The sender closes its direction after the last byte. Waiting for that
	// before answering also means the answer cannot cancel a sender still
	// about to close: the handler's return stops the stream's reading.
	if _, err := br.ReadByte(); !errors.Is(err, io.EOF) {
		if err == nil {
			err = fmt.Errorf("more than the %d bytes offered", o.Size)
		}
		return fmt.Errorf("after the data: %w", err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != o.SHA256 {
		_ = os.Remove(part)
		return fmt.Errorf("checksum mismatch: got %s, want %s (partial file removed, send again)", got, o.SHA256)
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(part, filepath.Join(r.dir, o.Name))
}

// check refuses offers that name no plain file in the directory, or sizes
// and checksums that cannot be.
func (o offer) check() error {
	switch {
	case o.Name == "" || o.Name == "." || o.Name == ".." || strings.ContainsAny(o.Name, `/\`) || strings.ContainsRune(o.Name, 0):
		return fmt.Errorf("bad file name %q", o.Name)
	case o.Size < 0 || o.Size > maxSize:
		return fmt.Errorf("bad size %d", o.Size)
	}
	if b, err := hex.DecodeString(o.SHA256); err != nil || len(b) != sha256.Size {
		return fmt.Errorf("bad sha256 %q", o.SHA256)
	}
	return nil
}

func writeLine(w io.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

// readLine reads one JSON line of at most maxLine bytes into v.
func readLine(br *bufio.Reader, v any) error {
	line, err := br.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) {
		return fmt.Errorf("line longer than %d bytes", maxLine)
	}
	if err != nil {
		return err
	}
	return json.Unmarshal(line, v)
}

// progress draws a progress bar as bytes go through it.
type progress struct {
	w           io.Writer
	done, total int64
	shown       int // percent last drawn
}

func (p *progress) Write(b []byte) (int, error) {
	p.done += int64(len(b))
	pct := 100
	if p.total > 0 {
		pct = int(p.done * 100 / p.total)
	}
	if pct != p.shown || p.done == p.total {
		p.shown = pct
		bar := strings.Repeat("#", pct/5) + strings.Repeat(" ", 20-pct/5)
		fmt.Fprintf(p.w, "\r[%s] %3d%% %d/%d bytes", bar, pct, p.done, p.total)
	}
	return len(b), nil
}
