package cacheaside_test

import (
	"slices"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/invalidator/invalidator/cacheaside"
)

func TestMetricsRegister(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	_, err := cacheaside.NewMetrics(reg)
	require.NoError(t, err)
	_, err = cacheaside.NewMetrics(reg)
	require.ErrorContains(t, err, "cacheaside metrics", "a second set on one registry is refused")
	_, err = cacheaside.NewMetrics(prometheus.NewRegistry())
	require.NoError(t, err, "no global state")
	_, err = cacheaside.NewMetrics(nil)
	require.ErrorContains(t, err, "nil prometheus.Registerer")

	mfs, err := reg.Gather()
	require.NoError(t, err)
	var names []string
	for _, mf := range mfs {
		names = append(names, mf.GetName())
	}
	for _, want := range []string{
		"invalidator_cacheaside_hits_total", "invalidator_cacheaside_misses_total", "invalidator_cacheaside_loads_total",
		"invalidator_cacheaside_lease_waits_total", "invalidator_cacheaside_wait_timeouts_total",
		"invalidator_cacheaside_stale_stores_prevented_total", "invalidator_cacheaside_loader_errors_total",
		"invalidator_cacheaside_load_duration_seconds", "invalidator_cacheaside_lease_takeovers_total",
		"invalidator_cacheaside_lease_renewals_total", "invalidator_cacheaside_lease_renewal_errors_total",
		"invalidator_cacheaside_lease_wait_duration_seconds", "invalidator_cacheaside_load_timeouts_total",
	} {
		require.True(t, slices.Contains(names, want), "metric %s missing from %v", want, names)
	}
}
