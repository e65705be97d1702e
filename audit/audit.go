package audit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"golang.org/x/time/rate"

	"github.com/invalidator/invalidator/cacheaside"
	"github.com/invalidator/invalidator/keyspec"
)

// Config tunes an Auditor. The zero value of each field means its default.
type Config struct {
	// Sample is how many keys of a family to compare at most. Default 100.
	Sample int
	// Rate caps the keys per second an audit touches in the cache: each
	// SCAN page costs ScanCount, each read 1. Default 5000.
	Rate float64
	// ScanCount is the COUNT of each SCAN. Default 100.
	ScanCount int
	// ScanBudget caps the keys SCAN may visit per family and run, over all
	// masters together (each gets a share proportional to its keys), so a
	// family with few keys or none in a big cache costs a bounded scan, not
	// the whole cache: at the default Rate, 100000 keys take 20 s. A report
	// says how many keys it scanned (Report.Scanned) and, when it found
	// fewer than Sample, why (Report.Note). Default max(10*Sample, 100000).
	ScanBudget int
	// RecheckAfter is how long to wait before re-checking a key that
	// differed, when its Check sets none: it should exceed the family's
	// invalidation lag budget. Default 5s.
	RecheckAfter time.Duration
	// SourceTimeout bounds each Source.Fetch. Default 5s.
	SourceTimeout time.Duration
	// Concurrency is how many keys are compared at once. Default 8.
	Concurrency int
	// Examples is how many example keys a Report carries. Default 5.
	Examples int
	// ShowValues puts the cached and source values into the examples.
	// Default false: values may be personal data.
	ShowValues bool
	// Logger receives a line per inconsistent key. Default: discard.
	Logger *slog.Logger
}

func (c Config) withDefaults() Config {
	if c.Sample == 0 {
		c.Sample = 100
	}
	if c.Rate == 0 {
		c.Rate = 5000
	}
	if c.ScanCount == 0 {
		c.ScanCount = 100
	}
	if c.ScanBudget == 0 {
		c.ScanBudget = max(10*c.Sample, 100000)
	}
	if c.RecheckAfter == 0 {
		c.RecheckAfter = 5 * time.Second
	}
	if c.SourceTimeout == 0 {
		c.SourceTimeout = 5 * time.Second
	}
	if c.Concurrency == 0 {
		c.Concurrency = 8
	}
	if c.Examples == 0 {
		c.Examples = 5
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// Validate reports a setting out of range.
func (c Config) Validate() error {
	switch {
	case c.Sample < 0:
		return fmt.Errorf("audit: sample %d is negative", c.Sample)
	case c.Rate < 0:
		return fmt.Errorf("audit: rate %v keys/s is negative", c.Rate)
	case c.ScanCount < 0 || c.ScanBudget < 0 || c.Concurrency < 0 || c.Examples < 0:
		return errors.New("audit: scan count, scan budget, concurrency and examples must not be negative")
	case c.RecheckAfter < 0 || c.SourceTimeout < 0:
		return errors.New("audit: recheck after and source timeout must not be negative")
	}
	return nil
}

// Check is one family to audit and how.
type Check struct {
	Family *keyspec.Family
	Source Source
	// Compare defaults to CompareBytes.
	Compare Compare
	// Fields restricts CompareJSON to these top-level object fields.
	Fields []string
	// RecheckAfter overrides Config.RecheckAfter when positive.
	RecheckAfter time.Duration
}

// Auditor samples a cache and compares it with sources. It is safe for
// concurrent use; its rate limit is shared by every audit it runs.
type Auditor struct {
	cache redis.UniversalClient
	cfg   Config
	limit *rate.Limiter
}

// New returns an Auditor of the cache Redis (standalone, Sentinel or
// Cluster: a cluster is sampled on every master).
func New(cache redis.UniversalClient, cfg Config) (*Auditor, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	return &Auditor{cache: cache, cfg: cfg, limit: rate.NewLimiter(rate.Limit(cfg.Rate), max(cfg.ScanCount, 1))}, nil
}

// sampled is one key under comparison.
type sampled struct {
	// key holds the data compared: the sampled key of a delete family,
	// the data key at the current version of a version family.
	key string
	// entity is the key sampled: key itself, or a version family's
	// version key, through which a re-check finds the current data key.
	entity string
	params map[string]string
	cached []byte // the value at the first read
	src    []byte
	found  bool
	err    error
	out    Outcome
}

// Audit samples up to Config.Sample keys of the check's family and
// compares each with the source. A key that differs is re-read on both
// sides after RecheckAfter, and counts as Inconsistent only when the cache
// still holds the same value and the source still differs from it. An
// error is returned only when the cache cannot be read; source errors make
// keys Unverifiable.
//
// A version family is sampled through its version keys, one per entity:
// the audit reads the data key at the current version, the only one a
// reader can reach. Data left under an older version is unreachable and
// never counts; a version that moves before the re-check makes the key
// InFlight.
func (a *Auditor) Audit(ctx context.Context, c Check) (Report, error) {
	fam := c.Family
	if fam == nil || c.Source == nil {
		return Report{}, errors.New("audit: a check needs a family and a source")
	}
	if !c.Compare.Valid() {
		return Report{}, fmt.Errorf("audit family %q: unknown compare mode %q; use %q or %q", fam.Name, c.Compare, CompareBytes, CompareJSON)
	}
	rep := Report{Family: fam.Name, Mode: fam.Mode, Examples: []Example{}}
	if rep.Mode == "" {
		rep.Mode = keyspec.ModeEnforce
	}
	found, err := a.sample(ctx, fam)
	if err != nil {
		return rep, fmt.Errorf("audit family %q: %w", fam.Name, err)
	}
	keys := found.keys
	rep.Scanned = found.visited
	switch {
	case len(keys) == 0 && found.spent:
		rep.Note = fmt.Sprintf("found none of the family's keys: scanned about %d of the cache's %d keys, the scan budget", found.visited, found.dbsize)
	case len(keys) == 0:
		rep.Note = fmt.Sprintf("found none of the family's keys: scanned the whole cache, %d keys", found.dbsize)
	case found.spent:
		rep.Note = fmt.Sprintf("found %d of the family's keys for a sample of %d: the scan budget ran out after about %d of the cache's %d keys",
			len(keys), a.cfg.Sample, found.visited, found.dbsize)
	}
	// First pass: read both sides, keep the keys that differ.
	items := make([]*sampled, 0, len(keys))
	var mu sync.Mutex // guards items and rep.Skipped
	err = each(ctx, a.cfg.Concurrency, keys, func(ctx context.Context, entity string) error {
		var (
			params map[string]string
			err    error
		)
		if fam.Strategy == keyspec.StrategyVersion {
			params, err = fam.ParseVersionKey(entity)
		} else {
			params, err = fam.ParseKey(entity)
		}
		if err != nil {
			mu.Lock()
			rep.Skipped++
			mu.Unlock()
			return nil
		}
		key, v, ok, err := a.readEntry(ctx, fam, entity, params)
		if err != nil || !ok {
			mu.Lock()
			rep.Skipped++
			mu.Unlock()
			return err
		}
		s := &sampled{key: key, entity: entity, params: params, cached: v}
		s.src, s.found, s.err = a.fetch(ctx, c.Source, params)
		switch {
		case s.err != nil:
			s.out = Unverifiable
		case equal(c.Compare, c.Fields, v, s.src, s.found):
			s.out = Consistent
		}
		mu.Lock()
		items = append(items, s)
		mu.Unlock()
		return nil
	})
	if err != nil {
		return rep, fmt.Errorf("audit family %q: %w", fam.Name, err)
	}
	var differ []*sampled
	for _, s := range items {
		if s.out == "" {
			differ = append(differ, s)
		}
	}
	if len(differ) > 0 {
		// Re-check: an invalidation in flight has had its lag budget.
		wait := a.cfg.RecheckAfter
		if c.RecheckAfter > 0 {
			wait = c.RecheckAfter
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return rep, ctx.Err()
		case <-t.C:
		}
		err = each(ctx, a.cfg.Concurrency, differ, func(ctx context.Context, s *sampled) error {
			key, v, ok, err := a.readEntry(ctx, fam, s.entity, s.params)
			if err != nil {
				return err
			}
			src, found, ferr := a.fetch(ctx, c.Source, s.params)
			switch {
			case ferr != nil:
				s.out, s.err = Unverifiable, ferr
			case !ok || key != s.key || string(v) != string(s.cached):
				s.out = InFlight // invalidated, bumped or rewritten since
			case equal(c.Compare, c.Fields, v, src, found):
				s.out = InFlight // the source came back to the cached value
			default:
				s.out = Inconsistent
				s.src, s.found = src, found
			}
			return nil
		})
		if err != nil {
			return rep, fmt.Errorf("audit family %q: re-check: %w", fam.Name, err)
		}
	}
	a.tally(&rep, items)
	return rep, nil
}

// tally fills the report's counts and examples from the compared keys.
func (a *Auditor) tally(rep *Report, items []*sampled) {
	// Keys in SCAN order are random already; sort for a stable report.
	slices.SortFunc(items, func(x, y *sampled) int { return strings.Compare(x.key, y.key) })
	for _, s := range items {
		rep.Sampled++
		switch s.out {
		case Consistent:
			rep.Consistent++
		case Inconsistent:
			rep.Inconsistent++
			rep.Stale = append(rep.Stale, s.key)
			rep.StaleParams = append(rep.StaleParams, s.params)
			a.cfg.Logger.Warn("audit: stale cache entry", "family", rep.Family, "key", s.key, "recheck", "still stale")
		case InFlight:
			rep.InFlight++
		case Unverifiable:
			rep.Unverifiable++
		}
	}
	for _, want := range []Outcome{Inconsistent, Unverifiable, InFlight, Consistent} {
		for _, s := range items {
			if s.out != want || len(rep.Examples) >= a.cfg.Examples {
				continue
			}
			ex := Example{Key: s.key, Outcome: s.out}
			if s.err != nil {
				ex.Error = s.err.Error()
			}
			if a.cfg.ShowValues {
				cached := string(s.cached)
				ex.Cached = &cached
				if s.found {
					src := string(s.src)
					ex.Source = &src
				}
			}
			rep.Examples = append(rep.Examples, ex)
		}
	}
	rep.setNines()
}

// readEntry returns the data key of a sampled key and the data it holds,
// and false when it holds none. A delete family's sampled key is its data
// key; a version family's is its version key, and the data key is the one
// at the version it holds now. A version key that vanished, or holds no
// decimal version, has no data to compare.
func (a *Auditor) readEntry(ctx context.Context, fam *keyspec.Family, entity string, params map[string]string) (string, []byte, bool, error) {
	if fam.Strategy != keyspec.StrategyVersion {
		v, ok, err := a.read(ctx, entity)
		return entity, v, ok, err
	}
	if err := a.limit.Wait(ctx); err != nil {
		return "", nil, false, err
	}
	s, err := a.cache.Get(ctx, entity).Result()
	if errors.Is(err, redis.Nil) {
		return "", nil, false, nil
	}
	if err != nil {
		return "", nil, false, fmt.Errorf("read %q: %w", entity, err)
	}
	ver, err := strconv.ParseInt(s, 10, 64)
	if err != nil || ver < 0 {
		return "", nil, false, nil
	}
	key, err := fam.DataKey(params, ver)
	if err != nil {
		return "", nil, false, nil
	}
	v, ok, err := a.read(ctx, key)
	return key, v, ok, err
}

// read returns the data a key holds, and false when it holds none (gone,
// a marker, a negative entry, or bytes cacheaside did not write).
func (a *Auditor) read(ctx context.Context, key string) ([]byte, bool, error) {
	if err := a.limit.Wait(ctx); err != nil {
		return nil, false, err
	}
	b, err := a.cache.Get(ctx, key).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("read %q: %w", key, err)
	}
	kind, v, err := cacheaside.DecodeStored(b)
	if err != nil || kind != cacheaside.StoredValue {
		return nil, false, nil
	}
	return v, true, nil
}

// fetch asks the source, within SourceTimeout.
func (a *Auditor) fetch(ctx context.Context, src Source, params map[string]string) ([]byte, bool, error) {
	ctx, cancel := context.WithTimeout(ctx, a.cfg.SourceTimeout)
	defer cancel()
	v, found, err := src.Fetch(ctx, params)
	if err == nil && ctx.Err() != nil {
		// A source that ignores its context and answers late is not an
		// answer to trust either.
		err = ctx.Err()
	}
	return v, found, err
}

// each runs fn on every item, concurrency at once, and returns
// the first error.
func each[T any](ctx context.Context, concurrency int, items []T, fn func(ctx context.Context, item T) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex // guards first
		first error
	)
	sem := make(chan struct{}, concurrency)
	for _, it := range items {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		wg.Go(func() {
			defer func() { <-sem }()
			if err := fn(ctx, it); err != nil {
				mu.Lock()
				if first == nil {
					first = err
					cancel()
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if first == nil && ctx.Err() != nil {
		// Only the caller's context can have ended here.
		first = context.Cause(ctx)
	}
	return first
}
