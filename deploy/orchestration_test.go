package deploy_test

import (
	"bytes"
	"errors"
	"io"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"
)

// shutdownTimeout is the --shutdown-timeout in a worker's arguments.
func shutdownTimeout(t *testing.T, args []string) time.Duration {
	t.Helper()
	i := slices.Index(args, "--shutdown-timeout")
	require.True(t, i >= 0 && i+1 < len(args), "the worker's arguments %v do not set --shutdown-timeout", args)
	d, err := time.ParseDuration(args[i+1])
	require.NoError(t, err)
	return d
}

// compose.yaml runs Redis, two workers, the exporter and the dashboard, and
// gives a worker more time to stop than its shutdown timeout.
func TestComposeFile(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile("compose.yaml")
	require.NoError(t, err)
	var f struct {
		Services map[string]struct {
			Command         []string `yaml:"command"`
			StopGracePeriod string   `yaml:"stop_grace_period"`
			Deploy          struct {
				Replicas int `yaml:"replicas"`
			} `yaml:"deploy"`
			Environment map[string]string `yaml:"environment"`
		} `yaml:"services"`
	}
	require.NoError(t, yaml.Unmarshal(b, &f))
	for _, name := range []string{"redis", "worker", "exporter", "dashboard"} {
		require.Contains(t, f.Services, name)
	}
	w := f.Services["worker"]
	require.Equal(t, "worker", w.Command[0])
	require.GreaterOrEqual(t, w.Deploy.Replicas, 2)
	grace, err := time.ParseDuration(w.StopGracePeriod)
	require.NoError(t, err)
	require.Greater(t, grace, shutdownTimeout(t, w.Command), "stop_grace_period must exceed the worker's --shutdown-timeout")
	require.NotEmpty(t, w.Environment["INVALIDATOR_REDIS_URL"], "the merged environment lost the Redis URL")
	require.Equal(t, "exporter", f.Services["exporter"].Command[0])
	require.Equal(t, "dashboard", f.Services["dashboard"].Command[0])
	require.Contains(t, f.Services["dashboard"].Environment, "INVALIDATOR_DASHBOARD_PASSWORD")
}

// kubernetes.yaml's worker pods get more than their shutdown timeout to
// stop, and probe /healthz and /readyz.
func TestKubernetesManifests(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile("kubernetes.yaml")
	require.NoError(t, err)
	type container struct {
		Args          []string `yaml:"args"`
		LivenessProbe struct {
			HTTPGet struct{ Path string } `yaml:"httpGet"`
		} `yaml:"livenessProbe"`
		ReadinessProbe struct {
			HTTPGet struct{ Path string } `yaml:"httpGet"`
		} `yaml:"readinessProbe"`
	}
	type deployment struct {
		Kind     string                `yaml:"kind"`
		Metadata struct{ Name string } `yaml:"metadata"`
		Spec     struct {
			Replicas int `yaml:"replicas"`
			Template struct {
				Spec struct {
					TerminationGracePeriodSeconds int         `yaml:"terminationGracePeriodSeconds"`
					Containers                    []container `yaml:"containers"`
				} `yaml:"spec"`
			} `yaml:"template"`
		} `yaml:"spec"`
	}
	byName := map[string]deployment{}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	for {
		var d deployment
		err := dec.Decode(&d)
		if errors.Is(err, io.EOF) {
			break
		}
		require.NoError(t, err)
		byName[d.Metadata.Name] = d
	}
	w, ok := byName["invalidator-worker"]
	require.True(t, ok, "no invalidator-worker Deployment")
	require.GreaterOrEqual(t, w.Spec.Replicas, 2)
	pod := w.Spec.Template.Spec
	require.Len(t, pod.Containers, 1)
	c := pod.Containers[0]
	require.Equal(t, "worker", c.Args[0])
	require.Greater(t, time.Duration(pod.TerminationGracePeriodSeconds)*time.Second, shutdownTimeout(t, c.Args),
		"terminationGracePeriodSeconds must exceed the worker's --shutdown-timeout")
	require.Equal(t, "/healthz", c.LivenessProbe.HTTPGet.Path)
	require.Equal(t, "/readyz", c.ReadinessProbe.HTTPGet.Path)
	require.Contains(t, byName, "invalidator-exporter")
}
