package cliconf

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
)

// ParseMain is the opening of a server's main: it parses args and the
// environment into s. For --help it writes the usage to stdout and returns
// (0, false), and likewise the version for --version; on a usage error it says so on stderr and returns (2, false).
// Otherwise it returns (0, true) and the program goes on.
func (s *Set) ParseMain(args []string, env func(string) (string, bool), stdout, stderr io.Writer) (code int, ok bool) {
	if err := s.Parse(args, env); err != nil {
		if errors.Is(err, ErrHelp) {
			_, _ = io.WriteString(stdout, s.Usage())
			return 0, false
		}
		if errors.Is(err, ErrVersion) {
			_, _ = io.WriteString(stdout, s.VersionLine())
			return 0, false
		}
		_, _ = fmt.Fprintf(stderr, "%s: %v\n(see %s --help)\n", s.program, err, s.program)
		return 2, false
	}
	return 0, true
}

// Logger builds the slog logger that --log-level (debug, info, warn,
// error) and --log-format (text, json) ask for, writing to w.
func Logger(w io.Writer, level, format string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	hopts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, hopts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, hopts)), nil
	}
	return nil, fmt.Errorf("--log-format: %q is not text or json", format)
}
