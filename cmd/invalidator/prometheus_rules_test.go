package main

// The alert rules in deploy/ are checked here, beside the CLI, because the
// exporter's collector (cmd/invalidator/internal/queuestats) is internal to
// the CLI; the rest of deploy/ is checked in deploy/deploy_test.go.

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"

	"github.com/invalidator/invalidator/cdc"
	"github.com/invalidator/invalidator/cmd/invalidator/internal/queuestats"
	"github.com/invalidator/invalidator/outbox"
	"github.com/invalidator/invalidator/worker"
)

// rulesFile is the part of the Prometheus rules format the test reads.
type rulesFile struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []struct {
			Alert       string            `yaml:"alert"`
			Record      string            `yaml:"record"`
			Expr        string            `yaml:"expr"`
			For         string            `yaml:"for"`
			Labels      map[string]string `yaml:"labels"`
			Annotations map[string]string `yaml:"annotations"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}

// recorder is a prometheus.Registerer that keeps what it is given.
type recorder struct{ cs []prometheus.Collector }

func (r *recorder) Register(c prometheus.Collector) error   { r.cs = append(r.cs, c); return nil }
func (r *recorder) MustRegister(cs ...prometheus.Collector) { r.cs = append(r.cs, cs...) }
func (r *recorder) Unregister(prometheus.Collector) bool    { return false }

var fqNameRE = regexp.MustCompile(`fqName: "([^"]+)"`)

// metricNames returns the names the collectors describe.
func metricNames(t *testing.T, cs ...prometheus.Collector) map[string]bool {
	t.Helper()
	names := map[string]bool{}
	ch := make(chan *prometheus.Desc)
	go func() {
		for _, c := range cs {
			c.Describe(ch)
		}
		close(ch)
	}()
	for d := range ch {
		m := fqNameRE.FindStringSubmatch(d.String())
		require.NotNil(t, m, "desc %s", d)
		names[m[1]] = true
	}
	return names
}

// knownMetrics are the names the worker, the exporter and the outbox relay
// register.
func knownMetrics(t *testing.T) map[string]bool {
	t.Helper()
	rec := &recorder{}
	_, err := worker.NewMetrics(rec)
	require.NoError(t, err)
	_, err = outbox.NewMetrics(rec)
	require.NoError(t, err)
	_, err = cdc.NewMetrics(rec)
	require.NoError(t, err)
	client := redis.NewClient(&redis.Options{}) // never used: Describe reads no Redis
	t.Cleanup(func() { _ = client.Close() })
	qs, err := queuestats.New(queuestats.Config{Client: client})
	require.NoError(t, err)
	names := metricNames(t, append(rec.cs, qs)...)
	require.NotEmpty(t, names)
	return names
}

// Histograms and summaries are queried through derived series.
var seriesSuffixes = []string{"_bucket", "_sum", "_count"}

var metricRefRE = regexp.MustCompile(`\binvalidator_[a-z0-9_]+`)

func TestPrometheusRules(t *testing.T) {
	t.Parallel()
	raw, err := os.ReadFile("../../deploy/prometheus-rules.yaml")
	require.NoError(t, err)
	var f rulesFile
	dec := yaml.NewDecoder(strings.NewReader(string(raw)))
	dec.KnownFields(true) // a typo in a field name fails here, not in Prometheus
	require.NoError(t, dec.Decode(&f))
	known := knownMetrics(t)

	var alerts []string
	for _, g := range f.Groups {
		require.NotEmpty(t, g.Name)
		for _, r := range g.Rules {
			require.NotEmpty(t, r.Alert, "every rule here is an alert")
			require.NotContains(t, alerts, r.Alert, "alert names are unique")
			alerts = append(alerts, r.Alert)
			require.Contains(t, []string{"warning", "critical"}, r.Labels["severity"], r.Alert)
			require.NotEmpty(t, r.Annotations["summary"], r.Alert)
			require.Equal(t, strings.Count(r.Expr, "("), strings.Count(r.Expr, ")"), "%s: unbalanced parentheses", r.Alert)

			refs := metricRefRE.FindAllString(r.Expr, -1)
			require.NotEmpty(t, refs, "%s uses no invalidator metric", r.Alert)
			for _, ref := range refs {
				name := ref
				for _, s := range seriesSuffixes {
					if base, ok := strings.CutSuffix(ref, s); ok && known[base] {
						name = base
					}
				}
				require.True(t, known[name], "%s uses %s, which no collector registers (known: %v)", r.Alert, ref, sortedKeys(known))
			}
		}
	}
	// The alerts the issue asks for.
	for _, want := range []string{"InvalidatorLagP99High", "InvalidatorDeadLetters", "InvalidatorQueueGrowing",
		"InvalidatorDeadLetterNearArchiveCap", "InvalidatorDeadLetterBeyondArchive", "InvalidatorDeadLetterRecordFailing",
		"InvalidatorVersionAheadOfClock",
		"InvalidatorOutboxOldestRowOld", "InvalidatorOutboxGrowing", "InvalidatorOutboxRelayErrors",
		"InvalidatorOutboxRowsQuarantined", "InvalidatorAuditInconsistent",
		"InvalidatorCDCSlotRetainsWAL", "InvalidatorCDCLagging", "InvalidatorCDCNoActiveReader", "InvalidatorCDCDown"} {
		require.Contains(t, alerts, want)
	}
}

func sortedKeys(m map[string]bool) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
