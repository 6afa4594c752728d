// Package configwatch reloads a running connector's ingress rules when its
// config.yml changes, without a restart and without dropping a request.
//
// A [Watcher] watches the file's directory (so an editor's write-to-temp-
// then-rename, or Kubernetes' symlink swap of a mounted ConfigMap, is seen
// like an in-place write) and falls back to polling the file's size and
// modification time where the OS cannot notify. [Watcher.Reload] asks for a
// reload at once (the CLI calls it on SIGHUP).
//
// Each change is read, parsed and validated with [ingress.Load] and
// [ingress.New]. A valid config is handed to Config.Apply (typically
// (*connector.Connector).SetIngress); an invalid one is logged with its
// reason and the rules in effect stay. Only the ingress part of the file
// (ingress, originRequest, url, hello-world) is applied live; a change to any
// other key, such as tunnel or credentials-file, is logged as needing a
// restart and otherwise ignored.
package configwatch

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/adit-dev/adit/ingress"
	"github.com/adit-dev/adit/internal/logs"
)

// Config configures a [Watcher].
type Config struct {
	// Path is the config file to watch. Required.
	Path string
	// Current is the config the process is running with. Keys other than the
	// ingress ones are compared against it to report what needs a restart.
	// If nil, the file as it is when Run starts.
	Current *ingress.Config
	// Apply installs newly loaded rules. Required. If it fails, the rules in
	// effect stay and the failure is reported like an invalid file.
	Apply func(*ingress.Ingress) error
	// OnReload is called after each successful Apply. Nil: not called.
	OnReload func(Reload)
	// OnError is called with the reason a change was not applied. Nil: not
	// called (the reason is logged either way).
	OnError func(error)
	// Poll makes the watcher poll the file even where the OS can notify
	// changes. Zero: notifications when available.
	Poll bool
	// PollInterval is how often polling checks the file's size and
	// modification time. If zero, 1s.
	PollInterval time.Duration
	// Debounce is how long a notification waits for more before the file is
	// read, since editors often write a file in several steps. If zero,
	// 100ms.
	Debounce time.Duration
	// Logger receives "config reloaded" and the reasons for not reloading.
	// If nil, logs are discarded.
	Logger *slog.Logger
}

// Trigger says what started a reload.
type Trigger string

// Reload triggers.
const (
	TriggerFile   Trigger = "file"   // the file changed
	TriggerSignal Trigger = "signal" // Watcher.Reload was called (SIGHUP)
)

// Reload describes one applied reload.
type Reload struct {
	// Config is the file as loaded; Ingress its compiled rules, now in effect.
	Config  *ingress.Config
	Ingress *ingress.Ingress
	// Trigger says what started the reload.
	Trigger Trigger
	// NeedRestart lists the keys, as written in config.yml, whose values
	// differ from the running config's and were ignored; empty if none.
	NeedRestart []string
}

// Watcher reloads a config file's ingress rules as it changes.
type Watcher struct {
	cfg    Config
	path   string // absolute
	log    *slog.Logger
	reload chan struct{}

	// Owned by Run.
	started *ingress.Config // what non-ingress keys are compared against
	applied *ingress.Config // the config whose rules are in effect
	read    *ingress.Config // the last config read without error
}

// New checks cfg and returns a Watcher; Run starts it.
func New(cfg Config) (*Watcher, error) {
	if cfg.Path == "" {
		return nil, errors.New("configwatch: no config file")
	}
	if cfg.Apply == nil {
		return nil, errors.New("configwatch: no Apply function")
	}
	path, err := filepath.Abs(cfg.Path)
	if err != nil {
		return nil, fmt.Errorf("configwatch: %w", err)
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = time.Second
	}
	if cfg.Debounce <= 0 {
		cfg.Debounce = 100 * time.Millisecond
	}
	log := logs.Component(cfg.Logger, "configwatch")
	return &Watcher{
		cfg:    cfg,
		path:   path,
		log:    log.With("config", path),
		reload: make(chan struct{}, 1),
	}, nil
}

// Reload asks Run to re-read the file now and apply it even if it has not
// changed. It does not wait; requests made while one is pending coalesce.
func (w *Watcher) Reload() {
	select {
	case w.reload <- struct{}{}:
	default:
	}
}

// Run watches the file until ctx is done and returns nil. Changes made
// after Run is called are never missed: the watch is set up first, then the
// file is compared with Config.Current.
func (w *Watcher) Run(ctx context.Context) error {
	events, stop := w.notifications()
	defer stop()

	w.started = w.cfg.Current
	if w.started == nil {
		cfg, _, err := load(w.path)
		if err != nil {
			w.fail(TriggerFile, err)
		}
		w.started = cfg // nil on error: the first good file is applied
	}
	w.applied, w.read = w.started, w.started
	if w.cfg.Current != nil {
		w.check(TriggerFile) // a change between the caller's load and now
	}

	var debounce *time.Timer
	var fire <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			if debounce != nil {
				debounce.Stop()
			}
			return nil
		case <-w.reload:
			w.check(TriggerSignal)
		case _, ok := <-events:
			if !ok {
				events = nil
				continue
			}
			if debounce == nil {
				debounce = time.NewTimer(w.cfg.Debounce)
				fire = debounce.C
			} else {
				debounce.Reset(w.cfg.Debounce)
			}
		case <-fire:
			w.check(TriggerFile)
		}
	}
}

// notifications returns a channel that receives a value whenever the file
// may have changed, from OS notifications or else from polling.
func (w *Watcher) notifications() (<-chan struct{}, func()) {
	out := make(chan struct{}, 1)
	notify := func() {
		select {
		case out <- struct{}{}:
		default:
		}
	}
	done := make(chan struct{})
	if !w.cfg.Poll {
		fw, err := w.fsnotify(notify, done)
		if err == nil {
			return out, func() { close(done); fw.Close() }
		}
		w.log.Info("cannot watch for file changes; polling instead", "err", err, "interval", w.cfg.PollInterval)
	}
	// The baseline is taken here, before Run compares the file with
	// Config.Current, not when the goroutine first runs: a change made in
	// between would otherwise become the baseline and never be seen.
	go w.poll(w.stat(), notify, done)
	return out, func() { close(done) }
}

// stat is the file's info, following links; nil if it cannot be read.
func (w *Watcher) stat() os.FileInfo {
	fi, err := os.Stat(w.path)
	if err != nil {
		return nil
	}
	return fi
}

// fsnotify watches the file's directory and calls notify for the events
// that may change what Path reads.
func (w *Watcher) fsnotify(notify func(), done <-chan struct{}) (*fsnotify.Watcher, error) {
	fw, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, err
	}
	if err := fw.Add(filepath.Dir(w.path)); err != nil {
		fw.Close()
		return nil, err
	}
	go func() {
		for {
			select {
			case <-done:
				return
			case ev, ok := <-fw.Events:
				if !ok {
					return
				}
				if w.relevant(ev) {
					notify()
				}
			case err, ok := <-fw.Errors:
				if !ok {
					return
				}
				// An overflow loses events: look at the file in case.
				w.log.Warn("file notification error", "err", err)
				notify()
			}
		}
	}()
	return fw, nil
}

// relevant reports whether ev, in the file's directory, may change what
// Path reads: an event on the file itself, or any change in the directory
// when Path is a symlink (a swapped link or its target directory, as in a
// Kubernetes ConfigMap volume).
func (w *Watcher) relevant(ev fsnotify.Event) bool {
	if ev.Op == fsnotify.Chmod {
		return false
	}
	if filepath.Clean(ev.Name) == w.path {
		return true
	}
	fi, err := os.Lstat(w.path)
	return err == nil && fi.Mode()&os.ModeSymlink != 0
}

// poll calls notify when the file's size, modification time or identity
// (a rename over it) changes, or it appears or disappears. Like git's
// "racily clean" check, a file modified within the last two intervals is
// also re-read on every tick: a same-size write within the file system's
// timestamp granularity leaves the stamp unchanged.
func (w *Watcher) poll(last os.FileInfo, notify func(), done <-chan struct{}) {
	same := func(a, b os.FileInfo) bool {
		if a == nil || b == nil {
			return a == nil && b == nil
		}
		return os.SameFile(a, b) && a.Size() == b.Size() && a.ModTime().Equal(b.ModTime())
	}
	t := time.NewTicker(w.cfg.PollInterval)
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case <-t.C:
			fi := w.stat()
			racy := fi != nil && time.Since(fi.ModTime()) < 2*w.cfg.PollInterval
			if !same(fi, last) || racy {
				notify()
			}
			last = fi
		}
	}
}

// check reads the file and applies it if its ingress part changed (or
// always, for a signal).
func (w *Watcher) check(trigger Trigger) {
	cfg, ing, err := load(w.path)
	if err != nil {
		w.fail(trigger, err)
		return
	}
	if trigger == TriggerFile && reflect.DeepEqual(cfg, w.read) {
		w.log.Debug("config file unchanged")
		return
	}
	prevRead := w.read
	w.read = cfg
	restart := RestartKeys(w.started, cfg)
	if w.started != nil && len(restart) > 0 {
		w.log.Warn("config change needs a restart; ignored until then", "keys", strings.Join(restart, ", "))
	}
	if trigger == TriggerFile && w.applied != nil && reflect.DeepEqual(ingressPart(cfg), ingressPart(w.applied)) {
		return
	}
	if err := w.cfg.Apply(ing); err != nil {
		w.read = prevRead // retry on the next event, even if the file is the same
		w.fail(trigger, err)
		return
	}
	w.applied = cfg
	if w.started == nil {
		w.started = cfg
	}
	w.log.Info("config reloaded", "rules", len(ing.Rules), "trigger", string(trigger))
	if w.cfg.OnReload != nil {
		w.cfg.OnReload(Reload{Config: cfg, Ingress: ing, Trigger: trigger, NeedRestart: restart})
	}
}

func (w *Watcher) fail(trigger Trigger, err error) {
	w.log.Error("config not reloaded; keeping the rules in effect", "trigger", string(trigger), "err", err)
	if w.cfg.OnError != nil {
		w.cfg.OnError(err)
	}
}

// load reads, parses and validates the file at path.
func load(path string) (*ingress.Config, *ingress.Ingress, error) {
	cfg, err := ingress.Load(path)
	if err != nil {
		return nil, nil, err
	}
	ing, err := ingress.New(cfg)
	if err != nil {
		return nil, nil, err
	}
	return cfg, ing, nil
}

// ingressPart is the part of cfg that a reload applies.
func ingressPart(cfg *ingress.Config) ingress.Config {
	return ingress.Config{
		Ingress:       cfg.Ingress,
		OriginRequest: cfg.OriginRequest,
		URL:           cfg.URL,
		HelloWorld:    cfg.HelloWorld,
	}
}

// liveKeys are the fields of ingress.Config a reload applies.
var liveKeys = map[string]bool{"Ingress": true, "OriginRequest": true, "URL": true, "HelloWorld": true}

// RestartKeys lists, by their config.yml names and in file-struct order,
// the keys whose values differ between old and new and that take effect
// only when the connector restarts: every key but ingress, originRequest,
// url and hello-world. A nil config counts as empty.
func RestartKeys(old, new *ingress.Config) []string {
	if old == nil {
		old = &ingress.Config{}
	}
	if new == nil {
		new = &ingress.Config{}
	}
	ov, nv := reflect.ValueOf(old).Elem(), reflect.ValueOf(new).Elem()
	t := ov.Type()
	var keys []string
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() || liveKeys[f.Name] {
			continue
		}
		if !reflect.DeepEqual(ov.Field(i).Interface(), nv.Field(i).Interface()) {
			name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			if name == "" {
				name = f.Name
			}
			keys = append(keys, name)
		}
	}
	return keys
}
