// Package pionlog routes the logs of pion's libraries (ICE, TURN) to slog,
// with one level mapping for every Ferry component that embeds pion.
//
// pion logs routine per-packet and per-request events (a refused permission,
// a failed TLS handshake from a scanner, a candidate pair that timed out) at
// info, warn and even error. For an operator or an app those are debug-level
// news, whose signals are the metrics and the SDK's events, so:
//
//	pion       slog
//	trace      debug-4
//	debug      debug
//	info       debug
//	warn       debug
//	error      warn
//
// Formatting happens only when the level is enabled, so pion's per-packet
// debug calls cost a level check.
package pionlog

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/pion/logging"
)

// Factory is a pion logging.LoggerFactory writing to L. Each scope's logger
// carries the attribute pion=<scope>.
type Factory struct{ L *slog.Logger }

// NewLogger implements logging.LoggerFactory.
func (f Factory) NewLogger(scope string) logging.LeveledLogger {
	l := f.L
	if l == nil {
		l = slog.New(slog.DiscardHandler)
	}
	return logger{l.With("pion", scope)}
}

// levelTrace is below slog's debug level, for pion's trace calls.
const levelTrace = slog.LevelDebug - 4

type logger struct{ l *slog.Logger }

func (p logger) log(level slog.Level, msg string) {
	p.l.Log(context.Background(), level, msg)
}

func (p logger) logf(level slog.Level, format string, args ...any) {
	if p.l.Enabled(context.Background(), level) {
		p.l.Log(context.Background(), level, fmt.Sprintf(format, args...))
	}
}

func (p logger) Trace(msg string)                  { p.log(levelTrace, msg) }
func (p logger) Tracef(format string, args ...any) { p.logf(levelTrace, format, args...) }
func (p logger) Debug(msg string)                  { p.log(slog.LevelDebug, msg) }
func (p logger) Debugf(format string, args ...any) { p.logf(slog.LevelDebug, format, args...) }
func (p logger) Info(msg string)                   { p.log(slog.LevelDebug, msg) }
func (p logger) Infof(format string, args ...any)  { p.logf(slog.LevelDebug, format, args...) }
func (p logger) Warn(msg string)                   { p.log(slog.LevelDebug, msg) }
func (p logger) Warnf(format string, args ...any)  { p.logf(slog.LevelDebug, format, args...) }
func (p logger) Error(msg string)                  { p.log(slog.LevelWarn, msg) }
func (p logger) Errorf(format string, args ...any) { p.logf(slog.LevelWarn, format, args...) }
