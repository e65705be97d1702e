package freshness

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/invalidator/invalidator/cacheaside"
	"github.com/invalidator/invalidator/cmd/invalidator/internal/sim"
	"github.com/invalidator/invalidator/enqueue"
	"github.com/invalidator/invalidator/keyspec"
	"github.com/invalidator/invalidator/outbox"
	"github.com/invalidator/invalidator/worker"
)

// policyYAML is the run's policy: one class on a queue of the run's own,
// for the raw key deletes of every write.
const policyYAML = `version: 1
default_class: freshness
classes:
  freshness: {queue: %s, max_retry: 3, timeout: 30s}
`

// hotRow is the row of the herd.
const hotRow = "hot"

// runner is one run of the checker.
type runner struct {
	cfg     Config
	src     Source
	hist    *sim.History
	tasks   *taskLog
	inv     *enqueue.Client
	kinds   []*kind
	rows    []string // of the random workload
	metrics *prometheus.Registry

	writes    atomic.Int64
	writeErrs atomic.Int64
	errOnce   sync.Once
	firstErr  atomic.Pointer[error] // first unexpected error, for the report

	// With a PostgreSQL source, invalidations go through the outbox: pg
	// and ob are set, and each write adds a marker key under markers.
	pg       *Postgres
	ob       *outbox.Writer
	markers  string
	markerNo atomic.Int64
}

// Run runs the checker: the random workload with the forced races for
// Config.Duration, then the herd. Stale reads are findings, in the report;
// Run fails only when the run could not be carried out.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	id := runID()
	queue := "invalidator-freshness-" + id
	prefix := "freshness:" + id + ":"
	policy, err := keyspec.Parse("freshness-policy.yaml", fmt.Appendf(nil, policyYAML, queue))
	if err != nil {
		return nil, fmt.Errorf("freshness: built-in policy: %w", err)
	}
	inv, err := enqueue.New(cfg.Queue, enqueue.Config{Policy: policy})
	if err != nil {
		return nil, fmt.Errorf("freshness: %w", err)
	}
	defer inv.Close()

	// The cacheaside readers: one Cache per process, one Metrics for all.
	reg := prometheus.NewRegistry()
	m, err := cacheaside.NewMetrics(reg)
	if err != nil {
		return nil, fmt.Errorf("freshness: %w", err)
	}
	caches := make([]*cacheaside.Cache, cfg.Processes)
	for i := range caches {
		caches[i], err = cacheaside.New(cacheaside.Config{Redis: cfg.Cache, TTL: cfg.TTL, Logger: cfg.Logger, Metrics: m})
		if err != nil {
			return nil, fmt.Errorf("freshness: %w", err)
		}
	}

	r := &runner{
		cfg:   cfg,
		src:   cfg.Source,
		tasks: newTaskLog(),
		inv:   inv,
		kinds: []*kind{
			newKind(kindCacheAside, prefix+"ca:", cacheAsideRead(caches)),
			newKind(kindControl, prefix+"control:", controlRead(cfg.Cache, cfg.TTL)),
		},
		metrics: reg,
	}
	for i := range cfg.Rows {
		r.rows = append(r.rows, "row-"+strconv.Itoa(i))
	}
	races := make([]string, cfg.ForcedRaces)
	for i := range races {
		races[i] = "race-" + strconv.Itoa(i)
	}
	r.hist = sim.NewHistory(0) // every version: a run is short

	if pg, ok := cfg.Source.(*Postgres); ok {
		r.pg, r.markers = pg, prefix+"write:"
		if r.ob, err = outbox.NewWriter(enqueue.NewBuilder(enqueue.Config{Policy: policy}), pg.outbox); err != nil {
			return nil, fmt.Errorf("freshness: %w", err)
		}
	}
	// Shut down by the deferred stop alone, after the relay's.
	w, err := sim.StartWorker(context.WithoutCancel(ctx),
		worker.Config{Queue: cfg.Queue, Cache: cfg.Cache, Policy: policy, Logger: cfg.Logger},
		sim.WrapHandler(func(next asynq.Handler) asynq.Handler {
			return &slowWorker{next: next, delay: cfg.WorkerDelay, tasks: r.tasks, markers: r.markers}
		}))
	if err != nil {
		return nil, fmt.Errorf("freshness: %w", err)
	}
	defer func() {
		_ = w.Stop()
		// Best effort: the run's queue is empty by now.
		_ = asynq.NewInspectorFromRedisClient(cfg.Queue).DeleteQueue(queue, true)
	}()
	if r.pg != nil {
		stop, err := r.startRelay(ctx)
		if err != nil {
			return nil, err
		}
		defer stop() // before the worker's shutdown
	}

	start := time.Now()
	r.progressf("random workload for %s: %d writers, %d readers of each kind, %d forced races",
		cfg.Duration, cfg.Writers, cfg.Readers, cfg.ForcedRaces)
	if err := r.workload(ctx, races); err != nil {
		return nil, err
	}
	r.progressf("herd: %d readers of each kind on one missing key", cfg.HotKeyReaders)
	for _, k := range r.kinds {
		r.herd(ctx, k)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("freshness: %w", err)
	}
	return r.report(time.Since(start)), nil
}

// workload runs writers and readers for Config.Duration, and the forced
// races meanwhile; it returns when all are done.
func (r *runner) workload(ctx context.Context, races []string) error {
	wctx, cancel := context.WithTimeout(ctx, r.cfg.Duration)
	defer cancel()
	var wg sync.WaitGroup
	for range r.cfg.Writers {
		wg.Go(func() { r.writer(wctx) })
	}
	for _, k := range r.kinds {
		for i := range r.cfg.Readers {
			wg.Go(func() { r.reader(wctx, k, i) })
		}
	}
	var raceErr error
	for _, row := range races {
		if raceErr = r.forcedRace(ctx, row); raceErr != nil {
			break
		}
	}
	<-wctx.Done()
	wg.Wait()
	if raceErr != nil {
		return fmt.Errorf("freshness: forced race: %w", raceErr)
	}
	return nil
}

func (r *runner) writer(ctx context.Context) {
	for ctx.Err() == nil {
		if _, _, err := r.write(ctx, r.rows[mrand.IntN(len(r.rows))]); err != nil && ctx.Err() == nil {
			r.writeErrs.Add(1)
			r.noteErr(err)
		}
		_ = sim.Sleep(ctx, r.cfg.WriteInterval)
	}
}

// startRelay runs a relay of the source's outbox until stop is called.
func (r *runner) startRelay(ctx context.Context) (stop func(), err error) {
	relay, err := outbox.NewRelay(outbox.RelayConfig{Outbox: r.pg.outbox, DB: r.pg.pool, Queue: r.cfg.Queue,
		Logger: r.cfg.Logger, StatsInterval: -1})
	if err != nil {
		return nil, fmt.Errorf("freshness: %w", err)
	}
	stopRelay := sim.Go(context.WithoutCancel(ctx), relay.Run).Stop
	return func() {
		if err := stopRelay(); err != nil {
			r.cfg.Logger.Warn("freshness: outbox relay", "err", err)
		}
	}, nil
}

// write advances row in the source and invalidates the row's keys of every
// kind: through the outbox in the write's own transaction with a
// PostgreSQL source, else by an enqueue after the write, as an application
// does after a commit. It returns the ID the invalidation's application
// will be recorded under (the task's, or the outbox write's marker key) and
// when the write was complete.
func (r *runner) write(ctx context.Context, row string) (string, time.Time, error) {
	if r.ob != nil {
		return r.writeOutbox(ctx, row)
	}
	v, err := r.src.Write(ctx, row)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("write row %q: %w", row, err)
	}
	done := time.Now()
	r.hist.Complete(row, v, done)
	r.writes.Add(1)
	keys := make([]string, len(r.kinds))
	for i, k := range r.kinds {
		keys[i] = k.key(row)
	}
	// A committed write always gets its invalidation, even as the run ends.
	ids, err := r.inv.DeleteKeys(context.WithoutCancel(ctx), keys...)
	if err != nil {
		return "", done, fmt.Errorf("enqueue the invalidation of row %q: %w", row, err)
	}
	r.tasks.written(ids[0], done)
	return ids[0], done, nil
}

// writeOutbox is write through the outbox. Its invalidation carries a
// marker key of its own besides the row's keys (deleting a missing key
// costs Redis one lookup), so the worker can tell which writes a relayed,
// merged task covered.
func (r *runner) writeOutbox(ctx context.Context, row string) (string, time.Time, error) {
	keys := make([]string, 0, len(r.kinds)+1)
	for _, k := range r.kinds {
		keys = append(keys, k.key(row))
	}
	marker := r.markers + strconv.FormatInt(r.markerNo.Add(1), 10)
	keys = append(keys, marker)
	v, err := r.pg.writeTx(ctx, row, func(tx *outbox.PgxTx) error {
		return r.ob.DeleteKeys(ctx, tx, keys...)
	})
	if err != nil {
		return "", time.Time{}, fmt.Errorf("write row %q with its outbox row: %w", row, err)
	}
	done := time.Now()
	r.hist.Complete(row, v, done)
	r.writes.Add(1)
	r.tasks.written(marker, done)
	return marker, done, nil
}

func (r *runner) reader(ctx context.Context, k *kind, proc int) {
	for ctx.Err() == nil {
		row := r.rows[mrand.IntN(len(r.rows))]
		_, _ = r.read(ctx, k, proc, row, r.loader(k, row))
		_ = sim.Sleep(ctx, r.cfg.ReadInterval)
	}
}

// read reads row through kind k and judges the version it got (see the
// package doc). It reports whether the read was stale.
func (r *runner) read(ctx context.Context, k *kind, proc int, row string, load cacheaside.Loader) (bool, error) {
	start := time.Now()
	b, err := k.read(ctx, proc, k.key(row), load)
	if err == nil {
		var v int64
		if v, err = parseVersion(b); err == nil {
			k.reads.Add(1)
			s := r.hist.Staleness(row, start, v)
			if s > 0 {
				k.superseded.Add(s)
			}
			if sim.IsStale(s, r.cfg.LagBound) {
				k.stale.Add(1)
				return true, nil
			}
			return false, nil
		}
	}
	if ctx.Err() == nil {
		k.errs.Add(1)
		r.noteErr(fmt.Errorf("%s read of row %q: %w", k.name, row, err))
	}
	return false, err
}

// loader reads row from the source, then sleeps LoaderDelay: the window in
// which a write can overtake the load.
func (r *runner) loader(k *kind, row string) cacheaside.Loader {
	return func(ctx context.Context) ([]byte, error) {
		v, err := r.src.Read(ctx, row)
		if err != nil {
			return nil, err
		}
		k.loads.Add(1)
		if row == hotRow {
			k.hotLoads.Add(1)
		}
		if err := sim.Sleep(ctx, r.cfg.LoaderDelay); err != nil {
			return nil, err
		}
		return strconv.AppendInt(nil, v, 10), nil
	}
}

// forcedRace drives the race step by step on a row of its own: every kind
// starts a read that misses and loads the row; the row is written and its
// invalidation applied; the loads return and the readers store (or try to);
// after the lag bound every kind reads the row again. A plain cache-aside
// reader then serves the old row: a stale read, in every run.
func (r *runner) forcedRace(ctx context.Context, row string) error {
	release := make(chan struct{})
	var once sync.Once
	releaseAll := func() { once.Do(func() { close(release) }) }
	defer releaseAll()
	loaded := make(chan struct{}, len(r.kinds))
	results := make(chan error, len(r.kinds))
	for _, k := range r.kinds {
		gated := func(ctx context.Context) ([]byte, error) {
			v, err := r.src.Read(ctx, row)
			if err != nil {
				return nil, err
			}
			k.loads.Add(1)
			loaded <- struct{}{}
			select {
			case <-release:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
			return strconv.AppendInt(nil, v, 10), nil
		}
		go func() {
			_, err := r.read(ctx, k, 0, row, gated)
			results <- err
		}()
	}
	for range r.kinds {
		select {
		case <-loaded:
		case err := <-results:
			return fmt.Errorf("row %q: a reader returned before loading: %w", row, err)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	id, done, err := r.write(ctx, row)
	if err != nil {
		return err
	}
	if err := r.tasks.wait(ctx, id); err != nil {
		return fmt.Errorf("row %q: wait for the invalidation: %w", row, err)
	}
	releaseAll()
	var errs []error
	for range r.kinds {
		errs = append(errs, <-results)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("row %q: %w", row, err)
	}
	if err := sim.Sleep(ctx, time.Until(done.Add(r.cfg.LagBound+time.Millisecond))); err != nil {
		return err
	}
	for _, k := range r.kinds {
		stale, err := r.read(ctx, k, 0, row, r.loader(k, row))
		if err != nil {
			return fmt.Errorf("row %q: read after the race: %w", row, err)
		}
		if stale {
			k.forcedStale.Add(1)
		}
	}
	return nil
}

// herd has HotKeyReaders readers of kind k read the missing hot key at once.
func (r *runner) herd(ctx context.Context, k *kind) {
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range r.cfg.HotKeyReaders {
		wg.Go(func() {
			<-start
			_, _ = r.read(ctx, k, i, hotRow, r.loader(k, hotRow))
		})
	}
	close(start)
	wg.Wait()
}

// noteErr keeps the first unexpected error for the report.
func (r *runner) noteErr(err error) {
	r.errOnce.Do(func() { r.firstErr.Store(&err) })
}

func (r *runner) progressf(format string, args ...any) {
	if r.cfg.Progress != nil {
		fmt.Fprintf(r.cfg.Progress, format+"\n", args...)
	}
}

// runID names one run's keys and queue, so runs never see each other's.
func runID() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
