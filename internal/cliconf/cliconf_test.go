package cliconf

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

type conf struct {
	Listen  []string
	Realm   string
	Secret  string
	Workers int
	Rate    int64
	Debug   bool
	Drain   time.Duration
	Ports   string
}

func newSet(c *conf) *Set {
	s := New("prog", "PROG", "A test program.")
	s.Strings(&c.Listen, "listen", "ADDR", "Listen here.")
	s.String(&c.Realm, "realm", "R", "The realm.")
	s.Secret(&c.Secret, "secret", "S", "The secret.")
	s.Int(&c.Workers, "workers", "N", "Workers.")
	s.Int64(&c.Rate, "rate", "BYTES", "Rate.")
	s.Bool(&c.Debug, "debug", "Debug logs.")
	s.Duration(&c.Drain, "drain", "D", "Drain time.")
	s.Func("ports", "MIN-MAX", "1-2", "Port range.", func(v string) error {
		if !strings.Contains(v, "-") {
			return errors.New("want MIN-MAX")
		}
		c.Ports = v
		return nil
	})
	return s
}

func defaults() conf {
	return conf{Listen: []string{":1"}, Realm: "def", Workers: 2, Drain: time.Second, Ports: "1-2"}
}

func envOf(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func TestLayers(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "c.yaml")
	if err := os.WriteFile(file, []byte("listen: [\":10\", \":11\"]\nrealm: fromfile\nworkers: 7\nrate: 2Ki\ndebug: true\nsecret: s3\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		args []string
		env  map[string]string
		want conf
	}{
		{"defaults", nil, nil, defaults()},
		{
			"file",
			[]string{"--config", file},
			nil,
			conf{Listen: []string{":10", ":11"}, Realm: "fromfile", Workers: 7, Rate: 2048, Debug: true, Secret: "s3", Drain: time.Second, Ports: "1-2"},
		},
		{
			"file named by env", nil,
			map[string]string{"PROG_CONFIG": file},
			conf{Listen: []string{":10", ":11"}, Realm: "fromfile", Workers: 7, Rate: 2048, Debug: true, Secret: "s3", Drain: time.Second, Ports: "1-2"},
		},
		{
			"env beats file",
			[]string{"--config=" + file},
			map[string]string{"PROG_REALM": "fromenv", "PROG_LISTEN": ":20, :21", "PROG_DEBUG": "false"},
			conf{Listen: []string{":20", ":21"}, Realm: "fromenv", Workers: 7, Rate: 2048, Debug: false, Secret: "s3", Drain: time.Second, Ports: "1-2"},
		},
		{
			"flags beat env and file",
			[]string{"--config", file, "--realm", "fromflag", "--listen", ":30", "-listen=:31", "--debug=false", "--workers", "9", "--ports", "5-6"},
			map[string]string{"PROG_REALM": "fromenv", "PROG_LISTEN": ":20", "PROG_DRAIN": "1m"},
			conf{Listen: []string{":30", ":31"}, Realm: "fromflag", Workers: 9, Rate: 2048, Debug: false, Secret: "s3", Drain: time.Minute, Ports: "5-6"},
		},
		{
			"negative size",
			[]string{"--rate", "-2k"},
			nil,
			func() conf { c := defaults(); c.Rate = -2000; return c }(),
		},
		{
			"bool flag alone",
			[]string{"--debug"},
			nil,
			func() conf { c := defaults(); c.Debug = true; return c }(),
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := defaults()
			s := newSet(&c)
			if err := s.Parse(tc.args, envOf(tc.env)); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(c, tc.want) {
				t.Fatalf("got  %+v\nwant %+v", c, tc.want)
			}
		})
	}
}

func TestBadInput(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		wantErr string
	}{
		{"unknown flag", []string{"--nope"}, nil, "nope"},
		{"positional", []string{"extra"}, nil, "unexpected argument"},
		{"bad int flag", []string{"--workers", "x"}, nil, "--workers"},
		{"bad duration env", nil, map[string]string{"PROG_DRAIN": "soon"}, "PROG_DRAIN"},
		{"bad func", []string{"--ports", "7"}, nil, "MIN-MAX"},
		{"bad size", []string{"--rate", "-x"}, nil, "size"},
		{"missing file", []string{"--config", filepath.Join(dir, "none.yaml")}, nil, "config file"},
		{"unknown key", []string{"--config", write("u.yaml", "nope: 1\n")}, nil, "unknown option \"nope\""},
		{"list for scalar", []string{"--config", write("l.yaml", "realm: [a, b]\n")}, nil, "one value"},
		{"not a mapping", []string{"--config", write("m.yaml", "- a\n- b\n")}, nil, "mapping"},
		{"nested map", []string{"--config", write("n.yaml", "realm: {a: b}\n")}, nil, "value or a list"},
		{"garbage yaml", []string{"--config", write("g.yaml", "realm: [unclosed\n")}, nil, "config file"},
		{"huge file", []string{"--config", write("h.yaml", "realm: "+strings.Repeat("x", maxConfigFileSize+10)+"\n")}, nil, "larger than"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := defaults()
			err := newSet(&c).Parse(tc.args, envOf(tc.env))
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want it to mention %q", err, tc.wantErr)
			}
		})
	}
}

func TestHelp(t *testing.T) {
	c := defaults()
	c.Secret = "hunter2"
	s := newSet(&c)
	for _, a := range []string{"-h", "--help"} {
		if err := s.Parse([]string{a}, nil); !errors.Is(err, ErrHelp) {
			t.Fatalf("Parse(%s) = %v, want ErrHelp", a, err)
		}
	}
	u := s.Usage()
	for _, want := range []string{
		"--listen ADDR", "repeatable", "env PROG_LISTEN", "Listen here.", "default: :1",
		"--config FILE", "--debug   (env PROG_DEBUG)", "default: 1-2", "A test program.",
	} {
		if !strings.Contains(u, want) {
			t.Errorf("usage lacks %q:\n%s", want, u)
		}
	}
	if strings.Contains(u, "hunter2") {
		t.Errorf("usage shows a secret:\n%s", u)
	}
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{"0": 0, "10": 10, "5k": 5000, "2M": 2e6, "1G": 1e9, "3Ki": 3072, "1Mi": 1 << 20} {
		got, err := ParseSize(in)
		if err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "x", "-5", "1T", "99999999999999999999G"} {
		if _, err := ParseSize(in); err == nil {
			t.Errorf("ParseSize(%q) succeeded", in)
		}
	}
}

// TestAddrsAndPrefixes: the typed list options parse each value, from flags
// and from a comma-separated environment variable, and name a bad one.
func TestAddrsAndPrefixes(t *testing.T) {
	var ips []netip.Addr
	var nets []netip.Prefix
	newSet := func() *Set {
		s := New("prog", "PROG", "test")
		s.Addrs(&ips, "ip", "IP", "an address")
		s.Prefixes(&nets, "net", "CIDR", "a range")
		return s
	}
	if err := newSet().Parse([]string{"--ip", "192.0.2.1", "--ip=2001:db8::1", "--net", "10.1.2.3/8", "--net", "::ffff:192.0.2.9"}, envOf(nil)); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(ips) != "[192.0.2.1 2001:db8::1]" || fmt.Sprint(nets) != "[10.0.0.0/8 192.0.2.9/32]" {
		t.Fatalf("got %v %v", ips, nets)
	}
	if err := newSet().Parse(nil, envOf(map[string]string{"PROG_NET": "198.51.100.0/24, 203.0.113.7"})); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(nets) != "[198.51.100.0/24 203.0.113.7/32]" {
		t.Fatalf("from the environment: %v", nets)
	}
	for _, args := range [][]string{{"--ip", "nope"}, {"--ip", "10.0.0.0/8"}, {"--net", "10.0.0.0/33"}, {"--net", "x"}} {
		err := newSet().Parse(args, envOf(nil))
		if err == nil || !strings.Contains(err.Error(), args[1]) {
			t.Errorf("%v: %v", args, err)
		}
	}
}

// TestAlias: an old name sets its option as a flag, an environment variable
// and a file key; each use is reported; the new name beats the old one in the
// environment, the last one given wins on the command line; and --help does
// not list the old name.
func TestAlias(t *testing.T) {
	file := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(file, []byte("drain: 7s\nrealm: r\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		args      []string
		env       map[string]string
		want      time.Duration
		warnings  []string
		wantRealm string
	}{
		{"new flag", []string{"--grace", "3s"}, nil, 3 * time.Second, nil, "def"},
		{"old flag", []string{"--drain=4s"}, nil, 4 * time.Second, []string{"flag --drain"}, "def"},
		{"old then new flag", []string{"--drain", "4s", "--grace", "5s"}, nil, 5 * time.Second, []string{"flag --drain"}, "def"},
		{"new then old flag", []string{"--grace", "5s", "--drain", "4s"}, nil, 4 * time.Second, []string{"flag --drain"}, "def"},
		{"old env", nil, map[string]string{"PROG_DRAIN": "6s"}, 6 * time.Second, []string{"environment variable PROG_DRAIN"}, "def"},
		{"new env beats old", nil, map[string]string{"PROG_DRAIN": "6s", "PROG_GRACE": "2s"}, 2 * time.Second, nil, "def"},
		{"old file key", []string{"--config", file}, nil, 7 * time.Second, []string{"config file key drain"}, "r"},
		{"old alias of a list", []string{"--where", ":9"}, nil, time.Second, []string{"flag --where"}, "def"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			grace := time.Second
			realm := "def"
			var listen []string
			s := New("prog", "PROG", "test")
			s.Duration(&grace, "grace", "D", "Grace.")
			s.String(&realm, "realm", "R", "Realm.")
			s.Strings(&listen, "listen", "ADDR", "Listen.")
			s.Alias("drain", "grace")
			s.Alias("where", "listen")
			if err := s.Parse(tc.args, envOf(tc.env)); err != nil {
				t.Fatal(err)
			}
			if grace != tc.want || realm != tc.wantRealm {
				t.Errorf("grace %v realm %q, want %v %q", grace, realm, tc.want, tc.wantRealm)
			}
			if tc.name == "old alias of a list" && fmt.Sprint(listen) != "[:9]" {
				t.Errorf("listen = %v", listen)
			}
			got := s.Deprecations()
			if len(got) != len(tc.warnings) {
				t.Fatalf("deprecations %q, want %d", got, len(tc.warnings))
			}
			for i, w := range tc.warnings {
				if !strings.HasPrefix(got[i], w+" is deprecated") || !strings.Contains(got[i], "use ") {
					t.Errorf("deprecation %q, want it to start with %q", got[i], w)
				}
			}
			if u := s.Usage(); strings.Contains(u, "drain") || strings.Contains(u, "where") {
				t.Errorf("usage lists an old name:\n%s", u)
			}
		})
	}

	var v string
	s := New("prog", "PROG", "test")
	s.String(&v, "name", "N", "Name.")
	s.Alias("old", "missing")
	if err := s.Parse(nil, nil); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Errorf("alias of an unknown option: %v", err)
	}
	s = New("prog", "PROG", "test")
	s.String(&v, "name", "N", "Name.")
	s.Alias("name", "name")
	if err := s.Parse(nil, nil); err == nil || !strings.Contains(err.Error(), "already") {
		t.Errorf("alias that is an option's name: %v", err)
	}
}
