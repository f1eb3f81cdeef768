package turnserver

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/pion/logging"
)

// loggerFactory sends pion's logs to slog. pion's Info is chatty (every
// allocation), so it goes to Debug; its errors are mostly clients with
// stale credentials, so they go to Warn.
type loggerFactory struct{ log *slog.Logger }

func (f *loggerFactory) NewLogger(scope string) logging.LeveledLogger {
	return &logger{log: f.log.With("scope", scope)}
}

type logger struct{ log *slog.Logger }

func (l *logger) Trace(msg string)                  {}
func (l *logger) Tracef(format string, args ...any) {}
func (l *logger) Debug(msg string)                  { l.log.Debug(msg) }
func (l *logger) Debugf(format string, args ...any) { l.logf(slog.LevelDebug, format, args) }
func (l *logger) Info(msg string)                   { l.log.Debug(msg) }
func (l *logger) Infof(format string, args ...any)  { l.logf(slog.LevelDebug, format, args) }
func (l *logger) Warn(msg string)                   { l.log.Warn(msg) }
func (l *logger) Warnf(format string, args ...any)  { l.logf(slog.LevelWarn, format, args) }
func (l *logger) Error(msg string)                  { l.log.Warn(msg) }
func (l *logger) Errorf(format string, args ...any) { l.logf(slog.LevelWarn, format, args) }

// logf formats only when the level is on: pion logs some per packet.
func (l *logger) logf(level slog.Level, format string, args []any) {
	if l.log.Enabled(context.Background(), level) {
		l.log.Log(context.Background(), level, fmt.Sprintf(format, args...))
	}
}
