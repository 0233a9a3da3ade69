package relay

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/pion/logging"
)

// pionLogs adapts slog to pion's LoggerFactory. Formatting happens only when
// the level is enabled, so pion's per-packet debug calls cost a level check.
type pionLogs struct{ l *slog.Logger }

func (f pionLogs) NewLogger(scope string) logging.LeveledLogger {
	return pionLogger{f.l.With("pion", scope)}
}

type pionLogger struct{ l *slog.Logger }

func (p pionLogger) log(level slog.Level, msg string) {
	p.l.Log(context.Background(), level, msg)
}

func (p pionLogger) logf(level slog.Level, format string, args ...any) {
	if p.l.Enabled(context.Background(), level) {
		p.l.Log(context.Background(), level, fmt.Sprintf(format, args...))
	}
}

func (p pionLogger) Trace(msg string)                  { p.log(slog.LevelDebug-4, msg) }
func (p pionLogger) Tracef(format string, args ...any) { p.logf(slog.LevelDebug-4, format, args...) }
func (p pionLogger) Debug(msg string)                  { p.log(slog.LevelDebug, msg) }
func (p pionLogger) Debugf(format string, args ...any) { p.logf(slog.LevelDebug, format, args...) }

// pion logs routine per-request events (a refused permission, a failed TLS
// handshake from a scanner) at info and error; they are debug-level news for
// an operator, whose signals are the metrics.
func (p pionLogger) Info(msg string)                  { p.log(slog.LevelDebug, msg) }
func (p pionLogger) Infof(format string, args ...any) { p.logf(slog.LevelDebug, format, args...) }
func (p pionLogger) Warn(msg string)                  { p.log(slog.LevelDebug, msg) }
func (p pionLogger) Warnf(format string, args ...any) { p.logf(slog.LevelDebug, format, args...) }
func (p pionLogger) Error(msg string)                 { p.log(slog.LevelWarn, msg) }
func (p pionLogger) Errorf(format string, args ...any) {
	p.logf(slog.LevelWarn, format, args...)
}
