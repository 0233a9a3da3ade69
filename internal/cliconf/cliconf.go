// Package cliconf layers a server's configuration from four sources onto the
// Go values a main wires into its Config struct. From highest priority to
// lowest:
//
//  1. command-line flags (--name VALUE or --name=VALUE);
//  2. environment variables, PREFIX_NAME with dashes turned into underscores
//     (FERRY_RELAY_LISTEN_UDP for --listen-udp);
//  3. an optional YAML file named by --config (or PREFIX_CONFIG), whose
//     top-level keys are the flag names;
//  4. the defaults: whatever the destination held when it was registered.
//
// A repeatable option (a list) takes its values from the highest layer that
// sets it, and that layer replaces the lower ones rather than appending to
// them: repeating the flag builds the list; in the environment the values are
// comma-separated; in the YAML file they form a sequence.
//
// An option renamed in a release keeps its old name as a hidden alias for one
// release (Alias): the old flag, environment variable and file key still set
// the option, Usage does not list them, and Deprecations reports each use so
// that the program can log a warning.
//
// Usage renders a --help text that lists every option with its metavariable,
// environment variable, default and explanation. Both Ferry servers
// (ferry-relay, ferry-rendezvous) build their command line with it, and share
// the opening and the serve loop of their mains (ParseMain, Serve).
package cliconf

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// ErrHelp is returned by Parse when the arguments ask for help (-h, --help).
// The caller prints Usage and exits successfully.
var ErrHelp = flag.ErrHelp

// ErrVersion is returned by Parse when the arguments ask for the version
// (--version). The caller prints VersionLine and exits successfully.
var ErrVersion = errors.New("cliconf: version requested")

// Version is the servers' release, stamped at build time with
//
//	go build -ldflags "-X github.com/ferrynet/ferry/internal/cliconf.Version=v1.2.3"
//
// (the images do this); a plain go build says "dev".
var Version = "dev"

// versionOption is the built-in switch that prints the version. It exists on
// the command line only: an environment variable or a file key that made a
// server print its version and exit would be a trap.
const versionOption = "version"

// configOption is the name of the built-in option that names the YAML file.
const configOption = "config"

// maxConfigFileSize bounds the YAML file read by Parse.
const maxConfigFileSize = 1 << 20

// Set is a group of options for one program.
type Set struct {
	program   string
	envPrefix string
	summary   string
	opts      []*option
	byName    map[string]*option
	aliases   []alias
	config    string

	setupErr     error    // a registration mistake, reported by Parse
	deprecations []string // uses of old names seen by the last Parse
}

// alias is an old name of an option, kept hidden for one release.
type alias struct {
	old    string
	target *option
}

type option struct {
	name       string
	metavar    string
	help       string
	def        string
	repeatable bool
	isBool     bool
	secret     bool
	set        func(string) error // single value (repeatable: add one element)
	reset      func()             // repeatable only: clear before a layer applies
}

// New returns an empty Set for the named program. envPrefix is the
// environment prefix without the trailing underscore, e.g. "FERRY_RELAY".
// summary is the paragraph printed under the usage line of --help.
func New(program, envPrefix, summary string) *Set {
	s := &Set{
		program:   program,
		envPrefix: envPrefix,
		summary:   summary,
		byName:    map[string]*option{},
	}
	s.add(&option{
		name:    configOption,
		metavar: "FILE",
		help: "Read options from this YAML file. Its top-level keys are the flag names " +
			"without dashes (log-level: debug); a repeatable option takes a YAML list ([a, b]). Flags and " +
			"environment variables override it.",
		set: func(v string) error { s.config = v; return nil },
	})
	return s
}

// ConfigFile returns the YAML file named by --config or the environment, after
// Parse; empty when there is none.
func (s *Set) ConfigFile() string { return s.config }

// VersionLine is what --version prints: the program's name and Version.
func (s *Set) VersionLine() string { return s.program + " " + Version + "\n" }

// EnvName returns the environment variable that sets the named option.
func (s *Set) EnvName(name string) string {
	return s.envPrefix + "_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

func (s *Set) add(o *option) {
	if _, dup := s.byName[o.name]; dup || o.name == versionOption {
		// A duplicate registration (or one of the built-in --version) is
		// a programming error in a main; keep the first and make the
		// second inert and visible in help.
		o.help = "(duplicate registration ignored) " + o.help
		return
	}
	s.opts = append(s.opts, o)
	s.byName[o.name] = o
}

// Alias keeps old as a hidden, deprecated name of the registered option
// name: --old, the environment variable of old and the file key old still set
// it, Usage does not list old, and each use is reported by Deprecations. Where
// a layer sets both names, the new one wins in the environment, and the last
// one given wins on the command line and in the file.
func (s *Set) Alias(old, name string) {
	o, ok := s.byName[name]
	switch {
	case !ok:
		s.setupErr = errors.Join(s.setupErr, fmt.Errorf("cliconf: alias %q of unknown option %q", old, name))
		return
	case s.byName[old] != nil || s.aliasOf(old) != nil || old == versionOption:
		s.setupErr = errors.Join(s.setupErr, fmt.Errorf("cliconf: alias %q is already a name", old))
		return
	}
	s.aliases = append(s.aliases, alias{old: old, target: o})
}

func (s *Set) aliasOf(old string) *option {
	for _, a := range s.aliases {
		if a.old == old {
			return a.target
		}
	}
	return nil
}

// Deprecations returns one sentence for each old name that the last Parse
// saw (as a flag, an environment variable or a file key), for the program to
// log as a warning once it has a logger.
func (s *Set) Deprecations() []string { return s.deprecations }

func (s *Set) deprecated(what, old, name string) {
	s.deprecations = append(s.deprecations,
		fmt.Sprintf("%s %s is deprecated and will be removed in the next release: use %s", what, old, name))
}

// String registers a string option.
func (s *Set) String(p *string, name, metavar, help string) {
	s.add(&option{name: name, metavar: metavar, help: help, def: *p, set: func(v string) error { *p = v; return nil }})
}

// Secret registers a string option whose default and value never appear in
// help output. Prefer the environment or the file for secrets: command lines
// are visible to other users of the machine.
func (s *Set) Secret(p *string, name, metavar, help string) {
	s.add(&option{name: name, metavar: metavar, help: help, secret: true, set: func(v string) error { *p = v; return nil }})
}

// Int registers an integer option.
func (s *Set) Int(p *int, name, metavar, help string) {
	s.add(&option{
		name: name, metavar: metavar, help: help, def: strconv.Itoa(*p),
		set: func(v string) error {
			n, err := strconv.Atoi(strings.TrimSpace(v))
			if err != nil {
				return fmt.Errorf("not an integer: %q", v)
			}
			*p = n
			return nil
		},
	})
}

// Int64 registers a 64-bit integer option. It accepts the suffixes k, M and G
// (powers of 1000) and Ki, Mi, Gi (powers of 1024), for byte counts and rates,
// and a leading minus sign (negative turns a cap off).
func (s *Set) Int64(p *int64, name, metavar, help string) {
	s.add(&option{
		name: name, metavar: metavar, help: help, def: strconv.FormatInt(*p, 10),
		set: func(v string) error {
			v = strings.TrimSpace(v)
			neg := strings.HasPrefix(v, "-")
			n, err := ParseSize(strings.TrimPrefix(v, "-"))
			if err != nil {
				return err
			}
			if neg {
				n = -n
			}
			*p = n
			return nil
		},
	})
}

// Bool registers a boolean flag: --name sets it, --name=false clears it.
func (s *Set) Bool(p *bool, name, help string) {
	s.add(&option{
		name: name, help: help, isBool: true, def: strconv.FormatBool(*p),
		set: func(v string) error {
			b, err := strconv.ParseBool(strings.TrimSpace(v))
			if err != nil {
				return fmt.Errorf("not a boolean: %q", v)
			}
			*p = b
			return nil
		},
	})
}

// Duration registers a time.Duration option ("30s", "5m").
func (s *Set) Duration(p *time.Duration, name, metavar, help string) {
	s.add(&option{
		name: name, metavar: metavar, help: help, def: p.String(),
		set: func(v string) error {
			d, err := time.ParseDuration(strings.TrimSpace(v))
			if err != nil {
				return fmt.Errorf("not a duration (like 30s or 5m): %q", v)
			}
			*p = d
			return nil
		},
	})
}

// Strings registers a repeatable string option.
func (s *Set) Strings(p *[]string, name, metavar, help string) {
	s.add(&option{
		name: name, metavar: metavar, help: help, repeatable: true, def: strings.Join(*p, ","),
		reset: func() { *p = nil },
		set:   func(v string) error { *p = append(*p, v); return nil },
	})
}

// Addrs registers a repeatable option of IP addresses.
func (s *Set) Addrs(p *[]netip.Addr, name, metavar, help string) {
	s.FuncList(name, metavar, "", help, func() { *p = nil }, func(v string) error {
		ip, err := netip.ParseAddr(v)
		if err != nil {
			return fmt.Errorf("not an IP address: %q", v)
		}
		*p = append(*p, ip)
		return nil
	})
}

// Prefixes registers a repeatable option of CIDR prefixes; a bare IP is
// its /32 or /128.
func (s *Set) Prefixes(p *[]netip.Prefix, name, metavar, help string) {
	s.FuncList(name, metavar, "", help, func() { *p = nil }, func(v string) error {
		pfx, err := netip.ParsePrefix(v)
		if err != nil {
			ip, aerr := netip.ParseAddr(v)
			if aerr != nil {
				return fmt.Errorf("not an IP address or CIDR prefix: %q", v)
			}
			ip = ip.Unmap()
			pfx = netip.PrefixFrom(ip, ip.BitLen())
		}
		*p = append(*p, pfx.Masked())
		return nil
	})
}

// Func registers an option parsed by set. def is shown as the default in help.
func (s *Set) Func(name, metavar, def, help string, set func(string) error) {
	s.add(&option{name: name, metavar: metavar, help: help, def: def, set: set})
}

// FuncList registers a repeatable option: reset clears the destination before
// a layer applies its values, and add parses and appends one value.
func (s *Set) FuncList(name, metavar, def, help string, reset func(), add func(string) error) {
	s.add(&option{name: name, metavar: metavar, help: help, def: def, repeatable: true, reset: reset, set: add})
}

// recorder collects the raw values a flag was given, in order.
type recorder struct {
	isBool bool
	vals   []string
}

func (r *recorder) String() string     { return strings.Join(r.vals, ",") }
func (r *recorder) Set(v string) error { r.vals = append(r.vals, v); return nil }
func (r *recorder) IsBoolFlag() bool   { return r.isBool }

// aliasRecorder records an old name's values into its option's recorder,
// keeping the command line's order, and notes that the old name was used.
type aliasRecorder struct {
	*recorder
	used bool
}

func (a *aliasRecorder) Set(v string) error { a.used = true; return a.recorder.Set(v) }

// Parse applies the layers to the registered destinations. args excludes the
// program name. lookupEnv is normally os.LookupEnv; tests pass a map's lookup.
// It returns ErrHelp when -h or --help is given, and ErrVersion when
// --version is.
func (s *Set) Parse(args []string, lookupEnv func(string) (string, bool)) error {
	if s.setupErr != nil {
		return s.setupErr
	}
	if lookupEnv == nil {
		lookupEnv = func(string) (string, bool) { return "", false }
	}
	s.deprecations = nil
	fs := flag.NewFlagSet(s.program, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	recs := map[string]*recorder{}
	for _, o := range s.opts {
		r := &recorder{isBool: o.isBool}
		recs[o.name] = r
		fs.Var(r, o.name, o.help)
	}
	showVersion := fs.Bool(versionOption, false, "")
	aliasRecs := make([]*aliasRecorder, len(s.aliases))
	for i, a := range s.aliases {
		aliasRecs[i] = &aliasRecorder{recorder: recs[a.target.name]}
		fs.Var(aliasRecs[i], a.old, "")
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return ErrHelp
		}
		return err
	}
	if *showVersion {
		return ErrVersion
	}
	for i, a := range s.aliases {
		if aliasRecs[i].used {
			s.deprecated("flag", "--"+a.old, "--"+a.target.name)
		}
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q (options are flags: --name value)", fs.Arg(0))
	}

	// The file's name comes from the flag or the environment.
	cfgOpt := s.byName[configOption]
	if v, ok := lookupEnv(s.EnvName(configOption)); ok {
		s.config = v
	}
	if r := recs[configOption]; len(r.vals) > 0 {
		s.config = r.vals[len(r.vals)-1]
	}
	if s.config != "" {
		if err := s.applyFile(s.config); err != nil {
			return err
		}
	}
	for _, o := range s.opts {
		if o == cfgOpt {
			continue
		}
		env := s.EnvName(o.name)
		v, ok := lookupEnv(env)
		for _, a := range s.aliases {
			if a.target != o || ok {
				continue
			}
			if v, ok = lookupEnv(s.EnvName(a.old)); ok {
				s.deprecated("environment variable", s.EnvName(a.old), env)
				env = s.EnvName(a.old)
			}
		}
		if !ok {
			continue
		}
		vals := []string{v}
		if o.repeatable {
			vals = splitList(v)
		}
		if err := apply(o, vals); err != nil {
			return fmt.Errorf("environment variable %s: %w", env, err)
		}
	}
	for _, o := range s.opts {
		if o == cfgOpt {
			continue
		}
		if r := recs[o.name]; len(r.vals) > 0 {
			if err := apply(o, r.vals); err != nil {
				return fmt.Errorf("flag --%s: %w", o.name, err)
			}
		}
	}
	return nil
}

func splitList(v string) []string {
	var out []string
	for _, f := range strings.Split(v, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

func apply(o *option, vals []string) error {
	if o.repeatable {
		o.reset()
	}
	for _, v := range vals {
		if err := o.set(v); err != nil {
			return err
		}
	}
	return nil
}

func (s *Set) applyFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("config file: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxConfigFileSize+1))
	if err != nil {
		return fmt.Errorf("config file %s: %w", path, err)
	}
	if len(data) > maxConfigFileSize {
		return fmt.Errorf("config file %s: larger than %d bytes", path, maxConfigFileSize)
	}
	return s.ApplyYAML(data)
}

// ApplyYAML applies a YAML document as the file layer. Parse calls it for the
// --config file; it is exported so that tests and embedders can layer a
// document without a file.
func (s *Set) ApplyYAML(data []byte) error {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return fmt.Errorf("config file: %w", err)
	}
	if doc.Kind == 0 { // empty document
		return nil
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 || doc.Content[0].Kind != yaml.MappingNode {
		return errors.New("config file: the top level must be a mapping of option names to values")
	}
	m := doc.Content[0]
	for i := 0; i+1 < len(m.Content); i += 2 {
		k, v := m.Content[i], m.Content[i+1]
		o, ok := s.byName[k.Value]
		if !ok {
			if o = s.aliasOf(k.Value); o != nil {
				ok = true
				s.deprecated("config file key", k.Value, o.name)
			}
		}
		if !ok || k.Value == configOption {
			return fmt.Errorf("config file line %d: unknown option %q", k.Line, k.Value)
		}
		var vals []string
		switch v.Kind {
		case yaml.ScalarNode:
			if v.Tag == "!!null" {
				vals = nil
			} else {
				vals = []string{v.Value}
			}
		case yaml.SequenceNode:
			if !o.repeatable {
				return fmt.Errorf("config file line %d: %q takes one value, not a list", v.Line, k.Value)
			}
			for _, e := range v.Content {
				if e.Kind != yaml.ScalarNode {
					return fmt.Errorf("config file line %d: %q: list elements must be plain values", e.Line, k.Value)
				}
				vals = append(vals, e.Value)
			}
		default:
			return fmt.Errorf("config file line %d: %q must be a value or a list", v.Line, k.Value)
		}
		if err := apply(o, vals); err != nil {
			return fmt.Errorf("config file line %d: %s: %w", v.Line, k.Value, err)
		}
	}
	return nil
}

// Usage returns the --help text.
func (s *Set) Usage() string {
	var b strings.Builder
	fmt.Fprintf(&b, "Usage: %s [flags]\n\n", s.program)
	if s.summary != "" {
		b.WriteString(wrap(s.summary, 0, 78))
		b.WriteString("\n\n")
	}
	fmt.Fprintf(&b, "Every flag can also be set in the environment as %s_<NAME> (dashes become\n"+
		"underscores; lists are comma-separated) or in the YAML file given by --config.\n"+
		"Flags beat the environment, which beats the file, which beats the defaults.\n\n", s.envPrefix)
	b.WriteString("Flags:\n")
	opts := append([]*option(nil), s.opts...)
	sort.SliceStable(opts, func(i, j int) bool { return opts[i].name == configOption && opts[j].name != configOption })
	for _, o := range opts {
		head := "  --" + o.name
		if !o.isBool && o.metavar != "" {
			head += " " + o.metavar
		}
		var notes []string
		if o.repeatable {
			notes = append(notes, "repeatable")
		}
		notes = append(notes, "env "+s.EnvName(o.name))
		head += "   (" + strings.Join(notes, "; ") + ")"
		b.WriteString(head)
		b.WriteString("\n")
		b.WriteString(wrap(o.help, 8, 78))
		b.WriteString("\n")
		if !o.secret && o.def != "" && o.def != "0" && o.def != "false" && o.def != "0s" {
			fmt.Fprintf(&b, "        default: %s\n", o.def)
		}
	}
	b.WriteString("  --" + versionOption + "   (command line only)\n")
	b.WriteString(wrap("Print the program's name and version, then exit.", 8, 78))
	b.WriteString("\n")
	return b.String()
}

// wrap word-wraps text to width, indenting every line by indent spaces.
func wrap(text string, indent, width int) string {
	pad := strings.Repeat(" ", indent)
	var b strings.Builder
	line := pad
	for _, w := range strings.Fields(text) {
		if len(line) > indent && len(line)+1+len(w) > width {
			b.WriteString(line)
			b.WriteString("\n")
			line = pad
		}
		if len(line) > indent {
			line += " "
		}
		line += w
	}
	b.WriteString(line)
	return b.String()
}

// ParseSize parses a non-negative integer with an optional k, M, G (1000-based)
// or Ki, Mi, Gi (1024-based) suffix, as used for byte counts and rates.
func ParseSize(v string) (int64, error) {
	v = strings.TrimSpace(v)
	mult := int64(1)
	for _, suf := range []struct {
		s string
		m int64
	}{{"Ki", 1 << 10}, {"Mi", 1 << 20}, {"Gi", 1 << 30}, {"k", 1e3}, {"K", 1e3}, {"M", 1e6}, {"G", 1e9}} {
		if strings.HasSuffix(v, suf.s) {
			v, mult = strings.TrimSuffix(v, suf.s), suf.m
			break
		}
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("not a non-negative size (like 500k or 2Mi): %q", v)
	}
	if n > (1<<62)/mult {
		return 0, fmt.Errorf("size too large: %q", v)
	}
	return n * mult, nil
}
