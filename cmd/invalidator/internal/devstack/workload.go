package devstack

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hibiken/asynq"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/invalidator/invalidator/cacheaside"
	"github.com/invalidator/invalidator/cmd/invalidator/internal/sim"
	"github.com/invalidator/invalidator/enqueue"
	"github.com/invalidator/invalidator/keyspec"
)

// Config is the simulated application. Zero values take the defaults.
type Config struct {
	// Queue and Cache are the queue and cache Redis. Required.
	Queue, Cache redis.UniversalClient
	// Policy must declare the families and events in Rows. Required.
	Policy *keyspec.Policy
	// Rows are what the application writes and reads. Default: DefaultRows
	// (products, prices and user profiles of examples/policy.yaml).
	Rows []RowKind
	// Entities is how many ids of each row kind exist. Default 200.
	Entities int
	// Writers and Readers are concurrent goroutines. Default 4 and 16.
	Writers, Readers int
	// WriteRate is writes per second over all writers. Default 50.
	WriteRate float64
	// ReadInterval is each reader's pause between reads. Default 2ms.
	ReadInterval time.Duration
	// LoadDelay is how long a loader sleeps after reading the source, to
	// widen the window in which an invalidation lands mid-load. Default 2ms.
	LoadDelay time.Duration
	// LagBound is how far a read may lag the last write before it counts
	// as stale. Default 1s.
	LagBound time.Duration
	// Gatherer is the registry the worker's (and the cache's) metrics are
	// on; the status line reads invalidations and lag from it. Optional.
	Gatherer prometheus.Gatherer
	// Registerer receives the cacheaside metrics. Optional.
	Registerer prometheus.Registerer
	// Status is called about once a second. Optional.
	Status func(Status)
	// Logger; default slog.Default().
	Logger *slog.Logger
	// DrainTimeout bounds the wait, after the load ends, for the queues to
	// empty before the final check. Default 15s.
	DrainTimeout time.Duration
	// Interrupt, when it ends, ends the drain and the final check early
	// (Ctrl-C). Optional.
	Interrupt context.Context
	// DB, when set, holds the source of truth in PostgreSQL (table
	// invalidator_dev_rows, the run's rows deleted at the end), and every
	// write publishes its event through the transactional outbox in the
	// write's own transaction, moved to the queue by a relay the run
	// starts, from an outbox table of its own (dropped at the end).
	// Optional: nil keeps the rows in memory and enqueues after each write.
	DB *pgxpool.Pool
	// AuditEvery, when positive, runs an audit (package audit) of every
	// row kind's family this often during the load, with the source as the
	// audit's Source: what the application's loader returns. Optional.
	AuditEvery time.Duration
	// AuditRecheck is the audit's RecheckAfter: how long a difference must
	// last to count as inconsistent. It should exceed the invalidation lag.
	// Default LagBound: a difference that outlives it is what a stale read
	// is too.
	AuditRecheck time.Duration
	// DropInvalidations is the fraction (0..1) of writes whose invalidation
	// the application forgets: the write commits, the publish is skipped,
	// like a write path that lacks one. Only without DB: the outbox writes
	// the invalidation in the write's transaction. Default 0.
	DropInvalidations float64
}

// RowKind is one kind of row: a family it is cached in, the event a write
// publishes, and how an entity id becomes the family's parameters and the
// event's attributes.
type RowKind struct {
	Name   string
	Family string
	Event  string
	Params func(id int) map[string]string // family parameters
	Attrs  func(id int) map[string]string // event attributes
}

// DefaultRows are rows of examples/policy.yaml: products (product.updated
// deletes the product, its prices and pages by pattern, and bumps the
// catalog), prices in EUR (price.changed) and user profiles (user.updated).
var DefaultRows = []RowKind{
	{Name: "product", Family: "product", Event: "product.updated",
		Params: func(id int) map[string]string { return map[string]string{"id": strconv.Itoa(id)} },
		Attrs:  func(id int) map[string]string { return map[string]string{"id": strconv.Itoa(id)} }},
	{Name: "price", Family: "product_price", Event: "price.changed",
		Params: func(id int) map[string]string { return map[string]string{"sku": strconv.Itoa(id), "currency": "EUR"} },
		Attrs:  func(id int) map[string]string { return map[string]string{"sku": strconv.Itoa(id), "currency": "EUR"} }},
	{Name: "user", Family: "user_profile", Event: "user.updated",
		Params: func(id int) map[string]string { return map[string]string{"id": strconv.Itoa(id)} },
		Attrs:  func(id int) map[string]string { return map[string]string{"id": strconv.Itoa(id)} }},
}

func (c *Config) withDefaults() {
	if c.Rows == nil {
		c.Rows = DefaultRows
	}
	if c.Entities == 0 {
		c.Entities = 200
	}
	if c.Writers == 0 {
		c.Writers = 4
	}
	if c.Readers == 0 {
		c.Readers = 16
	}
	if c.WriteRate == 0 {
		c.WriteRate = 50
	}
	if c.ReadInterval == 0 {
		c.ReadInterval = 2 * time.Millisecond
	}
	if c.LoadDelay == 0 {
		c.LoadDelay = 2 * time.Millisecond
	}
	if c.LagBound == 0 {
		c.LagBound = time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.DrainTimeout == 0 {
		c.DrainTimeout = 15 * time.Second
	}
	if c.AuditRecheck == 0 {
		c.AuditRecheck = c.LagBound
	}
}

// Status is one line of the live display.
type Status struct {
	Elapsed         time.Duration
	WritesPerSec    float64
	InvalidationsPS float64 // tasks the worker applied per second
	LagP50, LagP99  time.Duration
	HitRate         float64 // of cacheaside reads, since the start
	Reads           int64
	StaleReads      int64
	DeadLetters     int
	// Audit is the cumulative result of the audits so far; nil when the
	// run does not audit.
	Audit *AuditSummary
}

func (s Status) String() string {
	line := fmt.Sprintf("%5.0fs  writes %5.1f/s  invalidations %6.1f/s  lag p50 %s p99 %s  reads %d  hit rate %4.1f%%  stale reads %d  dead letters %d",
		s.Elapsed.Seconds(), s.WritesPerSec, s.InvalidationsPS, fmtLag(s.LagP50), fmtLag(s.LagP99),
		s.Reads, s.HitRate*100, s.StaleReads, s.DeadLetters)
	if s.Audit != nil {
		line += fmt.Sprintf("  audit sampled %d inconsistent %d", s.Audit.Sampled, s.Audit.Inconsistent)
	}
	return line
}

// AuditSummary adds up the audits of a run.
type AuditSummary struct {
	// Sampled and Inconsistent add up the audit.Report fields of every
	// family of every audit.
	Sampled      int `json:"sampled"`
	Inconsistent int `json:"inconsistent"`
}

func fmtLag(d time.Duration) string {
	if d < 0 {
		return "—"
	}
	return "≤" + d.String()
}

// Summary is the result of a run.
type Summary struct {
	Seconds       float64 `json:"seconds"`
	Writes        int64   `json:"writes"`
	Reads         int64   `json:"reads"`
	HitRate       float64 `json:"hit_rate"`
	StaleReads    int64   `json:"stale_reads"`
	Invalidations float64 `json:"invalidations_applied"`
	LagP50Ms      float64 `json:"lag_p50_ms"`
	LagP99Ms      float64 `json:"lag_p99_ms"`
	DeadLetters   int     `json:"dead_letters"`
	WriteErrors   int64   `json:"write_errors"`
	ReadErrors    int64   `json:"read_errors"`
	// After the load, once the queues drained, every row written was read
	// through the cache once more: Checked rows, of which StaleCached held
	// a value older than the source. That is the timing-free test of the
	// leases: nothing stale may remain cached once invalidations are done.
	Drained     bool `json:"drained"`
	Checked     int  `json:"checked"`
	StaleCached int  `json:"stale_cached"`
	// DroppedInvalidations counts the writes whose publish was skipped on
	// purpose (Config.DropInvalidations).
	DroppedInvalidations int64 `json:"dropped_invalidations"`
	// Audit is the audits' total, nil when the run did not audit.
	Audit *AuditSummary `json:"audit,omitempty"`
}

// source is the application's database: versioned rows, and the history
// of when each version was complete, which judges the reads (sim's one
// definition of a stale read, which check-freshness uses too).
type source struct {
	// mem holds the rows without PostgreSQL; pg, when set, is where the
	// rows live instead.
	mem  *sim.Memory
	pg   *pgSource
	hist *sim.History

	mu sync.Mutex // guards lost
	// lost: rows a write of which was committed but whose invalidation
	// could not be published, so the final check skips them.
	lost map[string]bool
}

// keepWrites bounds each row's history of complete versions; only the
// writes within the lag bound of a read's start matter.
const keepWrites = 64

func newSource() *source {
	return &source{mem: sim.NewMemory(), hist: sim.NewHistory(keepWrites), lost: make(map[string]bool)}
}

// load reads a row's current version from where the rows live.
func (s *source) load(ctx context.Context, name string) (int64, error) {
	if s.pg != nil {
		return s.pg.read(ctx, name)
	}
	return s.mem.Read(ctx, name)
}

// record notes that version v of a row committed now (PostgreSQL rows).
func (s *source) record(name string, v int64) {
	s.hist.Complete(name, v, time.Now())
}

// publishTimeout bounds a writer's publish after its commit.
const publishTimeout = 5 * time.Second

// unpublished marks a row whose last write's invalidation was not sent.
func (s *source) unpublished(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lost[name] = true
}

// commit advances a row in memory and records when the write completed.
func (s *source) commit(name string) {
	v, _ := s.mem.Write(context.Background(), name) // in memory: never fails
	s.hist.Complete(name, v, time.Now())
}

// written returns the rows written and published, sorted.
func (s *source) written() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	names := slices.DeleteFunc(s.hist.Rows(), func(name string) bool { return s.lost[name] })
	slices.Sort(names)
	return names
}

// RunWorkload runs writers and readers until ctx ends, then (unless ctx was
// cancelled rather than timed out) waits for the queues to drain, with the
// worker still running, and checks that no written row is cached older
// than the source, and returns the summary. Writers
// commit to the in-memory source, then publish the row's event through
// enqueue; readers read through cacheaside with a loader that reads the
// source.
func RunWorkload(ctx context.Context, cfg Config) (Summary, error) {
	cfg.withDefaults()
	if cfg.Queue == nil || cfg.Cache == nil || cfg.Policy == nil {
		return Summary{}, errors.New("devstack: Config needs Queue, Cache and Policy")
	}
	switch {
	case !(cfg.DropInvalidations >= 0 && cfg.DropInvalidations <= 1):
		return Summary{}, fmt.Errorf("devstack: DropInvalidations must be in 0..1, got %g", cfg.DropInvalidations)
	case cfg.DropInvalidations > 0 && cfg.DB != nil:
		return Summary{}, errors.New("devstack: DropInvalidations needs the in-memory source: the outbox commits the invalidation with the write")
	case cfg.AuditEvery < 0 || cfg.AuditRecheck < 0:
		return Summary{}, errors.New("devstack: AuditEvery and AuditRecheck must not be negative")
	}
	fams := make([]*keyspec.Family, len(cfg.Rows))
	for i, rk := range cfg.Rows {
		f, err := cfg.Policy.Family(rk.Family)
		if err != nil {
			return Summary{}, fmt.Errorf("devstack: row %s: %w", rk.Name, err)
		}
		if _, err := cfg.Policy.Event(rk.Event); err != nil {
			return Summary{}, fmt.Errorf("devstack: row %s: %w", rk.Name, err)
		}
		fams[i] = f
	}
	var cm *cacheaside.Metrics
	if cfg.Registerer != nil {
		var err error
		if cm, err = cacheaside.NewMetrics(cfg.Registerer); err != nil {
			return Summary{}, err
		}
	}
	cache, err := cacheaside.New(cacheaside.Config{Redis: cfg.Cache, Metrics: cm, Logger: cfg.Logger})
	if err != nil {
		return Summary{}, err
	}
	producer, err := enqueue.New(cfg.Queue, enqueue.Config{Policy: cfg.Policy})
	if err != nil {
		return Summary{}, err
	}
	insp := asynq.NewInspectorFromRedisClient(cfg.Queue)

	src := newSource()
	if cfg.DB != nil {
		if src.pg, err = openPG(ctx, cfg.DB, cfg.Policy); err != nil {
			return Summary{}, err
		}
		defer func() {
			if err := src.pg.close(context.WithoutCancel(ctx)); err != nil {
				cfg.Logger.Warn("clean-up failed", "err", err)
			}
		}()
		stopRelay, err := src.pg.startRelay(ctx, cfg.Queue, cfg.Logger.With("subsystem", "outbox-relay"))
		if err != nil {
			return Summary{}, err
		}
		defer stopRelay() // after the final check, which waits for the outbox to drain
	}
	var writes, reads, hits, stale, writeErrs, readErrs, dropped atomic.Int64
	start := time.Now()
	var wg sync.WaitGroup

	perWriter := time.Duration(float64(time.Second) * float64(cfg.Writers) / cfg.WriteRate)
	for w := range cfg.Writers {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), uint64(start.UnixNano())))
			tick := time.NewTicker(perWriter)
			defer tick.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-tick.C:
				}
				if ctx.Err() != nil {
					return // no write starts after the end
				}
				k := rng.IntN(len(cfg.Rows))
				id := 1 + rng.IntN(cfg.Entities)
				rk, name := cfg.Rows[k], rowName(cfg.Rows[k], id)
				if src.pg != nil {
					// The invalidation commits with the write or not
					// at all; a started write finishes even if the run
					// ends meanwhile.
					pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), publishTimeout)
					v, err := src.pg.write(pctx, name, rk.Event, rk.Attrs(id))
					cancel()
					if err != nil {
						writeErrs.Add(1)
						cfg.Logger.Warn("write failed", "row", name, "err", err)
						continue
					}
					src.record(name, v)
					writes.Add(1)
					continue
				}
				src.commit(name)
				if cfg.DropInvalidations > 0 && rng.Float64() < cfg.DropInvalidations {
					// The bug the audit is there to find: a write path
					// that never invalidates. The row stays in the final
					// check, which sees what it leaves cached.
					dropped.Add(1)
					writes.Add(1)
					cfg.Logger.Info("invalidation dropped on purpose (--drop-invalidations)", "event", rk.Event, "row", name)
					continue
				}
				// After the commit, as the application would, and to the
				// end even if the run ends meanwhile: a committed write
				// owes its invalidation.
				pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), publishTimeout)
				_, err := producer.Publish(pctx, rk.Event, rk.Attrs(id))
				cancel()
				if err != nil {
					// The application would retry or use an outbox; the
					// workload counts it and leaves the row out of the
					// final check, which judges the cache, not this.
					writeErrs.Add(1)
					src.unpublished(name)
					cfg.Logger.Warn("publish failed", "event", rk.Event, "err", err)
					continue
				}
				writes.Add(1)
			}
		})
	}
	for r := range cfg.Readers {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(1000+r), uint64(start.UnixNano())))
			for ctx.Err() == nil {
				k := rng.IntN(len(cfg.Rows))
				// A skewed choice of ids gives hot keys and a real hit rate.
				id := 1 + int(float64(cfg.Entities)*rng.Float64()*rng.Float64())
				rk, name := cfg.Rows[k], rowName(cfg.Rows[k], id)
				began := time.Now()
				loaded := false
				val, err := cache.GetFamily(ctx, fams[k], rk.Params(id), func(ctx context.Context) ([]byte, error) {
					loaded = true
					v, err := src.load(ctx, name)
					if err != nil {
						return nil, err
					}
					time.Sleep(cfg.LoadDelay)
					return []byte(strconv.FormatInt(v, 10)), nil
				})
				if err != nil {
					if ctx.Err() == nil {
						readErrs.Add(1)
						cfg.Logger.Warn("read failed", "row", name, "err", err)
					}
					continue
				}
				reads.Add(1)
				if !loaded {
					hits.Add(1)
				}
				v, _ := strconv.ParseInt(string(val), 10, 64)
				if src.hist.Stale(name, began, v, cfg.LagBound) {
					stale.Add(1)
					cfg.Logger.Error("stale read", "row", name, "version", v, "current", src.hist.Latest(name))
				}
				select {
				case <-ctx.Done():
				case <-time.After(cfg.ReadInterval):
				}
			}
		})
	}

	var auditor *auditLoop
	if cfg.AuditEvery > 0 {
		if auditor, err = newAuditLoop(cfg, fams, src); err != nil {
			return Summary{}, err
		}
		// The audit of the moment finishes after the load ends (its
		// re-check is what makes a finding a finding), unless interrupted.
		actx, stopAudit := context.WithCancel(context.WithoutCancel(ctx))
		defer stopAudit()
		if cfg.Interrupt != nil {
			defer context.AfterFunc(cfg.Interrupt, stopAudit)()
		}
		defer context.AfterFunc(ctx, func() {
			if errors.Is(ctx.Err(), context.Canceled) {
				stopAudit()
			}
		})()
		wg.Go(func() { auditor.run(actx, ctx.Done()) })
	}

	lag := newLagWindow(cfg.Gatherer)
	deadLetters := func() int {
		n := 0
		qs, err := insp.Queues()
		if err != nil {
			return 0
		}
		for _, q := range qs {
			if info, err := insp.GetQueueInfo(q); err == nil {
				n += info.Archived
			}
		}
		return n
	}
	status := func(prevWrites int64, prevApplied float64, interval time.Duration) (int64, float64) {
		w, applied := writes.Load(), lag.applied()
		p50, p99 := lag.quantiles()
		s := Status{
			Elapsed:         time.Since(start),
			WritesPerSec:    float64(w-prevWrites) / interval.Seconds(),
			InvalidationsPS: (applied - prevApplied) / interval.Seconds(),
			LagP50:          p50,
			LagP99:          p99,
			Reads:           reads.Load(),
			StaleReads:      stale.Load(),
			DeadLetters:     deadLetters(),
		}
		if auditor != nil {
			a := auditor.total()
			s.Audit = &a
		}
		if n := reads.Load(); n > 0 {
			s.HitRate = float64(hits.Load()) / float64(n)
		}
		if cfg.Status != nil {
			cfg.Status(s)
		}
		return w, applied
	}

	tick := time.NewTicker(time.Second)
	var prevW int64
	var prevA float64
	last := time.Now()
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case now := <-tick.C:
			prevW, prevA = status(prevW, prevA, now.Sub(last))
			last = now
		}
	}
	tick.Stop()
	wg.Wait()

	// An interrupted run (ctx cancelled, not timed out) ends at once; the
	// worker is stopping too, so the queues would never drain.
	var drained bool
	var checked, staleCached int
	if !errors.Is(ctx.Err(), context.Canceled) {
		fctx := context.WithoutCancel(ctx)
		if cfg.Interrupt != nil {
			var stop context.CancelFunc
			fctx, stop = context.WithCancel(fctx)
			defer context.AfterFunc(cfg.Interrupt, stop)()
			defer stop()
		}
		drained, checked, staleCached, err = finalCheck(fctx, cfg, insp, cache, fams, src)
		if err != nil {
			return Summary{}, err
		}
	}

	lag.reset() // the summary's quantiles cover the whole run
	p50, p99 := lag.quantiles()
	sum := Summary{
		Seconds:       time.Since(start).Seconds(),
		Writes:        writes.Load(),
		Reads:         reads.Load(),
		StaleReads:    stale.Load(),
		Invalidations: lag.applied(),
		LagP50Ms:      ms(p50),
		LagP99Ms:      ms(p99),
		DeadLetters:   deadLetters(),
		WriteErrors:   writeErrs.Load(),
		ReadErrors:    readErrs.Load(),
		Drained:       drained,
		Checked:       checked,
		StaleCached:   staleCached,

		DroppedInvalidations: dropped.Load(),
	}
	if auditor != nil {
		a := auditor.total()
		sum.Audit = &a
	}
	if sum.Reads > 0 {
		sum.HitRate = float64(hits.Load()) / float64(sum.Reads)
	}
	return sum, nil
}

// finalCheck waits for the queues to drain, then reads every written row
// through the cache and counts those whose cached value is older than the
// source. A read that has to load is fresh by construction; a hit on an old
// value is a stale value written back, or an invalidation lost.
func finalCheck(ctx context.Context, cfg Config, insp *asynq.Inspector, cache *cacheaside.Cache,
	fams []*keyspec.Family, src *source) (drained bool, checked, stale int, err error) {
	ctx, cancel := context.WithTimeout(ctx, cfg.DrainTimeout)
	defer cancel()
	for !drained {
		// The outbox first: once it is empty, every row's task is on a
		// queue, so idle queues then mean every invalidation was applied.
		drained = outboxEmpty(ctx, src) && queuesIdle(insp)
		if drained {
			break
		}
		select {
		case <-ctx.Done():
			if cfg.Interrupt == nil || cfg.Interrupt.Err() == nil {
				cfg.Logger.Warn("queues did not drain before the final check", "timeout", cfg.DrainTimeout)
			}
			return false, 0, 0, nil
		case <-time.After(20 * time.Millisecond):
		}
	}
	for _, name := range src.written() {
		k, id := rowOf(cfg.Rows, name)
		if k < 0 {
			continue
		}
		want, err := src.load(ctx, name)
		if err != nil {
			return true, checked, stale, fmt.Errorf("final check of %s: %w", name, err)
		}
		val, err := cache.GetFamily(ctx, fams[k], cfg.Rows[k].Params(id), func(ctx context.Context) ([]byte, error) {
			v, err := src.load(ctx, name)
			return []byte(strconv.FormatInt(v, 10)), err
		})
		if err != nil {
			if cfg.Interrupt != nil && cfg.Interrupt.Err() != nil {
				return false, checked, stale, nil
			}
			return true, checked, stale, fmt.Errorf("final check of %s: %w", name, err)
		}
		checked++
		if got, _ := strconv.ParseInt(string(val), 10, 64); got < want {
			stale++
			cfg.Logger.Error("stale value still cached after the queues drained", "row", name, "cached", got, "source", want)
		}
	}
	return true, checked, stale, nil
}

// outboxEmpty reports whether every outbox row was relayed (true without
// PostgreSQL).
func outboxEmpty(ctx context.Context, src *source) bool {
	if src.pg == nil {
		return true
	}
	n, err := src.pg.pending(ctx)
	return err == nil && n == 0
}

// queuesIdle reports whether no queue holds a task waiting, running,
// scheduled or retrying.
func queuesIdle(insp *asynq.Inspector) bool {
	qs, err := insp.Queues()
	if err != nil {
		return false
	}
	for _, q := range qs {
		info, err := insp.GetQueueInfo(q)
		if err != nil || info.Pending+info.Active+info.Scheduled+info.Retry > 0 {
			return false
		}
	}
	return true
}

// rowOf parses a row name back into its kind index and id.
func rowOf(rows []RowKind, name string) (int, int) {
	for k, rk := range rows {
		if rest, ok := strings.CutPrefix(name, rk.Name+":"); ok {
			if id, err := strconv.Atoi(rest); err == nil {
				return k, id
			}
		}
	}
	return -1, 0
}

func ms(d time.Duration) float64 {
	if d < 0 {
		return -1
	}
	return float64(d.Microseconds()) / 1000
}

func rowName(rk RowKind, id int) string { return rk.Name + ":" + strconv.Itoa(id) }
