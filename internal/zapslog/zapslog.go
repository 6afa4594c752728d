// Package zapslog passes the logs of libraries that log with zap (etcd,
// certmagic) to adit's slog logger.
package zapslog

import (
	"context"
	"log/slog"
	"slices"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// Options say what New passes on. The zero value passes errors and worse,
// with messages as they are.
type Options struct {
	// MinLevel is the lowest zap level passed on. If zero (zap's Info),
	// Error, unless SetMinLevel is true.
	MinLevel    zapcore.Level
	SetMinLevel bool
	// Prefix is put before every message ("etcd: ").
	Prefix string
	// Quiet, if set, says a message is not worth its level: it is logged
	// at debug level instead.
	Quiet func(msg string) bool
}

// New returns a zap logger writing to logger.
func New(logger *slog.Logger, opts Options) *zap.Logger {
	if !opts.SetMinLevel {
		opts.MinLevel = zapcore.ErrorLevel
	}
	return zap.New(&core{log: logger, opts: opts})
}

// core is a zapcore.Core writing to a slog.Logger.
type core struct {
	log    *slog.Logger
	opts   Options
	fields []zapcore.Field
}

func (c *core) Enabled(l zapcore.Level) bool { return l >= c.opts.MinLevel }

func (c *core) With(fields []zapcore.Field) zapcore.Core {
	return &core{log: c.log, opts: c.opts, fields: append(slices.Clip(c.fields), fields...)}
}

func (c *core) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if c.Enabled(e.Level) {
		return ce.AddCore(e, c)
	}
	return ce
}

func (c *core) Write(e zapcore.Entry, fields []zapcore.Field) error {
	enc := zapcore.NewMapObjectEncoder()
	for _, f := range c.fields {
		f.AddTo(enc)
	}
	for _, f := range fields {
		f.AddTo(enc)
	}
	attrs := make([]slog.Attr, 0, len(enc.Fields)+1)
	if e.LoggerName != "" {
		attrs = append(attrs, slog.String("logger", e.LoggerName))
	}
	for k, v := range enc.Fields {
		attrs = append(attrs, slog.Any(k, v))
	}
	level := slogLevel(e.Level)
	if c.opts.Quiet != nil && c.opts.Quiet(e.Message) {
		level = slog.LevelDebug
	}
	c.log.LogAttrs(context.Background(), level, c.opts.Prefix+e.Message, attrs...)
	return nil
}

func (c *core) Sync() error { return nil }

func slogLevel(l zapcore.Level) slog.Level {
	switch {
	case l >= zapcore.ErrorLevel:
		return slog.LevelError
	case l >= zapcore.WarnLevel:
		return slog.LevelWarn
	case l >= zapcore.InfoLevel:
		return slog.LevelInfo
	}
	return slog.LevelDebug
}
