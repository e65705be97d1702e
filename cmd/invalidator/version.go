package main

import (
	"encoding/json"
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// Stamped at link time by `make build` (-ldflags "-X main.buildVersion=...
// -X main.buildCommit=..."); nothing writes them at run time. A plain `go
// build` leaves them empty, and the version comes from the module's build
// info: the module version of `go install ...@v1.2.3`, the VCS revision of
// a checkout (unless GOFLAGS has -buildvcs=false).
var (
	buildVersion string
	buildCommit  string
)

// versionInfo is what `invalidator version --json` prints.
type versionInfo struct {
	Version   string `json:"version"`
	Commit    string `json:"commit,omitempty"`
	Modified  bool   `json:"modified,omitempty"` // built from a tree with uncommitted changes
	GoVersion string `json:"go_version"`
	Platform  string `json:"platform"`
}

// readVersion gathers the version from the link-time stamp, else from the
// build info; "devel" when neither knows.
func readVersion() versionInfo {
	v := versionInfo{Version: buildVersion, Commit: buildCommit, GoVersion: runtime.Version(),
		Platform: runtime.GOOS + "/" + runtime.GOARCH}
	if info, ok := debug.ReadBuildInfo(); ok {
		if v.Version == "" && info.Main.Version != "(devel)" {
			v.Version = info.Main.Version
		}
		for _, s := range info.Settings {
			switch s.Key {
			case "vcs.revision":
				if v.Commit == "" {
					v.Commit = s.Value
				}
			case "vcs.modified":
				v.Modified = s.Value == "true"
			}
		}
	}
	if v.Version == "" {
		v.Version = "devel"
	}
	if len(v.Commit) > 12 {
		v.Commit = v.Commit[:12]
	}
	return v
}

// String is the one line of --version and `invalidator version`.
func (v versionInfo) String() string {
	s := v.Version + " ("
	if v.Commit != "" {
		s += v.Commit
		if v.Modified {
			s += "+dirty"
		}
		s += ", "
	}
	return s + v.GoVersion + ", " + v.Platform + ")"
}

// version is the text of --version.
func version() string { return readVersion().String() }

func newVersionCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print the version, commit and Go version of this binary",
		Long: `Print the version of this binary: the one 'make build' stamped (git describe),
else the module version ('go install ...@vX.Y.Z'), else "devel"; with the
commit it was built from, the Go version and the platform.`,
		Example: `  invalidator version
  invalidator version --json`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			v := readVersion()
			if asJSON {
				return json.NewEncoder(cmd.OutOrStdout()).Encode(v)
			}
			_, err := fmt.Fprintln(cmd.OutOrStdout(), "invalidator "+v.String())
			return err
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print one JSON object")
	return cmd
}
