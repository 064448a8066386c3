package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/databus/databus/capture"
	"github.com/databus/databus/internal/mysqlsrc"
	"github.com/databus/databus/sdk"
)

// errChecksFailed is returned by check when any check failed.
var errChecksFailed = fmt.Errorf("%w: some checks failed (see above)", capture.ErrSourceSettings)

func cmdCheck(ctx context.Context, env *cmdEnv, args []string) error {
	if len(args) > 0 {
		return usageError{fmt.Sprintf("check takes no arguments, got %q", args)}
	}
	cfg := env.cfg
	ok := true
	print := func(c mysqlsrc.Check) {
		mark := "ok  "
		if !c.OK {
			mark, ok = "FAIL", false
		}
		fmt.Fprintf(env.stdout, "%s %-26s %s\n", mark, c.Name, c.Detail)
		if !c.OK && c.Fix != "" {
			fmt.Fprintf(env.stdout, "     %-26s fix: %s\n", "", c.Fix)
		}
	}
	mcfg := captureConfig(cfg, env.log).MySQL
	if mcfg.ServerID == 0 {
		mcfg.ServerID = mysqlsrc.DeriveServerID(cfg.Source)
	}
	checks, err := mysqlsrc.CheckSource(ctx, mcfg)
	for _, c := range checks {
		print(c)
	}
	if err != nil && !errors.Is(err, capture.ErrAccessDenied) && !errors.Is(err, capture.ErrUnreachable) {
		return err
	}
	if err == nil {
		ccfg := captureConfig(cfg, env.log)
		ccfg.MySQL = mcfg
		print(capture.CheckStart(ctx, ccfg))
	}

	dd := mysqlsrc.Check{Name: "data_dir", OK: true, Detail: cfg.DataDir + " is writable"}
	if err := checkDataDir(cfg.DataDir); err != nil {
		dd = mysqlsrc.Check{Name: "data_dir", Detail: err.Error(), Fix: "create it with write permission for databus or set data_dir"}
	}
	print(dd)

	if cfg.NATS.URL != "" {
		c := mysqlsrc.Check{Name: "nats reachable", Detail: sdk.RedactURL(cfg.NATS.URL), Fix: "check nats.url, the NATS credentials (nats.user/password, nats.token, nats.creds, nats.nkey_seed) and TLS (nats.tls.ca, nats.tls.client_cert/client_key)"}
		nc, err := nats.Connect(cfg.NATS.URL, append(natsOptions(cfg, "databus-check"), nats.Timeout(5*time.Second))...)
		if err == nil {
			_, jerr := nc.JetStream()
			c.OK = jerr == nil
			c.Detail = "connected to " + sdk.RedactURL(nc.ConnectedUrl())
			if _, err := nc.RTT(); err != nil {
				c.OK, c.Detail = false, err.Error()
			}
			print(c)
			if c.OK {
				print(replicasCheck(nc, cfg.NATS.Stream.Replicas))
			}
			nc.Close()
		} else {
			c.Detail = fmt.Sprintf("%s: %v", sdk.RedactURL(cfg.NATS.URL), err)
			print(c)
		}
	} else {
		c := mysqlsrc.Check{Name: "nats.listen free", OK: true, Detail: cfg.NATS.Listen + " is free for the embedded server",
			Fix: "stop the process using it or set nats.listen to a free address"}
		l, err := net.Listen("tcp", cfg.NATS.Listen)
		if err != nil {
			c.OK, c.Detail = false, err.Error()
		} else {
			_ = l.Close()
		}
		print(c)
	}
	if !ok {
		return errChecksFailed
	}
	fmt.Fprintln(env.stdout, "all checks passed")
	return nil
}

// replicasCheck checks that the NATS server nc is connected to can keep
// replicas copies of the stream: a server outside a cluster keeps one; a
// cluster that announces fewer servers than replicas cannot place them
// (a cluster that hides its members passes).
func replicasCheck(nc *nats.Conn, replicas int) mysqlsrc.Check {
	c := mysqlsrc.Check{Name: "nats.stream.replicas", OK: true, Detail: fmt.Sprintf("%d", replicas)}
	if replicas < 2 {
		return c
	}
	servers := 1 + len(nc.DiscoveredServers())
	switch cluster := nc.ConnectedClusterName(); {
	case cluster == "":
		c.OK, c.Detail = false, fmt.Sprintf("%d replicas, but the NATS server is not in a cluster and keeps one", replicas)
		c.Fix = "set nats.stream.replicas: 1, or use a JetStream cluster with a server for each replica (docs/ha.md)"
	case servers < replicas && len(nc.DiscoveredServers()) > 0:
		c.OK, c.Detail = false, fmt.Sprintf("%d replicas, but cluster %s announces %d servers", replicas, cluster, servers)
		c.Fix = "add servers to the cluster or lower nats.stream.replicas"
	default:
		c.Detail = fmt.Sprintf("%d replicas in cluster %s", replicas, cluster)
	}
	return c
}
