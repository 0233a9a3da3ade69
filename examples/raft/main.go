// Command raft runs a member of a hashicorp/raft cluster whose transport is
// Ferry streams: a raft.StreamLayer on Node.Listen and Node.DialStream, with
// PeerIDs as raft's server IDs and addresses. The first member bootstraps a
// cluster of itself; the others start empty and print their PeerIDs, which
// the leader's user adds. Every other line typed at the leader is a command
// that the cluster replicates; every member prints each committed one.
//
//	raft -rendezvous wss://rv.example.com -key a.key -bootstrap
//	raft -rendezvous wss://rv.example.com -key b.key
//	raft -rendezvous wss://rv.example.com -key c.key
//	/add PEERID-OF-B        (typed at a)
//	/add PEERID-OF-C
//	set x 1
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"

	"github.com/ferrynet/ferry/examples/internal/exampleflags"
	"github.com/ferrynet/ferry/sdk"
)

// protocol is the stream protocol raft's RPCs run on.
const protocol = "raft"

// rpcTimeout bounds a dial and each RPC's I/O in raft's transport.
const rpcTimeout = 10 * time.Second

func main() {
	exampleflags.Main("raft", func(ctx context.Context) error { return run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr) })
}

func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("raft", flag.ContinueOnError)
	nf := exampleflags.Register(fs, "identity key file, created on first use (a member's PeerID must not change)")
	bootstrap := fs.Bool("bootstrap", false, "start a new cluster with this member as its only voter")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if nf.Rendezvous == "" || nf.Key == "" || fs.NArg() != 0 {
		return errors.New("usage: raft -rendezvous URL -key FILE [-bootstrap]")
	}
	node, err := sdk.New(ctx, nf.Options()...)
	if err != nil {
		return err
	}
	defer node.Close()
	m, err := start(node, *bootstrap, stdout, stderr)
	if err != nil {
		return err
	}
	defer m.shutdown()
	fmt.Fprintln(stdout, "member", node.PeerID())

	lines := make(chan string)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stdin)
		for sc.Scan() {
			select {
			case lines <- sc.Text():
			case <-ctx.Done():
				return
			}
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return nil
		case line, ok := <-lines:
			if !ok {
				return nil
			}
			if err := m.command(ctx, line); err != nil {
				fmt.Fprintln(stdout, "error:", err)
			}
		}
	}
}

// member is one raft server on a Ferry node.
type member struct {
	node *sdk.Node
	raft *raft.Raft
	fsm  *logFSM
}

// start runs a raft server on node, with in-memory log, stable and
// snapshot stores. Committed commands are printed to out, raft's warnings
// to logw.
func start(node *sdk.Node, bootstrap bool, out, logw io.Writer) (*member, error) {
	ln, err := node.Listen(protocol)
	if err != nil {
		return nil, err
	}
	trans := raft.NewNetworkTransport(&streamLayer{Listener: ln, node: node}, 3, rpcTimeout, logw)
	// Raft's defaults suit a LAN. A Ferry path may be relayed or
	// reconnecting, and a first contact costs an ICE negotiation: give
	// heartbeats and the leader's lease more slack.
	cfg := raft.DefaultConfig()
	cfg.HeartbeatTimeout = 2 * time.Second
	cfg.ElectionTimeout = 2 * time.Second
	cfg.LeaderLeaseTimeout = time.Second
	cfg.LocalID = raft.ServerID(node.PeerID().String())
	cfg.Logger = hclog.New(&hclog.LoggerOptions{Name: "raft", Output: logw, Level: hclog.Warn})
	fsm := &logFSM{out: out}
	store := raft.NewInmemStore()
	r, err := raft.NewRaft(cfg, fsm, store, store, raft.NewInmemSnapshotStore(), trans)
	if err != nil {
		_ = trans.Close()
		return nil, err
	}
	m := &member{node: node, raft: r, fsm: fsm}
	if bootstrap {
		self := raft.Server{ID: cfg.LocalID, Address: trans.LocalAddr()}
		if err := r.BootstrapCluster(raft.Configuration{Servers: []raft.Server{self}}).Error(); err != nil {
			m.shutdown()
			return nil, err
		}
	}
	return m, nil
}

// command runs one line typed at the member: "/add PEERID" adds a voter,
// anything else is replicated. Both need the member to be the leader.
func (m *member) command(ctx context.Context, line string) error {
	if line = strings.TrimSpace(line); line == "" {
		return nil
	}
	if peer, ok := strings.CutPrefix(line, "/add "); ok {
		return m.add(ctx, strings.TrimSpace(peer))
	}
	return m.apply(line)
}

func (m *member) add(ctx context.Context, peer string) error {
	id, err := sdk.ParsePeerID(peer)
	if err != nil {
		return err
	}
	// Connect first: an offline peer fails here (ErrPeerNotFound) rather
	// than as a voter nobody can reach, and the ICE negotiation is not
	// charged to raft's RPC timeouts.
	ctx, cancel := context.WithTimeout(ctx, rpcTimeout)
	defer cancel()
	if _, err := m.node.Dial(ctx, id); err != nil {
		return err
	}
	return m.leaderErr(m.raft.AddVoter(raft.ServerID(peer), raft.ServerAddress(peer), 0, rpcTimeout).Error())
}

func (m *member) apply(cmd string) error {
	return m.leaderErr(m.raft.Apply([]byte(cmd), rpcTimeout).Error())
}

// leaderErr names the leader when err says this member is not it.
func (m *member) leaderErr(err error) error {
	if errors.Is(err, raft.ErrNotLeader) {
		if addr, _ := m.raft.LeaderWithID(); addr != "" {
			return fmt.Errorf("%w: type it at %s", err, addr)
		}
	}
	return err
}

func (m *member) shutdown() { _ = m.raft.Shutdown().Error() }

// streamLayer is raft's transport on Ferry streams: it accepts on the
// node's listener for protocol, and dials peers by PeerID, which is the
// raft.ServerAddress. Addr().String() is the node's PeerID.
type streamLayer struct {
	net.Listener
	node *sdk.Node
}

func (s *streamLayer) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	peer, err := sdk.ParsePeerID(string(addr))
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return s.node.DialStream(ctx, peer, protocol)
}

// logFSM is the replicated state: the list of committed commands.
type logFSM struct {
	out io.Writer

	mu      sync.Mutex
	entries []string
}

func (f *logFSM) Apply(l *raft.Log) any {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.entries = append(f.entries, string(l.Data))
	fmt.Fprintf(f.out, "committed %d: %s\n", len(f.entries), l.Data)
	return nil
}

// Entries returns a copy of the committed commands, in order.
func (f *logFSM) Entries() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.entries...)
}

func (f *logFSM) Snapshot() (raft.FSMSnapshot, error) { return snapshot(f.Entries()), nil }

func (f *logFSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	var entries []string
	if err := json.NewDecoder(rc).Decode(&entries); err != nil {
		return fmt.Errorf("restore snapshot: %w", err)
	}
	f.mu.Lock()
	f.entries = entries
	f.mu.Unlock()
	return nil
}

type snapshot []string

func (s snapshot) Persist(sink raft.SnapshotSink) error {
	if err := json.NewEncoder(sink).Encode([]string(s)); err != nil {
		_ = sink.Cancel()
		return err
	}
	return sink.Close()
}

func (snapshot) Release() {}
