package main

import (
	"context"
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/databus/databus/sdk"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

func cmdVersion(_ context.Context, env *cmdEnv, _ []string) error {
	rev := ""
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				rev = " (" + s.Value[:12] + ")"
			}
		}
	}
	fmt.Fprintf(env.stdout, "databus %s%s %s event format v%d\n", version, rev, runtime.Version(), sdk.FormatVersion)
	return nil
}
